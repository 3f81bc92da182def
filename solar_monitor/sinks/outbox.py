"""The sheet's outbox: rows queued in the shared outbox (solar_monitor/outbox.py), one
queue per layout, sent in order, each exactly once.

Rows are queued whether or not a sheet is configured (it costs one INSERT a poll); the
sender appends them to Google, or, with no sheet configured, the dry-run sink marks them
done. Each row has a key (the poll's UTC time, the local date, the alert event), unique
per layout, so queueing the same row twice is a no-op. Sent rows are pruned after a month.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from solar_monitor import outbox as shared
from solar_monitor.sinks.sheets_layout import (
    ALERTS,
    DAILY,
    LAYOUTS,
    READINGS,
    Cells,
    Layout,
    alert_cells,
    daily_cells,
    readings_cells,
    row_key,
)
from solar_monitor.store import Store, iso

QUEUES = tuple(LAYOUTS)  # the sheet's queues in the shared outbox: one per layout
log = logging.getLogger(__name__)
MAX_CATCH_UP_DAYS = 400  # a Pi switched off for longer starts the Daily tab afresh
DAILY_MARK = "sheets.daily_through"
INVERTER_NUMBERS = "sheets.inverter_numbers"

# How an `alerts` table (written by the rules engine) may say an alert is open; the first
# matching column wins. Read defensively: the table may not exist yet.
_OPEN_ALERT_SQL = (
    ("status", "status = 'open'"),  # migration 0005: status open | resolved
    ("resolved_at", "resolved_at IS NULL"),
    ("closed_at", "closed_at IS NULL"),
)


@dataclass(frozen=True, slots=True)
class QueuedRow:
    id: int
    layout: Layout
    key: str
    cells: Cells


_atomic = shared.atomic


def enqueue(store: Store, layout: Layout, cells: Cells, now: datetime) -> bool:
    """Queue one row; False when a row with that key was already queued (or sent)."""
    return shared.put(store, layout.name, row_key(layout, cells),
                      json.dumps(cells, separators=(",", ":")), now)


def enqueue_alert_event(store: Store, event_time: datetime, event: str, rule: str,
                        severity: str, subject: str, message: str) -> bool:
    """Queue one row for the sheet's Alerts tab; the next flush sends it.

    For the alerts engine: call it once per alert event (opened, re-notified, closed...),
    inside or outside your own transaction. `event_time` is an aware datetime; the row is
    keyed by (event_time, event, rule, subject), so calling it twice for the same event
    queues one row. Returns False for such a repeat.
    """
    with _atomic(store):
        return enqueue(store, ALERTS, alert_cells(event_time, event, rule, severity,
                                                  subject, message), datetime.now(UTC))


def count_open_alerts(store: Store) -> int | None:
    """Open alerts now, or None while there is no (recognisable) alerts table."""
    try:
        columns = {row[1] for row in store.db.execute("PRAGMA table_info(alerts)")}
        for column, where in _OPEN_ALERT_SQL:
            if column in columns:
                return store.db.execute(f"SELECT count(*) FROM alerts WHERE {where}"
                                        ).fetchone()[0]
    except sqlite3.Error:
        return None
    return None


def enqueue_poll(store: Store, polled_at: datetime, now: datetime) -> bool:
    """Queue the Readings row of a stored good poll; False for a failed or unknown poll."""
    row = store.db.execute("SELECT * FROM polls WHERE polled_at=? AND ok=1",
                           (iso(polled_at),)).fetchone()
    if row is None:
        return False
    with _atomic(store):
        return enqueue(store, READINGS, readings_cells(row, count_open_alerts(store)), now)


def enqueue_completed_days(store: Store, tz: ZoneInfo, now: datetime,
                           labels: Mapping[str, str] | None = None) -> int:
    """Queue a Daily row for each local day completed since the last one queued, its
    inverter columns headed by the owner's names (`labels`, config `inverters`).

    The first call only sets the mark, so the first row is the day the feature started.
    Returns how many rows were queued.
    """
    from solar_monitor.daily import summarize_day  # the one place daily kWh are derived

    today = now.astimezone(tz).date()
    mark = store.get_state(DAILY_MARK)
    yesterday = today - timedelta(days=1)
    # A mark after yesterday: a poll an older version stamped in the future (a PVS clock
    # in 2099) set it, or an older poll is being recovered. Start again from yesterday:
    # rows already queued or sent are not queued twice (their key), none is skipped.
    if mark is None or mark > yesterday.isoformat():
        with _atomic(store):
            store.set_state(DAILY_MARK, yesterday.isoformat())
        return 0
    day = max(date.fromisoformat(mark) + timedelta(days=1),
              today - timedelta(days=MAX_CATCH_UP_DAYS))
    count = 0
    with _atomic(store):
        numbers = inverter_numbers(store)
        while day < today:
            count += enqueue(store, DAILY, daily_cells(summarize_day(store, tz, day), numbers,
                                                           labels),
                             now)
            day += timedelta(days=1)
        if count or mark < yesterday.isoformat():
            store.set_state(DAILY_MARK, yesterday.isoformat())
    return count


def inverter_numbers(store: Store) -> dict[str, int]:
    """serial -> column number, stable forever: new inverters get the next numbers in
    first-seen order. Call inside a transaction (it may save new numbers)."""
    saved: dict[str, int] = json.loads(store.get_state(INVERTER_NUMBERS) or "{}")
    fresh = [d["serial"] for d in store.devices("Inverter") if d["serial"] not in saved]
    if fresh:
        start = max(saved.values(), default=0) + 1
        saved.update({serial: start + n for n, serial in enumerate(fresh)})
        store.set_state(INVERTER_NUMBERS, json.dumps(saved, sort_keys=True))
    return saved


def pending(store: Store, limit: int | None = None) -> list[QueuedRow]:
    """Unsent rows, oldest first."""
    return [QueuedRow(i.id, LAYOUTS[i.queue], i.key,
                      [(h, v) for h, v in json.loads(i.payload)])
            for i in shared.pending(store, QUEUES, limit)]


def pending_count(store: Store) -> int:
    return shared.pending_count(store, QUEUES)


def mark_sent(store: Store, ids: list[int], now: datetime) -> None:
    """Record rows as delivered (one transaction)."""
    shared.mark_sent(store, ids, now)


def mark_all_sent(store: Store, now: datetime) -> int:
    """Record every queued row as delivered, in one statement. Returns how many."""
    return shared.mark_all_sent(store, QUEUES, now)


def dry_run(store: Store, now: datetime) -> int:
    """No sheet configured: mark queued rows as handled (the demo prints them), without
    importing the sheets module and its client. Returns how many."""
    count = mark_all_sent(store, now)
    if count:
        log.debug("Google Sheet: not configured; %d row(s) not sent (dry run)", count)
    return count


def prune(store: Store, now: datetime) -> int:
    """Delete rows sent more than a month ago; returns how many."""
    return shared.prune(store, QUEUES, now)


def recent(store: Store, layout: Layout, limit: int) -> list[Cells]:
    """The last `limit` rows of a layout, queued or sent, oldest first (for previews)."""
    return [[(h, v) for h, v in json.loads(p)] for p in shared.recent(store, layout.name, limit)]


__all__ = ["DAILY", "QueuedRow", "count_open_alerts", "enqueue", "enqueue_alert_event",
           "enqueue_completed_days", "enqueue_poll", "inverter_numbers", "mark_all_sent",
           "mark_sent", "dry_run", "pending", "pending_count", "prune", "recent"]
