"""What the Google Sheet looks like: worksheets, columns, and how a cell is typed.

Pure: no network, no gspread. Three layouts:
- `readings`: one row per good poll;
- `daily`: one row per completed local day, then one kWh column per inverter;
- `alerts`: one row per alert event.

A column is identified by its header text, never by its position: the sheet's header row
says where each column is, a new header (a new inverter) is added at the right end, and
existing columns never move. Every layout has a key (one or more columns) that identifies
a row, so the sender can tell which queued rows the sheet already holds.

Cells are stored as plain JSON values with times as UTC text ('YYYY-MM-DDTHH:MM:SSZ');
`render` turns them into what the Sheets API reads with USER_ENTERED: numbers stay
numbers, times become 'YYYY-MM-DD HH:MM:SS' in the site's time zone (the sheet parses
them as dates), and text gets a leading apostrophe so that '=x' or '1/2' stays text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from solar_monitor.display import shown_production_kw
from solar_monitor.names import inverter_label
from solar_monitor.sinks.cells import neutralise
from solar_monitor.store import from_iso

Kind = Literal["number", "local_dt", "utc_dt", "date", "local_time", "text"]
Cell = Any  # a JSON value: float | int | str | None
Cells = list[tuple[str, Cell]]  # (header, value) pairs in column order

_SHEETS_EPOCH = datetime(1899, 12, 30, tzinfo=UTC)  # day 0 of a sheet date serial
MAX_TEXT = 5000  # a cell holds 50,000 characters; a message never needs that


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    kind: Kind


@dataclass(frozen=True, slots=True)
class Layout:
    """One worksheet's fixed columns (more columns may follow) and its row key."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]

    def kind(self, header: str) -> Kind:
        """The kind of a column; extra columns (per inverter) hold numbers."""
        return next((c.kind for c in self.columns if c.header == header), "number")

    @property
    def headers(self) -> list[str]:
        return [c.header for c in self.columns]


READINGS = Layout("readings", (
    Column("Time", "local_dt"),
    Column("Production kW", "number"),
    Column("Consumption kW", "number"),
    Column("Net grid kW (+import)", "number"),
    Column("Lifetime production kWh", "number"),
    Column("Inverters producing", "number"),
    Column("Inverters total", "number"),
    Column("Cloud cover %", "number"),
    Column("Open alerts", "number"),
    Column("Time (UTC)", "utc_dt"),  # the key: local time repeats an hour each autumn
    Column("Snow depth m", "number"),  # issue 15: new columns go at the right end
    Column("Snowfall cm", "number"),
), key=("Time (UTC)",))

DAILY = Layout("daily", (
    Column("Date", "date"),
    Column("Production kWh", "number"),
    Column("Consumption kWh", "number"),
    Column("Grid import kWh", "number"),
    Column("Grid export kWh", "number"),
    Column("Peak kW", "number"),
    Column("Peak time", "local_time"),
    Column("Cloud cover % (avg)", "number"),
    Column("Polls ok %", "number"),
), key=("Date",))

ALERTS = Layout("alerts", (
    Column("Time", "local_dt"),
    Column("Event", "text"),
    Column("Rule", "text"),
    Column("Severity", "text"),
    Column("Subject", "text"),
    Column("Message", "text"),
    Column("Time (UTC)", "utc_dt"),
), key=("Time (UTC)", "Event", "Rule", "Subject"))

LAYOUTS: dict[str, Layout] = {lay.name: lay for lay in (READINGS, DAILY, ALERTS)}


# --- rendering for the API (USER_ENTERED) ---------------------------------------------

def _local(fmt: str) -> Callable[[Cell, ZoneInfo], Cell]:
    def render(value: Cell, tz: ZoneInfo) -> Cell:
        at = from_iso(value)
        assert at is not None
        return at.astimezone(tz).strftime(fmt)
    return render


def _text(value: Cell, _tz: ZoneInfo) -> Cell:
    return neutralise(str(value)[:MAX_TEXT], always=True)


_RENDER: dict[Kind, Callable[[Cell, ZoneInfo], Cell]] = {
    "number": lambda v, _tz: v,
    "local_dt": _local("%Y-%m-%d %H:%M:%S"),
    "utc_dt": lambda v, _tz: _local("%Y-%m-%d %H:%M:%S")(v, ZoneInfo("UTC")),
    "date": lambda v, _tz: str(v),
    "local_time": _local("%H:%M"),
    "text": _text,
}


def render(layout: Layout, header: str, value: Cell, tz: ZoneInfo) -> Cell:
    """One stored value as the API should receive it (USER_ENTERED); '' when empty."""
    if value is None or value == "":
        return ""
    return _RENDER[layout.kind(header)](value, tz)


def render_row(layout: Layout, sheet_headers: Sequence[str], cells: Cells,
               tz: ZoneInfo) -> list[Cell]:
    """A row in the sheet's column order (its header row), trailing empties cut."""
    by_header = dict(cells)
    row = [render(layout, h, by_header.get(h), tz) for h in sheet_headers]
    while row and row[-1] == "":
        row.pop()
    return row


# --- row keys: the same text from a queued row and from a cell read back -----------------

