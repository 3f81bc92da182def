"""What every exporter reads besides the poll: the PVS serial, open alerts, last success.

Plain queries on the store, shared by the engines so that topics, tags and labels name the
same PVS and alerts the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from solar_monitor.context import RunContext
from solar_monitor.store import Store, from_iso


@dataclass(frozen=True, slots=True)
class OpenAlert:
    rule: str
    subject: str
    severity: str
    message: str
    opened_at: datetime


def pvs_serial(ctx: RunContext) -> str | None:
    """The supervisor's serial from this poll, else the configured one, else the last PVS
    the store saw (a failed poll still names its site)."""
    sup = ctx.snapshot.supervisor if ctx.snapshot else None
    if sup is not None and sup.serial:
        return sup.serial
    if ctx.config.pvs.serial:
        return ctx.config.pvs.serial
    row = ctx.store.db.execute("SELECT serial FROM devices WHERE device_type='PVS' "
                               "ORDER BY last_seen DESC LIMIT 1").fetchone()
    return row[0] if row else None


def open_alerts(store: Store) -> list[OpenAlert]:
    """The alerts open now, oldest first."""
    rows = store.db.execute("SELECT rule, subject, severity, message, opened_at FROM alerts "
                            "WHERE status='open' ORDER BY opened_at, rule, subject")
    return [OpenAlert(r[0], r[1], r[2], r[3], from_iso(r[4])) for r in rows]  # type: ignore[arg-type]


def last_success(store: Store) -> datetime | None:
    """The time of the last good poll (aware UTC), or None before the first."""
    row = store.db.execute("SELECT polled_at FROM polls WHERE ok=1 "
                           "ORDER BY polled_at DESC LIMIT 1").fetchone()
    return from_iso(row[0]) if row else None


def known_inverters(store: Store) -> list[str]:
    """Every inverter serial ever seen, first seen first (dark ones too)."""
    return [r["serial"] for r in store.devices("Inverter")]
