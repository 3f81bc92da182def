"""A fake Google Sheets API v4 and OAuth token endpoint on loopback, for the real gspread.

It keeps typed cell grids per worksheet and implements what the sheet sink uses:
spreadsheets.get, batchUpdate (addSheet, appendDimension), values.batchGet, values.update
and values.append, with USER_ENTERED parsing (numbers, 'YYYY-MM-DD[ HH:MM[:SS]]' dates as
serial numbers, 'HH:MM' times, a leading apostrophe forces text), grid limits, the
10-million-cell cap, and the token endpoint's JWT signature check.

Faults are scripted: `fail(op, status)` answers with an error, `lose(op)` performs the
request and then drops the connection without an answer (the answer was lost), `down()`
fails every Sheets call until `heal()` (an outage of any length).
"""

from __future__ import annotations

import base64
import json
import re
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import requests
from requests.adapters import HTTPAdapter

SHEETS_HOST = "https://sheets.googleapis.com"
CELL_LIMIT = 10_000_000
_LOSE = object()


@dataclass
class Worksheet:
    sheet_id: int
    title: str
    rows: int = 1000
    cols: int = 26
    frozen: int = 0
    cells: dict[tuple[int, int], Any] = field(default_factory=dict)  # (row, col), 1-based

    def properties(self, index: int) -> dict[str, Any]:
        return {"sheetId": self.sheet_id, "title": self.title, "index": index,
                "sheetType": "GRID", "gridProperties": {
                    "rowCount": self.rows, "columnCount": self.cols,
                    **({"frozenRowCount": self.frozen} if self.frozen else {})}}

    def values(self) -> list[list[Any]]:
        """All rows as lists (what a person sees), trailing empties trimmed."""
        return _block(self, 1, 1, self.rows, self.cols)


@dataclass
class Fault:
    op: str  # metadata | batchUpdate | batchGet | update | append | * (any sheets call)
    status: int | None  # None: perform the request, then drop the answer
    times: int
    retry_after: str | None = None


