"""CSV exports under <data_dir>/csv/, derived from the store.

- `readings.csv`: one row per poll.
- `inverters-YYYY-MM.csv`: one row per inverter per poll (long format), one file per local
  month. Long format means a new inverter never adds a column or shifts earlier rows; one
  file a month keeps each file far below Excel's 1,048,576-row limit (30 inverters x 96
  polls a day is about 1.05 million rows a year).

Exactly once, crash-safe: the last line of each file is its watermark. Before appending,
a torn last line is cut off, and the rows of the file's last poll are rewritten in full,
so a run killed mid-write is repaired by the next one with no duplicate and no gap.

New columns are only ever appended. A file written before a column existed gets the new
header once (rewritten whole, atomically; its old rows keep their cells, padded empty), so
every row stays as wide as the header.
"""

from __future__ import annotations

import csv
import functools
import io
import itertools
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from solar_monitor.archive import write_atomic
from solar_monitor.pvs.models import STALE_AFTER_S
from solar_monitor.sinks.cells import neutralise
from solar_monitor.store import Store, from_iso

TAIL_BYTES = 512 * 1024
FIRST_TAIL_BYTES = 16 * 1024  # a run reads this much of each file it appends to, first
WRITE_BUFFER_BYTES = 256 * 1024  # a bounded buffer, and few system calls


@dataclass(frozen=True, slots=True)
class Column:
    """One CSV column: header and how to get its cell from a store row."""

    header: str
    value: Callable[[Any, ZoneInfo], Any]


def _field(name: str) -> Callable[[Any, ZoneInfo], Any]:
    return lambda row, _tz: row[name]


def _text(name: str) -> Callable[[Any, ZoneInfo], Any]:
    """A text column's cell, neutralised: PVS text must not become a formula in Excel."""
    return lambda row, _tz: neutralise(row[name]) if isinstance(row[name], str) else row[name]


def _local(row: Any, tz: ZoneInfo) -> str:
    return _local_text(row["polled_at"], tz)


@functools.lru_cache(maxsize=4096)  # the rows of one poll share one time
def _local_text(polled_at: str, tz: ZoneInfo) -> str:
    return from_iso(polled_at).astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")


READINGS_COLUMNS: tuple[Column, ...] = (
    Column("time_utc", _field("polled_at")),
    Column("time_local", _local),
    Column("ok", lambda row, _tz: row["ok"]),
    Column("error", _text("error")),
    Column("production_kw", _field("production_kw")),
    Column("consumption_kw", _field("consumption_kw")),
    Column("net_grid_kw", _field("net_grid_kw")),
    Column("lifetime_production_kwh", _field("lifetime_production_kwh")),
    Column("inverters_producing", _field("inverters_producing")),
    Column("inverters_total", _field("inverters_total")),
    Column("cloud_cover_pct", _field("cloud_cover_pct")),
    Column("sun_elevation_deg", _field("sun_elevation_deg")),
    Column("firmware", _text("firmware")),
    Column("api", _text("api")),
    Column("battery_kw", _field("battery_kw")),  # + discharging, - charging
    Column("battery_soc_pct", _field("battery_soc_pct")),
    # appended later (issue 15): an older file's header is widened, its rows stay as written
    Column("snow_depth_m", _field("snow_depth_m")),
    Column("snowfall_cm", _field("snowfall_cm")),
)
def _live(name: str) -> Callable[[Any, ZoneInfo], Any]:
    """A measured value, left empty when the reading is stale (older than STALE_AFTER_S
    at the poll): new firmware repeats a silent inverter's last values for days."""
    return lambda row, _tz: None if _stale_row(row) else row[name]


def _stale_row(row: Any) -> bool:
    age = row["age_s"]
    return age is not None and age > STALE_AFTER_S


_STATE_TEXT = _text("state")


def _inverter_state(row: Any, tz: ZoneInfo) -> Any:
    """'stale' when the reading is old (its values are left empty), else the PVS's state."""
    return "stale" if _stale_row(row) else _STATE_TEXT(row, tz)


INVERTER_COLUMNS: tuple[Column, ...] = (
    Column("time_utc", _field("polled_at")),
    Column("time_local", _local),
    Column("serial", _text("serial")),
    Column("state", _inverter_state),
    Column("power_kw", _live("power_kw")),
    Column("lifetime_kwh", _field("lifetime_kwh")),  # a counter: its last value stays true
    Column("ac_voltage_v", _live("ac_voltage_v")),
    Column("ac_current_a", _live("ac_current_a")),
    Column("freq_hz", _live("freq_hz")),
    Column("heatsink_c", _live("heatsink_c")),
    Column("dc_voltage_v", _live("dc_voltage_v")),
    Column("dc_current_a", _live("dc_current_a")),
    Column("dc_power_kw", _live("dc_power_kw")),
    # appended later (issue 19): the inverter's own measurement time and its age at the poll
    Column("measured_utc", _field("data_time")),
    Column("age_s", lambda row, _tz: None if row["age_s"] is None else round(row["age_s"])),
)


