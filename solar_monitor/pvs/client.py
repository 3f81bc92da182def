"""HTTP client for the PVS: detect the firmware's API, log in when needed, take one reading.

Firmware strategies, chosen per poll (`api="auto"`) or forced, by the model and build
that `supervisor/info` reports (a PVS5 has no BUILD: its build is in SWVER):
- legacy: `GET /cgi-bin/dl_cgi?Command=DeviceList`; PVS6 builds >= 61840 (PVS5 >= 5408)
  need a login first.
- varserver: PVS6 builds >= 61845 (PVS5 >= 5412, LocalAPI) refuse DeviceList even after
  login; read `/vars` instead.
The LocalAPI's session cookie is `Secure`, which no cookie jar sends over http://, and any
other cookie crashes its handler: the client sends `Cookie: session=<token>` itself and
nothing else, so http:// and https:// both work. When plain http itself is refused (port
80 refuses the connection, or the answer is a redirect or 426), the client switches to
https by itself and logs it once; a 401/403 at login is a wrong serial or password, never
that. A 401 (no or expired session), a 500 (the handler respawning) or an empty 200 means
a lost session: log in again, once.
Only GET requests on read paths are ever sent: nothing here can change PVS state.
Transient failures are retried with exponential backoff and jitter inside one deadline,
which also bounds each connect and read and the reading of every body (pvs/bounded.py),
so a 15-minute cron never piles up runs; an address where nothing listens fails at once.
A `/sys/pvs/` read (flash wear, known to hang on some firmware) gets a short timeout of
its own and the poll is kept without it.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import requests
import urllib3
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from solar_monitor.pvs.bounded import deadline_adapter, headers_deadline, read_body
from solar_monitor.pvs.errors import (
    ParseError,
    PvsAuthError,
    PvsCommunicationError,
    PvsResponseError,
    PvsUnreachableError,
)
from solar_monitor.pvs.fcgi_vars import redact_wpa_key
from solar_monitor.pvs.models import Api
from solar_monitor.pvs.parse import firmware_build, load_json

log = logging.getLogger(__name__)

AUTH_MIN_BUILD = 61840
VARSERVER_MIN_BUILD = 61845  # DeviceList is refused even after login from this build
# (first build that needs a login, first build that refuses DeviceList) per model;
# PVS5 LocalAPI from build 5412 (SunStrong's pypvs / LocalAPI notes)
BUILD_THRESHOLDS: dict[str, tuple[int, int]] = {"PVS6": (AUTH_MIN_BUILD, VARSERVER_MIN_BUILD),
                                                "PVS5": (5408, 5412)}
DEVICELIST_PATH = "/cgi-bin/dl_cgi?Command=DeviceList"
SUPERVISOR_INFO_PATH = "/cgi-bin/dl_cgi/supervisor/info"
LOGIN_PATH = "/auth?login"
# One request per group keeps a varserver poll to four small GETs.
VARSERVER_PATHS = (
    "/vars?match=/sys/info/&fmt=obj",
    "/vars?match=/sys/pvs/&fmt=obj",
    "/vars?match=/sys/devices/&fmt=obj",
    "/vars?match=/sys/livedata/&fmt=obj",
)
SLOW_PATH_PREFIX = "/vars?match=/sys/pvs/"  # flashwear: known to hang on some firmware
SLOW_PATH_TIMEOUT_S = 10.0
TRANSIENT_STATUS = frozenset({502, 503, 504})
LOST_SESSION_STATUS = frozenset({401, 403, 500})  # 403: older firmware without a session
REFUSED_STATUS = frozenset({301, 302, 303, 307, 308, 401, 403})
# Plain http itself refused: a redirect (to https) or 426 Upgrade Required. A 401/403 is
# a refused login or session, never a reason to switch to https.
HTTP_REFUSED_STATUS = frozenset({301, 302, 303, 307, 308, 426})
CONNECT_TIMEOUT_S = 5.0  # a PVS or bridge that is there accepts at once
# Real answers are tens of KB (a few MB for thousands of inverters); past this, decoded,
# an answer is refused before it can fill a Pi Zero's RAM.
MAX_BODY_BYTES = 16 * 1024 * 1024
WAIT_NOTICE_S = 10.0  # slower than a usual DeviceList (6-10 s): announced, once per poll
UNREACHABLE_REASONS = frozenset({"connection refused", "name not resolved",
                                 "network unreachable", "host unreachable"})
UNREACHABLE_HINT = ("is the Pi cabled to the PVS LAN1 port (or on its network), and is "
                    "pvs.url right?")


@dataclass(frozen=True, slots=True)
class RawPoll:
    """What one poll returned: `body` is archived byte for byte."""

    body: bytes
    api: Api
    build: int | None
    requested_at: datetime
    url: str = ""  # the base URL that answered (no credentials): https after a switch


class PvsClient:
    """One PVS. Create per run; `poll()` takes one reading of every device."""

    def __init__(
        self,
        base_url: str,
        *,
        api: Literal["auto", "legacy", "varserver"] = "auto",
        serial: str | None = None,
        username: str = "ssm_owner",
        password: str | None = None,
        verify_tls: bool = False,
        https_port: int = 443,
        request_timeout_s: float = 150.0,
        slow_read_timeout_s: float = SLOW_PATH_TIMEOUT_S,
        budget_s: float = 240.0,
        session: requests.Session | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._shown_url = _without_credentials(self.base_url)  # errors are archived
        self.api = api
        self.serial = serial
        self.username = username
        self._password = password
        self.verify_tls = verify_tls
        self.https_port = https_port
        self.switched_to_https = False
        self.request_timeout_s = request_timeout_s
        self.slow_read_timeout_s = slow_read_timeout_s
        self.budget_s = budget_s
        self.session = session or _bounded_session()
        self._monotonic = monotonic
        self._sleep = sleep
        self._now = now
        self._deadline = 0.0
        self._logged_in = False
        self._token: str | None = None  # sent as `Cookie: session=<token>`, nothing else
        self._last_error: PvsCommunicationError | None = None
        self._said_waiting = False
        self.build: int | None = None
        self.model: str | None = None

    # --- public ------------------------------------------------------------------------

    def poll(self) -> RawPoll:
        """One reading. Raises PvsCommunicationError, PvsAuthError or PvsResponseError."""
        self._deadline = self._monotonic() + self.budget_s
        requested_at = self._now()
        try:
            api = self._choose_api()
        except PvsUnreachableError as exc:
            if not self._port_80_refused(exc):
                raise
            http_url = self._shown_url
            self._switch_to_https("port 80 refused the connection")
            try:
                api = self._choose_api()
            except PvsUnreachableError as https_exc:  # nothing there at all: say both
                raise PvsUnreachableError(
                    f"cannot reach the PVS at {http_url} ({exc.reason}) nor at "
                    f"{self._shown_url} ({https_exc.reason}); {UNREACHABLE_HINT}",
                    reason=exc.reason) from None
        try:
            return self._read(api, requested_at)
        except PvsAuthError as exc:
            if not self._can_switch(exc):
                raise
            self._switch_to_https(exc)
            try:
                return self._read(api, requested_at)
            except PvsCommunicationError as https_exc:  # the http refusal says more
                raise PvsAuthError(f"{exc}; https at {self._shown_url} failed too "
                                   f"({https_exc})", http_status=exc.http_status) from None

    def _read(self, api: Api, requested_at: datetime) -> RawPoll:
        if api == "legacy":
            body = self._devicelist()
            if body is not None:
                return RawPoll(body, "legacy", self.build, requested_at, self._shown_url)
            if self.api == "legacy":
                raise PvsAuthError("DeviceList refused after login (HTTP 403); this firmware "
                                   "needs pvs.api: varserver (or auto)", http_status=403)
            log.info("DeviceList refused after login: reading the varserver API instead")
        body = self._varserver(requested_at)
        return RawPoll(body, "varserver", self.build, requested_at, self._shown_url)

    # --- plain http refused: https ------------------------------------------------------

    @property
    def shown_url(self) -> str:
        """The base URL in use, without credentials (https after a switch)."""
        return self._shown_url

    def _can_switch(self, exc: PvsAuthError) -> bool:
        """Plain http refused (a redirect or 426) on login firmware."""
        if self.switched_to_https or not self.base_url.startswith("http://"):
            return False  # old firmware has no https: its 403 must keep its own message
        return self._needs_login() and exc.http_status in HTTP_REFUSED_STATUS

    def _port_80_refused(self, exc: PvsUnreachableError) -> bool:
        """Plain http refused at the TCP level on its default port: https may answer."""
        parts = urlsplit(self.base_url)
        return (not self.switched_to_https and parts.scheme == "http"
                and parts.port in (None, 80) and exc.reason == "connection refused")

    def _switch_to_https(self, why: object) -> None:
        parts = urlsplit(self.base_url)
        host = parts.netloc.rpartition(":")[0] if parts.port else parts.netloc
        netloc = host if self.https_port == 443 else f"{host}:{self.https_port}"
        self.base_url = urlunsplit(parts._replace(scheme="https", netloc=netloc))
        self._shown_url = _without_credentials(self.base_url)
        self.switched_to_https = True
        self._logged_in = False
        self._token = None
        self._last_error = None
        log.warning("the PVS refused plain http (%s); switching to %s (set pvs.url to it "
                    "to skip this step)", why, self._shown_url)

    def supervisor_info(self) -> dict[str, Any]:
        """The open `/cgi-bin/dl_cgi/supervisor/info` answer (no login needed)."""
        if not self._deadline:
            self._deadline = self._monotonic() + self.budget_s
        status, body = self._get(SUPERVISOR_INFO_PATH)
        if status != 200:
            raise PvsResponseError(f"supervisor/info answered HTTP {status}", http_status=status)
        doc = _json_object(body, "supervisor/info")
        sup = doc.get("supervisor")
        if not isinstance(sup, dict):
            raise PvsResponseError("supervisor/info has no 'supervisor' object")
        return sup

    # --- strategy ----------------------------------------------------------------------

    def _choose_api(self) -> Api:
        """Read the build from supervisor/info; it decides login and API."""
        try:
            sup = self.supervisor_info()
        except PvsResponseError as exc:
            if self.api != "auto":
                return self.api
            # Old firmware may lack supervisor/info: DeviceList still tells the truth.
            log.info("supervisor/info unusable (%s); trying DeviceList", exc)
            return "legacy"
        build = sup.get("BUILD")
        self.build = build if isinstance(build, int) else firmware_build(str(sup.get("SWVER", "")))
        self.model = str(sup.get("MODEL") or "").strip().upper() or None
        self.serial = self.serial or (str(sup["SERIAL"]) if sup.get("SERIAL") else None)
        if self.api != "auto":
            return self.api
        if (self.build or 0) >= self._thresholds()[1]:
            return "varserver"
        return "legacy"  # DeviceList first; a 403 after login switches to varserver

    def _thresholds(self) -> tuple[int, int]:
        """(first login build, first varserver build) for this PVS's model."""
        return BUILD_THRESHOLDS.get(self.model or "PVS6", BUILD_THRESHOLDS["PVS6"])

    def _needs_login(self) -> bool:
        return self.api == "varserver" or (self.build or 0) >= self._thresholds()[0]

    def _devicelist(self) -> bytes | None:
        """DeviceList bytes, or None when the firmware refuses it even after login."""
        if self._needs_login() and not self._logged_in:
            self._login()
        status, body = self._get(DEVICELIST_PATH)
        known_old = self.build is not None and self.build < self._thresholds()[0]
        if status in (401, 403) and not known_old:
            self._login()  # a session can expire between requests: log in again, once
            status, body = self._get(DEVICELIST_PATH)
            if status in (401, 403):
                return None  # refused even with a fresh session: varserver firmware
        if status in (401, 403):
            raise PvsAuthError(
                f"DeviceList answered HTTP {status} on firmware that needs no login; a PVS "
                f"power cycle cures this spontaneous 403", http_status=status)
        _check_devicelist(status, body)
        return body

    def _varserver(self, requested_at: datetime) -> bytes:
        """Every /vars answer of this poll in one envelope that records each request path."""
        if not self._logged_in:
            self._login()
        responses: list[dict[str, object]] = []
        for path in VARSERVER_PATHS:
            slow = path.startswith(SLOW_PATH_PREFIX)
            try:
                status, body = self._vars_read(path, slow)
            except PvsCommunicationError as exc:
                if not slow or exc.http_status is not None:
                    raise
                # the known flashwear hang: keep the poll, note the gap in the archive
                log.warning("skipped %s this poll: %s", _short(path), exc)
                responses.append({"path": path, "status": None, "body": "",
                                  "error": str(exc)})
                continue
            responses.append({"path": path, "status": status,
                              **_envelope_body(redact_wpa_key(body))})
        if not any(r["status"] == 200 and "/sys/devices/" in r["path"] for r in responses):
            raise PvsResponseError("varserver lists no devices", http_status=400)
        envelope = {"api": "varserver", "requested_at": requested_at.isoformat(),
                    "build": self.build, "responses": responses}
        return json.dumps(envelope, ensure_ascii=False).encode("utf-8")

    def _vars_read(self, path: str, slow: bool) -> tuple[int, bytes]:
        """One /vars read; a lost session (401, 500, an empty 200) logs in again once."""
        timeout = self.slow_read_timeout_s if slow else None
        status, body = self._get(path, timeout_s=timeout, retries=1 if slow else None)
        if status in LOST_SESSION_STATUS or (status == 200 and not body.strip()):
            log.info("varserver answered HTTP %s%s for %s: logging in again", status,
                     " (empty)" if status == 200 else "", _short(path))
            self._login()
            status, body = self._get(path, timeout_s=timeout, retries=1 if slow else None)
        if status in REFUSED_STATUS:  # 401/403 again, or a redirect (to https)
            raise PvsAuthError(f"varserver refused {path} after login (HTTP {status})",
                               http_status=status)
        if status == 200 and not body.strip():
            raise PvsResponseError(f"varserver answered an empty 200 for {path} after login",
                                   http_status=200)
        if status not in (200, 400):  # 400 = nothing matched (e.g. no battery)
            raise PvsResponseError(f"varserver answered HTTP {status} for {path}",
                                   http_status=status)
        return status, body

    def _login(self) -> None:
        """Log in as ssm_owner with the last five characters of the serial."""
        # upper-case: the real server's password is case-sensitive, and a serial typed in
        # lower case in the config must still work
        password = self._password or (self.serial[-5:].upper() if self.serial else None)
        if not password:
            raise PvsAuthError("this firmware needs a login, but the PVS serial is unknown; "
                               "set pvs.serial in the config")
        basic = base64.b64encode(f"{self.username}:{password}".encode()).decode()
        self._token = None
        status, body = self._get(LOGIN_PATH, headers={"Authorization": f"basic {basic}"})
        token = _session_from_login(body) if status == 200 else None
        if status in HTTP_REFUSED_STATUS:
            raise PvsAuthError(f"the PVS refused plain http for the login (HTTP {status})",
                               http_status=status)
        if token is None:
            raise PvsAuthError(f"the PVS refused the login as {self.username} (HTTP "
                               f"{status}): wrong serial or password; check pvs.serial / "
                               f"pvs.password", http_status=status)
        self._token = token
        self._logged_in = True

    # --- transport ---------------------------------------------------------------------

    def _get(self, path: str, headers: dict[str, str] | None = None, *,
             timeout_s: float | None = None, retries: int | None = None) -> tuple[int, bytes]:
        """GET with retries on transient failures, inside the poll's time budget.
        `timeout_s` caps each try's read timeout, `retries` the number of tries (6)."""
        retrying = Retrying(
            stop=stop_after_attempt(retries or 6) | self._budget_spent,
            wait=wait_exponential(multiplier=2, max=30) + wait_random(0, 2),
            retry=retry_if_exception(_retryable),
            sleep=self._budget_sleep,
            reraise=True,
        )
        try:
            return retrying(self._get_once, path, headers, timeout_s)
        except RetryError as exc:  # pragma: no cover - reraise=True makes this rare
            raise PvsCommunicationError(str(exc)) from None

    def _budget_spent(self, _state: Any) -> bool:
        return self._monotonic() >= self._deadline - 1.0

    def _budget_sleep(self, seconds: float) -> None:
        self._sleep(max(0.0, min(seconds, self._deadline - self._monotonic() - 1.0)))

    def _get_once(self, path: str, headers: dict[str, str] | None,
                  timeout_s: float | None = None) -> tuple[int, bytes]:
        remaining = self._deadline - self._monotonic()
        if remaining < 1.0:
            if self._last_error is not None:
                raise self._last_error  # the real cause says more than "out of time"
            raise PvsCommunicationError(f"poll budget of {self.budget_s:g} s used up")
        try:
            return self._request(path, headers, min(remaining, timeout_s or remaining))
        except PvsCommunicationError as exc:
            self._last_error = exc
            raise

    def _request(self, path: str, headers: dict[str, str] | None,
                 remaining: float) -> tuple[int, bytes]:
        read_timeout = min(self.request_timeout_s, remaining)
        # identity: a compressed answer could only be counted after inflating it
        headers = {**(headers or {}), "Accept-Encoding": "identity"}
        if self._token is not None:
            # The real cookie is Secure (requests never sends it over http://), and any
            # other cookie crashes the PVS's handler: send the token ourselves, alone.
            headers["Cookie"] = f"session={self._token}"
        notice = self._waiting_notice()
        try:
            with warnings.catch_warnings():
                # verify_tls: false is the norm (the PVS's certificate is self-signed);
                # urllib3 would warn on stderr at every request of every cron run
                warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
                with headers_deadline(self._deadline, self._monotonic):
                    response = self.session.get(
                        self.base_url + path, headers=headers, verify=self.verify_tls,
                        timeout=(min(CONNECT_TIMEOUT_S, read_timeout), read_timeout),
                        allow_redirects=False, stream=True)
        except requests.ConnectTimeout:
            reason = f"no answer to connect within {min(CONNECT_TIMEOUT_S, read_timeout):.0f} s"
            raise PvsUnreachableError(f"cannot reach the PVS at {self._shown_url} ({reason}); "
                                      f"{UNREACHABLE_HINT}", reason=reason) from None
        except requests.Timeout:
            raise PvsCommunicationError(
                f"no answer from the PVS within {read_timeout:.0f} s ({_short(path)})") from None
        except requests.RequestException as exc:
            if self._monotonic() >= self._deadline:  # the header watchdog shut it down
                raise PvsCommunicationError(
                    f"the PVS did not send the headers of its answer to {_short(path)} "
                    "within the poll budget: a stalled or dripping answer") from None
            reason = _reason(exc)
            if reason in UNREACHABLE_REASONS:  # nobody there: a retry would not help
                raise PvsUnreachableError(f"cannot reach the PVS at {self._shown_url} "
                                          f"({reason}); {UNREACHABLE_HINT}",
                                          reason=reason) from None
            raise PvsCommunicationError(
                f"cannot reach the PVS at {self._shown_url} ({reason})") from None
        finally:
            notice.cancel()
            self.session.cookies.clear()  # the jar never adds a cookie to our requests
        try:
            body = read_body(response, limit=MAX_BODY_BYTES, deadline=self._deadline,
                             wait_s=read_timeout, monotonic=self._monotonic,
                             what=_short(path))
        finally:
            response.close()
        if response.status_code in TRANSIENT_STATUS:
            raise PvsCommunicationError(
                f"the PVS (or its bridge) answered HTTP {response.status_code}",
                http_status=response.status_code)
        return response.status_code, body

    def _waiting_notice(self) -> threading.Timer:
        """Say once per client, when an answer is slow, how long it may still take: a
        DeviceList of a large site takes a minute, and a silent run looks hung."""
        left = self._deadline - self._monotonic()

        def say() -> None:
            if not self._said_waiting:
                self._said_waiting = True
                log.info("waiting for the PVS, up to %.0f s", max(0.0, left - WAIT_NOTICE_S))

        timer = threading.Timer(WAIT_NOTICE_S, say)
        timer.daemon = True
        if not self._said_waiting and left > 2 * WAIT_NOTICE_S:
            timer.start()
        return timer


