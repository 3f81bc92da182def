"""A real HTTP server that behaves like a PVS6 (behind HAProxy) in front of a SimulatedSite.

Three firmware behaviours, chosen by the site's build at request time (so a
FirmwareChange fault switches them live):
- legacy (build <= 61839): DeviceList open, no /auth, no /vars;
- auth (61840..61844): `GET /auth?login` with basic auth `ssm_owner:<last 5 of serial>`
  gives a `session` cookie; DeviceList and /vars need it;
- varserver (>= 61845): like auth, but DeviceList answers 403 even with a session.
`/cgi-bin/dl_cgi/supervisor/info` answers without login in every mode.

Anything that could change a real PVS (POST/PUT/DELETE, `set=` on /vars,
`Command=Start/Stop/Set*`) is refused with 403/405 and logged in `Emulator.refused`,
so tests can assert the collector never sends it. Transport faults (503 from HAProxy,
slow answers, truncated JSON, HTML pages, result != succeed, spontaneous 403) are
switched at run time through the thread-safe `Emulator.faults` controller.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from solar_monitor.emulation.sim import (
    DeadInverter,
    InverterRef,
    MissingInverter,
    SimulatedSite,
    SiteFault,
    SiteSpec,
)

Firmware = Literal["legacy", "auth", "varserver"]
Clock = Callable[[], datetime]

FIRMWARE_BUILDS: dict[str, int] = {"legacy": 61839, "auth": 61842, "varserver": 61846}
LOGIN_USER = "ssm_owner"
HAPROXY_503_BODY = (
    "<html><body><h1>503 Service Unavailable</h1>\n"
    "No server is available to handle this request.\n</body></html>\n"
)
HTML_ERROR_BODY = (
    "<html><head><title>PVS</title></head><body><h1>Internal error</h1>"
    "<p>The request could not be completed.</p></body></html>\n"
)
UNAUTHORIZED = {"status": 403, "error": "Unauthorized"}
DEVICE_LIST_PATHS = ("/cgi-bin/dl_cgi", "/cgi-bin/dl.cgi")
SUPERVISOR_INFO_PATH = "/cgi-bin/dl_cgi/supervisor/info"
READ_ONLY_COMMANDS = ("DeviceList", "Get_Comm", "CheckFW", "GridProfileGet", "GetDiscoveryProgress")


def firmware_for_build(build: int) -> Firmware:
    """The API behaviour of a PVS6 build (see the module docstring)."""
    if build <= 61839:
        return "legacy"
    if build <= 61844:
        return "auth"
    return "varserver"


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

    kind: Literal["503", "slow", "truncated", "html", "fail", "403", "dead", "missing"]
    minutes: float | None = None
    seconds: float | None = None
    target: InverterRef | None = None


def parse_fault(text: str) -> EmulatorFault:
    """Parse `503:<minutes>`, `slow:<seconds>`, `truncated`, `html`, `fail`, `403`,
    `dead:<serial|index>` or `missing:<serial|index>`. Raises ValueError with the usage."""
    kind, _, arg = text.strip().partition(":")
    kind = kind.lower()
    try:
        if kind == "503":
            return EmulatorFault("503", minutes=float(arg) if arg else 10.0)
        if kind == "slow":
            return EmulatorFault("slow", seconds=float(arg))
        if kind in ("truncated", "html", "fail", "403") and not arg:
            return EmulatorFault(kind)  # type: ignore[arg-type]
        if kind in ("dead", "missing") and arg:
            target: InverterRef = int(arg) if arg.isdigit() else arg
            return EmulatorFault(kind, target=target)  # type: ignore[arg-type]
    except ValueError:
        pass
    raise ValueError(
        f"bad fault {text!r}: use 503:<minutes>, slow:<seconds>, truncated, html, fail, 403, "
        "dead:<serial|index> or missing:<serial|index>"
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


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes
    content_type: str = "application/json"
    set_cookie: str | None = None


def _json(status: int, payload: object) -> _Answer:
    return _Answer(status, json.dumps(payload).encode())


class Emulator:
    """A running emulated PVS. Use as a context manager, or call close()."""

    def __init__(
        self,
        site: SimulatedSite,
        server: ThreadingHTTPServer,
        clock: Clock,
        session_ttl_s: float,
    ) -> None:
        self.site = site
        self.clock = clock
        self.session_ttl_s = session_ttl_s
        self.faults = FaultController(site, clock)
        self.requests: list[tuple[str, str]] = []
        self.refused: list[tuple[str, str]] = []
        self._server = server
        self._sessions: dict[str, datetime] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        # A short poll interval makes close() quick (tests start dozens of emulators).
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name="pvs-emulator", daemon=True
        )
        host, port = server.server_address[:2]
        self.port: int = int(port)
        self.url = f"http://{host}:{self.port}"

    @property
    def firmware(self) -> Firmware:
        """The behaviour right now, from the site's current build."""
        return firmware_for_build(self.site.build_at(self.clock()))

    def start(self) -> Emulator:
        """Start serving in a daemon thread."""
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and wake any deliberately slow answers."""
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()

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

    def _login(self, authorization: str | None) -> _Answer:
        scheme, _, encoded = (authorization or "").partition(" ")
        try:
            user, _, password = base64.b64decode(encoded.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user, password = "", ""
        expected = self.site.supervisor_serial[-5:]
        if scheme.lower() != "basic" or user != LOGIN_USER or password.upper() != expected.upper():
            return _json(401, {"status": 401, "error": "Unauthorized"})
        token = secrets.token_urlsafe(48)
        with self._lock:
            self._sessions[token] = self.clock() + timedelta(seconds=self.session_ttl_s)
        return _Answer(
            200, json.dumps({"session": token}).encode(), set_cookie=f"session={token}; Path=/"
        )

    def _has_session(self, cookie_header: str | None) -> bool:
        if not cookie_header:
            return False
        try:
            morsel = SimpleCookie(cookie_header).get("session")
        except CookieError:
            return False
        if morsel is None:
            return False
        with self._lock:
            expires = self._sessions.get(morsel.value)
        return expires is not None and self.clock() < expires

    # ---------------------------------------------------------------- routing

    def handle(self, method: str, target: str, headers: dict[str, str]) -> _Answer:
        """Answer one request exactly as the PVS (or HAProxy in front of it) would."""
        with self._lock:
            self.requests.append((method, target))
        faults = self.faults.snapshot()
        now = self.clock()
        if urlsplit(target).path == WEATHER_PATH:
            return _json(200, self._weather(now))  # not the PVS: PVS faults do not apply
        if faults.unavailable_until is not None and now < faults.unavailable_until:
            return _Answer(503, HAPROXY_503_BODY.encode(), "text/html")
        if faults.delay_s > 0:
            self._closing.wait(faults.delay_s)
        if method != "GET":
            return self._refuse(method, target, 405, {"status": 405, "error": "Not allowed"})
        parts = urlsplit(target)
        query = parse_qs(parts.query, keep_blank_values=True)
        mode = firmware_for_build(self.site.build_at(now))
        if parts.path == SUPERVISOR_INFO_PATH:
            return self._content(faults, self.site.supervisor_info(now), result=True)
        if parts.path in DEVICE_LIST_PATHS:
            return self._dl_cgi(method, target, query, headers, faults, mode, now)
        if parts.path == "/auth" and mode != "legacy":
            if "login" in query:
                return self._login(headers.get("authorization"))
            if "logout" in query:
                return _json(200, {"result": "succeed"})
        if parts.path == "/vars" and mode != "legacy":
            return self._vars(method, target, query, headers, faults, now)
        return _json(404, {"status": 404, "error": "Not Found"})

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

    def _refuse(self, method: str, target: str, status: int, payload: object) -> _Answer:
        with self._lock:
            self.refused.append((method, target))
        return _json(status, payload)

    def _content(self, faults: _FaultState, payload: dict[str, object], result: bool) -> _Answer:
        """A 200 data answer, damaged by whatever content fault is on."""
        if faults.html:
            return _Answer(200, HTML_ERROR_BODY.encode(), "text/html")
        if faults.fail and result:
            payload = {"result": "error"}
        body = json.dumps(payload).encode()
        if faults.truncated:
            body = body[: len(body) // 2]
        return _Answer(200, body)

    def _dl_cgi(
        self,
        method: str,
        target: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        faults: _FaultState,
        mode: Firmware,
        now: datetime,
    ) -> _Answer:
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

    def _vars(
        self,
        method: str,
        target: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        faults: _FaultState,
        now: datetime,
    ) -> _Answer:
        if "set" in query:
            return self._refuse(method, target, 403, {"status": 403, "error": "Forbidden"})
        if faults.forbidden or not self._has_session(headers.get("cookie")):
            return _json(403, UNAUTHORIZED)
        variables = self.site.vars(now)
        if "name" in query:
            names = [n for v in query["name"] for n in v.split(",") if n]
            found = {n: variables[n] for n in names if n in variables}
        elif "match" in query:
            needle = query["match"][0]
            found = {k: v for k, v in variables.items() if needle in k}
        else:
            found = {}
        if not found:
            return _json(400, {"status": 400, "error": "Bad Request"})
        if (query.get("fmt") or [""])[0] == "obj":
            return self._content(faults, dict(found), result=False)
        values = [{"name": k, "value": v} for k, v in found.items()]
        return self._content(faults, {"values": values, "count": len(values)}, result=False)


WEATHER_PATH = "/open-meteo/v1/forecast"  # the emulator's stand-in for Open-Meteo


def _handler_for(emulator_ref: list[Emulator]) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to one emulator."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "lighttpd/1.4.59"
        sys_version = ""
        protocol_version = "HTTP/1.1"  # like the PVS's lighttpd (HAProxy gzips only 1.1)
        # headers and body go out in two writes: without this, keep-alive connections
        # stall ~40 ms per answer on Nagle + delayed ACK
        disable_nagle_algorithm = True

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            head = self.command == "HEAD"  # a HEAD is a GET without the body
            answer = emulator_ref[0].handle("GET" if head else self.command, self.path, headers)
            try:
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                self.send_header("Content-Length", str(len(answer.body)))
                if answer.set_cookie:
                    self.send_header("Set-Cookie", answer.set_cookie)
                self.end_headers()
                if not head:
                    self.wfile.write(answer.body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (e.g. its timeout beat a slow answer)

        do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            """Quiet: the emulator's request log is `Emulator.requests`."""

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

    def handle_error(self, request: object, client_address: object) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


