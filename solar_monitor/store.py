"""The SQLite store: the system of record for history and state.

WAL mode, numbered migrations, and one transaction per poll, so a run killed at any instant
leaves the database as it was before that poll or after it. Times are stored as
'YYYY-MM-DDTHH:MM:SSZ' text (UTC), which sorts and reads well.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import attrgetter
from pathlib import Path
from typing import Any

from solar_monitor.pvs.models import Snapshot, totals

# Unmapped lowercase metrics worth keeping per reading; identity properties (UPPERCASE)
# and these constant tags go to the devices table instead, to keep the database small.
_STATIC_EXTRAS = frozenset({"origin", "interface", "hw_version", "module_serial", "slave",
                            "parent", "panid", "stat_ind", "vldFldMsk", "msmtEps"})

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def migrations() -> list[Path]:
    """Every migration file, in name order. Each feature adds its own file,
    `NNNN_feature.sql`; a migration is applied once, recorded by its name (the stem), so
    a store that has them all reads none of them."""
    return sorted(MIGRATIONS_DIR.glob("[0-9][0-9][0-9][0-9]_*.sql"))


_METER_COLS = ("kind", "subtype", "state", "data_time", "power_kw", "reactive_kvar",
               "apparent_kva", "power_factor", "freq_hz", "lifetime_net_kwh",
               "lifetime_pos_kwh", "lifetime_neg_kwh", "current_a", "voltage_v", "leg1_v",
               "leg2_v", "leg1_a", "leg2_a", "leg1_kw", "leg2_kw", "age_s")
_INVERTER_COLS = ("state", "data_time", "power_kw", "lifetime_kwh", "ac_voltage_v",
                  "ac_current_a", "freq_hz", "heatsink_c", "dc_voltage_v", "dc_current_a",
                  "dc_power_kw", "age_s")
_GET_METER = attrgetter(*_METER_COLS)
_GET_INVERTER = attrgetter(*_INVERTER_COLS)
_SUPERVISOR_COLS = ("serial", "state", "data_time", "uptime_s", "cpu_load", "mem_used_kib",
                    "flash_avail_kib", "flash_used_pct", "untransmitted", "err_count",
                    "comm_err", "skipped_scans", "scan_time_s", "cpu_usage_pct",
                    "flash_wear_pct")
_BATTERY_COLS = ("device_type", "serial", "model", "state", "op_mode", "data_time",
                 "soc_pct", "customer_soc_pct", "soh_pct", "power_kw", "battery_v")
_GET_BATTERY = attrgetter(*_BATTERY_COLS)


def iso(at: datetime | None) -> str | None:
    """Aware datetime -> 'YYYY-MM-DDTHH:MM:SSZ' (UTC), the store's time format."""
    if at is None:
        return None
    utc = at.astimezone(UTC)  # isoformat is ~4x faster than strftime: replay calls it a lot
    return utc.replace(tzinfo=None, microsecond=0).isoformat() + "Z"


def from_iso(text: str | None) -> datetime | None:
    """The store's time text -> aware UTC datetime."""
    return None if text is None else datetime.fromisoformat(text).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class StoredPoll:
    """A poll as recorded: enough to know whether an archive file was ingested."""

    id: int
    polled_at: datetime
    ok: bool


