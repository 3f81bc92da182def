"""Send the outbox to a Google Sheet with gspread and a service account.

One flush: read the spreadsheet's metadata, create missing worksheets (with headers),
read each worksheet's header row and its last few rows in one request, mark queued rows
the sheet already holds as sent (an append whose answer was lost), add new columns at the
right, then append the rest in batches. Every failure becomes one of two outcomes:
RetryLater (network, 429, 5xx: the rows stay queued for the next run) or NeedsFix (key,
sharing, API switched off: a message that says what to do). Nothing here raises anything
else from gspread, google-auth or requests.

gspread is imported only when a sheet is configured.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from solar_monitor.config import GoogleSheetsConfig
from solar_monitor.sinks import outbox
from solar_monitor.sinks.sheets_layout import LAYOUTS, Layout, render_row, sheet_row_key
from solar_monitor.store import Store

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

SCOPES = ("https://www.googleapis.com/auth/spreadsheets",)  # no Drive access needed
MAX_APPENDS = 40  # write requests per flush: under the 60 a minute Google allows
MAX_ATTEMPTS = 4
TAIL_MARGIN = 5  # rows read beyond the rows a lost append could have written
FAILING_STATE = "sheets.failing"
SHEETS_HOST = "https://sheets.googleapis.com"

# Called with each new requests.Session that talks to Google; tests mount a transport
# adapter here that sends the calls to a fake Sheets API on loopback.
SESSION_HOOKS: list[Callable[[requests.Session], None]] = []


class SheetsError(Exception):
    """The sheet could not be updated; the rows stay queued."""


class RetryLater(SheetsError):
    """Network trouble, 429 or 5xx: the next run will try again."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class NeedsFix(SheetsError):
    """Google refuses for a reason the owner must fix; the message says how."""


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    """The parts of the key file that messages need (never the private key)."""

    email: str
    project: str
    path: Path


@dataclass(slots=True)
class FlushReport:
    sent: int = 0
    already_there: int = 0
    still_queued: int = 0
    created: tuple[str, ...] = ()


def spreadsheet_id(value: str) -> str:
    """The id from a sheet URL ('…/spreadsheets/d/<id>/edit') or the id itself."""
    match = re.search(r"/spreadsheets/d/([A-Za-z0-9_-]+)", value)
    return match.group(1) if match else value.strip()


# --- connecting -------------------------------------------------------------------------

def load_key(path: Path) -> tuple[dict[str, Any], ServiceAccount]:
    """Read a service-account JSON key; registers its secrets for log redaction.

    Raises NeedsFix when the file is missing, unreadable or not such a key."""
    from solar_monitor.logsetup import add_secrets

    how = ("create a JSON key for the service account (docs/google-sheets.md, step 3) and "
           "set google_sheets.key_file to its path")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise NeedsFix(f"cannot read the key file {path} ({exc.strerror}): {how}") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise NeedsFix(f"{path} is not a JSON key file: {how}") from None
    if not isinstance(info, dict) or info.get("type") != "service_account" or not all(
            isinstance(info.get(k), str) for k in ("client_email", "private_key")):
        raise NeedsFix(f"{path} is not a service-account key (it needs type "
                       f"'service_account', client_email and private_key): {how}")
    key = info["private_key"]
    add_secrets([key, *key.splitlines()[1:-1], str(info.get("private_key_id") or "")])
    return info, ServiceAccount(info["client_email"], str(info.get("project_id") or "?"), path)


