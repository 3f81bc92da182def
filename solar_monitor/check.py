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
from solar_monitor.exports import ENGINES
from solar_monitor.logsetup import scrub


@dataclass(frozen=True, slots=True)
class CheckResult:
    status: Literal["PASS", "FAIL", "SKIP", "WARN"]  # WARN: worth fixing, not a failure
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


def check_site(config: Config) -> CheckResult:
    """The longitude against the time zone: a wrong sign would switch inverter alerts off."""
    from solar_monitor.site_sanity import longitude_problem, standard_offset_h

    site = config.site
    if problem := longitude_problem(site.longitude, site.timezone):
        return CheckResult("FAIL", f"site.longitude: {problem}")
    zone_h = standard_offset_h(site.timezone)
    agree = (f"latitude {site.latitude:g}, longitude {site.longitude:g} agree with "
             f"{site.timezone} (UTC{zone_h:+g})")
    if fixed := FIXED_OFFSET_ZONES.get(site.timezone):
        return CheckResult("WARN", f"{agree}, but {site.timezone} never changes for summer "
                                   f"time: if your clocks do, use {fixed}, or local times in "
                                   f"e-mails and the sheet are an hour off half the year")
    return CheckResult("PASS", agree)


# Zones named by an abbreviation that keep one offset all year; owners write them for the
# US zone whose clocks change. (HST is right for Hawaii, which has no summer time.)
FIXED_OFFSET_ZONES = {"EST": "America/New_York", "MST": "America/Denver (America/Phoenix "
                      "keeps MST all year, as Arizona does)"}


# Where pvs.url points, by its host: the PVS's installer port, this machine, or the LAN.
LAN1_PREFIX = "172.27.153."
SETUP_DOC = "docs/raspberry-pi.md, 'Which setup do I need?'"


def _where(url: str) -> str:
    import ipaddress

    host = urlsplit(url).hostname or ""
    if host.startswith(LAN1_PREFIX):
        return "lan1"
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    return "local" if loopback else "home"


def _setup(api: str, where: str) -> str:
    """Which setup the firmware allows, and what the configured address proves."""
    if api != "varserver":
        return ("legacy firmware: it answers only on its LAN1 port, so the Pi stays in "
                "the box on LAN1 with the bridge")
    if where == "home":
        return ("LocalAPI firmware, and its home-network address answers: any always-on "
                "machine on your network can watch it, no bridge needed")
    return ("LocalAPI firmware: it should also answer on its home-network address "
            "(inferred from peers, not tried here): set pvs.url to it to watch from any "
            f"always-on machine ({SETUP_DOC})")


def check_pvs(config: Config) -> CheckResult:
    from solar_monitor.pipeline import make_client
    from solar_monitor.pvs.errors import PvsAuthError, PvsError, PvsUnreachableError
    from solar_monitor.pvs.parse import parse

    client = make_client(config)
    where = _where(config.pvs.url)
    try:
        raw = client.poll()
        snapshot = parse(raw.body)
    except (PvsAuthError, PvsUnreachableError) as exc:  # their message says what to do
        return CheckResult("FAIL", f"{exc}")
    except PvsError as exc:
        hint = {"lan1": "is the Pi cabled to the PVS LAN1 port and is pvs.url right?",
                "local": "is the bridge (haproxy) running, and is pvs.url right?",
                "home": "is pvs.url the PVS's address on your network? Only LocalAPI "
                        "firmware (build 61845 or later) answers there; older firmware "
                        f"answers only on LAN1 ({SETUP_DOC})"}[where]
        return CheckResult("FAIL", f"{exc}; {hint}")
    _SEEN_SERIALS[:] = [i.serial for i in snapshot.inverters]
    build = f"build {raw.build}" if raw.build else "unknown build"
    model = f"{client.model} " if client.model else ""
    scheme = urlsplit(raw.url).scheme
    works = (f"plain http refused, https works: set pvs.url: {raw.url}"
             if client.switched_to_https else f"{scheme} works")
    return CheckResult("PASS", f"{raw.url}: {model}{build}, {raw.api} API, "
                               f"{len(snapshot.inverters)} inverters, "
                               f"{len(snapshot.meters)} meters; {works}; "
                               f"{_setup(raw.api, where)}")


# The inverters check_pvs saw: the names check reuses its poll (a DeviceList can take two
# minutes, so `check` polls once).
_SEEN_SERIALS: list[str] = []


def check_inverter_names(config: Config) -> CheckResult:
    """The config's `inverters:` names against the serials the PVS lists."""
    from solar_monitor.names import inverter_label

    names = config.inverters
    if not _SEEN_SERIALS:
        return CheckResult("SKIP", "no inverter list from the PVS to compare the names with")
    unknown = [s for s in names if s not in _SEEN_SERIALS]
    unnamed = [s for s in _SEEN_SERIALS if s not in names]
    listed = ", ".join(f"{s} {inverter_label(s, names)}" for s in _SEEN_SERIALS)
    if unknown:
        return CheckResult("WARN", f"inverters: no inverter has serial {', '.join(unknown)} "
                                   f"(a typo, or a replaced one?); the PVS lists: {listed}")
    if not names:
        return CheckResult("PASS", f"{len(_SEEN_SERIALS)} inverters, no names (the config's "
                                   f"'inverters:' can name them): {listed}")
    return CheckResult("PASS", f"{len(names)} named, {len(unnamed)} unnamed: {listed}")


def check_notify(config: Config) -> CheckResult:
    from solar_monitor.notify import check_targets

    ok, detail = check_targets(config)
    return CheckResult("SKIP" if ok is None else "PASS" if ok else "FAIL", detail)


def check_weather(config: Config) -> CheckResult:
    """A WARN, never a FAIL, when the weather service does not answer: weather only
    refines the alerts, and a FAIL would keep the installer from starting the runs, so
    an outage at Open-Meteo during the install would leave the site with no watchdog."""
    from solar_monitor.weather import check_weather as probe

    ok, detail = probe(config)
    return CheckResult("SKIP" if ok is None else "PASS" if ok else "WARN", detail)


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


def check_export(name: str) -> Check:
    """The probe of one export engine, imported only when that export is configured."""
    def check(config: Config) -> CheckResult:
        settings = getattr(config.exports, name)
        if settings is None:
            doc = "docs/home-assistant.md" if name == "mqtt" else "docs/fleet.md"
            return CheckResult("SKIP", f"no exports.{name} section ({doc})")
        from solar_monitor.exports import engine

        ok, detail = engine(name).probe(settings)
        return CheckResult("PASS" if ok else "FAIL", detail)
    return check


CHECKS: list[tuple[str, Check]] = [("site", check_site), ("data_dir", check_data_dir),
                                   ("pvs", check_pvs), ("inverters", check_inverter_names)]
CHECKS.append(("notify", check_notify))
CHECKS.append(("weather", check_weather))
CHECKS.append(("google_sheets", check_google_sheets))
CHECKS.append(("heartbeat", check_heartbeat))
CHECKS += [(f"exports.{name}", check_export(name)) for name in ENGINES]


def run_checks(config: Config) -> bool:
    """Print one line per check; True when none failed."""
    print("PASS config: valid")
    _SEEN_SERIALS.clear()
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
