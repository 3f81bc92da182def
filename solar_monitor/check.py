"""`solar-monitor check`: validate the config and probe each configured part.

One line per part, PASS / FAIL / SKIP, with a concrete fix on failure. Later features
(Google Sheets, notifications, weather) register their probes in CHECKS.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from solar_monitor.config import Config
from solar_monitor.logsetup import scrub


@dataclass(frozen=True, slots=True)
class CheckResult:
    status: Literal["PASS", "FAIL", "SKIP"]
    detail: str


Check = Callable[[Config], CheckResult]


def check_data_dir(config: Config) -> CheckResult:
    path = config.data_path
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".check."):
            pass
    except OSError as exc:
        return CheckResult("FAIL", f"{path} is not writable ({exc.strerror}); create it and "
                                   f"give it to the user that runs solar-monitor")
    from solar_monitor.retention import free_mb

    return CheckResult("PASS", f"{path} writable, {free_mb(path):.0f} MB free")


def check_pvs(config: Config) -> CheckResult:
    from solar_monitor.pipeline import make_client
    from solar_monitor.pvs.client import UNREACHABLE_HINT
    from solar_monitor.pvs.errors import PvsAuthError, PvsError, PvsUnreachableError
    from solar_monitor.pvs.parse import parse

    client = make_client(config)
    try:
        raw = client.poll()
        snapshot = parse(raw.body)
    except (PvsAuthError, PvsUnreachableError) as exc:  # their message says what to do
        return CheckResult("FAIL", f"{exc}")
    except PvsError as exc:
        return CheckResult("FAIL", f"{exc}; {UNREACHABLE_HINT}")
    build = f"build {raw.build}" if raw.build else "unknown build"
    model = f"{client.model} " if client.model else ""
    scheme = urlsplit(raw.url).scheme
    works = (f"plain http refused, https works: set pvs.url: {raw.url}"
             if client.switched_to_https else f"{scheme} works")
    return CheckResult("PASS", f"{raw.url}: {model}{build}, {raw.api} API, "
                               f"{len(snapshot.inverters)} inverters, "
                               f"{len(snapshot.meters)} meters; {works}")


def check_notify(config: Config) -> CheckResult:
    from solar_monitor.notify import check_targets

    ok, detail = check_targets(config)
    return CheckResult("SKIP" if ok is None else "PASS" if ok else "FAIL", detail)


def check_weather(config: Config) -> CheckResult:
    from solar_monitor.weather import check_weather as probe

    ok, detail = probe(config)
    return CheckResult("SKIP" if ok is None else "PASS" if ok else "FAIL", detail)


def check_google_sheets(config: Config) -> CheckResult:
    if config.google_sheets is None:
        return CheckResult("SKIP", "no google_sheets section (docs/google-sheets.md)")
    from solar_monitor.sinks.sheets import SheetsError, probe

    try:
        return CheckResult("PASS", probe(config.google_sheets))
    except SheetsError as exc:
        return CheckResult("FAIL", str(exc))


def check_heartbeat(config: Config) -> CheckResult:
    from solar_monitor.heartbeat import check_heartbeat as probe

    ok, detail = probe(config.heartbeat, config.site.name)
    return CheckResult("SKIP" if ok is None else "PASS" if ok else "FAIL", detail)


CHECKS: list[tuple[str, Check]] = [("data_dir", check_data_dir), ("pvs", check_pvs)]
CHECKS.append(("notify", check_notify))
CHECKS.append(("weather", check_weather))
CHECKS.append(("google_sheets", check_google_sheets))
CHECKS.append(("heartbeat", check_heartbeat))


def run_checks(config: Config) -> bool:
    """Print one line per check; True when none failed."""
    print("PASS config: valid")
    ok = True
    for name, check in CHECKS:
        try:
            result = check(config)
        except Exception as exc:  # a probe must never hide the other probes
            result = CheckResult("FAIL", f"unexpected {exc.__class__.__name__}: {exc}")
        print(f"{result.status} {name}: {scrub(result.detail)}")
        sys.stdout.flush()
        ok = ok and result.status != "FAIL"
    return ok