class Sheet:
    """One spreadsheet through gspread's HTTP client; raw API shapes in and out."""

    def __init__(self, settings: GoogleSheetsConfig) -> None:
        info, self.account = load_key(Path(settings.key_file).expanduser())
        self.id = spreadsheet_id(settings.spreadsheet)
        self.title = self.id
        import gspread  # a run without a sheet never pays for this import

        try:
            client = gspread.service_account_from_dict(info, scopes=list(SCOPES))
        except (ValueError, TypeError) as exc:  # google-auth cannot use the key
            raise NeedsFix(f"{self.account.path} holds an unusable private key "
                           f"({exc.__class__.__name__}): create a new JSON key") from None
        _no_boundary_lookup(client.http_client.auth)
        connect_s = min(10.0, settings.timeout_s)
        client.set_timeout((connect_s, settings.timeout_s))
        self.http = client.http_client
        for hook in SESSION_HOOKS:
            hook(self.http.session)

    def worksheets(self) -> dict[str, dict[str, Any]]:
        """title -> sheet properties (sheetId, gridProperties.rowCount, ...)."""
        meta = self.http.fetch_sheet_metadata(
            self.id, params={"includeGridData": "false",
                             "fields": "properties.title,sheets.properties"})
        self.title = meta.get("properties", {}).get("title", self.id)
        return {s["properties"]["title"]: s["properties"] for s in meta.get("sheets", [])}

    def add_worksheets(self, specs: Sequence[tuple[str, Sequence[str]]]) -> list[dict[str, Any]]:
        """New worksheets, each as large as its header (unused grid cells count against
        the 10-million-cell limit), with the header row written and frozen. Two requests."""
        reply = self.http.batch_update(self.id, {"requests": [{"addSheet": {"properties": {
            "title": title,
            "gridProperties": {"rowCount": 2, "columnCount": len(headers),
                               "frozenRowCount": 1}}}} for title, headers in specs]})
        self.http.values_batch_update(self.id, {"valueInputOption": "RAW", "data": [
            {"range": f"{a1_title(title)}!A1", "values": [list(headers)]}
            for title, headers in specs]})
        return [r["addSheet"]["properties"] for r in reply["replies"]]

    def add_columns(self, props: dict[str, Any], count: int) -> None:
        self.http.batch_update(self.id, {"requests": [{"appendDimension": {
            "sheetId": props["sheetId"], "dimension": "COLUMNS", "length": count}}]})

    def write_cells(self, title: str, row: int, col: int, values: list[Any]) -> None:
        """Write one row of plain text (headers) starting at (row, col)."""
        self.http.values_update(self.id, f"{a1_title(title)}!{col_letter(col)}{row}",
                                params={"valueInputOption": "RAW"},
                                body={"values": [values]})

    def read(self, ranges: list[str]) -> list[list[list[Any]]]:
        """The values of each range, numbers and dates as numbers (date serials)."""
        if not ranges:
            return []
        reply = self.http.values_batch_get(self.id, ranges, params={
            "valueRenderOption": "UNFORMATTED_VALUE",
            "dateTimeRenderOption": "SERIAL_NUMBER", "majorDimension": "ROWS"})
        return [vr.get("values", []) for vr in reply.get("valueRanges", [])]

    def append(self, title: str, rows: list[list[Any]]) -> None:
        self.http.values_append(self.id, f"{a1_title(title)}!A1", params={
            "valueInputOption": "USER_ENTERED", "insertDataOption": "OVERWRITE"},
            body={"majorDimension": "ROWS", "values": rows})


def _no_boundary_lookup(credentials: Any) -> None:
    """Skip google-auth's background 'regional access boundary' lookup (2.4x+): an extra
    call to iamcredentials.googleapis.com each run that a Pi writing one sheet does not
    need, and whose retries log urllib3 warnings in every cron mail while offline."""
    if hasattr(credentials, "_is_regional_access_boundary_lookup_required"):
        credentials._is_regional_access_boundary_lookup_required = lambda: False


def a1_title(title: str) -> str:
    return "'" + title.replace("'", "''") + "'"