def start_emulator(
    site: SimulatedSite | None = None,
    *,
    firmware: str = "legacy",
    host: str = "127.0.0.1",
    port: int = 0,
    clock: Clock | None = None,
    session_ttl_s: float = 300.0,
) -> Emulator:
    """Start an emulated PVS on `host:port` (0 = any free port) and return it running.

    `firmware` is legacy|auth|varserver; the site's build is set to match it (61839,
    61842, 61846) unless the site's build already behaves that way. `clock` gives the
    simulated time of every answer (default wall-clock UTC). Raises ValueError on an
    unknown firmware, OSError if the port is taken.
    """
    if firmware not in FIRMWARE_BUILDS:
        raise ValueError(f"firmware must be one of {sorted(FIRMWARE_BUILDS)}, not {firmware!r}")
    clock = clock or utc_now
    site = site or SimulatedSite(default_spec(clock(), build=FIRMWARE_BUILDS[firmware]))
    if firmware_for_build(site.spec.build) != firmware:
        spec = replace(site.spec, build=FIRMWARE_BUILDS[firmware], faults=site.faults)
        site = SimulatedSite(spec)
    ref: list[Emulator] = []
    server = _Server((host, port), _handler_for(ref))
    server.daemon_threads = True
    emulator = Emulator(site, server, clock, session_ttl_s)
    ref.append(emulator)
    return emulator.start()


def serve(
    host: str = "127.0.0.1",
    port: int = 8080,
    firmware: str = "legacy",
    inverters: int = 12,
    seed: int = 1,
    faults: list[str] | None = None,
) -> None:
    """Run an emulated PVS until Ctrl-C (the `solar-monitor emulator` command).

    Raises ValueError for a bad firmware or fault string, OSError if the port is taken.
    """
    parsed = [parse_fault(f) for f in faults or []]
    spec = default_spec(
        utc_now(), inverter_count=inverters, seed=seed, build=FIRMWARE_BUILDS.get(firmware, 0)
    )
    site = SimulatedSite(spec)
    emulator = start_emulator(site, firmware=firmware, host=host, port=port)
    for fault in parsed:
        emulator.faults.apply(fault)
    print(
        f"PVS emulator ({firmware}, serial {site.supervisor_serial}, {inverters} inverters) "
        f"on {emulator.url}: Ctrl-C to stop",
        flush=True,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        emulator.close()
