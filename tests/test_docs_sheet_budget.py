"""docs/google-sheets.md's cell budget, recomputed from the sheet's real columns.

Two docs once gave two budgets (10 columns and 27.7 years against 12 and 23.3); the table
is now checked against sheets_layout, so a new column changes the doc or fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

from solar_monitor.sinks.sheets_layout import ALERTS, DAILY, READINGS

DOC = Path(__file__).resolve().parent.parent / "docs" / "google-sheets.md"
ROWS_A_YEAR = round(96 * 365.25)  # one poll every 15 minutes
ALERT_ROWS = 200
SHEET1_CELLS = 1000 * 26  # the tab a new spreadsheet starts with
LIMIT = 10_000_000


def _row(label: str) -> list[str]:
    """The cells of the budget table's row whose first cell starts with label."""
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip().strip("*") for c in line.strip().strip("|").split("|")]
        if cells and cells[0].startswith(label):
            return cells
    raise AssertionError(f"no row {label!r} in {DOC.name}")


def _num(text: str) -> float:
    return float(text.replace(",", ""))


def test_the_cell_budget_matches_the_sheets_real_columns() -> None:
    readings = _row("Readings:")
    assert re.search(rf"\b{len(READINGS.columns)} columns × {ROWS_A_YEAR:,} rows", readings[0])
    assert f"({len(DAILY.columns)} + inverters)" in _row("Daily:")[0]
    assert f"{len(ALERTS.columns)} columns" in _row("Alerts:")[0]
    for col, inverters in ((1, 12), (2, 40)):
        cells = (len(READINGS.columns) * ROWS_A_YEAR
                 + round((len(DAILY.columns) + inverters) * 365.25)
                 + len(ALERTS.columns) * ALERT_ROWS)
        assert _num(readings[col]) == len(READINGS.columns) * ROWS_A_YEAR
        assert _num(_row("Cells per year")[col]) == cells
        years = _num(_row("Years until 10 million")[col])
        assert years == round((LIMIT - SHEET1_CELLS) / cells, 1)
