"""Deliver a month's digest: exactly once from `run`, or on demand from `digest`.

Exactly once: the first run on or after `digest.day_of_month` of a new local month queues
last month's digest in the notification outbox and records the month in the `digests`
table, in one transaction; a month already recorded is never queued again. The outbox
retries a failed send on later runs (a mail server outage), so a missed run or an outage
delays the digest but never doubles it. Later runs copy the outbox's outcome into the
`digests` row (queued -> sent, or gave_up after `notify.give_up_hours`).
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from solar_monitor.config import Config
from solar_monitor.digest.months import previous_month
from solar_monitor.store import Store, iso

if TYPE_CHECKING:
    from solar_monitor.context import RunContext
    from solar_monitor.digest.data import DigestData
    from solar_monitor.notify import SendResult

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DigestRecord:
    """A row of the `digests` table."""

    month: str
    status: str
    queued_at: str | None
    sent_at: str | None
    outbox_id: int | None
    detail: str | None


def build_for(config: Config, store: Store, month: date, now: datetime) -> DigestData:
    from solar_monitor.digest.data import build_digest_data  # only when a digest is due

    """The digest figures of `month` for this site, with its configured thresholds."""
    return build_digest_data(store, config.tz, month, site_name=config.site.name, now=now,
                             weak_threshold_pct=config.digest.weak_panel_pct,
                             inverter_labels=config.inverters)


def digest_stage(ctx: RunContext) -> None:
    """Pipeline stage: queue last month's digest once it is due; never during a replay
    unless notifications were asked for (`replay --notify`)."""
    if not ctx.config.digest.enabled or not ctx.notify:
        return
    sync_status(ctx.store)
    if not ctx.config.notify.targets:
        return  # nowhere to send it (`check` says so), and no notify module to import
    month = due_month(ctx.config, ctx.store, ctx.now)
    if month is None:
        return
    from solar_monitor.notify import matching_targets

    if not matching_targets(ctx.config, ctx.config.digest.tags):
        # debug, not info: this holds every run of the month; `check` reports it once
        log.debug("digest for %s not sent: no notify target with tag %s", f"{month:%Y-%m}",
                  " or ".join(ctx.config.digest.tags))
        return
    queue_digest(ctx.config, ctx.store, month, ctx.now)


def due_month(config: Config, store: Store, now: datetime) -> date | None:
    """Last month, when its digest is due at `now` and not yet queued or sent."""
    local = now.astimezone(config.tz)
    if local.day < config.digest.day_of_month:
        return None
    month = previous_month(now, config.tz)
    return None if record(store, f"{month:%Y-%m}") else month


def queue_digest(config: Config, store: Store, month: date, now: datetime) -> int | None:
    """Queue `month`'s digest in the outbox and record it, atomically. Returns the outbox
    id, or None when the month has no data (recorded as skipped) or is already recorded."""
    from solar_monitor.digest.render import (
        csv_filename,
        daily_csv,
        render_html,
        render_text,
        subject,
    )
    from solar_monitor.notify import queue_notification

    key = f"{month:%Y-%m}"
    data = build_for(config, store, month, now)
    with tempfile.TemporaryDirectory(prefix="solar-digest-") as tmp, store.transaction():
        if record(store, key):  # another process got here first
            return None
        if not data.polls:
            store.db.execute("INSERT INTO digests (month, status, queued_at, detail) "
                             "VALUES (?, 'skipped', ?, 'no data that month')", (key, iso(now)))
            log.info("digest for %s skipped: no data that month", key)
            return None
        attachment = Path(tmp) / csv_filename(data)
        attachment.write_bytes(daily_csv(data))
        outbox_id = queue_notification(
            store, title=subject(data), body=render_html(data), tags=config.digest.tags,
            body_format="html", attachments=[attachment], text_alternative=render_text(data),
            level="warning" if data.weak_inverters else "info", now=now)
        store.db.execute("INSERT INTO digests (month, status, queued_at, outbox_id) "
                         "VALUES (?, 'queued', ?, ?)", (key, iso(now), outbox_id))
    log.info("digest for %s queued (outbox #%d)", key, outbox_id)
    return outbox_id


def sync_status(store: Store) -> None:
    """Copy the outbox's outcome into queued digests: sent, or gave_up with the error."""
    rows = store.db.execute(
        "SELECT d.month, n.sent_at, n.gave_up_at, n.last_error, n.delivered_json "
        "FROM digests d JOIN notifications n ON n.id = d.outbox_id "
        "WHERE d.status = 'queued' AND (n.sent_at IS NOT NULL OR n.gave_up_at IS NOT NULL)"
    ).fetchall()
    for r in rows:
        if r["sent_at"] and json.loads(r["delivered_json"] or "[]"):
            store.db.execute("UPDATE digests SET status='sent', sent_at=? WHERE month=?",
                             (r["sent_at"], r["month"]))
        else:
            detail = r["last_error"] or "no notify target accepted it"
            store.db.execute("UPDATE digests SET status='gave_up', detail=? WHERE month=?",
                             (detail, r["month"]))
            log.error("digest for %s was not delivered: %s (send it again with "
                      "`solar-monitor digest --month %s`)", r["month"], detail, r["month"])


def record(store: Store, month: str) -> DigestRecord | None:
    """The `digests` row of 'YYYY-MM', or None when that month was never queued or sent."""
    row = store.db.execute("SELECT month, status, queued_at, sent_at, outbox_id, detail "
                           "FROM digests WHERE month=?", (month,)).fetchone()
    return None if row is None else DigestRecord(*row)


def send_now(config: Config, store: Store, data: DigestData, now: datetime) -> SendResult:
    """Send a digest immediately (the `digest` command); on success record the month as
    sent, so `run` does not send it again. Never raises on a failed send."""
    from solar_monitor.digest.render import (
        csv_filename,
        daily_csv,
        render_html,
        render_text,
        subject,
    )
    from solar_monitor.notify import send

    with tempfile.TemporaryDirectory(prefix="solar-digest-") as tmp:
        attachment = Path(tmp) / csv_filename(data)
        attachment.write_bytes(daily_csv(data))
        result = send(config, title=subject(data), body=render_html(data),
                      tags=config.digest.tags, body_format="html", attachments=[attachment],
                      text_alternative=render_text(data),
                      level="warning" if data.weak_inverters else "info")
    if result.ok:
        with store.transaction():
            store.db.execute(
                "INSERT INTO digests (month, status, queued_at, sent_at, detail) "
                "VALUES (?, 'sent', ?, ?, 'sent by the digest command') "
                "ON CONFLICT(month) DO UPDATE SET status='sent', sent_at=excluded.sent_at, "
                "detail=excluded.detail", (data.key, iso(now), iso(now)))
    return result
