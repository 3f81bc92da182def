"""The heartbeat: a dead man's switch for the watchdog itself.

Every run ends with a ping to `heartbeat.url`; a failed run pings `<url>/fail` with its
one-line reason as the body (the healthchecks.io convention; Uptime Kuma push monitors and
others take it too). When the Pi dies, loses power, Wi-Fi or its SD card, the pings stop
and the service e-mails the owner: the one failure no alert of ours can report.

The URL is a secret (anyone holding it can ping for us): it is registered for redaction,
and errors name only its scheme and host. A ping has a short timeout and one quick retry;
it never fails the run.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from solar_monitor.config import HeartbeatConfig
from solar_monitor.logsetup import add_secrets, redact, scrub, secret_forms

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 10_000  # healthchecks.io keeps the first 10 KB of a ping body (its default)
RETRY_PAUSE_S = 1.0


@dataclass(frozen=True, slots=True)
class PingResult:
    """The outcome of one ping; `detail` is redacted and safe to print or store."""

    ok: bool
    detail: str


def fail_url(url: str) -> str:
    """`<url>/fail`, keeping a query string (`?rid=...`) after the path."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/fail"))


def label(url: str) -> str:
    """The URL's scheme and host only: the path is the check's secret token."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}" + (f":{parts.port}" if parts.port else "")


def ping(heartbeat: HeartbeatConfig, *, failed: bool, body: str) -> PingResult:
    """POST `body` to the URL (or `<url>/fail` when `failed`). Never raises.

    Two attempts at most (1 s apart; not after a 4xx answer), each within
    `heartbeat.timeout_s`, so a dead network costs a run a few seconds, never minutes.
    """
    import requests  # the PVS client already loaded it in a run

    secrets = secret_forms(heartbeat.url)
    add_secrets(secrets)
    url = fail_url(heartbeat.url) if failed else heartbeat.url
    data = scrub(body).encode("utf-8")[:MAX_BODY_BYTES]
    where = label(heartbeat.url)
    detail = ""
    for attempt in (1, 2):
        try:
            answer = requests.post(url, data=data, timeout=heartbeat.timeout_s,
                                   headers={"Content-Type": "text/plain; charset=utf-8",
                                            "User-Agent": "solar-monitor"})
        except requests.Timeout:
            detail = f"{where}: no answer within {heartbeat.timeout_s:g} s"
        except requests.RequestException as exc:
            detail = f"{where}: cannot connect ({_short(exc, secrets)})"
        else:
            with answer:
                if answer.status_code < 300:
                    return PingResult(True, f"{where}: {'fail' if failed else 'success'} "
                                            f"ping accepted (HTTP {answer.status_code})")
                detail = f"{where}: HTTP {answer.status_code}"
                if answer.status_code < 500:
                    detail += " (is heartbeat.url the check's ping URL?)"
                    break
        if attempt == 1:
            time.sleep(RETRY_PAUSE_S)
    return PingResult(False, redact(detail, secrets))


def _short(exc: BaseException, secrets: list[str]) -> str:
    """The OS's reason inside a requests error ('[Errno 111] Connection refused'), without
    the URL requests quotes around it."""
    found = re.search(r"\[Errno -?\d+\] [^'\")\]]+", str(exc))
    return redact(found.group(0).strip() if found else exc.__class__.__name__, secrets)


def check_heartbeat(heartbeat: HeartbeatConfig | None, site_name: str) -> tuple[bool | None, str]:
    """The `check` probe: one success ping, said to be a check (see docs/notifications.md:
    a success ping only tells the service what is true, that the Pi is up and online, and
    re-arms its timer; `/start` would work on healthchecks.io only). (None, why) when off."""
    if heartbeat is None:
        return None, ("no heartbeat section: nobody hears it if the Pi dies "
                      "(docs/notifications.md)")
    result = ping(heartbeat, failed=False,
                  body=f"solar-monitor check at {site_name} (a manual check, not a run)")
    if result.ok:
        return True, result.detail
    return False, f"{result.detail}; fix heartbeat.url or the Pi's internet connection"