def _bounded_session() -> requests.Session:
    """A session whose every connection stops waiting for headers at the poll's deadline."""
    session = requests.Session()
    adapter = deadline_adapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _retryable(exc: BaseException) -> bool:
    """A transient failure: not an answer, and not an address where nothing listens."""
    return isinstance(exc, PvsCommunicationError) and not isinstance(exc, PvsUnreachableError)


def _envelope_body(body: bytes) -> dict[str, str]:
    """An answer's bytes as received, in the envelope: text when it is UTF-8 (readable in
    the archive), else base64 (`body_b64`), so no byte is lost either way."""
    try:
        return {"body": body.decode("utf-8")}
    except UnicodeDecodeError:
        return {"body": "", "body_b64": base64.b64encode(body).decode("ascii")}


def _session_from_login(body: bytes) -> str | None:
    """The session token of a login answer (`{"session": "<token>"}`), or None."""
    try:
        doc = load_json(body)
    except ParseError:
        return None
    token = doc.get("session") if isinstance(doc, dict) else None
    return token if isinstance(token, str) and token and token.isprintable() \
        and ";" not in token else None


def _check_devicelist(status: int, body: bytes) -> None:
    if status != 200:
        raise PvsResponseError(f"DeviceList answered HTTP {status}", http_status=status)
    doc = _json_object(body, "DeviceList")
    result = doc.get("result")
    if result is not None and str(result).lower() != "succeed":
        raise PvsResponseError(f"DeviceList answered result={str(result)[:40]!r}",
                               http_status=status)
    if not isinstance(doc.get("devices"), list):
        raise PvsResponseError("DeviceList answer has no 'devices' list", http_status=status)


def _json_object(body: bytes, what: str) -> dict[str, Any]:
    try:
        doc = load_json(body)
    except ParseError as exc:
        raise PvsResponseError(f"{what}: {exc}", http_status=200) from None
    if not isinstance(doc, dict):
        raise PvsResponseError(f"{what}: expected a JSON object", http_status=200)
    return doc


def _without_credentials(url: str) -> str:
    """`url` without a user:password@ part (a bridge behind a login)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _short(path: str) -> str:
    return path.split("?")[0] if "Command" not in path else path.rsplit("/", 1)[-1]


def _reason(exc: requests.RequestException) -> str:
    """A short cause: 'connection refused', 'name not resolved', ... never a URL dump."""
    text = str(exc).lower()
    for needle, reason in (("refused", "connection refused"), ("resolve", "name not resolved"),
                           ("no route to host", "host unreachable"),
                           ("host is unreachable", "host unreachable"),
                           ("unreachable", "network unreachable"), ("reset", "connection reset"),
                           ("ssl", "TLS error"), ("timed out", "timed out")):
        if needle in text:
            return reason
    return exc.__class__.__name__