def export_csv(store: Store, csv_dir: Path, tz: ZoneInfo, until: str | None = None) -> int:
    """Append every stored poll the CSV files do not have yet, up to the store time
    `until` when given. Returns rows written.

    `until` keeps out a poll an older version stamped in the future (a PVS clock in
    2099): exported last, it would be every file's watermark and hide the polls after it;
    now its line is cut by the repair and not written again. Rows stream from the store
    to the files (a replay of a year ends with about a million inverter rows): memory
    stays flat whatever the history's length."""
    csv_dir.mkdir(parents=True, exist_ok=True)
    readings = csv_dir / "readings.csv"
    mark = _repair_and_watermark(readings)
    _widen(readings, READINGS_COLUMNS)  # after the repair: a torn line must not be kept
    written = _append(readings, READINGS_COLUMNS, store.polls_from(mark, until=until), tz)

    marks: dict[Path, str | None] = {}  # each file is repaired once per export
    inverter_since = _latest_inverter_watermark(csv_dir, marks)
    rows = store.inverter_rows_from(inverter_since, until)
    # the rows come oldest first, so each local month's rows are one run of the stream
    for month, month_rows in itertools.groupby(
            rows, key=lambda row: _local_text(row["polled_at"], tz)[:7]):  # YYYY-MM
        path = csv_dir / f"inverters-{month}.csv"
        if path not in marks:
            marks[path] = _repair_and_watermark(path)
        mark = marks[path]
        fresh = (r for r in month_rows if mark is None or r["polled_at"] >= mark)
        written += _append(path, INVERTER_COLUMNS, fresh, tz)
    return written


def _latest_inverter_watermark(csv_dir: Path, marks: dict[Path, str | None]) -> str | None:
    """The newest time key across the monthly files (repairing each one it reads)."""
    files = sorted(csv_dir.glob("inverters-????-??.csv"))
    for path in reversed(files):
        mark = marks[path] = _repair_and_watermark(path)
        if mark is not None:
            return mark
    return None


def _repair_and_watermark(path: Path) -> str | None:
    """Cut a torn last line and the rows of the last time key; return that key.

    After this, the file holds only complete polls, and everything at or after the
    returned time must be (re)appended.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    with path.open("rb+") as handle:
        for want in (FIRST_TAIL_BYTES, TAIL_BYTES):  # the last poll's rows fit in the first
            start = max(0, size - want)
            handle.seek(start)
            tail = handle.read()
            complete = tail[: tail.rfind(b"\n") + 1]
            lines = complete.splitlines(keepends=True)
            if start > 0 and lines:
                start += len(lines[0])  # the first line of the tail may be partial
                lines = lines[1:]
            data_lines = [ln for ln in lines if not ln.startswith(b"time_utc")]
            if start == 0 or (data_lines and data_lines[0].split(b",", 1)[0]
                              != data_lines[-1].split(b",", 1)[0]):
                break  # the whole file, or a row before the last time key is in view
        if not data_lines:
            cut = start + sum(len(ln) for ln in lines)
            _truncate(handle, cut, size)
            return None
        last_key = data_lines[-1].split(b",", 1)[0]
        offset = start
        for line in lines:
            if line.split(b",", 1)[0] == last_key:
                break
            offset += len(line)
        _truncate(handle, offset, size)
        return last_key.decode("ascii", errors="replace")


def _widen(path: Path, columns: Sequence[Column]) -> None:
    """Give a file written before the last columns were appended the current header, its
    old rows padded with empty cells. A header that is not a prefix of the current one
    (a file someone edited) is left alone."""
    headers = [c.header for c in columns]
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            old = next(csv.reader(handle), None)
    except FileNotFoundError:
        return
    if not old or old == headers or old != headers[:len(old)]:
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(headers)
    pad = [""] * (len(headers) - len(old))
    with path.open(encoding="utf-8", newline="") as src:
        reader = csv.reader(src)
        next(reader)
        for row in reader:
            writer.writerow(row + pad if len(row) == len(old) else row)
    write_atomic(path, buffer.getvalue().encode("utf-8"))  # once: a few MB a year


def _truncate(handle: Any, offset: int, size: int) -> None:
    if offset < size:
        handle.truncate(offset)
        handle.flush()
        os.fsync(handle.fileno())


def _append(path: Path, columns: Sequence[Column], rows: Iterable[Any], tz: ZoneInfo) -> int:
    """Append rows (header first for a new file) through a buffered file, then fsync.

    The file is opened at the first row (or for a new file's header), so an export with
    nothing new leaves it untouched. A run killed mid-way leaves whole lines up to some
    poll, maybe a torn one: the next export's _repair_and_watermark cuts back to whole
    polls and goes on."""
    new_file = not path.exists() or path.stat().st_size == 0
    count = 0
    handle = None
    try:
        for row in rows:
            if handle is None:
                handle, writer = _open_for_append(path, columns, new_file)
            writer.writerow([c.value(row, tz) for c in columns])  # None -> empty cell
            count += 1
        if handle is None and new_file:
            handle, writer = _open_for_append(path, columns, new_file)
        if handle is not None:
            handle.flush()
            os.fsync(handle.fileno())
    finally:
        if handle is not None:
            handle.close()
    return count


def _open_for_append(path: Path, columns: Sequence[Column], new_file: bool
                     ) -> tuple[io.TextIOWrapper, Any]:
    handle = path.open("a", encoding="utf-8", newline="", buffering=WRITE_BUFFER_BYTES)
    writer = csv.writer(handle, lineterminator="\n")
    if new_file:
        writer.writerow([c.header for c in columns])
    return handle, writer
