"""The durable outbox every sink shares: items queued in SQLite, sent in order, each once.

A sink queues an item under its queue's name with a key unique in that queue (a poll's
time, a day, an alert event), so queueing the same item twice is a no-op, and a sink that
was down for days sends its backlog oldest first once it is back. Sent items are kept a
month (a lost answer can be recognised), then pruned. The Google Sheet (sinks/outbox.py)
and the InfluxDB export (exports/influxdb.py) both queue here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from solar_monitor.store import Store, iso

KEEP_SENT = timedelta(days=31)


@dataclass(frozen=True, slots=True)
class Item:
    """One queued item: `payload` is the sink's own text (JSON cells, line protocol)."""

    id: int
    queue: str
    key: str
    payload: str


@contextlib.contextmanager
def atomic(store: Store) -> Iterator[None]:
    """A transaction, or the caller's when one is open (the alerts engine may hold one)."""
    if store.db.in_transaction:
        yield
    else:
        with store.transaction():
            yield


def _among(queues: Sequence[str]) -> tuple[str, list[str]]:
    return f"queue IN ({', '.join('?' * len(queues))})", list(queues)


def put(store: Store, queue: str, key: str, payload: str, now: datetime) -> bool:
    """Queue one item; False when the queue already holds (or sent) that key."""
    cur = store.db.execute(
        "INSERT OR IGNORE INTO outbox (queue, item_key, payload, queued_at) "
        "VALUES (?, ?, ?, ?)", (queue, key, payload, iso(now)))
    return bool(cur.rowcount)


def pending(store: Store, queues: Sequence[str], limit: int | None = None) -> list[Item]:
    """Unsent items of these queues, oldest first."""
    where, args = _among(queues)
    sql = f"SELECT id, queue, item_key, payload FROM outbox WHERE {where} " \
          "AND sent_at IS NULL ORDER BY id"
    rows = store.db.execute(sql + (" LIMIT ?" if limit else ""),
                            [*args, limit] if limit else args).fetchall()
    return [Item(r[0], r[1], r[2], r[3]) for r in rows]


def pending_count(store: Store, queues: Sequence[str]) -> int:
    where, args = _among(queues)
    return store.db.execute(f"SELECT count(*) FROM outbox WHERE {where} AND sent_at IS NULL",
                            args).fetchone()[0]


def mark_sent(store: Store, ids: Sequence[int], now: datetime) -> None:
    """Record items as delivered (one transaction)."""
    with atomic(store):
        store.db.executemany("UPDATE outbox SET sent_at=? WHERE id=?",
                             [(iso(now), i) for i in ids])


def mark_all_sent(store: Store, queues: Sequence[str], now: datetime) -> int:
    """Record every queued item of these queues as delivered, in one statement (no item is
    loaded: after a replay of a year there are 35,000). Returns how many."""
    where, args = _among(queues)
    with atomic(store):
        cur = store.db.execute(f"UPDATE outbox SET sent_at=? WHERE {where} "
                               "AND sent_at IS NULL", [iso(now), *args])
    return cur.rowcount


def prune(store: Store, queues: Sequence[str], now: datetime) -> int:
    """Delete items of these queues sent more than a month ago; returns how many."""
    where, args = _among(queues)
    with atomic(store):
        cur = store.db.execute(f"DELETE FROM outbox WHERE {where} AND sent_at < ?",
                               [*args, iso(now - KEEP_SENT)])
    return cur.rowcount


def trim(store: Store, queue: str, keep: int) -> int:
    """Drop the oldest unsent items of a queue beyond the newest `keep` (a sink down for
    longer than it is worth queueing for); returns how many were dropped."""
    with atomic(store):
        cur = store.db.execute(
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE queue=? AND "
            "sent_at IS NULL ORDER BY id DESC LIMIT -1 OFFSET ?)", (queue, keep))
    return cur.rowcount


def recent(store: Store, queue: str, limit: int) -> list[str]:
    """The payloads of the last `limit` items of a queue, queued or sent, oldest first."""
    rows = store.db.execute(
        "SELECT payload FROM outbox WHERE queue=? ORDER BY id DESC LIMIT ?",
        (queue, limit)).fetchall()
    return [r[0] for r in reversed(rows)]