class APIFailure(Exception):
    def __init__(self, status: int, message: str, reason: str = "INVALID_ARGUMENT",
                 details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.reason, self.details = status, message, reason, details


class FakeSheetsAPI:
    """Start with `with FakeSheetsAPI() as fake:`; `fake.url` is its base address."""

    def __init__(self) -> None:
        self.spreadsheets: dict[str, dict[str, Any]] = {}
        self.faults: list[Fault] = []
        self.public_keys: dict[str, Any] = {}  # client_email -> RSA public key
        self.tokens: set[str] = set()
        self.token_error: str | None = None
        self.shared = True
        self.api_enabled = True
        self.log: list[tuple[str, str]] = []  # (op, detail) of each Sheets request answered
        self.lock = threading.Lock()
        self._next_sheet_id = 1000
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.fake = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)

    def __enter__(self) -> FakeSheetsAPI:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- test controls ---------------------------------------------------------------

    def add_spreadsheet(self, sid: str, title: str = "Solar") -> None:
        """A new spreadsheet as Google makes it: one empty 'Sheet1' of 1000 x 26."""
        self.spreadsheets[sid] = {"title": title, "sheets": [Worksheet(0, "Sheet1")]}

    def fail(self, op: str, status: int, times: int = 1, retry_after: str | None = None) -> None:
        self.faults.append(Fault(op, status, times, retry_after))

    def lose(self, op: str, times: int = 1) -> None:
        self.faults.append(Fault(op, None, times))

    def down(self, status: int = 503) -> None:
        """Every Sheets call answers `status` until `heal()`. The token endpoint stays up:
        google-auth retries a failing token call itself, with real sleeps of seconds."""
        self.fail("*", status, times=sys.maxsize)

    def heal(self) -> None:
        self.faults.clear()

    def service_account_key(self, path: Path, email: str, bits: int = 2048) -> Path:
        """Write a new service-account JSON key for `email` whose tokens this fake grants.
        Google's keys have 2048 bits; loading one costs ~35 ms, so long runs may use 1024."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        self.public_keys[email] = key.public_key()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        path.write_text(json.dumps({
            "type": "service_account", "project_id": "solar-test", "private_key_id": "k1",
            "private_key": pem, "client_email": email, "client_id": "42",
            "token_uri": f"{self.url}/token"}))
        return path

    def sheet(self, sid: str, title: str) -> Worksheet:
        return next(ws for ws in self.spreadsheets[sid]["sheets"] if ws.title == title)

    def titles(self, sid: str) -> list[str]:
        return [ws.title for ws in self.spreadsheets[sid]["sheets"]]

    def count(self, op: str) -> int:
        return sum(1 for o, _ in self.log if o == op)

    def mount(self, session: requests.Session) -> None:
        """Send the session's calls to sheets.googleapis.com to this fake instead."""
        session.mount(SHEETS_HOST, _LoopbackAdapter(self.url))

    # --- dispatch --------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: Any, body: bytes) -> Any:
        parts = urlsplit(target)
        query = parse_qs(parts.query)
        if parts.path == "/token":
            return self._token(body)
        match = re.fullmatch(r"/v4/spreadsheets/([^/:]+)(.*)", parts.path)
        if not match:
            return 404, {}, {"error": {"code": 404, "message": "no such path"}}
        sid, rest = match.group(1), match.group(2)
        op, handler = self._route(method, rest)
        with self.lock:
            fault = next((f for f in self.faults if f.times > 0 and f.op in (op, "*")), None)
            if fault:
                fault.times -= 1
                if fault.status is not None:
                    extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                    return fault.status, extra, _error(fault.status, "scripted failure",
                                                       _STATUS.get(fault.status, "UNKNOWN"))
            try:
                self._authorize(headers, sid)
                payload = json.loads(body) if body else {}
                answer = handler(self.spreadsheets[sid], query, payload, unquote(rest))
            except APIFailure as exc:
                return exc.status, {}, _error(exc.status, exc.message, exc.reason, exc.details)
            self.log.append((op, unquote(rest)))
            return _LOSE if fault else (200, {}, answer)

    def _route(self, method: str, rest: str) -> tuple[str, Callable[..., Any]]:
        if method == "GET" and rest == "":
            return "metadata", self._metadata
        if method == "POST" and rest == ":batchUpdate":
            return "batchUpdate", self._batch_update
        if method == "GET" and rest == "/values:batchGet":
            return "batchGet", self._batch_get
        if method == "POST" and rest.endswith(":append"):
            return "append", self._append
        if method == "POST" and rest == "/values:batchUpdate":
            return "update", self._values_batch_update
        if method == "PUT" and rest.startswith("/values/"):
            return "update", self._update
        raise AssertionError(f"the fake does not implement {method} {rest}")

    def _authorize(self, headers: Any, sid: str) -> None:
        auth = headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            raise APIFailure(401, "Request had invalid authentication credentials.",
                             "UNAUTHENTICATED")
        if not self.api_enabled:
            raise APIFailure(403, "Google Sheets API has not been used in project 4242 "
                                  "before or it is disabled.", "PERMISSION_DENIED",
                             [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                               "reason": "SERVICE_DISABLED"}])
        if sid not in self.spreadsheets:
            raise APIFailure(404, "Requested entity was not found.", "NOT_FOUND")
        if not self.shared:
            raise APIFailure(403, "The caller does not have permission", "PERMISSION_DENIED")

    def _token(self, body: bytes) -> Any:
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if self.token_error:
            return 400, {}, {"error": self.token_error,
                             "error_description": "Invalid JWT Signature."}
        assert form.get("grant_type") == "urn:ietf:params:oauth:grant-type:jwt-bearer"
        claims = _verify_jwt(form["assertion"], self.public_keys)
        assert "spreadsheets" in claims["scope"]
        token = f"ya29.fake-{len(self.tokens)}"
        self.tokens.add(token)
        return 200, {}, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"}

    # --- the API ---------------------------------------------------------------------

    def _metadata(self, book: dict[str, Any], *_: Any) -> Any:
        return {"properties": {"title": book["title"], "locale": "en_US",
                               "timeZone": "America/New_York"},
                "sheets": [{"properties": ws.properties(i)}
                           for i, ws in enumerate(book["sheets"])]}

    def _batch_update(self, book: dict[str, Any], _q: Any, payload: Any, _r: str) -> Any:
        replies = []
        for request in payload["requests"]:
            if "addSheet" in request:
                props = request["addSheet"]["properties"]
                if any(ws.title == props["title"] for ws in book["sheets"]):
                    raise APIFailure(400, f'A sheet with the name "{props["title"]}" already '
                                          f"exists. Please enter another name.")
                grid = props.get("gridProperties", {})
                ws = Worksheet(self._next_sheet_id, props["title"], grid.get("rowCount", 1000),
                               grid.get("columnCount", 26), grid.get("frozenRowCount", 0))
                if ws.frozen >= ws.rows:
                    raise APIFailure(400, "You can't freeze all visible rows on the sheet.")
                self._next_sheet_id += 1
                book["sheets"].append(ws)
                _check_cells(book)
                replies.append({"addSheet": {"properties": ws.properties(
                    len(book["sheets"]) - 1)}})
            elif "appendDimension" in request:
                req = request["appendDimension"]
                ws = next(w for w in book["sheets"] if w.sheet_id == req["sheetId"])
                if req["dimension"] == "COLUMNS":
                    ws.cols += req["length"]
                else:
                    ws.rows += req["length"]
                _check_cells(book)
                replies.append({})
            else:
                raise AssertionError(f"the fake does not implement {request}")
        return {"replies": replies}

    def _batch_get(self, book: dict[str, Any], query: Any, _p: Any, _r: str) -> Any:
        assert query.get("valueRenderOption") == ["UNFORMATTED_VALUE"]
        out = []
        for a1 in query.get("ranges", []):
            ws, r1, c1, r2, c2 = _locate(book, a1)
            if (r2 and r2 > ws.rows) or (c2 and c2 > ws.cols):
                raise APIFailure(400, f"Range ({a1}) exceeds grid limits. Max rows: "
                                      f"{ws.rows}, max columns: {ws.cols}")
            out.append({"range": a1, "majorDimension": "ROWS",
                        "values": _block(ws, r1 or 1, c1 or 1, r2 or ws.rows, c2 or ws.cols)})
        return {"valueRanges": out}

    def _update(self, book: dict[str, Any], query: Any, payload: Any, rest: str) -> Any:
        raw = query["valueInputOption"] != ["USER_ENTERED"]
        return self._write(book, rest[len("/values/"):], payload["values"], raw)

    def _values_batch_update(self, book: dict[str, Any], _q: Any, payload: Any,
                             _r: str) -> Any:
        raw = payload["valueInputOption"] != "USER_ENTERED"
        return {"responses": [self._write(book, d["range"], d["values"], raw)
                              for d in payload["data"]]}

    def _write(self, book: dict[str, Any], a1: str, values: list[list[Any]],
               raw: bool) -> Any:
        ws, r1, c1, _r2, _c2 = _locate(book, a1)
        parse = _raw if raw else _user_entered
        for i, row in enumerate(values):
            for j, value in enumerate(row):
                r, c = (r1 or 1) + i, (c1 or 1) + j
                if r > ws.rows or c > ws.cols:
                    raise APIFailure(400, f"Range ({a1}) exceeds grid limits. Max rows: "
                                          f"{ws.rows}, max columns: {ws.cols}")
                _put(ws, r, c, parse(value))
        return {"updatedRange": a1, "updatedRows": len(values)}

    def _append(self, book: dict[str, Any], query: Any, payload: Any, rest: str) -> Any:
        a1 = rest[len("/values/"):-len(":append")]
        ws, *_ = _locate(book, a1)
        parse = _user_entered if query["valueInputOption"] == ["USER_ENTERED"] else _raw
        last = max((r for r, _c in ws.cells), default=0)  # the end of the table
        rows = payload["values"]
        for i, row in enumerate(rows):
            for j, value in enumerate(row):
                _put(ws, last + 1 + i, 1 + j, parse(value))
        # OVERWRITE still adds rows and columns so the data fits.
        ws.rows = max(ws.rows, last + len(rows))
        ws.cols = max([ws.cols, *(len(r) for r in rows)])
        _check_cells(book)
        width = max((len(r) for r in rows), default=1)
        return {"tableRange": a1, "updates": {
            "updatedRange": f"'{ws.title}'!A{last + 1}:{_col(width)}{last + len(rows)}",
            "updatedRows": len(rows)}}


