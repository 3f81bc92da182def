"""A real HTTP(S) server that behaves like a PVS6 or PVS5 (behind HAProxy) in front of a
SimulatedSite.

Three firmware behaviours, chosen by the site's model and build at request time (so a
FirmwareChange fault switches them live):
- legacy (PVS6 <= 61839, PVS5 < 5408): DeviceList open, no /auth, no /vars;
- auth (PVS6 61840..61844, PVS5 5408..5411): LocalAPI login and /vars; DeviceList needs
  the session;
- varserver (PVS6 >= 61845, PVS5 >= 5412): like auth, but DeviceList answers 403 even with
  a session.
`/cgi-bin/dl_cgi/supervisor/info` answers without login in every mode.

The LocalAPI (`/auth`, `/vars`) answers as the real server stack did on every probe of
`tests/fixtures/localapi-observed/` (emulation.localapi holds its rules): a case-sensitive
login, sessions per client address that end 300 s after login or on logout, fcgi_vars's
query parsing, its two answer formats printed byte for byte with string values unescaped,
and `set=` really writing the variables ssm_owner may write. `auth="guest"` (the default,
`fcgi_vars -u pvsguest`) lets a request without a session read the serial, SSID and MAC,
as pypvs's discover() needs; `auth="strict"` answers it 401. `variables` seeds the
varserver (e.g. a hostile SSID or Wi-Fi key, or the observed site's MAC).

With `tls=True` a second listener serves HTTPS with a self-signed certificate made at
start; both listeners share one site and one session table, like the real PVS's ports
80 and 443.

Anything else that could change a real PVS (PUT/DELETE, POST outside /auth and /vars,
`Command=Start/Stop/Set*`) and every refused `set=` is refused and logged in
`Emulator.refused`; what `set=` wrote is in `Emulator.writes`; every request is in
`Emulator.requests` (method, target) and `Emulator.request_log` (with body, scheme and
cookie), so tests can assert the collector never sends it. Transport faults
(503 from HAProxy, slow answers, truncated JSON, HTML pages, result != succeed,
spontaneous 403, a hanging /sys/pvs/ read) are switched at run time through the
thread-safe `Emulator.faults` controller.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from solar_monitor.emulation import localapi
from solar_monitor.emulation.localapi import AUTH_MODES, CRASH, Answer, AuthMode, Sessions, error
from solar_monitor.emulation.sim import (
    DeadInverter,
    InverterRef,
    MissingInverter,
    SimulatedSite,
    SiteFault,
    SiteSpec,
    SupervisorModel,
    _typed,
    public_variables,
    writable_variables,
)

Firmware = Literal["legacy", "auth", "varserver"]
Clock = Callable[[], datetime]

FIRMWARE_BUILDS: dict[str, int] = {"legacy": 61839, "auth": 61842, "varserver": 61846}
PVS5_FIRMWARE_BUILDS: dict[str, int] = {"legacy": 5405, "auth": 5408, "varserver": 5412}
# (first auth build, first varserver build) per supervisor model
FIRMWARE_THRESHOLDS: dict[str, tuple[int, int]] = {"PVS6": (61840, 61845),
                                                   "PVS5": (5408, 5412)}
MODELS: tuple[SupervisorModel, ...] = ("PVS6", "PVS5")
HAPROXY_503_BODY = (
    "<html><body><h1>503 Service Unavailable</h1>\n"
    "No server is available to handle this request.\n</body></html>\n"
)
HTML_ERROR_BODY = (
    "<html><head><title>PVS</title></head><body><h1>Internal error</h1>"
    "<p>The request could not be completed.</p></body></html>\n"
)
UNAUTHORIZED = {"status": 403, "error": "Unauthorized"}  # dl_cgi without a session
# The SSID and Wi-Fi key of `hostile_strings`: a `"`, a `\\`, braces, a newline and a
# byte that is not UTF-8 (a surrogate here: argv's way of keeping such a byte)
HOSTILE_SSID = 'Our "Home" \\ {net}\n\udcff'
HOSTILE_WPA_KEY = 'p\\a"ss{}\tw\udcfe'
DEVICE_LIST_PATHS = ("/cgi-bin/dl_cgi", "/cgi-bin/dl.cgi")
SUPERVISOR_INFO_PATH = "/cgi-bin/dl_cgi/supervisor/info"
READ_ONLY_COMMANDS = ("DeviceList", "Get_Comm", "CheckFW", "GridProfileGet", "GetDiscoveryProgress")


def firmware_for_build(build: int, model: str = "PVS6") -> Firmware:
    """The API behaviour of a build of a PVS6 or PVS5 (see the module docstring)."""
    auth_from, varserver_from = FIRMWARE_THRESHOLDS.get(model, FIRMWARE_THRESHOLDS["PVS6"])
    if build < auth_from:
        return "legacy"
    if build < varserver_from:
        return "auth"
    return "varserver"


def firmware_builds(model: str) -> dict[str, int]:
    """{firmware: a build of `model` that behaves that way}."""
    return PVS5_FIRMWARE_BUILDS if model == "PVS5" else FIRMWARE_BUILDS


def utc_now() -> datetime:
    """The default emulator clock: wall-clock UTC."""
    return datetime.now(UTC)


def accelerated_clock(start: datetime, speed: float) -> Clock:
    """A clock that starts at `start` (aware) and runs `speed` times faster than real time."""
    origin = time.monotonic()

    def clock() -> datetime:
        return start + timedelta(seconds=(time.monotonic() - origin) * speed)

    return clock


# --------------------------------------------------------------------------- faults


@dataclass(frozen=True)
class EmulatorFault:
    """One switchable fault, as parsed from the CLI (`"503:10"`, `"dead:3"`, ...)."""

    kind: Literal["503", "slow", "truncated", "html", "fail", "403", "dead", "missing",
                  "pvshang", "badsession"]
    minutes: float | None = None
    seconds: float | None = None
    target: InverterRef | None = None
    answer: str | None = None


def parse_fault(text: str) -> EmulatorFault:
    """Parse `503:<minutes>`, `slow:<seconds>`, `truncated`, `html`, `fail`, `403`,
    `dead:<serial|index>`, `missing:<serial|index>`, `pvshang:<seconds>` (a /sys/pvs/
    read hangs, the known flashwear firmware bug) or `badsession:500|empty` (how a lost
    session is answered). Raises ValueError with the usage."""
    kind, _, arg = text.strip().partition(":")
    kind = kind.lower()
    try:
        if kind == "503":
            return EmulatorFault("503", minutes=float(arg) if arg else 10.0)
        if kind == "slow":
            return EmulatorFault("slow", seconds=float(arg))
        if kind == "pvshang":
            return EmulatorFault("pvshang", seconds=float(arg) if arg else 600.0)
        if kind == "badsession" and arg in ("500", "empty"):
            return EmulatorFault("badsession", answer=arg)
        if kind in ("truncated", "html", "fail", "403") and not arg:
            return EmulatorFault(kind)  # type: ignore[arg-type]
        if kind in ("dead", "missing") and arg:
            target: InverterRef = int(arg) if arg.isdigit() else arg
            return EmulatorFault(kind, target=target)  # type: ignore[arg-type]
    except ValueError:
        pass
    raise ValueError(
        f"bad fault {text!r}: use 503:<minutes>, slow:<seconds>, truncated, html, fail, 403, "
        "dead:<serial|index>, missing:<serial|index>, pvshang:<seconds> or "
        "badsession:500|empty"
    )


@dataclass(frozen=True)
class _FaultState:
    """An immutable snapshot of the transport faults, read once per request."""

    unavailable_until: datetime | None = None
    delay_s: float = 0.0
    truncated: bool = False
    html: bool = False
    fail: bool = False
    forbidden: bool = False
    pvs_hang_s: float = 0.0
    lost_session: Literal["401", "500", "empty"] = "401"


class FaultController:
    """Thread-safe switches for transport faults, plus site faults for device problems."""

    def __init__(self, site: SimulatedSite, clock: Clock) -> None:
        self._site = site
        self._clock = clock
        self._lock = threading.Lock()
        self._state = _FaultState()

    def _set(self, **changes: object) -> None:
        with self._lock:
            self._state = replace(self._state, **changes)  # type: ignore[arg-type]

    def snapshot(self) -> _FaultState:
        """The current transport faults."""
        with self._lock:
            return self._state

    def unavailable(self, minutes: float) -> None:
        """HAProxy answers its own 503 page to everything for `minutes` of emulator clock."""
        self._set(unavailable_until=self._clock() + timedelta(minutes=minutes))

    def slow(self, seconds: float) -> None:
        """Delay every answer by `seconds` of real time (0 turns it off)."""
        self._set(delay_s=max(0.0, seconds))

    def truncated(self, on: bool = True) -> None:
        """Cut JSON answers in half (a 200 with broken JSON)."""
        self._set(truncated=on)

    def html(self, on: bool = True) -> None:
        """Answer data requests with an HTML error page and status 200."""
        self._set(html=on)

    def fail(self, on: bool = True) -> None:
        """DeviceList and supervisor/info answer `"result": "error"`."""
        self._set(fail=on)

    def forbidden(self, on: bool = True) -> None:
        """Spontaneous 403 on DeviceList and /vars, even with a valid session."""
        self._set(forbidden=on)

    def pvs_hang(self, seconds: float) -> None:
        """A /vars read of any /sys/pvs/ name hangs `seconds` of real time before it
        answers (the known firmware hang on flashwear; 0 turns it off)."""
        self._set(pvs_hang_s=max(0.0, seconds))

    def lost_session_answer(self, answer: Literal["401", "500", "empty"]) -> None:
        """How /vars answers an expired or unknown session token: the documented 401, or
        a 500 or an empty 200, as pypvs reports the real server sometimes does."""
        self._set(lost_session=answer)

    def clear(self) -> None:
        """Turn off every transport fault (site faults stay)."""
        self._set(**vars(_FaultState()))

    def add_site_fault(self, fault: SiteFault) -> None:
        """Declare a device-level fault on the emulated site (see emulation.sim)."""
        self._site.add_fault(fault)

    def dead_inverter(self, inverter: InverterRef) -> None:
        """Kill an inverter (serial or 0-based index) from now on."""
        self._site.add_fault(DeadInverter(inverter=inverter, start=self._clock()))

    def missing_inverter(self, inverter: InverterRef) -> None:
        """Make an inverter vanish from the device lists from now on."""
        self._site.add_fault(MissingInverter(inverter=inverter, start=self._clock()))

    def apply(self, fault: EmulatorFault) -> None:
        """Switch on a parsed CLI fault."""
        if fault.kind == "503":
            self.unavailable(fault.minutes or 0.0)
        elif fault.kind == "slow":
            self.slow(fault.seconds or 0.0)
        elif fault.kind == "pvshang":
            self.pvs_hang(fault.seconds or 0.0)
        elif fault.kind == "badsession" and fault.answer in ("500", "empty"):
            self.lost_session_answer(fault.answer)  # type: ignore[arg-type]
        elif fault.kind == "truncated":
            self.truncated()
        elif fault.kind == "html":
            self.html()
        elif fault.kind == "fail":
            self.fail()
        elif fault.kind == "403":
            self.forbidden()
        elif fault.kind == "dead" and fault.target is not None:
            self.dead_inverter(fault.target)
        elif fault.kind == "missing" and fault.target is not None:
            self.missing_inverter(fault.target)


# --------------------------------------------------------------------------- server


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request as it arrived: `scheme` is http or https (which listener took it),
    `body` the raw request body, `cookie` the Cookie header (None when absent)."""

    method: str
    target: str
    scheme: str
    body: bytes = b""
    cookie: str | None = None


