"""HTTP client for the PVS: detect the firmware's API, log in when needed, take one reading.

Firmware strategies, chosen per poll (`api="auto"`) or forced:
- legacy: `GET /cgi-bin/dl_cgi?Command=DeviceList`; builds >= 61840 need a login first.
- varserver: builds >= 61845 refuse DeviceList even after login; read `/vars` instead.
Only GET requests on read paths are ever sent: nothing here can change PVS state.
Transient failures are retried with exponential backoff and jitter inside one time budget,
so a 15-minute cron never piles up runs.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import requests
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from solar_monitor.pvs.errors import (
    ParseError,
    PvsAuthError,
    PvsCommunicationError,
    PvsResponseError,
)
from solar_monitor.pvs.models import Api
from solar_monitor.pvs.parse import firmware_build, load_json

log = logging.getLogger(__name__)

AUTH_MIN_BUILD = 61840
VARSERVER_MIN_BUILD = 61845  # DeviceList is refused even after login from this build
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
TRANSIENT_STATUS = frozenset({502, 503, 504})
CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class RawPoll:
    """What one poll returned: `body` is archived byte for byte."""

    body: bytes
    api: Api
    build: int | None
    requested_at: datetime


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
        request_timeout_s: float = 150.0,
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
        self.request_timeout_s = request_timeout_s
        self.budget_s = budget_s
        self.session = session or requests.Session()
        self._monotonic = monotonic
        self._sleep = sleep
        self._now = now
        self._deadline = 0.0
        self._logged_in = False
        self._token: str | None = None  # sent as `Cookie: session=<token>`, nothing else
        self._last_error: PvsCommunicationError | None = None
        self.build: int | None = None

    # --- public ------------------------------------------------------------------------

    def poll(self) -> RawPoll:
        """One reading. Raises PvsCommunicationError, PvsAuthError or PvsResponseError."""
        self._deadline = self._monotonic() + self.budget_s
        requested_at = self._now()
        api = self._choose_api()
        if api == "legacy":
            body = self._devicelist()
            if body is not None:
                return RawPoll(body, "legacy", self.build, requested_at)
            if self.api == "legacy":
                raise PvsAuthError("DeviceList refused after login (HTTP 403); this firmware "
                                   "needs pvs.api: varserver (or auto)", http_status=403)
            log.info("DeviceList refused after login: reading the varserver API instead")
        return RawPoll(self._varserver(requested_at), "varserver", self.build, requested_at)

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
        self.serial = self.serial or (str(sup["SERIAL"]) if sup.get("SERIAL") else None)
        if self.api != "auto":
            return self.api
        if (self.build or 0) >= VARSERVER_MIN_BUILD:
            return "varserver"
        return "legacy"  # DeviceList first; a 403 after login switches to varserver

    def _needs_login(self) -> bool:
        return self.api == "varserver" or (self.build or 0) >= AUTH_MIN_BUILD

    def _devicelist(self) -> bytes | None:
        """DeviceList bytes, or None when the firmware refuses it even after login."""
        if self._needs_login() and not self._logged_in:
            self._login()
        status, body = self._get(DEVICELIST_PATH)
        known_old = self.build is not None and self.build < AUTH_MIN_BUILD
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
        responses = []
        for path in VARSERVER_PATHS:
            status, body = self._get(path)
            if status in (401, 403):
                self._login()
                status, body = self._get(path)
            if status in (401, 403):
                raise PvsAuthError(f"varserver refused {path} after login (HTTP {status})",
                                   http_status=status)
            if status not in (200, 400):  # 400 = nothing matched (e.g. no battery)
                raise PvsResponseError(f"varserver answered HTTP {status} for {path}",
                                       http_status=status)
            text = body.decode("utf-8", errors="replace")
            if status == 200:
                _json_object(body, path)
            responses.append({"path": path, "status": status, "body": text})
        if not any(r["status"] == 200 and "/sys/devices/" in r["path"] for r in responses):
            raise PvsResponseError("varserver lists no devices", http_status=400)
        envelope = {"api": "varserver", "requested_at": requested_at.isoformat(),
                    "build": self.build, "responses": responses}
        return json.dumps(envelope, ensure_ascii=False).encode("utf-8")

    def _login(self) -> None:
        """Log in as ssm_owner with the last five characters of the serial."""
        password = self._password or (self.serial[-5:] if self.serial else None)
        if not password:
            raise PvsAuthError("this firmware needs a login, but the PVS serial is unknown; "
                               "set pvs.serial in the config")
        basic = base64.b64encode(f"{self.username}:{password}".encode()).decode()
        self._token = None
        status, body = self._get(LOGIN_PATH, headers={"Authorization": f"basic {basic}"})
        token = _session_from_login(body) if status == 200 else None
        if token is None:
            raise PvsAuthError(f"login as {self.username} failed (HTTP {status}); check "
                               f"pvs.serial / pvs.password", http_status=status)
        self._token = token
        self._logged_in = True

    # --- transport ---------------------------------------------------------------------

    def _get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """GET with retries on transient failures, inside the poll's time budget."""
        retrying = Retrying(
            stop=stop_after_attempt(6) | self._budget_spent,
            wait=wait_exponential(multiplier=2, max=30) + wait_random(0, 2),
            retry=retry_if_exception_type(PvsCommunicationError),
            sleep=self._budget_sleep,
            reraise=True,
        )
        try:
            return retrying(self._get_once, path, headers)
        except RetryError as exc:  # pragma: no cover - reraise=True makes this rare
            raise PvsCommunicationError(str(exc)) from None

    def _budget_spent(self, _state: Any) -> bool:
        return self._monotonic() >= self._deadline - 1.0

    def _budget_sleep(self, seconds: float) -> None:
        self._sleep(max(0.0, min(seconds, self._deadline - self._monotonic() - 1.0)))

    def _get_once(self, path: str, headers: dict[str, str] | None) -> tuple[int, bytes]:
        remaining = self._deadline - self._monotonic()
        if remaining < 1.0:
            if self._last_error is not None:
                raise self._last_error  # the real cause says more than "out of time"
            raise PvsCommunicationError(f"poll budget of {self.budget_s:g} s used up")
        try:
            return self._request(path, headers, remaining)
        except PvsCommunicationError as exc:
            self._last_error = exc
            raise

    def _request(self, path: str, headers: dict[str, str] | None,
                 remaining: float) -> tuple[int, bytes]:
        read_timeout = min(self.request_timeout_s, remaining)
        headers = dict(headers or {})
        if self._token is not None:
            # The real cookie is Secure (requests never sends it over http://), and any
            # other cookie crashes the PVS's handler: send the token ourselves, alone.
            headers["Cookie"] = f"session={self._token}"
        try:
            response = self.session.get(
                self.base_url + path, headers=headers, verify=self.verify_tls,
                timeout=(min(CONNECT_TIMEOUT_S, read_timeout), read_timeout),
                allow_redirects=False)
            body = response.content
        except requests.Timeout:
            raise PvsCommunicationError(
                f"no answer from the PVS within {read_timeout:.0f} s ({_short(path)})") from None
        except requests.RequestException as exc:
            raise PvsCommunicationError(
                f"cannot reach the PVS at {self._shown_url} ({_reason(exc)})") from None
        finally:
            self.session.cookies.clear()  # the jar never adds a cookie to our requests
        if response.status_code in TRANSIENT_STATUS:
            raise PvsCommunicationError(
                f"the PVS (or its bridge) answered HTTP {response.status_code}",
                http_status=response.status_code)
        return response.status_code, body


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
                           ("unreachable", "network unreachable"), ("reset", "connection reset"),
                           ("ssl", "TLS error"), ("timed out", "timed out")):
        if needle in text:
            return reason
    return exc.__class__.__name__

