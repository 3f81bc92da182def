"""`solar-monitor demo`: the whole pipeline on the built-in emulator, no hardware, no config.

Starts a simulated PVS6 (new firmware: LocalAPI login with its Secure session cookie +
varserver, plain http like the default pvs.url) on loopback, runs a few
simulated days of 15-minute cron runs through `run_once` in fast time, and writes
everything to ./demo-data/.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from solar_monitor.config import Config, config_from_dict

MARKER = ".solar-monitor-demo"
SITE = {"name": "Demo house", "latitude": 42.36, "longitude": -71.06,
        "timezone": "America/New_York"}
FIRST_DAY = date(2026, 6, 9)
STEP = timedelta(minutes=15)


def demo_config(out: Path, pvs_url: str) -> dict:
    from solar_monitor.emulation.emulator import WEATHER_PATH

    """The config a user would write for this site (saved next to the demo data)."""
    return {
        "site": dict(SITE),
        "pvs": {"url": pvs_url, "api": "auto", "poll_budget_s": 20.0,
                "request_timeout_s": 10.0},
        "data_dir": str(out.resolve()),
        # the emulator serves the simulated sky in Open-Meteo's shape: no internet needed
        "weather": {"url": pvs_url + WEATHER_PATH},
    }


def demo_site(days: int):  # -> SimulatedSite (import kept local: only the demo needs it)
    """Two roof faces of six panels, like the owner's; one inverter dies on day 2."""
    from solar_monitor.emulation.sim import DeadInverter, RoofFace, SimulatedSite, SiteSpec

    tz = ZoneInfo(SITE["timezone"])
    day2 = datetime.combine(FIRST_DAY + timedelta(days=1), datetime.min.time(), tzinfo=tz)
    faults = (DeadInverter(inverter=4, start=day2 + timedelta(hours=11),
                           end=day2 + timedelta(hours=11 + 24 + 2)),) if days >= 2 else ()
    spec = SiteSpec(latitude=SITE["latitude"], longitude=SITE["longitude"],
                    timezone=SITE["timezone"], inverter_count=12, seed=7,
                    roof_faces=(RoofFace(180.0, 25.0, 6), RoofFace(250.0, 25.0, 6)),
                    build=61846, faults=faults,
                    epoch=datetime.combine(FIRST_DAY, datetime.min.time(), tzinfo=UTC))
    return SimulatedSite(spec)


def _prepare(out: Path) -> str | None:
    """Empty `out` if it is ours (or absent); a reason to refuse otherwise."""
    if out.exists():
        if not (out / MARKER).exists() and any(out.iterdir()):
            return f"{out} exists and is not demo output; pass --out to choose another folder"
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("created by solar-monitor demo; safe to delete\n")
    return None