class Store:
    """The database at `path`. Use as a context manager; `transaction()` per poll."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, timeout=30, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoint
        self.db.execute("PRAGMA foreign_keys=ON")
        self._depth = 0
        self._info_cache: dict[str, tuple[dict[str, Any], str]] = {}
        self._migrate()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    def _migrate(self) -> None:
        self.db.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                        "(name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
        done = {row[0] for row in self.db.execute("SELECT name FROM schema_migrations")}
        for migration in migrations():
            if (name := migration.stem) in done:
                continue
            with self.transaction():
                for statement in _statements(migration.read_text(encoding="utf-8")):
                    self.db.execute(statement)
                self.db.execute("INSERT INTO schema_migrations VALUES (?, ?)",
                                (name, iso(datetime.now(UTC))))

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any error.

        Nested inside another transaction (a replay batch) it is a SAVEPOINT, so the
        inner block still rolls back alone and the outer one commits everything at once.
        """
        if self.db.in_transaction:
            self._depth += 1
            name = f"sp{self._depth}"
            self.db.execute(f"SAVEPOINT {name}")
            try:
                yield self.db
            except BaseException:
                self.db.execute(f"ROLLBACK TO {name}")
                self.db.execute(f"RELEASE {name}")
                raise
            finally:
                self._depth -= 1
            self.db.execute(f"RELEASE {name}")
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # --- writing -----------------------------------------------------------------------

    def has_poll(self, polled_at: datetime) -> bool:
        row = self.db.execute("SELECT 1 FROM polls WHERE polled_at=?", (iso(polled_at),))
        return row.fetchone() is not None

    def record_failure(self, polled_at: datetime, error: str, http_status: int | None,
                       archive_file: str | None) -> int | None:
        """Record a failed poll; returns its id, or None if that poll was already stored."""
        cur = self.db.execute(
            "INSERT OR IGNORE INTO polls (polled_at, ok, error, http_status, archive_file) "
            "VALUES (?, 0, ?, ?, ?)", (iso(polled_at), error, http_status, archive_file))
        return cur.lastrowid if cur.rowcount else None

    def record_snapshot(self, polled_at: datetime, snap: Snapshot,
                        archive_file: str | None) -> int | None:
        """Insert a poll and all its readings; None if that poll was already stored.

        Call inside `transaction()`.
        """
        t = totals(snap)
        cur = self.db.execute(
            "INSERT OR IGNORE INTO polls (polled_at, ok, api, firmware, build, pvs_time, "
            "archive_file, production_kw, consumption_kw, net_grid_kw, "
            "lifetime_production_kwh, inverters_total, inverters_producing, battery_kw, "
            "battery_soc_pct) VALUES (?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (iso(polled_at), snap.api, snap.firmware, snap.build, iso(snap.pvs_time),
             archive_file, t.production_kw, t.consumption_kw, t.net_grid_kw,
             t.lifetime_production_kwh, t.inverters_total, t.inverters_producing,
             t.battery_kw, t.battery_soc_pct))
        if not cur.rowcount:
            return None
        poll_id = cur.lastrowid
        assert poll_id is not None
        when = iso(polled_at)
        seen: list[tuple[str, str, str | None, str | None, Any]] = []
        if (sup := snap.supervisor) is not None:
            values = [_cell(getattr(sup, c)) for c in _SUPERVISOR_COLS]
            self.db.execute(
                f"INSERT INTO supervisor_readings (poll_id, {', '.join(_SUPERVISOR_COLS)}) "
                f"VALUES (?{', ?' * len(_SUPERVISOR_COLS)})", (poll_id, *values))
            if sup.serial:
                seen.append((sup.serial, "PVS", sup.model, sup.state, sup.extra))
        self.db.executemany(
            f"INSERT OR REPLACE INTO meter_readings (poll_id, serial, "
            f"{', '.join(_METER_COLS)}, extra_json) "
            f"VALUES (?, ?{', ?' * len(_METER_COLS)}, ?)",
            [(poll_id, m.serial, *_cells(_GET_METER(m)), _metrics_json(m.extra))
             for m in snap.meters])
        self.db.executemany(
            f"INSERT OR REPLACE INTO inverter_readings (poll_id, serial, "
            f"{', '.join(_INVERTER_COLS)}, extra_json) "
            f"VALUES (?, ?{', ?' * len(_INVERTER_COLS)}, ?)",
            [(poll_id, i.serial, *_cells(_GET_INVERTER(i)), _metrics_json(i.extra))
             for i in snap.inverters])
        self.db.executemany(
            "INSERT INTO other_readings (poll_id, device_type, serial, state, fields_json) "
            "VALUES (?, ?, ?, ?, ?)",
            [(poll_id, d.device_type, d.serial, d.state, json.dumps(d.fields, default=str))
             for d in snap.other])
        self.db.executemany(
            f"INSERT INTO battery_readings (poll_id, {', '.join(_BATTERY_COLS)}, extra_json) "
            f"VALUES (?{', ?' * len(_BATTERY_COLS)}, ?)",
            [(poll_id, *_cells(_GET_BATTERY(b)), _metrics_json(b.extra))
             for b in snap.batteries])
        seen += [(m.serial, "Power Meter", m.model, m.state, m.extra) for m in snap.meters]
        seen += [(i.serial, "Inverter", i.model, i.state,
                  {**i.extra, "PANEL": i.panel, "SWVER": i.firmware}) for i in snap.inverters]
        seen += [(d.serial, d.device_type, None, d.state, {}) for d in snap.other if d.serial]
        seen += [(b.serial, b.device_type, b.model, b.state or b.op_mode, b.extra)
                 for b in snap.batteries if b.serial]
        self._seen(seen, when)
        return poll_id

    def _seen(self, devices: list[tuple[str, str, str | None, str | None, Any]],
              when: str | None) -> None:
        """Upsert first/last seen, last state and identity of every device in a poll."""
        self.db.executemany(
            "INSERT INTO devices (serial, device_type, model, first_seen, last_seen, "
            "last_state, info_json) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(serial) DO UPDATE SET last_seen=max(last_seen, excluded.last_seen), "
            "first_seen=min(first_seen, excluded.first_seen), "
            "model=coalesce(excluded.model, model), last_state=CASE WHEN excluded.last_seen "
            ">= last_seen THEN excluded.last_state ELSE last_state END, "
            "info_json=CASE WHEN excluded.last_seen >= last_seen THEN excluded.info_json "
            "ELSE info_json END",
            [(serial, device_type, model, when, when, state, self._info_json(serial, extra))
             for serial, device_type, model, state, extra in devices])

    def _info_json(self, serial: str, extra: Any) -> str:
        """A device's identity as JSON, re-encoded only when it changed (it rarely does)."""
        cached = self._info_cache.get(serial)
        if cached is not None and cached[0] == extra:
            return cached[1]
        encoded = _info_json(extra)
        self._info_cache[serial] = (dict(extra), encoded)
        return encoded

    def enrich_poll(self, poll_id: int, values: dict[str, float | None]) -> None:
        """Set enrichment columns (cloud_cover_pct, sun_elevation_deg) of a stored poll."""
        allowed = {"cloud_cover_pct", "sun_elevation_deg", "shortwave_w_m2", "snow_depth_m",
                   "snowfall_cm"}
        columns = [c for c in values if c in allowed]
        if columns:  # one statement: a replay enriches every poll
            self.db.execute(f"UPDATE polls SET {', '.join(f'{c}=?' for c in columns)} "
                            "WHERE id=?", [*(values[c] for c in columns), poll_id])

    def poll_times_since(self, start: datetime, until: datetime | None = None) -> set[str]:
        """The stored poll times (store format) at or after `start` (and at or before
        `until`: one day's, not the rest of a long history's)."""
        if until is None:
            rows = self.db.execute("SELECT polled_at FROM polls WHERE polled_at >= ?",
                                   (iso(start),))
        else:
            rows = self.db.execute("SELECT polled_at FROM polls WHERE polled_at BETWEEN ? AND ?",
                                   (iso(start), iso(until)))
        return {row[0] for row in rows}

    def set_state(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", (key, value))

    def get_state(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM state WHERE key=?", (key,)).fetchone()
        return None if row is None else row[0]

    def clear_state(self, key: str) -> None:
        self.db.execute("DELETE FROM state WHERE key=?", (key,))

    def queued_notifications(self, limit: int) -> list[sqlite3.Row]:
        """The oldest `limit` notifications neither sent nor given up (notify.py sends
        them; the pipeline imports notify only when there is one)."""
        return self.db.execute(
            "SELECT * FROM notifications WHERE sent_at IS NULL AND gave_up_at IS NULL "
            "ORDER BY id LIMIT ?", (limit,)).fetchall()

    # --- reading -----------------------------------------------------------------------

    def last_poll(self, before: datetime | None = None) -> StoredPoll | None:
        """The latest stored poll, or the latest stamped before `before`."""
        where, args = ("WHERE polled_at < ?", (iso(before),)) if before else ("", ())
        row = self.db.execute(f"SELECT id, polled_at, ok FROM polls {where} "  # noqa: S608
                              "ORDER BY polled_at DESC LIMIT 1", args).fetchone()
        return None if row is None else StoredPoll(row[0], from_iso(row[1]), bool(row[2]))

    def polls_from(self, start: str | None, limit: int | None = None,
                   until: str | None = None) -> Iterator[sqlite3.Row]:
        """Poll rows (with totals) at or after the ISO time `start` (and at or before
        `until`), oldest first; a cursor, read as it is consumed (a year is 35,040 rows)."""
        sql = "SELECT * FROM polls WHERE polled_at >= ? AND polled_at <= ? ORDER BY polled_at"
        args: list[Any] = [start or "", until or "~"]  # "~" sorts after every time
        if limit:
            sql += " LIMIT ?"
            args.append(limit)
        return self.db.execute(sql, args)

    def inverter_rows_from(self, start: str | None,
                           until: str | None = None) -> Iterator[sqlite3.Row]:
        """Per-inverter readings of polls at or after `start` (and at or before `until`),
        oldest poll first; a cursor, read as it is consumed (a year of 30 inverters is a
        million rows)."""
        return self.db.execute(
            "SELECT p.polled_at, r.* FROM inverter_readings r JOIN polls p ON p.id = r.poll_id "
            "WHERE p.polled_at >= ? AND p.polled_at <= ? ORDER BY p.polled_at, r.serial",
            (start or "", until or "~"))

    def devices(self, device_type: str | None = None) -> Sequence[sqlite3.Row]:
        sql = "SELECT * FROM devices"
        if device_type:
            return self.db.execute(sql + " WHERE device_type=? ORDER BY first_seen, serial",
                                   (device_type,)).fetchall()
        return self.db.execute(sql + " ORDER BY device_type, serial").fetchall()


def _statements(script: str) -> Iterator[str]:
    """Split an SQL script into statements the way SQLite does (comments and quoted
    semicolons are not boundaries)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;") and not _only_comments(pending):
                yield pending
            pending = ""
    if pending.strip() and not _only_comments(pending):
        yield pending


def _only_comments(text: str) -> bool:
    return all(not ln.strip() or ln.strip().startswith("--") for ln in text.splitlines())


def _cells(values: tuple[Any, ...]) -> tuple[Any, ...]:
    """Model values as SQLite cells (datetimes as the store's time text)."""
    return tuple(iso(v) if isinstance(v, datetime) else v for v in values)


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    return value


def _info_json(extra: Any) -> str:
    """Identity properties (UPPERCASE) and constant tags: kept per device, not per reading."""
    info = {k: v for k, v in extra.items() if k.isupper() or k in _STATIC_EXTRAS}
    return json.dumps(info, default=str, sort_keys=True)


def _metrics_json(extra: Any) -> str | None:
    """New, unmapped metrics (lowercase keys) kept per reading; None when there are none."""
    if not extra:
        return None
    metrics = {k: v for k, v in extra.items() if not k.isupper() and k not in _STATIC_EXTRAS}
    return json.dumps(metrics, default=str, sort_keys=True) if metrics else None
