"""CSV exports under <data_dir>/csv/, derived from the store.

- `readings.csv`: one row per poll.
- `inverters-YYYY-MM.csv`: one row per inverter per poll (long format), one file per local
  month. Long format means a new inverter never adds a column or shifts earlier rows; one
  file a month keeps each file far below Excel's 1,048,576-row limit (30 inverters x 96
  polls a day is about 1.05 million rows a year).

Exactly once, crash-safe: the last line of each file is its watermark. Before appending,
a torn last line is cut off, and the rows of the file's last poll are rewritten in full,
so a run killed mid-write is repaired by the next one with no duplicate and no gap.
"""

from __future__ import annotations

import csv
import functools
import io
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from solar_monitor.store import Store, from_iso

TAIL_BYTES = 512 * 1024


@dataclass(frozen=True, slots=True)
class Column:
    """One CSV column: header and how to get its cell from a store row."""

    header: str
    value: Callable[[Any, ZoneInfo], Any]


def _field(name: str) -> Callable[[Any, ZoneInfo], Any]:
    return lambda row, _tz: row[name]


def _local(row: Any, tz: ZoneInfo) -> str:
    return _local_text(row["polled_at"], tz)


@functools.lru_cache(maxsize=4096)  # the rows of one poll share one time
def _local_text(polled_at: str, tz: ZoneInfo) -> str:
    return from_iso(polled_at).astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")


READINGS_COLUMNS: tuple[Column, ...] = (
    Column("time_utc", _field("polled_at")),
    Column("time_local", _local),
    Column("ok", lambda row, _tz: row["ok"]),
    Column("error", _field("error")),
    Column("production_kw", _field("production_kw")),
    Column("consumption_kw", _field("consumption_kw")),
    Column("net_grid_kw", _field("net_grid_kw")),
    Column("lifetime_production_kwh", _field("lifetime_production_kwh")),
    Column("inverters_producing", _field("inverters_producing")),
    Column("inverters_total", _field("inverters_total")),
    Column("cloud_cover_pct", _field("cloud_cover_pct")),
    Column("sun_elevation_deg", _field("sun_elevation_deg")),
    Column("firmware", _field("firmware")),
    Column("api", _field("api")),
    # appended later (issue 15): an older file's header is widened, its rows stay as written
    Column("snow_depth_m", _field("snow_depth_m")),
    Column("snowfall_cm", _field("snowfall_cm")),
)
INVERTER_COLUMNS: tuple[Column, ...] = (
    Column("time_utc", _field("polled_at")),
    Column("time_local", _local),
    Column("serial", _field("serial")),
    Column("state", _field("state")),
    Column("power_kw", _field("power_kw")),
    Column("lifetime_kwh", _field("lifetime_kwh")),
    Column("ac_voltage_v", _field("ac_voltage_v")),
    Column("ac_current_a", _field("ac_current_a")),
    Column("freq_hz", _field("freq_hz")),
    Column("heatsink_c", _field("heatsink_c")),
    Column("dc_voltage_v", _field("dc_voltage_v")),
    Column("dc_current_a", _field("dc_current_a")),
    Column("dc_power_kw", _field("dc_power_kw")),
)


def export_csv(store: Store, csv_dir: Path, tz: ZoneInfo) -> int:
    """Append every stored poll the CSV files do not have yet. Returns rows written."""
    csv_dir.mkdir(parents=True, exist_ok=True)
    readings = csv_dir / "readings.csv"
    written = 0
    _widen_header(readings, READINGS_COLUMNS)
    rows = store.polls_from(_repair_and_watermark(readings))
    written += _append(readings, READINGS_COLUMNS, rows, tz)

    marks: dict[Path, str | None] = {}  # each file is repaired once per export
    inverter_since = _latest_inverter_watermark(csv_dir, marks)
    by_file: dict[Path, list[Any]] = {}
    months: dict[str, Path] = {}
    for row in store.inverter_rows_from(inverter_since):
        month = _local_text(row["polled_at"], tz)[:7]  # YYYY-MM
        if month not in months:
            months[month] = csv_dir / f"inverters-{month}.csv"
            by_file[months[month]] = []
        by_file[months[month]].append(row)
    for path, file_rows in sorted(by_file.items()):
        mark = marks[path] if path in marks else _repair_and_watermark(path)
        fresh = [r for r in file_rows if mark is None or r["polled_at"] >= mark]
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


def _widen_header(path: Path, columns: Sequence[Column]) -> None:
    """Give a file written before columns were appended the current header, once.

    Only a header that is a prefix of today's is widened (the old rows keep their
    cells, the new columns are empty there, as a spreadsheet shows them); the file is
    rewritten to a temporary name and renamed over, so a kill leaves one or the other.
    """
    header = ",".join(c.header for c in columns).encode()
    try:
        with path.open("rb") as handle:
            first = handle.readline()
    except FileNotFoundError:
        return
    old = first.rstrip(b"\r\n")
    if old == header or not first.endswith(b"\n") or not header.startswith(old + b","):
        return
    temp = path.with_name(path.name + ".widen")
    with path.open("rb") as src, temp.open("wb") as out:
        src.readline()
        out.write(header + b"\n")
        while chunk := src.read(1 << 20):
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temp, path)


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
        start = max(0, size - TAIL_BYTES)
        handle.seek(start)
        tail = handle.read()
        complete = tail[: tail.rfind(b"\n") + 1]
        lines = complete.splitlines(keepends=True)
        if start > 0 and lines:
            start += len(lines[0])  # the first line of the tail may be partial
            lines = lines[1:]
        data_lines = [ln for ln in lines if not ln.startswith(b"time_utc")]
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


def _truncate(handle: Any, offset: int, size: int) -> None:
    if offset < size:
        handle.truncate(offset)
        handle.flush()
        os.fsync(handle.fileno())


def _append(path: Path, columns: Sequence[Column], rows: Iterable[Any], tz: ZoneInfo) -> int:
    """Append rows in one write (header first for a new file), then fsync."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    new_file = not path.exists() or path.stat().st_size == 0
    if new_file:
        writer.writerow([c.header for c in columns])
    count = 0
    for row in rows:
        writer.writerow([c.value(row, tz) for c in columns])  # None -> empty cell
        count += 1
    if count == 0 and not new_file:
        return 0
    with path.open("a", encoding="utf-8", newline="") as handle:
        handle.write(buffer.getvalue())
        handle.flush()
        os.fsync(handle.fileno())
    return count
