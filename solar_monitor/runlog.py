"""The end of every `run`, whatever happened in it: the heartbeat ping, a record of the
run, and (when the card itself is failing) one e-mail sent past the outbox.

Called by the CLI after `run_once` returned *or raised*, so a run that failed early (the
PVS unreachable, the database unwritable) still pings `<url>/fail` with its reason. The
order matters: first the ping and the direct e-mail (they leave the Pi, so they survive
a dead card), then the `runs` row in its own transaction (it survives a run whose own
transaction rolled back, and is simply missing when the card refuses all writes: the
digest counts that run as missed).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path
from typing import Literal

from solar_monitor.config import Config
from solar_monitor.pi_health import PiHealth, read_pi_health, storage_failure
from solar_monitor.store import iso

log = logging.getLogger(__name__)

Outcome = Literal["ok", "poll_failed", "stage_failed", "storage_failed", "error"]
EMERGENCY_MARKER = "solar-monitor-storage-alert-"


@dataclass(frozen=True, slots=True)
class RunEnd:
    """How one run ended: `reason` is its one-line failure (None when ok); `summary` is
    the success line the heartbeat carries."""

    started_at: datetime
    outcome: Outcome
    exit_code: int
    reason: str | None = None
    summary: str = "ok"
    pi: PiHealth | None = None
    error: BaseException | None = None  # what the run raised, if it did


def finish_run(config: Config, end: RunEnd) -> None:
    """Ping, warn past the outbox if the card is failing, record the run. Never raises
    (a failure here is a warning: the run's own outcome stands)."""
    from solar_monitor.logsetup import scrub

    heartbeat: str | None = None
    if config.heartbeat is not None:
        from solar_monitor.heartbeat import ping

        failed = end.outcome != "ok"
        result = ping(config.heartbeat, failed=failed,
                      body=end.reason if failed and end.reason else end.summary)
        heartbeat = "ok" if result.ok else f"failed: {result.detail}"
        if result.ok:
            log.debug("heartbeat: %s", result.detail)
        else:
            log.warning("heartbeat ping failed (the run is not affected): %s", result.detail)
    pi = end.pi
    if end.error is not None and pi is None:
        pi = read_pi_health(config.data_path)
    problem = pi.storage_problem if pi is not None else None
    if end.error is not None and (problem or storage_failure(end.error)):
        warn_storage_directly(config, problem or scrub(end.reason or str(end.error)))
    try:
        record_run(config, end, heartbeat, pi)
    except (OSError, sqlite3.Error) as exc:
        level = logging.DEBUG if end.outcome == "storage_failed" else logging.WARNING
        log.log(level, "this run could not be recorded: %s", exc)


def record_run(config: Config, end: RunEnd, heartbeat: str | None, pi: PiHealth | None,
               finished_at: datetime | None = None) -> None:
    """One `runs` row, in its own transaction. Raises OSError / sqlite3.Error."""
    from solar_monitor.logsetup import scrub
    from solar_monitor.pipeline import open_store

    with open_store(config) as store, store.transaction():
        store.db.execute(
            "INSERT INTO runs (started_at, finished_at, outcome, exit_code, reason, heartbeat, "
            "throttled, cpu_temp_c, storage_problem) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (iso(end.started_at), iso(finished_at or datetime.now(UTC)), end.outcome,
             end.exit_code, scrub(end.reason) if end.reason else None, heartbeat,
             pi.throttled if pi else None, pi.cpu_temp_c if pi else None,
             pi.storage_problem if pi else None))


def warn_storage_directly(config: Config, problem: str) -> bool:
    """The card refuses writes, so the outbox (SQLite, on that card) cannot hold an alert:
    send the pi_storage_failing e-mail straight through apprise, one attempt, at most once
    per `alerts.reminder_hours` (remembered in RAM: the systemd RuntimeDirectory, else
    /dev/shm). Returns whether it was sent now."""
    from solar_monitor.notify import send
    from solar_monitor.rules.catalog import BY_ID

    alerts = config.alerts
    if not alerts.enabled or "pi_storage_failing" in alerts.disabled_rules:
        return False
    marker = _marker(config)
    try:
        if time.time() - marker.stat().st_mtime < alerts.reminder_hours * 3600:
            return False
    except OSError:
        pass  # never sent since the Pi booted
    rule = BY_ID["pi_storage_failing"]
    since = datetime.now(UTC).astimezone(config.tz).strftime("%Y-%m-%d %H:%M %Z")
    result = send(config, title=f"{config.site.name}: {rule.title} (system)",
                  body=f"{rule.message.format(since=since, problem=problem)} {rule.advice} "
                       "(Sent directly: the alert outbox lives on that card.)",
                  tags=alerts.tags, level="failure")
    if not result.ok:
        log.error("could not send the failing-storage e-mail: %s", result.error)
        return False
    log.error("storage failing: %s; e-mail sent directly", problem)
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError:
        pass  # then the next run sends again: better twice than never
    return True


def _marker(config: Config) -> Path:
    """A RAM file per data folder: survives between runs, not a reboot, and never on
    the failing card."""
    base = os.environ.get("RUNTIME_DIRECTORY") or \
        ("/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir())
    key = sha256(str(config.data_path).encode()).hexdigest()[:12]
    return Path(base.split(":")[0]) / f"{EMERGENCY_MARKER}{key}"