def _json(status: int, payload: object) -> Answer:
    return Answer(status, json.dumps(payload).encode())


class Emulator:
    """A running emulated PVS. Use as a context manager, or call close().

    `url`/`port` are the plain HTTP listener; with TLS, `tls_url`/`tls_port` are the
    HTTPS one and `cert_path` its self-signed certificate (PEM); without, all three are
    None.
    """

    def __init__(
        self,
        site: SimulatedSite,
        server: ThreadingHTTPServer,
        clock: Clock,
        session_ttl_s: float,
        tls_server: ThreadingHTTPServer | None = None,
        cert_dir: Path | None = None,
        https_only: bool = False,
        auth: AuthMode = "guest",
        variables: Mapping[str, str] | None = None,
    ) -> None:
        self.site = site
        self.https_only = https_only
        self.clock = clock
        self.session_ttl_s = session_ttl_s
        self.auth: AuthMode = auth
        self.sessions = Sessions(clock, session_ttl_s)
        self.faults = FaultController(site, clock)
        self.requests: list[tuple[str, str]] = []
        self.request_log: list[RequestRecord] = []
        self.refused: list[tuple[str, str]] = []
        self.writes: list[tuple[str, str]] = []  # (name, value) that set= wrote
        self._servers = [server] + ([tls_server] if tls_server is not None else [])
        self._cert_dir = cert_dir
        # the varserver's own values, over the site's: seeded, then written by set=
        self._stored: dict[str, str] = dict(variables or {})
        self._lock = threading.Lock()
        self._closing = threading.Event()
        # A short poll interval makes close() quick (tests start dozens of emulators).
        self._threads = [
            threading.Thread(target=srv.serve_forever, args=(0.05,), name="pvs-emulator",
                             daemon=True)
            for srv in self._servers
        ]
        host, port = server.server_address[:2]
        self.host = str(host)
        self.port: int = int(port)
        self.url = f"http://{host}:{self.port}"
        self.tls_port: int | None = None
        self.tls_url: str | None = None
        self.cert_path: Path | None = None
        if tls_server is not None and cert_dir is not None:
            self.tls_port = int(tls_server.server_address[1])
            self.tls_url = f"https://{host}:{self.tls_port}"
            self.cert_path = cert_dir / "cert.pem"

    @property
    def model(self) -> str:
        """PVS6 or PVS5, the site's supervisor model."""
        return self.site.spec.model

    @property
    def firmware(self) -> Firmware:
        """The behaviour right now, from the site's current build."""
        return firmware_for_build(self.site.build_at(self.clock()), self.model)

    def start(self) -> Emulator:
        """Start serving in daemon threads."""
        for thread in self._threads:
            thread.start()
        return self

    def close(self) -> None:
        """Stop serving, wake any deliberately slow answers, remove the certificate."""
        self._closing.set()
        for srv in self._servers:
            srv.shutdown()
            srv.server_close()
        if self._cert_dir is not None:
            shutil.rmtree(self._cert_dir, ignore_errors=True)

    def __enter__(self) -> Emulator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---------------------------------------------------------------- sessions

    def _has_session(self, cookie_header: str | None) -> bool:
        token = localapi.cookie_token(cookie_header) if cookie_header else None
        return token is not None and self.sessions.user(token) is not None

    def variables(self, now: datetime) -> dict[str, str]:
        """The varserver at `now`: the site's values, then the seeded and written ones."""
        values = self.site.vars(now)
        with self._lock:
            values.update(self._stored)
        return values

    def _write(self, name: str, value: str) -> str | None:
        """set=: store `value` as the varserver prints the variable's type; None when it
        does not fit the type (a number expected)."""
        kind = public_variables(self.model).get(name, "str")
        if kind != "str":
            try:
                number = float(value)
                value = _typed(number if kind == "float" else int(number), kind)
            except (ValueError, OverflowError):  # not a number, or inf / nan
                return None
        with self._lock:
            self._stored[name] = value
            self.writes.append((name, value))
        return value

    # ---------------------------------------------------------------- routing

    def handle(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes = b"",
        scheme: str = "http",
        client: str = "127.0.0.1",
    ) -> Answer:
        """Answer one request exactly as the PVS (or HAProxy in front of it) would."""
        with self._lock:
            self.requests.append((method, target))
            self.request_log.append(
                RequestRecord(method, target, scheme, body, headers.get("cookie")))
        faults = self.faults.snapshot()
        now = self.clock()
        parts = urlsplit(target)
        if parts.path == WEATHER_PATH:
            return _json(200, self._weather(now))  # not the PVS: PVS faults do not apply
        if faults.unavailable_until is not None and now < faults.unavailable_until:
            return Answer(503, HAPROXY_503_BODY.encode(), "text/html")
        if faults.delay_s > 0:
            self._closing.wait(faults.delay_s)
        mode = firmware_for_build(self.site.build_at(now), self.model)
        local_api = mode != "legacy" and parts.path in ("/auth", "/vars")
        if local_api and scheme == "http" and self.https_only and self.tls_url:
            # a PVS that refuses plain http for its LocalAPI: redirect, answer nothing
            return Answer(301, b"", "text/html", location=self.tls_url + target)
        if local_api:
            return self._local_api(method, target, parts.path, parts.query, headers, body,
                                   faults, now, client)
        if method not in ("GET", "HEAD"):
            return self._refuse(method, target, 405, {"status": 405, "error": "Not allowed"})
        if parts.path == SUPERVISOR_INFO_PATH:
            return self._content(faults, self.site.supervisor_info(now), result=True)
        if parts.path in DEVICE_LIST_PATHS:
            query_lists = parse_qs(parts.query, keep_blank_values=True)
            return self._dl_cgi(method, target, query_lists, headers, faults, mode, now)
        return _json(404, {"status": 404, "error": "Not Found"})

    def _local_api(self, method: str, target: str, path: str, query: str,
                   headers: dict[str, str], body: bytes, faults: _FaultState,
                   now: datetime, client: str) -> Answer:
        """/auth and /vars: GET takes the URL's query, POST the body (a query in a POST's
        URL is ignored); other methods are 405."""
        if method not in ("GET", "POST"):
            if method != "HEAD":  # a HEAD changes nothing
                with self._lock:
                    self.refused.append((method, target))
            if path == "/auth":
                return error(405, "Method Not Allowed")
            return error(405, "Method Not Allowed", localapi.BAD_METHOD)
        if method == "POST":
            if path == "/vars" and not 0 < len(body) <= localapi.VARS_BODY_LIMIT:
                return error(413, "Invalid Content-Length", localapi.BAD_LENGTH)
            query = body.decode("latin-1")
        if path == "/auth":
            return localapi.auth_answer(query, headers.get("authorization"),
                                        headers.get("cookie"), self.sessions,
                                        self.site.supervisor_serial, client)
        return self._vars(method, target, query, headers, faults, now)

    def _weather(self, now: datetime) -> dict[str, object]:
        """An Open-Meteo-shaped answer (timezone=UTC) from the site's own cloud and snow
        truth, so the demo's weather enrichment is real HTTP and matches the simulated sky
        (snow_depth in m and the past hour's snowfall in cm, hourly, as Open-Meteo gives)."""
        from solar_monitor.sun import sun_elevation_deg

        spec = self.site.spec
        start = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)

        def radiation(t: datetime, cloud: float) -> float:
            sun = math.sin(math.radians(max(0.0, sun_elevation_deg(spec.latitude,
                                                                  spec.longitude, t))))
            return round(1000.0 * sun * (1 - 0.75 * (cloud / 100) ** 3.4), 1)

        hours = [start + timedelta(hours=h) for h in range(-24, 48)]
        clouds = [round(self.site.cloud_cover_pct(t)) for t in hours]
        current = now.astimezone(UTC).replace(second=0, microsecond=0)
        current_cloud = round(self.site.cloud_cover_pct(current))
        return {
            "latitude": spec.latitude, "longitude": spec.longitude, "timezone": "UTC",
            "current": {"time": current.strftime("%Y-%m-%dT%H:%M"),
                        "cloud_cover": current_cloud,
                        "shortwave_radiation": radiation(current, current_cloud)},
            "hourly": {"time": [t.strftime("%Y-%m-%dT%H:%M") for t in hours],
                       "cloud_cover": clouds,
                       "shortwave_radiation": [radiation(t, c) for t, c in zip(hours, clouds,
                                                                                strict=True)],
                       "snow_depth": [self.site.snow_depth_m(t) for t in hours],
                       "snowfall": [self.site.snowfall_cm(t) for t in hours]},
        }

    def _refuse(self, method: str, target: str, status: int, payload: object) -> Answer:
        with self._lock:
            self.refused.append((method, target))
        return _json(status, payload)

    def _content(self, faults: _FaultState, payload: dict[str, object], result: bool) -> Answer:
        """A 200 JSON data answer, damaged by whatever content fault is on."""
        if faults.fail and result:
            payload = {"result": "error"}
        return self._damaged(faults, json.dumps(payload).encode())

    @staticmethod
    def _damaged(faults: _FaultState, body: bytes) -> Answer:
        """A 200 answer of `body`, or what the html / truncated fault makes of it."""
        if faults.html:
            return Answer(200, HTML_ERROR_BODY.encode(), "text/html")
        if faults.truncated:
            body = body[: len(body) // 2]
        return Answer(200, body)

    def _dl_cgi(
        self,
        method: str,
        target: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        faults: _FaultState,
        mode: Firmware,
        now: datetime,
    ) -> Answer:
        command = (query.get("Command") or [""])[0]
        if command not in READ_ONLY_COMMANDS:
            return self._refuse(method, target, 403, {"result": "not allowed"})
        if command != "DeviceList":
            return _json(200, {"result": "succeed"})
        if mode == "varserver" or faults.forbidden:
            return _json(403, UNAUTHORIZED)
        if mode == "auth" and not self._has_session(headers.get("cookie")):
            return _json(403, UNAUTHORIZED)
        return self._content(faults, self.site.device_list(now), result=True)

    def _vars(self, method: str, target: str, query: str, headers: dict[str, str],
              faults: _FaultState, now: datetime) -> Answer:
        user = localapi.vars_user(headers.get("cookie"), self.sessions, self.auth)
        if isinstance(user, Answer):
            ended = localapi.ENDED_SESSION.encode() in user.body
            if ended and faults.lost_session != "401":
                if faults.lost_session == "500":
                    return CRASH
                return Answer(200, b"")
            return user
        if faults.forbidden:
            return _json(403, UNAUTHORIZED)
        result = localapi.run_vars_query(query, user, self.variables(now),
                                         writable_variables(self.model), self._write)
        if "set" in {k for k, _ in localapi.query_pairs(query)} and (
                isinstance(result, Answer) or not result.written):
            with self._lock:  # a refused write, logged for the tests
                self.refused.append((method, target))
        if isinstance(result, Answer):
            return result
        if faults.pvs_hang_s > 0 and any(k.startswith("/sys/pvs/") for k, _ in result.found):
            self._closing.wait(faults.pvs_hang_s)
        render = localapi.render_object if result.as_object else localapi.render_list
        return self._damaged(faults, render(result.found))


WEATHER_PATH = "/open-meteo/v1/forecast"  # the emulator's stand-in for Open-Meteo
MAX_BODY = 1 << 20  # read at most this much of a request body


def _handler_for(emulator_ref: list[Emulator]) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to one emulator."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "lighttpd/1.4.59"
        sys_version = ""
        protocol_version = "HTTP/1.1"  # like the PVS's lighttpd (HAProxy gzips only 1.1)
        # headers and body go out in two writes: without this, keep-alive connections
        # stall ~40 ms per answer on Nagle + delayed ACK
        disable_nagle_algorithm = True

        def _read_body(self) -> tuple[bytes, bool]:
            """The request body (Content-Length or chunked), at most MAX_BODY bytes, and
            whether more was sent than that."""
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                chunks: list[bytes] = []
                size = 0
                while True:
                    try:
                        length = int(self.rfile.readline(100).split(b";")[0].strip(), 16)
                    except ValueError:
                        return b"".join(chunks), True
                    if length == 0:
                        while self.rfile.readline(1000) not in (b"\r\n", b"\n", b""):
                            pass  # trailer fields
                        return b"".join(chunks), False
                    size += length
                    if size > MAX_BODY:
                        return b"".join(chunks), True
                    chunks.append(self.rfile.read(length))
                    self.rfile.readline(3)  # the CRLF after the chunk
            try:
                length = max(0, int(self.headers.get("Content-Length") or 0))
            except ValueError:
                length = 0
            return (self.rfile.read(min(length, MAX_BODY)) if length else b""), length > MAX_BODY

        def _serve(self) -> None:
            body, too_long = self._read_body()
            headers = {k.lower(): v for k, v in self.headers.items()}
            scheme = getattr(self.server, "scheme", "http")
            answer = emulator_ref[0].handle(self.command, self.path, headers, body, scheme,
                                            self.client_address[0])
            try:
                self.send_response(answer.status)
                if answer.content_type is not None:
                    self.send_header("Content-Type", answer.content_type)
                if answer.status != 204:
                    self.send_header("Content-Length", str(len(answer.body)))
                if answer.set_cookie:
                    self.send_header("Set-Cookie", answer.set_cookie)
                if answer.location:
                    self.send_header("Location", answer.location)
                if too_long:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                if self.command != "HEAD":  # a HEAD is answered without the body
                    self.wfile.write(answer.body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (e.g. its timeout beat a slow answer)

        do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            """Quiet: the emulator's request log is `Emulator.request_log`."""

    return Handler


def default_spec(now: datetime, **overrides: object) -> SiteSpec:
    """A SiteSpec whose counter epoch is the UTC midnight before `now`.

    The site integrates energy day by day from its epoch (~25 ms a simulated day), so an
    epoch far from the clock would make the first answer slow.
    """
    epoch = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return SiteSpec(epoch=epoch, **overrides)  # type: ignore[arg-type]


class _Server(ThreadingHTTPServer):
    """A client that hangs up mid-request (a killed run, a timeout) is routine here,
    not a traceback on the console."""

    scheme = "http"

    def handle_error(self, request: object, client_address: object) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError | ssl.SSLError | TimeoutError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class _TlsServer(_Server):
    """The HTTPS listener: the TLS handshake runs in the request's own thread, so a
    client that never completes it cannot stall the accept loop."""

    scheme = "https"

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 context: ssl.SSLContext) -> None:
        super().__init__(address, handler)
        self.context = context

    def finish_request(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        request.settimeout(30.0)
        tls = self.context.wrap_socket(request, server_side=True)
        try:
            super().finish_request(tls, client_address)
        finally:
            with contextlib.suppress(OSError):
                tls.close()


def make_self_signed_cert(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """Write a fresh self-signed certificate and its key (PEM) into `directory`, like the
    PVS's own. Returns (cert, key). Offline: uses `cryptography`."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pvs-emulator")])
    alt: list[x509.GeneralName] = [x509.DNSName("localhost")]
    try:
        alt.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        alt.append(x509.DNSName(host))
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def start_emulator(
    site: SimulatedSite | None = None,
    *,
    firmware: str = "legacy",
    model: str | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    tls: bool = False,
    tls_port: int = 0,
    https_only: bool = False,
    clock: Clock | None = None,
    session_ttl_s: float = 300.0,
    auth: str = "guest",
    variables: Mapping[str, str] | None = None,
) -> Emulator:
    """Start an emulated PVS on `host:port` (0 = any free port) and return it running.

    `firmware` is legacy|auth|varserver and `model` PVS6|PVS5 (default: the site's, else
    PVS6); the site's build is set to match (PVS6 61839, 61842, 61846; PVS5 5405, 5408,
    5412) unless the site's build already behaves that way. `tls` adds an HTTPS listener
    on `tls_port` with a self-signed certificate made now, sharing the site and sessions;
    `https_only` (with `tls`) makes plain http redirect /auth and /vars to it (301), for
    clients that must find https by themselves.
    `clock` gives the simulated time of every answer (default wall-clock UTC). `auth`
    guest (a request without a session reads the serial, SSID and MAC) or strict (it
    reads nothing); `variables` {name: value} seeds the varserver over the site's values
    (a str may carry surrogates for bytes that are not UTF-8). Raises ValueError on an
    unknown firmware, model or auth mode, OSError if a port is taken.
    """
    if firmware not in FIRMWARE_BUILDS:
        raise ValueError(f"firmware must be one of {sorted(FIRMWARE_BUILDS)}, not {firmware!r}")
    model = model or (site.spec.model if site else "PVS6")
    if model not in MODELS:
        raise ValueError(f"model must be one of {list(MODELS)}, not {model!r}")
    if https_only and not tls:
        raise ValueError("https_only needs tls")
    if auth not in AUTH_MODES:
        raise ValueError(f"auth must be one of {list(AUTH_MODES)}, not {auth!r}")
    builds = firmware_builds(model)
    clock = clock or utc_now
    site = site or SimulatedSite(default_spec(clock(), build=builds[firmware], model=model))
    pvs5_build = site.spec.build < 10000  # PVS5 builds are 4-digit, PVS6 ones 5-digit
    if (site.spec.model != model or pvs5_build != (model == "PVS5")
            or firmware_for_build(site.spec.build, model) != firmware):
        spec = replace(site.spec, build=builds[firmware], model=model, faults=site.faults)
        site = SimulatedSite(spec)
    ref: list[Emulator] = []
    handler = _handler_for(ref)
    server = _Server((host, port), handler)
    server.daemon_threads = True
    tls_server: _TlsServer | None = None
    cert_dir: Path | None = None
    if tls:
        cert_dir = Path(tempfile.mkdtemp(prefix="pvs-emulator-tls-"))
        try:
            cert_path, key_path = make_self_signed_cert(cert_dir, host)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert_path, key_path)
            tls_server = _TlsServer((host, tls_port), handler, context)
        except BaseException:
            server.server_close()
            shutil.rmtree(cert_dir, ignore_errors=True)
            raise
        tls_server.daemon_threads = True
    emulator = Emulator(site, server, clock, session_ttl_s, tls_server, cert_dir, https_only,
                        auth, variables)  # type: ignore[arg-type]
    ref.append(emulator)
    return emulator.start()


def wifi_variables(ssid: str | None, wpa_key: str | None,
                   hostile: bool = False) -> dict[str, str]:
    """The varserver seeds for a Wi-Fi name and key (`hostile`: HOSTILE_SSID and
    HOSTILE_WPA_KEY for the ones not given)."""
    if hostile:
        ssid = HOSTILE_SSID if ssid is None else ssid
        wpa_key = HOSTILE_WPA_KEY if wpa_key is None else wpa_key
    seeds = {"/sys/info/ssid": ssid, "/sys/info/wpa_key": wpa_key}
    return {name: value for name, value in seeds.items() if value is not None}


def serve(
    host: str = "127.0.0.1",
    port: int = 8080,
    firmware: str = "legacy",
    inverters: int = 12,
    seed: int = 1,
    faults: list[str] | None = None,
    *,
    model: str = "PVS6",
    tls: bool = False,
    tls_port: int = 8443,
    livedata_ms: bool = False,
    auth: str = "guest",
    ssid: str | None = None,
    wpa_key: str | None = None,
    hostile_strings: bool = False,
) -> None:
    """Run an emulated PVS until Ctrl-C (the `solar-monitor emulator` command).

    `ssid` / `wpa_key` replace the Wi-Fi name and key (printed unescaped, as the real
    server does); `hostile_strings` sets both to HOSTILE_SSID / HOSTILE_WPA_KEY unless
    given. Raises ValueError for a bad firmware, model, auth mode or fault string,
    OSError if a port is taken.
    """
    parsed = [parse_fault(f) for f in faults or []]
    if model not in MODELS:
        raise ValueError(f"model must be one of {list(MODELS)}, not {model!r}")
    spec = default_spec(
        utc_now(), inverter_count=inverters, seed=seed, model=model,
        build=firmware_builds(model).get(firmware, 0), livedata_time_ms=livedata_ms,
    )
    site = SimulatedSite(spec)
    emulator = start_emulator(site, firmware=firmware, model=model, host=host, port=port,
                              tls=tls, tls_port=tls_port, auth=auth,
                              variables=wifi_variables(ssid, wpa_key, hostile_strings))
    for fault in parsed:
        emulator.faults.apply(fault)
    where = emulator.url + (f" and {emulator.tls_url}" if emulator.tls_url else "")
    print(
        f"PVS emulator ({model} {firmware}, auth {auth}, serial {site.supervisor_serial}, "
        f"{inverters} inverters) on {where}: Ctrl-C to stop",
        flush=True,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        emulator.close()