def row_key(layout: Layout, cells: Cells) -> str:
    """The key of a queued row, e.g. '2026-06-09T18:15:00Z' or '2026-06-09'."""
    by_header = dict(cells)
    return "|".join(str(by_header.get(h) or "") for h in layout.key)


def sheet_row_key(layout: Layout, header_index: Mapping[str, int], row: Sequence[Any]) -> str:
    """The key of a row read back with UNFORMATTED_VALUE / SERIAL_NUMBER."""
    parts = []
    for h in layout.key:
        i = header_index.get(h)
        cell = row[i] if i is not None and i < len(row) else ""
        parts.append(_canon(layout.kind(h), cell))
    return "|".join(parts)


def _canon(kind: Kind, cell: Any) -> str:
    if cell is None or cell == "":
        return ""
    if kind == "utc_dt":
        if isinstance(cell, int | float):
            at = _SHEETS_EPOCH + timedelta(seconds=round(float(cell) * 86400))
        else:
            try:
                at = datetime.fromisoformat(str(cell).replace("Z", "")).replace(tzinfo=UTC)
            except ValueError:
                return str(cell)
        return at.strftime("%Y-%m-%dT%H:%M:%SZ")
    if kind == "date":
        if isinstance(cell, int | float):
            return (_SHEETS_EPOCH.date() + timedelta(days=int(cell))).isoformat()
        return str(cell)[:10]
    return str(cell)


# --- building rows from the store's figures ---------------------------------------------

def _r(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def readings_cells(poll: Mapping[str, Any], open_alerts: int | None) -> Cells:
    """A Readings row from a `polls` row (the store's columns)."""
    return [
        ("Time", poll["polled_at"]),
        ("Production kW", _r(shown_production_kw(poll["production_kw"]), 3)),
        ("Consumption kW", _r(poll["consumption_kw"], 3)),
        ("Net grid kW (+import)", _r(poll["net_grid_kw"], 3)),
        ("Lifetime production kWh", _r(poll["lifetime_production_kwh"], 2)),
        ("Inverters producing", poll["inverters_producing"]),
        ("Inverters total", poll["inverters_total"]),
        ("Cloud cover %", _r(poll["cloud_cover_pct"], 0)),
        ("Open alerts", open_alerts),
        ("Time (UTC)", poll["polled_at"]),
        ("Snow depth m", _r(poll["snow_depth_m"], 3)),
        ("Snowfall cm", _r(poll["snowfall_cm"], 1)),
    ] + _battery_cells(poll)


def _battery_cells(poll: Mapping[str, Any]) -> Cells:
    """Battery columns, only for a poll that has a battery: a site without one never gets
    them; a SunVault site gets them at the right end on its first battery reading."""
    keys = poll.keys()  # a sqlite3.Row or a dict; rows queued before 0007 lack them
    kw = poll["battery_kw"] if "battery_kw" in keys else None
    soc = poll["battery_soc_pct"] if "battery_soc_pct" in keys else None
    if kw is None and soc is None:
        return []
    return [("Battery kW (+discharge)", _r(kw, 3)), ("Battery charge %", _r(soc, 1))]


def inverter_header(serial: str, labels: Mapping[str, str] | None = None) -> str:
    """'south roof, row 2, #3 (…45868) kWh', or '…45868 kWh': names.inverter_label's form.
    The sender finds an inverter's column by the serial's tail, so naming an inverter
    later keeps its column (an older sheet's 'Inv 3 …45868 kWh' included)."""
    return f"{inverter_label(serial, labels)} kWh"


def daily_cells(summary: Any, inverter_numbers: Mapping[str, int],
                labels: Mapping[str, str] | None = None) -> Cells:
    """A Daily row from a daily.DaySummary; per-inverter columns in first-seen order,
    headed by the owner's names (`labels`: serial -> name, config `inverters`)."""
    at = summary.peak_at
    cells: Cells = [
        ("Date", summary.day.isoformat()),
        ("Production kWh", _r(summary.production_kwh, 3)),
        ("Consumption kWh", _r(summary.consumption_kwh, 3)),
        ("Grid import kWh", _r(summary.import_kwh, 3)),
        ("Grid export kWh", _r(summary.export_kwh, 3)),
        ("Peak kW", _r(summary.peak_kw, 3)),
        ("Peak time", at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if at else None),
        ("Cloud cover % (avg)", _r(summary.cloud_cover_pct, 0)),
        ("Polls ok %", _r(summary.completeness_pct, 0) if summary.polls else 0),
    ]
    for serial in sorted(summary.inverter_kwh, key=lambda s: inverter_numbers.get(s, 10**6)):
        if serial in inverter_numbers:
            cells.append((inverter_header(serial, labels),
                          _r(summary.inverter_kwh[serial], 3)))
    return cells


def alert_cells(event_time: datetime, event: str, rule: str, severity: str, subject: str,
                message: str) -> Cells:
    """An Alerts row."""
    when = event_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [("Time", when), ("Event", event), ("Rule", rule), ("Severity", severity),
            ("Subject", subject), ("Message", message[:MAX_TEXT]), ("Time (UTC)", when)]


def days_between(first: date, last: date) -> list[date]:
    """Each day from `first` to `last` inclusive."""
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]