def col_letter(n: int) -> str:
    """1 -> A, 27 -> AA."""
    letters = ""
    while n:
        n, rem = divmod(n - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


# --- errors: translated in one place ------------------------------------------------------

def translate(exc: BaseException, account: ServiceAccount | None, sheet_id: str) -> SheetsError:
    """A gspread / google-auth / requests exception as RetryLater or NeedsFix."""
    import google.auth.exceptions as gae
    import requests
    from gspread.exceptions import APIError

    email = account.email if account else "the service account"
    if isinstance(exc, APIError):
        return _api_error(exc, email, account.project if account else "?", sheet_id)
    if isinstance(exc, gae.RefreshError) and not getattr(exc, "retryable", False):
        reason = "invalid_grant" if "invalid_grant" in str(exc) else "refused"
        where = account.path if account else "the key file"
        return NeedsFix(f"Google refused the service-account key ({reason}): it was deleted "
                        f"or disabled, or this computer's clock is wrong; check `date`, or "
                        f"create a new JSON key for {email} and replace {where}")
    if isinstance(exc, gae.GoogleAuthError | requests.RequestException):
        return RetryLater(f"cannot reach Google ({_short(exc)})")
    raise exc  # not ours to translate: a bug, let the stage record it


def _short(exc: BaseException) -> str:
    name = exc.__class__.__name__
    if "timed out" in str(exc).lower() or "Timeout" in name:
        return f"{name}: timed out"
    return name


def _api_error(exc: Any, email: str, project: str, sheet_id: str) -> SheetsError:
    status = exc.response.status_code
    error = exc.error if isinstance(exc.error, dict) else {}
    message = str(error.get("message", ""))[:300]
    if status == 429:
        return RetryLater("Google's rate limit was reached (429)",
                          _retry_after(exc.response.headers.get("Retry-After")))
    if status >= 500 or status == 408:
        return RetryLater(f"Google answered {status} {error.get('status', '')}".rstrip())
    if status == 401:
        return NeedsFix(f"Google no longer accepts the credentials of {email} (401): "
                        f"create a new JSON key for it and replace the key file")
    if status == 403 and ("SERVICE_DISABLED" in json.dumps(error) or "has not been used"
                          in message or "is disabled" in message):
        return NeedsFix(f"the Google Sheets API is off for project {project}: enable it at "
                        f"https://console.cloud.google.com/apis/library/sheets.googleapis.com"
                        f"?project={project}, wait a minute, then run `solar-monitor check`")
    if status == 403:
        return NeedsFix(f"{email} may not edit the spreadsheet: open the sheet, click Share "
                        f"and add {email} as Editor")
    if status == 404:
        return NeedsFix(f"spreadsheet {sheet_id} not found: copy the sheet's address from "
                        f"the browser into google_sheets.spreadsheet, and share it with "
                        f"{email}")
    if "10000000" in message or "cells" in message and "limit" in message:
        return NeedsFix(f"the spreadsheet is full (Google's 10 million cells): create a new "
                        f"one, share it with {email}, and put its address in "
                        f"google_sheets.spreadsheet")
    return NeedsFix(f"Google rejected a request ({status}: {message})")


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


# --- flushing -------------------------------------------------------------------------------

def flush(store: Store, settings: GoogleSheetsConfig, tz: ZoneInfo, *, now: datetime,
          sleep: Callable[[float], None] = time.sleep) -> FlushReport:
    """Send queued rows. On 429 / 5xx / network trouble, retry within `max_wait_s`
    (honouring Retry-After), then raise RetryLater; raises NeedsFix for what the owner
    must fix. Rows sent before a failure stay sent; the others stay queued."""
    report = FlushReport()
    if not outbox.pending(store, limit=1):
        return report
    waited = 0.0
    sheet_id = spreadsheet_id(settings.spreadsheet)
    sheet: Sheet | None = None
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            sheet = sheet or Sheet(settings)
            _flush_once(sheet, store, settings, tz, now, report)
            report.still_queued = outbox.pending_count(store)
            return report
        except SheetsError as exc:
            error: SheetsError = exc
        except Exception as exc:  # translate() re-raises what is not Google's
            error = translate(exc, sheet.account if sheet else None, sheet_id)
        delay = getattr(error, "retry_after_s", None)
        delay = float(2 ** attempt) if delay is None else delay
        if (not isinstance(error, RetryLater) or attempt == MAX_ATTEMPTS
                or waited + delay > settings.max_wait_s):
            raise error from None
        log.debug("Google Sheet: %s; retrying in %.0f s", error, delay)
        sleep(delay)
        waited += delay
    raise AssertionError("unreachable")  # pragma: no cover


def _titles(settings: GoogleSheetsConfig) -> dict[str, str]:
    return {"readings": settings.readings_worksheet, "daily": settings.daily_worksheet,
            "alerts": settings.alerts_worksheet}


def _flush_once(sheet: Sheet, store: Store, settings: GoogleSheetsConfig, tz: ZoneInfo,
                now: datetime, report: FlushReport) -> None:
    batch = settings.batch_rows
    queued = outbox.pending(store, limit=batch * MAX_APPENDS)
    titles = _titles(settings)
    groups: dict[str, list[outbox.QueuedRow]] = {}
    for row in queued:
        groups.setdefault(titles[row.layout.name], []).append(row)
    existing = sheet.worksheets()
    headers: dict[str, list[str]] = {}
    specs = []
    for name, title in titles.items():  # all three tabs appear on the first run
        if title not in existing:
            headers[title] = _union(LAYOUTS[name].headers, groups.get(title, []))
            specs.append((title, headers[title]))
    if specs:
        for (title, _), props in zip(specs, sheet.add_worksheets(specs), strict=True):
            existing[title] = props
        report.created = tuple(title for title, _ in specs)
        log.info("Google Sheet: created worksheet(s) %s", ", ".join(report.created))
    to_read = [t for t in groups if t not in headers]
    ranges = []
    for title in to_read:
        grid = existing[title].get("gridProperties", {})
        last_row = int(grid.get("rowCount", 1))
        window = min(len(groups[title]), batch) + TAIL_MARGIN
        ranges += [f"{a1_title(title)}!1:1", f"{a1_title(title)}!A{max(2, last_row - window + 1)}:"
                   f"{col_letter(max(1, int(grid.get('columnCount', 26))))}{max(2, last_row)}"]
    values = sheet.read(ranges)
    tails: dict[str, list[list[Any]]] = {}
    for n, title in enumerate(to_read):
        header_rows, tails[title] = values[2 * n], values[2 * n + 1]
        headers[title] = [str(h) for h in header_rows[0]] if header_rows else []
    writes = 0
    for title, rows in groups.items():
        layout = rows[0].layout
        rows = _drop_present(store, layout, headers[title], tails.get(title, []), rows, now,
                             report)
        rows = _same_inverter_columns(headers[title], rows)
        missing = [h for h in _union([], rows) if h not in headers[title]]
        if missing:
            _add_headers(sheet, existing[title], title, headers[title], missing)
        for start in range(0, len(rows), batch):
            if writes >= MAX_APPENDS:
                return
            chunk = rows[start:start + batch]
            sheet.append(title, [render_row(layout, headers[title], r.cells, tz)
                                 for r in chunk])
            writes += 1
            outbox.mark_sent(store, [r.id for r in chunk], now)
            report.sent += len(chunk)


def _same_inverter_columns(header: list[str],
                           rows: list[outbox.QueuedRow]) -> list[outbox.QueuedRow]:
    """Cells for an inverter whose column the sheet already has under another name (an
    older 'Inv 3 …45868 kWh', or a name the owner since changed) go to that column: it
    is found by the serial's tail, so naming an inverter never splits its history."""
    from solar_monitor.names import label_tail

    by_tail = {tail: h for h in header if (tail := label_tail(h))}
    if not by_tail:
        return rows
    present = set(header)

    def column(h: str) -> str:
        tail = label_tail(h) if h not in present else None
        return by_tail.get(tail, h) if tail else h

    return [replace(r, cells=[(column(h), v) for h, v in r.cells]) for r in rows]


def _union(first: list[str], rows: Sequence[outbox.QueuedRow]) -> list[str]:
    """`first`, then every other header of `rows` in order of first appearance."""
    seen = dict.fromkeys(first)
    for row in rows:
        seen.update(dict.fromkeys(h for h, _ in row.cells))
    return list(seen)


def _drop_present(store: Store, layout: Layout, header: list[str], tail: list[list[Any]],
                  rows: list[outbox.QueuedRow], now: datetime,
                  report: FlushReport) -> list[outbox.QueuedRow]:
    """Mark rows whose key is already in the sheet's last rows as sent; return the rest."""
    if not tail:
        return rows
    index = {h: i for i, h in enumerate(header)}
    present = {sheet_row_key(layout, index, r) for r in tail if r}
    already = [r for r in rows if r.key in present]
    if already:
        outbox.mark_sent(store, [r.id for r in already], now)
        report.already_there += len(already)
        log.info("Google Sheet: %d queued row(s) were already in %s (an earlier answer "
                 "was lost); not sent again", len(already), layout.name)
    return [r for r in rows if r.key not in present]


def _add_headers(sheet: Sheet, props: dict[str, Any], title: str, header: list[str],
                 missing: list[str]) -> None:
    """New columns at the right end; existing columns never move."""
    columns = int(props.get("gridProperties", {}).get("columnCount", 0))
    need = len(header) + len(missing)
    if need > columns:
        sheet.add_columns(props, need - columns)
        props.setdefault("gridProperties", {})["columnCount"] = need
    sheet.write_cells(title, 1, len(header) + 1, missing)
    log.info("Google Sheet: new column(s) in %r: %s", title, ", ".join(missing))
    header.extend(missing)


# --- the pipeline's view --------------------------------------------------------------------

def flush_and_log(store: Store, settings: GoogleSheetsConfig, tz: ZoneInfo,
                  now: datetime) -> FlushReport | None:
    """The end-of-run flush: never raises SheetsError. A failure is logged once (a
    warning when it starts or changes, one info line a run while it lasts)."""
    try:
        report = flush(store, settings, tz, now=now)
    except SheetsError as exc:
        queued = outbox.pending_count(store)
        kind = "retry" if isinstance(exc, RetryLater) else "fix"
        previous = store.get_state(FAILING_STATE)
        state = f"{kind}: {exc}"
        if previous == state:
            log.info("Google Sheet still failing: %s; %d row(s) queued", exc, queued)
        else:
            log.warning("Google Sheet not updated: %s; %d row(s) stay queued and are sent "
                        "when it works again", exc, queued)
            store.set_state(FAILING_STATE, state)
        return None
    if store.get_state(FAILING_STATE):
        log.info("Google Sheet works again: %d queued row(s) sent", report.sent)
        store.clear_state(FAILING_STATE)
    if report.sent or report.still_queued:
        log.debug("Google Sheet: %d row(s) sent, %d still queued", report.sent,
                  report.still_queued)
    outbox.prune(store, now)
    return report


def probe(settings: GoogleSheetsConfig) -> str:
    """For `check`: open the sheet, create missing worksheets, and prove write access
    (rewriting a header cell with its own text). Raises SheetsError with the fix."""
    sheet: Sheet | None = None
    try:
        sheet = Sheet(settings)
        existing = sheet.worksheets()
        specs = [(title, LAYOUTS[name].headers) for name, title in _titles(settings).items()
                 if title not in existing]
        made = [title for title, _ in specs]
        if specs:
            sheet.add_worksheets(specs)
        else:
            first = settings.readings_worksheet
            sheet.write_cells(first, 1, 1, [LAYOUTS["readings"].headers[0]])
    except SheetsError:
        raise
    except Exception as exc:
        raise translate(exc, sheet.account if sheet else None,
                        spreadsheet_id(settings.spreadsheet)) from None
    created = f"; created {', '.join(made)}" if made else ""
    return f"'{sheet.title}' is writable by {sheet.account.email}{created}"


def iter_preview(store: Store, tz: ZoneInfo, per_layout: int = 3) -> Iterator[str]:
    """Lines showing the last rows of each worksheet as they would be sent."""
    for layout in LAYOUTS.values():
        rows = outbox.recent(store, layout, per_layout)
        if not rows:
            continue
        header = _union(layout.headers, [outbox.QueuedRow(0, layout, "", r) for r in rows])
        yield f"{layout.name.capitalize()}: {' | '.join(header)}"
        for cells in rows:
            shown = render_row(layout, header, cells, tz)
            yield "  " + " | ".join(str(c).lstrip("'") for c in shown)


__all__ = ["FlushReport", "NeedsFix", "RetryLater", "SheetsError", "flush",
           "flush_and_log", "iter_preview", "probe", "spreadsheet_id"]