_STATUS = {429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}


def _error(status: int, message: str, reason: str,
           details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": status, "message": message, "status": reason}
    if details:
        error["details"] = details
    return {"error": error}


def _check_cells(book: dict[str, Any]) -> None:
    if sum(ws.rows * ws.cols for ws in book["sheets"]) > CELL_LIMIT:
        raise APIFailure(400, "This action would increase the number of cells in the "
                              "workbook above the limit of 10000000 cells.")


def _put(ws: Worksheet, r: int, c: int, value: Any) -> None:
    if value is None or value == "":
        ws.cells.pop((r, c), None)
    else:
        ws.cells[(r, c)] = value


def _block(ws: Worksheet, r1: int, c1: int, r2: int, c2: int) -> list[list[Any]]:
    rows = []
    for r in range(r1, r2 + 1):
        row = [ws.cells.get((r, c), "") for c in range(c1, c2 + 1)]
        while row and row[-1] == "":
            row.pop()
        rows.append(row)
    while rows and not rows[-1]:
        rows.pop()
    return rows


def _locate(book: dict[str, Any], a1: str) -> tuple[Worksheet, int | None, int | None,
                                                    int | None, int | None]:
    title, _, cells = a1.rpartition("!") if "!" in a1 else (a1, "", "")
    if title.startswith("'"):
        title = title[1:-1].replace("''", "'")
    ws = next((w for w in book["sheets"] if w.title == title), None)
    if ws is None:
        raise APIFailure(400, f"Unable to parse range: {a1}")
    ends: list[int | None] = []
    for part in (cells.split(":") + [cells])[:2] if cells else []:
        m = re.fullmatch(r"([A-Z]*)(\d*)", part)
        assert m, a1
        ends += [int(m.group(2)) if m.group(2) else None, _col_number(m.group(1))]
    r1, c1, r2, c2 = (ends + [None] * 4)[:4]
    return ws, r1, c1, r2, c2


def _col_number(letters: str) -> int | None:
    n = 0
    for ch in letters:
        n = n * 26 + ord(ch) - 64
    return n or None


def _col(n: int) -> str:
    s = ""
    while n:
        n, rem = divmod(n - 1, 26)
        s = chr(65 + rem) + s
    return s


_EPOCH = datetime(1899, 12, 30)


def _raw(value: Any) -> Any:
    return value


def _user_entered(value: Any) -> Any:
    """What Sheets makes of a typed-in value (the parts the sink relies on)."""
    if not isinstance(value, str):
        return value
    if value.startswith("'"):
        return value[1:]
    if re.fullmatch(r"-?\d+(\.\d+)?", value):
        return float(value) if "." in value else int(value)
    m = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)(?: (\d\d?):(\d\d)(?::(\d\d))?)?", value)
    if m:
        y, mo, d, h, mi, s = (int(g) if g else 0 for g in m.groups())
        serial = (datetime(y, mo, d, h, mi, s) - _EPOCH).total_seconds() / 86400
        return int(serial) if m.group(4) is None else serial
    m = re.fullmatch(r"(\d\d?):(\d\d)(?::(\d\d))?", value)
    if m:
        h, mi, s = (int(g) if g else 0 for g in m.groups())
        return (h * 3600 + mi * 60 + s) / 86400
    if value.startswith(("=", "+", "@")):
        raise AssertionError(f"a formula reached the sheet: {value!r}")
    return value


def _verify_jwt(assertion: str, keys: dict[str, Any]) -> dict[str, Any]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    head, body, sig = assertion.split(".")
    claims = json.loads(_b64(body))
    key = keys[claims["iss"]]
    key.verify(_b64(sig), f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return claims


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class _LoopbackAdapter(HTTPAdapter):
    def __init__(self, base: str) -> None:
        super().__init__()
        self.base = base

    def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        request.url = self.base + request.url[len(SHEETS_HOST):]
        return super().send(request, **kwargs)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms stalls

    def log_message(self, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        answer = self.server.fake.handle(  # type: ignore[attr-defined]
            self.command, self.path, self.headers, body)
        if answer is _LOSE:
            self.close_connection = True  # the work is done; the answer never arrives
            return
        status, headers, payload = answer
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = _serve
