"""Text cells a spreadsheet never runs: one rule for the CSV files and the Google Sheet.

PVS text (a serial, a model, a firmware string) reaches cells that Excel, LibreOffice and
Sheets evaluate: `=HYPERLINK(...)` or `@SUM(...)` would run. A leading apostrophe makes
such a cell plain text in all three (OWASP's CSV-injection advice).
"""

from __future__ import annotations

QUOTE = "'"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(text: str, *, always: bool = False) -> str:
    """`text` as a cell that is never a formula: QUOTE in front when it starts like one
    and is not a plain number (-0.015 stays a number). `always` quotes every non-empty
    text (the Sheets API's USER_ENTERED would turn '06-10' into a date)."""
    if text and (always or (text.startswith(FORMULA_STARTS) and not _number(text))):
        return QUOTE + text
    return text


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