def run_demo(out: Path, days: int = 3, echo: Callable[[str], None] = print) -> int:
    """Run `days` simulated days; print what happened and where the files are."""
    import yaml

    from solar_monitor.daily import summarize_day
    from solar_monitor.emulation.emulator import start_emulator
    from solar_monitor.pipeline import open_store, run_once
    from solar_monitor.runlog import RunEnd, record_run

    logging.getLogger().setLevel(logging.WARNING)  # the summary below says what happened
    if days < 1 or days > 60:
        echo("solar-monitor demo: --days must be between 1 and 60")
        return 2
    if reason := _prepare(out):
        echo(f"solar-monitor demo: {reason}")
        return 2
    tz = ZoneInfo(SITE["timezone"])
    clock = [datetime.combine(FIRST_DAY, datetime.min.time(), tzinfo=tz).astimezone(UTC)]
    site = demo_site(days)
    started = time.monotonic()
    with start_emulator(site, firmware="varserver", clock=lambda: clock[0]) as emulator:
        raw = demo_config(out, emulator.url)
        config: Config = config_from_dict(raw, env={})
        (out / "config.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        echo(f"solar-monitor demo: {days} simulated day(s) of a 12-panel site near Boston")
        echo(f"  PVS emulator on {emulator.url} (firmware build 61846: LocalAPI login, "
             f"Secure session cookie, varserver)")
        echo("  one run every 15 simulated minutes, as cron would do")
        end = clock[0] + timedelta(days=days)
        failed = 0
        while clock[0] < end:
            report = run_once(config, now=clock[0])
            failed += not report.ok
            # as `run` does after each run (no heartbeat: the demo never pings)
            record_run(config, RunEnd(clock[0], "ok" if report.ok else "poll_failed",
                                      0 if report.ok else 1, report.error), None, None,
                       finished_at=clock[0])
            clock[0] += STEP
    with open_store(config) as store:
        echo("")
        echo("  day         polls   production   peak               inverters")
        for offset in range(days):
            s = summarize_day(store, tz, FIRST_DAY + timedelta(days=offset))
            peak = (f"{s.peak_kw:5.2f} kW at {s.peak_at.astimezone(tz):%H:%M}"
                    if s.peak_kw is not None and s.peak_at else "-")
            weakest = min(s.inverter_kwh.values(), default=None)
            inv = (f"{len(s.inverter_kwh)} reporting, lowest {weakest:.2f} kWh"
                   if weakest is not None else "-")
            echo(f"  {s.day}  {s.polls_ok:3d}/{s.polls:<3d}  {s.production_kwh or 0:7.2f} kWh"
                 f"  {peak:<17}  {inv}")
        polls = store.db.execute("SELECT count(*) FROM polls").fetchone()[0]
        digest = _write_digest(config, store, out, clock[0])
    echo("")
    echo(f"  {polls} polls in {time.monotonic() - started:.1f} s ({failed} failed)")
    echo("Files:")
    raw_files = sum(1 for p in (out / "raw").rglob("*") if p.is_file())
    echo(f"  raw PVS answers  {out / 'raw'}/YYYY/MM/DD/  ({raw_files} files)")
    echo(f"  database         {out / 'solar-monitor.db'}")
    echo(f"  CSV              {out / 'csv' / 'readings.csv'}, "
         f"{out / 'csv' / 'inverters-YYYY-MM.csv'}")
    echo(f"  config used      {out / 'config.yaml'}")
    echo(f"  e-mail digest    {digest}  (open it in a browser)")
    echo(f"Try: {_command()} parse {_first_raw(out)}")
    from solar_monitor.rules.stage import alert_lines

    with open_store(config) as store:
        lines = alert_lines(store, tz)
    echo("Alert events (each one e-mail when notify targets are configured):")
    for line in lines or ["  none"]:
        echo(line)
    from solar_monitor.sinks.sheets import iter_preview

    with open_store(config) as store:
        preview = list(iter_preview(store, tz))
    echo("Google Sheet (dry run, no google_sheets section): the last rows it would send")
    for line in preview or ["none"]:
        echo("  " + line)
    sys.stdout.flush()
    return 0


def _write_digest(config: Config, store: Any, out: Path, now: datetime) -> Path:
    """The monthly digest of the demo's month (June 2026) as an HTML file."""
    from solar_monitor.digest.render import render_html
    from solar_monitor.digest.send import build_for

    path = out / f"digest-{FIRST_DAY:%Y-%m}.html"
    path.write_text(render_html(build_for(config, store, FIRST_DAY, now)), encoding="utf-8")
    return path


def _command() -> str:
    """How to call solar-monitor from here: the venv's script ('.venv/bin/solar-monitor'
    after `make demo`), since a venv's bin is not on PATH."""
    script = Path(sys.executable).parent / "solar-monitor"
    if not script.exists():
        return f"{sys.executable} -m solar_monitor"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def _first_raw(out: Path) -> Path:
    files = sorted((out / "raw").rglob("*.json.gz"))
    return files[len(files) // 2] if files else out / "raw"
