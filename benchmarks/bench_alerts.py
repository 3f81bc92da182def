"""Backtest the alert rules on simulated site-years with faults injected at known times.

For each site: the simulator (`solar_monitor.emulation.sim`) renders a poll every 15 minutes
for a year into an archive folder in our format (failed polls as `.error.json`), plus an
hourly cloud-cover CSV; `solar-monitor replay --weather CSV --events-out FILE` runs the
real pipeline over it; the alert events are then scored against the ground truth:

- recall: injected faults whose rule opened an alert for the right subject in time;
- latency: from the fault's start (inverter offline/missing: from the first poll with
  the sun >= 15° at or after the start, as a fault at night cannot be seen);
- false alarms: every other `open` event, per site-year (info alerts included).

Traps that must stay quiet: nights, dawn and dusk, overcast spells (the simulator's
weather), snow-covered days, two roof faces, afternoon shade on a few panels, single
(and double) failed polls, the PVS's nightly restart, and the faults' side effects
(the restart of `pvs_rebooted` hides the inverters; a firmware change moves the site to
varserver answers, whose inverters vanish after each nightly restart until sunrise).

    .venv/bin/python benchmarks/bench_alerts.py            # every site-year
    .venv/bin/python benchmarks/bench_alerts.py --days 30  # a quick month
    .venv/bin/python benchmarks/bench_alerts.py --site fw-switch-18      # one site-year
    .venv/bin/python benchmarks/bench_alerts.py --site fw-switch-18 --from 2025-06-06 --days 8
    .venv/bin/python benchmarks/bench_alerts.py --site dropouts-12 --list  # faults, traps
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median
from typing import Any
from zoneinfo import ZoneInfo

from solar_monitor.archive import stamp
from solar_monitor.emulation.emulator import firmware_for_build
from solar_monitor.emulation.sim import (
    CommDropout,
    DataStale,
    DeadInverter,
    FirmwareChange,
    FlappingInverter,
    FlashLow,
    FlashWorn,
    GridOutOfRange,
    MissingInverter,
    PowerLineDropouts,
    ProductionTripped,
    PvsReboot,
    RoofFace,
    ShadedInverters,
    SimulatedSite,
    SiteFault,
    SiteSpec,
    SnowCover,
    StaleInverter,
    UploadBacklog,
    WeakInverter,
)
from solar_monitor.sun import sun_elevation_deg

STEP = timedelta(minutes=15)
YEAR_START = datetime(2025, 1, 1, tzinfo=UTC)
SHORT_START = datetime(2025, 5, 1, tzinfo=UTC)  # short runs: a spring month, not January
DAYLIGHT_DEG = 15.0
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Injected:
    """One injected fault and the alert it must cause (rule on subject, in [start, end+grace])."""

    rule: str
    subject: str
    start: datetime
    end: datetime
    fault: SiteFault | None = None  # a simulator fault, else a payload edit below
    grace: timedelta = timedelta(hours=3)
    from_daylight: bool = False
    snow_gone: datetime | None = None  # overlaps snow: latency also from the snow's end
    also: tuple[str, ...] = ()  # other rules that count as catching it
    what: str = ""  # the fault in words, for the traps list


@dataclass
class PayloadEdits:
    """Faults the simulator has no dataclass for, applied to the rendered answer."""

    outages: list[tuple[datetime, datetime]] = field(default_factory=list)
    failed_polls: set[datetime] = field(default_factory=set)
    meter_gone: list[tuple[datetime, datetime]] = field(default_factory=list)
    hot: list[tuple[datetime, datetime, int]] = field(default_factory=list)
    new_inverter_from: datetime | None = None


@dataclass
class Site:
    name: str
    spec: SiteSpec
    faults: list[Injected]
    edits: PayloadEdits
    start: datetime = YEAR_START
    snow_weather: bool = False  # the weather CSV has Open-Meteo's snow columns
    traps: list[str] = field(default_factory=list)  # what must stay quiet, in words
    earlier: list[Injected] = field(default_factory=list)  # a window's: begun before it


def _local(tz: ZoneInfo, first: datetime, day: int, hour: float) -> datetime:
    """Day `day` (0-based) after the run's first day, at local `hour`, as aware UTC."""
    base = datetime(first.year, first.month, first.day, tzinfo=tz) + timedelta(days=day)
    return (base + timedelta(hours=hour)).astimezone(UTC)


def build_site(name: str, *, seed: int, latitude: float, longitude: float, timezone: str,
               faces: tuple[RoofFace, ...], days: int) -> Site:
    """A site with every rule's fault injected once or twice, spread over `days`."""
    tz = ZoneInfo(timezone)
    n = sum(f.count for f in faces)
    probe = SimulatedSite(SiteSpec(inverter_count=n, seed=seed, roof_faces=faces,
                                   latitude=latitude, longitude=longitude, timezone=timezone))
    serial = probe.inverter_serials
    full = days >= 365
    first = YEAR_START if full else SHORT_START

    def at(when: tuple[int, int | None], hour: float) -> datetime:
        """A (year-run day, short-run day) pair at local `hour`; None: not in short runs."""
        d = when[0] if full else when[1]
        return _local(tz, first, 10_000 if d is None else d, hour)

    inj: list[Injected] = []
    edits = PayloadEdits()
    # --- traps: regular shade on two panels all year, snow spells
    traps: list[SiteFault] = [
        ShadedInverters(inverters=(1, n - 2), from_hour=14.0, to_hour=17.0, factor=0.25),
    ]
    for d0, length in (((18, 19), 3), ((40, None), 2), ((345, None), 2)):
        start = at(d0, 0.0)
        traps.append(SnowCover(start=start, end=start + timedelta(days=length), factor=0.02))
    _failed_polls_weekly(edits, first, days)
    # --- faults, one per rule at least
    dead = DeadInverter(inverter=5, start=at((60, 3), 10.35), end=at((62, 4), 12.0))
    dead2 = DeadInverter(inverter=n - 1, start=at((190, 25), 16.6), end=at((192, 27), 9.0))
    inj += [Injected("inverter_offline", serial[5], dead.start, dead.end, dead,
                     from_daylight=True),  # type: ignore[arg-type]
            Injected("inverter_offline", serial[n - 1], dead2.start, dead2.end, dead2,
                     from_daylight=True)]  # type: ignore[arg-type]
    miss = MissingInverter(inverter=8, start=at((95, 6), 9.15), end=at((96, 7), 15.0))
    inj.append(Injected("inverter_missing", serial[8], miss.start, miss.end, miss,
                        from_daylight=True))  # type: ignore[arg-type]
    weak = WeakInverter(inverter=3, factor=0.6, start=at((123, 9), 0), end=at((140, 16), 0))
    weak2 = WeakInverter(inverter=n - 3, factor=0.6, start=at((275, None), 11.0),
                         end=at((290, None), 0))
    for w in (weak, weak2):
        inj.append(Injected("inverter_underperforming", serial[w.inverter], w.start,  # type: ignore[index]
                            w.end, w, grace=timedelta(days=2)))  # type: ignore[arg-type]
    outages = ((at((152, 8), 13.12), at((152, 8), 17.0)),
               (at((222, 14), 1.0), at((222, 14), 5.0)))
    for start, end in outages:
        edits.outages.append((start, end))
        inj.append(Injected("pvs_unreachable", "system", start, end))
    stale = DataStale(start=at((195, 11), 9.0), end=at((195, 11), 15.0))
    inj.append(Injected("data_stale", "system", stale.start, stale.end, stale))  # type: ignore[arg-type]
    flash = FlashLow(start=at((232, 17), 8.0), end=at((238, 21), 8.0),
                     flash_avail_kib=1500.0, ramp_h=48.0)
    inj.append(Injected("pvs_storage_low", "system", flash.start, flash.end, flash))  # type: ignore[arg-type]
    backlog = UploadBacklog(start=at((248, 19), 6.0), end=at((252, 22), 6.0),
                            records_per_hour=12.0)
    inj.append(Injected("pvs_upload_backlog", "system", backlog.start, backlog.end, backlog))  # type: ignore[arg-type]
    trip = ProductionTripped(start=at((265, 22), 10.0), end=at((267, 23), 17.0))
    inj.append(Injected("production_low", "system", trip.start, trip.end, trip))  # type: ignore[arg-type]
    grid = GridOutOfRange(voltage_v=259.0, start=at((281, 12), 12.0), end=at((281, 12), 14.0))
    grid2 = GridOutOfRange(freq_hz=61.0, start=at((307, 24), 11.0), end=at((307, 24), 11.75))
    for g in (grid, grid2):
        inj.append(Injected("grid_out_of_range", "system", g.start, g.end, g))  # type: ignore[arg-type]
    reboot = PvsReboot(start=at((169, 13), 13.37), missing_s=600.0)
    inj.append(Injected("pvs_rebooted", "system", reboot.start,  # type: ignore[arg-type]
                        reboot.start + timedelta(hours=1), reboot))  # type: ignore[operator]
    edits.failed_polls.add(_next_poll(reboot.start))  # type: ignore[arg-type]
    hot = (at((209, 15), 12.0), at((209, 15), 15.0), 7)
    edits.hot.append(hot)
    inj.append(Injected("inverter_over_temperature", serial[7], hot[0], hot[1]))
    gone = (at((336, 26), 10.0), at((337, 27), 10.0))
    edits.meter_gone.append(gone)
    inj.append(Injected("meter_missing", probe.consumption_meter_serial, gone[0], gone[1]))
    fw = FirmwareChange(build=61846, start=at((293, 28), 10.0))
    inj.append(Injected("firmware_changed", "system", fw.start, fw.start + timedelta(hours=1), fw))  # type: ignore[operator]
    # flash wear is reported by varserver firmware only: after the firmware change
    worn = FlashWorn(start=at((300, 29), 1.0), end=at((302, None), 8.0), tenths=8)
    inj.append(Injected("pvs_flash_wear", "system", worn.start, worn.end, worn))  # type: ignore[arg-type]
    new_at = at((320, 27), 12.0)
    edits.new_inverter_from = new_at
    inj.append(Injected("new_inverter", NEW_SERIAL, new_at, new_at + timedelta(hours=1)))
    end = first + timedelta(days=days) - timedelta(hours=12)  # leave time to detect
    inj = [i for i in inj if i.start < end]
    traps = [t for t in traps if t.start is None or t.start < end + timedelta(hours=12)]
    faults = tuple(traps) + tuple(i.fault for i in inj if i.fault is not None)
    spec = SiteSpec(inverter_count=n, seed=seed, roof_faces=faces, latitude=latitude,
                    longitude=longitude, timezone=timezone, faults=faults, epoch=YEAR_START)
    if edits.new_inverter_from and not any(i.rule == "new_inverter" for i in inj):
        edits.new_inverter_from = None
    edits.meter_gone = [g for g in edits.meter_gone if g[0] < end]
    edits.hot = [h for h in edits.hot if h[0] < end]
    edits.outages = [o for o in edits.outages if o[0] < end]
    return Site(name, spec, inj, edits, first)


NEW_SERIAL = "E00999999999999"
SNOW_DAYS = (8, 20, 33, 45, 57, 68, 79, 318, 333, 348)  # Jan-Mar, Nov-Dec: 10 snowfalls


SNOW_MIN_DEPTH_M = 0.01  # alerts.snow.min_depth_m's default


def _snow_gone(snow: SnowCover) -> datetime:
    """When the snow leaves the weather data: the first poll whose nearest hourly sample
    has less than 1 cm on the ground (15 minutes before that hour), once it stopped
    falling (a snowfall holds 24 h more, but these fall for 6 h and lie for days)."""
    assert snow.start is not None
    h = snow.start.replace(minute=0, second=0, microsecond=0) + timedelta(
        hours=snow.snowfall_h + 1)
    while snow.snow_depth_m(h) >= SNOW_MIN_DEPTH_M:
        h += timedelta(hours=1)
    return max(h - timedelta(minutes=15), snow.start + timedelta(hours=snow.snowfall_h + 24))


def build_snowy_site(name: str, *, seed: int, days: int) -> Site:
    """A snowy year in the northeast: 12 panels in two rows of 6 on a south roof; after
    each of 10 evening snowfalls the array is buried (nothing at all, and on alternate
    snowfalls a production meter at 0: it looks tripped), the top row sheds its snow
    the next day or the one after, the bottom row a day later, and the ground's snow
    (in the weather CSV) melts a day or two after that. Faults start just before, during
    and under the snow; one summer fault is the control.
    """
    latitude, longitude, timezone = 42.36, -71.06, "America/New_York"
    tz = ZoneInfo(timezone)
    face = (RoofFace(180.0, 30.0, 12),)
    probe = SimulatedSite(SiteSpec(inverter_count=12, seed=seed, roof_faces=face))
    serial = probe.inverter_serials
    top, bottom = tuple(range(6)), tuple(range(6, 12))
    snows: list[SnowCover] = []
    for k, day in enumerate(SNOW_DAYS):
        start = _local(tz, YEAR_START, day, 19.0 + k % 3)
        heavy = k % 3 == 0  # a whole day buried: the digest's "hours lost to snow"
        top_clear = _local(tz, YEAR_START, day + (2 if heavy else 1), 11.0 + k % 3)
        bottom_clear = top_clear + timedelta(days=1, hours=k % 4)
        snows.append(SnowCover(start=start, end=bottom_clear + timedelta(hours=20 + 24 * (k % 2)),
                               factor=0.0, rows=(top, bottom), clears_at=(top_clear, bottom_clear),
                               depth_m=0.06 + 0.04 * (k % 5), meter_zero=k % 2 == 0))
    inj: list[Injected] = []
    faults: list[SiteFault] = []

    def add(rule: str, fault: Any, subject: str, snow: SnowCover | None, **kw: Any) -> None:
        faults.append(fault)
        inj.append(Injected(rule, subject, fault.start, fault.end, fault,
                            snow_gone=_snow_gone(snow) if snow else None, **kw))

    s = snows
    dusk = _local(tz, YEAR_START, SNOW_DAYS[1], 16.75)  # just before the snowfall, sun < 15°
    add("inverter_offline", DeadInverter(inverter=8, start=dusk, end=s[1].end + timedelta(days=3)),
        serial[8], s[1], from_daylight=True)
    died = s[3].clears_at[0] + timedelta(hours=2)  # under snow, its top-row peers producing
    add("inverter_offline", DeadInverter(inverter=2, start=died, end=s[3].end + timedelta(days=3)),
        serial[2], s[3], from_daylight=True)
    buried = s[5].start + timedelta(hours=3)  # at night, under the snow
    add("inverter_offline", DeadInverter(inverter=10, start=buried,
                                         end=s[5].end + timedelta(days=3)),
        serial[10], s[5], from_daylight=True)
    gone = s[7].start + timedelta(hours=10)
    add("inverter_missing", MissingInverter(inverter=4, start=gone,
                                            end=s[7].end + timedelta(days=2)),
        serial[4], s[7], from_daylight=True)
    trip = s[8].start + timedelta(hours=14)  # the breaker trips under a buried array
    add("production_low", ProductionTripped(start=trip, end=s[8].end + timedelta(days=2)),
        "system", s[8])
    summer = _local(tz, YEAR_START, 180, 10.35)  # the control, far from any snow
    add("inverter_offline", DeadInverter(inverter=7, start=summer,
                                         end=summer + timedelta(days=2)),
        serial[7], None, from_daylight=True)
    end = YEAR_START + timedelta(days=days) - timedelta(hours=12)
    inj = [i for i in inj if i.start < end]
    traps: list[SiteFault] = [
        ShadedInverters(inverters=(0,), from_hour=14.5, to_hour=17.0, factor=0.25),
        *[f for f in snows if f.start is not None and f.start < end]]
    spec = SiteSpec(inverter_count=12, seed=seed, roof_faces=face, latitude=latitude,
                    longitude=longitude, timezone=timezone, epoch=YEAR_START,
                    faults=tuple(traps) + tuple(i.fault for i in inj if i.fault is not None))
    return Site(name, spec, inj, PayloadEdits(), YEAR_START, snow_weather=True)


def _failed_polls_weekly(edits: PayloadEdits, first: datetime, days: int) -> None:
    """Single and double failed polls (HTTP 503), about weekly, at drifting hours."""
    for k in range(days // 7):
        t = first + timedelta(days=7 * k + 3, hours=(k * 7.3) % 24)
        t = t.replace(minute=(t.minute // 15) * 15, second=0, microsecond=0)
        edits.failed_polls.add(t)
        if k % 4 == 0:
            edits.failed_polls.add(t + STEP)


# --------------------------------------------------------------------------- issue 19
# Three site-years of LocalAPI-era nuisances (see benchmarks/RESULTS-alerts.md). The
# whole-system faults expect these rules; change them here if the rules are renamed.
BREAKER_RULE = "production_low"
FROZEN_RULE = "data_stale"
DEAD_RULES = ("inverter_offline", ("inverter_missing",))  # varserver forgets it at restart
LOCALAPI = {"stale_values": True, "dawn_lag_max_s": 1200.0}  # the varserver as fielded


def _fault(rule: str | tuple[str, tuple[str, ...]], subject: str, fault: Any, what: str,
           **kw: Any) -> Injected:
    """An Injected for a simulator fault; `rule` may carry alternatives (rule, (also...))."""
    name, also = (rule, ()) if isinstance(rule, str) else rule
    return Injected(name, subject, fault.start, fault.end or fault.start + timedelta(hours=1),
                    fault, also=also, what=what, **kw)


PEER_GATE_KW = 0.03  # the rules' min_peer_kw: below it no inverter is judged


def _judged_polls(site: SimulatedSite, tz: ZoneInfo, day: int,
                  gate_kw: float) -> tuple[datetime, ...]:
    """The polls of local day `day` with the sun >= DAYLIGHT_DEG and the median inverter
    at `gate_kw` or more; then the day's last poll with the sun up."""
    t0 = _local(tz, YEAR_START, day, 0.0)
    lat, lon = site.spec.latitude, site.spec.longitude
    up = [t for t in (t0 + STEP * k for k in range(96))
          if sun_elevation_deg(lat, lon, t) >= DAYLIGHT_DEG]
    judged = [t for t in up if median(site.inverter_power_kw(t).values()) >= gate_kw]
    return (*judged, up[-1])


def _finish(name: str, spec: SiteSpec, inj: list[Injected], edits: PayloadEdits,
            traps: list[SiteFault], words: list[str], days: int) -> Site:
    """Keep what starts in the first `days` (12 h left to detect) and build the Site."""
    end = YEAR_START + timedelta(days=days) - timedelta(hours=12)
    inj = [i for i in inj if i.start < end]
    kept = [t for t in traps if t.start is None or t.start < end + timedelta(hours=12)]
    spec = replace(spec, faults=tuple(kept) + tuple(i.fault for i in inj if i.fault))
    return Site(name, spec, inj, edits, YEAR_START, traps=words)


def build_fw_switch_site(name: str, *, seed: int, days: int) -> Site:
    """18 panels on two faces, San Diego: legacy DeviceList until an over-the-air update
    in April, then the varserver as fielded (stale values, late listing, dawn lag).
    A dead inverter before the switch; after it a dead inverter, a tripped breaker,
    frozen data (the PVS's clock moving), an inverter the varserver serves for days."""
    lat, lon, tzname = 32.72, -117.16, "America/Los_Angeles"
    tz = ZoneInfo(tzname)
    faces = (RoofFace(180.0, 22.0, 10), RoofFace(270.0, 22.0, 8))
    spec = SiteSpec(inverter_count=18, seed=seed, roof_faces=faces, latitude=lat,
                    longitude=lon, timezone=tzname, epoch=YEAR_START, build=61839, **LOCALAPI)
    sn = SimulatedSite(spec).inverter_serials

    def at(day: int, hour: float) -> datetime:
        return _local(tz, YEAR_START, day, hour)

    edits = PayloadEdits()
    _failed_polls_weekly(edits, YEAR_START, days)
    traps: list[SiteFault] = [ShadedInverters(inverters=(2, 12), from_hour=14.0, to_hour=17.0)]
    fw = FirmwareChange(build=61846, start=at(100, 10.0))
    inj = [
        _fault("inverter_offline", sn[4], DeadInverter(inverter=4, start=at(60, 10.35),
               end=at(62, 12.0)), "dead inverter, legacy DeviceList", from_daylight=True),
        _fault("firmware_changed", "system", fw, "update 61839 -> 61846: DeviceList -> /vars"),
        _fault(DEAD_RULES, sn[9], DeadInverter(inverter=9, start=at(130, 10.35),
               end=at(132, 12.0)), "dead inverter, varserver keeps its last values",
               from_daylight=True),
        _fault(BREAKER_RULE, "system", ProductionTripped(start=at(160, 11.0), end=at(162, 17.0)),
               "breaker tripped: inverters stale at their last ~0.1-0.3 kW, meter 0; "
               "one alert, no inverter alerts"),
        _fault(FROZEN_RULE, "system", DataStale(start=at(200, 9.0), end=at(200, 15.0)),
               "hung PVS: every value and msmtEps frozen, /sys/livedata/time moving"),
        _fault(DEAD_RULES, sn[14], StaleInverter(inverter=14, start=at(230, 13.0),
               end=at(235, 13.0)), "dead inverter served stale for 5 days, across restarts",
               from_daylight=True),
        _fault(DEAD_RULES, sn[17], DeadInverter(inverter=17, start=at(290, 17.5),
               end=at(292, 9.0)), "dead at dusk: stale overnight, unlisted after the restart",
               from_daylight=True),
    ]
    words = ["nights: every inverter keeps its dusk values (non-zero kW) until the 02:xx "
             "restart, then is unlisted until it reports (after the switch)",
             "dawn: each inverter listed 0-20 min after it starts producing (after the switch)",
             "afternoon shade on two panels (25 %, 14:00-17:00, all year)",
             "single and double failed polls, about weekly",
             "the simulator's clouds; the nightly restart"]
    return _finish(name, spec, inj, edits, traps, words, days)


def build_dropout_site(name: str, *, seed: int, days: int) -> Site:
    """12 panels facing south, Atlanta, legacy DeviceList: power-line dropouts all year,
    one inverter flapping for a week, a dusk-then-morning dropout; real faults too."""
    lat, lon, tzname = 33.75, -84.39, "America/New_York"
    tz = ZoneInfo(tzname)
    faces = (RoofFace(180.0, 25.0, 12),)
    spec = SiteSpec(inverter_count=12, seed=seed, roof_faces=faces, latitude=lat,
                    longitude=lon, timezone=tzname, epoch=YEAR_START, build=61839)
    probe = SimulatedSite(spec)
    sn = probe.inverter_serials

    def at(day: int, hour: float) -> datetime:
        return _local(tz, YEAR_START, day, hour)

    edits = PayloadEdits()
    _failed_polls_weekly(edits, YEAR_START, days)
    traps: list[SiteFault] = [
        PowerLineDropouts(per_day=5.0, max_inverters=3, max_polls=2, stale_share=0.5),
        FlappingInverter(inverter=6, start=at(150, 0.0), end=at(157, 0.0)),
        ShadedInverters(inverters=(0,), from_hour=15.0, to_hour=17.5),
    ]
    # the counting trap: out at dusk from the last poll with peers at twice the gate
    # until the sun is under 15° (one or two judged polls), and for the first two
    # judged polls of the next morning (absent: counted by inverter_missing; stale in
    # STATE error: by inverter_offline)
    overnight = []
    for inverter, day, mode in ((3, 120, "absent"), (9, 135, "stale")):
        dusk, last_up = _judged_polls(probe, tz, day, 2 * PEER_GATE_KW)[-2:]
        morning = _judged_polls(probe, tz, day + 1, PEER_GATE_KW)[0]
        minute = timedelta(minutes=1)
        traps += [CommDropout(inverters=(inverter,), mode=mode,  # type: ignore[arg-type]
                              start=dusk - minute, end=last_up + STEP - minute),
                  CommDropout(inverters=(inverter,), mode=mode,  # type: ignore[arg-type]
                              start=morning - minute, end=morning + 2 * STEP - minute)]
        overnight.append(f"inverter …{sn[inverter][-5:]} {mode} at dusk from "
                         f"{dusk:%Y-%m-%d %H:%M} UTC (peers >= {2 * PEER_GATE_KW} kW) until "
                         f"the sun is under 15°, and for the first two judged polls from "
                         f"{morning:%Y-%m-%d %H:%M} UTC: not three bad polls in a row")
    inj = [
        _fault("inverter_offline", sn[8], DeadInverter(inverter=8, start=at(100, 10.35),
               end=at(102, 12.0)), "dead inverter amid the dropouts", from_daylight=True),
        _fault("inverter_offline", sn[10], DeadInverter(inverter=10, start=at(153, 11.0),
               end=at(155, 12.0)), "dead inverter during the flapping week",
               from_daylight=True),
        _fault("inverter_missing", sn[2], MissingInverter(inverter=2, start=at(250, 9.25),
               end=at(251, 15.0)), "inverter lost by the PVS for 30 h (not a dropout)",
               from_daylight=True),
        _fault("production_low", "system", ProductionTripped(start=at(300, 10.0),
               end=at(301, 17.0)), "breaker tripped (DeviceList: all in error, meter 0)"),
    ]
    noise = traps[0]
    assert isinstance(noise, PowerLineDropouts)
    events = [e for d in range(_epoch_day(YEAR_START), _epoch_day(YEAR_START) + days)
              for e in probe._line_events(noise, d)]
    lit = [e for e in events if sun_elevation_deg(lat, lon, _next_poll(
        datetime.fromtimestamp(e[0], UTC))) >= DAYLIGHT_DEG]
    words = [f"power-line dropouts all year: {len(events)} (~5 a day, day and night; "
             f"{len(lit)} starting with the sun >= 15°), 1-3 inverters, 1-2 polls, absent "
             "or STATE error with stale values and DATATIME",
             f"flapping week {at(150, 0):%Y-%m-%d}..{at(157, 0):%Y-%m-%d} local: inverter "
             f"…{sn[6][-5:]} out 1-3 polls every hour, producing throughout",
             *overnight,
             "late-afternoon shade on one panel; weekly failed polls; clouds; restarts"]
    return _finish(name, spec, inj, edits, traps, words, days)


def build_no_meter_site(name: str, *, seed: int, days: int) -> Site:
    """10 panels on east and west faces, Denver, LocalAPI all year (as fielded), no
    production or consumption meter: the rules have only the inverters."""
    lat, lon, tzname = 39.74, -104.99, "America/Denver"
    tz = ZoneInfo(tzname)
    faces = (RoofFace(135.0, 30.0, 5), RoofFace(225.0, 30.0, 5))
    spec = SiteSpec(inverter_count=10, seed=seed, roof_faces=faces, latitude=lat,
                    longitude=lon, timezone=tzname, epoch=YEAR_START, build=61846,
                    production_meter=False, consumption_subtype=None, **LOCALAPI)
    sn = SimulatedSite(spec).inverter_serials

    def at(day: int, hour: float) -> datetime:
        return _local(tz, YEAR_START, day, hour)

    edits = PayloadEdits()
    _failed_polls_weekly(edits, YEAR_START, days)
    outage = (at(180, 13.12), at(180, 17.0))
    edits.outages.append(outage)
    inj = [
        _fault(DEAD_RULES, sn[3], DeadInverter(inverter=3, start=at(80, 10.35),
               end=at(82, 12.0)), "dead inverter (stale values, no meter)",
               from_daylight=True),
        _fault("inverter_underperforming", sn[6], WeakInverter(inverter=6, factor=0.6,
               start=at(140, 0.0), end=at(157, 0.0)), "40 % weak inverter, 17 days",
               grace=timedelta(days=2)),
        Injected("pvs_unreachable", "system", outage[0], outage[1],
                 what="PVS unreachable (HTTP 503) for 4 h"),
        _fault(FROZEN_RULE, "system", DataStale(start=at(210, 9.0), end=at(210, 15.0)),
               "hung PVS: values frozen, clock moving"),
        _fault(BREAKER_RULE, "system", ProductionTripped(start=at(260, 10.0),
               end=at(262, 17.0)), "breaker tripped: every inverter stale, no meter; "
               "one alert"),
        _fault("inverter_missing", sn[8], MissingInverter(inverter=8, start=at(300, 9.25),
               end=at(301, 15.0)), "inverter absent from /vars for 30 h", from_daylight=True),
    ]
    words = ["no meter at all: meter_missing must stay quiet",
             "nights: stale dusk values until the restart; dawn listing lag up to 20 min",
             "weekly failed polls; clouds; the nightly restart"]
    return _finish(name, spec, inj, edits, [], words, days)


def _epoch_day(t: datetime) -> int:
    return int(t.timestamp() // 86400)


def _next_poll(t: datetime) -> datetime:
    base = t.replace(minute=(t.minute // 15) * 15, second=0, microsecond=0)
    return base + STEP


def _inside(t: datetime, spans: list[tuple[datetime, datetime]]) -> bool:
    return any(a <= t < b for a, b in spans)


def render(site: SimulatedSite, s: Site, t: datetime) -> dict[str, Any]:
    """The answer the collector would archive at `t`, with the payload-level faults."""
    e = s.edits
    if firmware_for_build(site.build_at(t), site.spec.model) == "varserver":
        doc: dict[str, Any] = site.vars(t)
        if _inside(t, e.meter_gone):
            doc = {k: v for k, v in doc.items() if not k.startswith("/sys/devices/meter/1/")}
        for a, b, i in e.hot:
            if a <= t < b:
                for k in doc:
                    if k.startswith("/sys/devices/inverter/") and k.endswith("/sn") and \
                            doc[k] == site.inverter_serials[i]:
                        doc[k[:-2] + "tHtsnkDegc"] = "91"
        if e.new_inverter_from and t >= e.new_inverter_from:
            first = {k: v for k, v in doc.items() if k.startswith("/sys/devices/inverter/0/")}
            for k, v in first.items():
                doc[k.replace("/inverter/0/", "/inverter/99/")] = NEW_SERIAL if k.endswith(
                    "/sn") else v
        return doc
    doc = site.device_list(t)
    devices = doc["devices"]
    assert isinstance(devices, list)
    if _inside(t, e.meter_gone):
        devices[:] = [d for d in devices if d.get("SERIAL") != site.consumption_meter_serial]
    for a, b, i in e.hot:
        if a <= t < b:
            for d in devices:
                if d.get("SERIAL") == site.inverter_serials[i] and "t_htsnk_degc" in d:
                    d["t_htsnk_degc"] = "91"
    if e.new_inverter_from and t >= e.new_inverter_from:
        twin = next(d for d in devices if d.get("DEVICE_TYPE") == "Inverter")
        devices.append({**twin, "SERIAL": NEW_SERIAL, "DESCR": f"Inverter {NEW_SERIAL}"})
    return doc


def write_archive(s: Site, days: int, data: Path) -> tuple[int, Path]:
    """Archive files under data/raw (no fsync: a benchmark, not a collector) and the
    weather CSV. Returns (files, weather path)."""
    site = SimulatedSite(s.spec)
    raw = data / "raw"
    t = s.start
    end = s.start + timedelta(days=days)
    count = 0
    weather = data.parent / f"{s.name}-weather.csv"
    with weather.open("w") as w:
        if s.snow_weather:  # as Open-Meteo's CSV export writes it: metadata lines first
            w.write("latitude,longitude,elevation,utc_offset_seconds,timezone,"
                    f"timezone_abbreviation\n{s.spec.latitude},{s.spec.longitude},14.0,0,"
                    "GMT,GMT\n\ntime,cloud_cover (%),snow_depth (m),snowfall (cm)\n")
        else:
            w.write("time,cloud_cover\n")
        h = s.start
        while h < end:
            snow = f",{site.snow_depth_m(h)},{site.snowfall_cm(h)}" if s.snow_weather else ""
            stamp_ = f"{h:%Y-%m-%dT%H:%M}" if s.snow_weather else f"{h:%Y-%m-%dT%H:%M:%SZ}"
            w.write(f"{stamp_},{site.cloud_cover_pct(h)}{snow}\n")
            h += timedelta(hours=1)
    while t < end:
        folder = raw / f"{t:%Y}" / f"{t:%m}" / f"{t:%d}"
        folder.mkdir(parents=True, exist_ok=True)
        if t in s.edits.failed_polls or _inside(t, s.edits.outages):
            record = {"error": "PVS did not answer (HTTP 503)", "http_status": 503}
            (folder / f"{stamp(t)}.error.json").write_text(json.dumps(record) + "\n")
        else:
            body = json.dumps(render(site, s, t)).encode()
            (folder / f"{stamp(t)}.json.gz").write_bytes(gzip.compress(body, 1, mtime=0))
        count += 1
        t += STEP
    return count, weather


def replay_site(s: Site, days: int, workdir: Path) -> dict[str, Any]:
    """Generate, replay through the CLI, score. Runs in a worker process."""
    data = workdir / s.name / "data"
    data.mkdir(parents=True)
    started = time.monotonic()
    files, weather = write_archive(s, days, data)
    generated = time.monotonic() - started
    config = workdir / s.name / "config.yaml"
    config.write_text(json.dumps({
        "site": {"latitude": s.spec.latitude, "longitude": s.spec.longitude,
                 "timezone": s.spec.timezone, "name": s.name},
        "pvs": {"url": "http://127.0.0.1:9"}, "data_dir": str(data),
        "csv": {"enabled": False},
        # replay reads --weather FILE only with weather on (it never calls the URL); the
        # two first sites have always run with it off, so their figures stay comparable
        "weather": {"enabled": s.snow_weather, "url": "http://127.0.0.1:9/v1/forecast"}}))
    config.chmod(0o600)
    events = workdir / s.name / "events.jsonl"
    started = time.monotonic()
    subprocess.run([str(REPO / ".venv" / "bin" / "solar-monitor"), "replay", "--quiet",
                    "--config", str(config), "--weather", str(weather),
                    "--events-out", str(events), str(data / "raw")],
                   check=True, capture_output=True)
    replayed = time.monotonic() - started
    lines = [json.loads(x) for x in events.read_text().splitlines() if x.strip()]
    return {"site": s.name, "files": files, "generate_s": generated, "replay_s": replayed,
            **score(s, lines, days)}


def _first_daylight(s: Site, start: datetime) -> datetime:
    t = _next_poll(start - timedelta(seconds=1)) if start.minute % 15 or start.second else start
    while sun_elevation_deg(s.spec.latitude, s.spec.longitude, t) < DAYLIGHT_DEG:
        t += STEP
    return t


def score(s: Site, events: list[dict[str, Any]], days: int) -> dict[str, Any]:
    """Match `open` events to injected faults; the rest are false alarms."""
    opens = [e for e in events if e["event"] == "open"]
    used: set[int] = set()
    per_fault = []
    for f in s.faults:
        ref = _first_daylight(s, f.start) if f.from_daylight else f.start
        after_snow = _first_daylight(s, max(f.start, f.snow_gone)) if f.snow_gone else None
        hit = None
        mine = 0
        for k, e in enumerate(opens):
            t = datetime.fromisoformat(e["time"].replace("Z", "+00:00"))
            if (e["rule"] == f.rule or e["rule"] in f.also) and e["subject"] == f.subject \
                    and f.start <= t <= f.end + f.grace:
                if hit is None:
                    hit = (k, t, e["rule"])
                mine += 1
                used.add(k)  # a second open for the same fault is a flap, not a new alarm
        latency = (hit[1] - ref).total_seconds() / 3600 if hit else None
        per_fault.append({"rule": hit[2] if hit else f.rule, "subject": f.subject,
                          "start": f.start.isoformat(),
                          "detected": hit is not None, "latency_h": latency,
                          "flaps": max(0, mine - 1),
                          "snow_gone": f.snow_gone.isoformat() if f.snow_gone else None,
                          "after_snow_h": (hit[1] - after_snow).total_seconds() / 3600
                          if hit and after_snow else None})
    for f in s.earlier:
        for k, e in enumerate(opens):
            if (e["rule"] == f.rule or e["rule"] in f.also) and e["subject"] == f.subject:
                used.add(k)
    false = [opens[k] for k in range(len(opens)) if k not in used]
    return {"faults": per_fault, "false_alarms": false, "days": days,
            "events": len(events)}


def sites(days: int, snowy: bool = True) -> list[Site]:
    """Every site-year: the two first, the snowy year, and issue 19's three."""
    return [
        build_site("boston-12", seed=7, latitude=42.36, longitude=-71.06,
                   timezone="America/New_York", days=days,
                   faces=(RoofFace(180.0, 25.0, 6), RoofFace(250.0, 25.0, 6))),
        build_site("sacramento-30", seed=11, latitude=38.58, longitude=-121.49,
                   timezone="America/Los_Angeles", days=days,
                   faces=(RoofFace(90.0, 20.0, 12), RoofFace(180.0, 20.0, 18))),
    ] + ([build_snowy_site("snowy-boston-12", seed=13, days=days)] if snowy else []) + [
        build_fw_switch_site("fw-switch-18", seed=17, days=days),
        build_dropout_site("dropouts-12", seed=19, days=days),
        build_no_meter_site("no-meters-10", seed=23, days=days),
    ]


def table(results: list[dict[str, Any]]) -> str:
    """The Markdown table for the README: per rule recall, latency, and false alarms."""
    by_rule: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        for f in r["faults"]:
            by_rule.setdefault(f["rule"], []).append(f)
    site_years = sum(r["days"] for r in results) / 365.0
    false = [e for r in results for e in r["false_alarms"]]
    lines = ["| rule | injected | detected | recall | latency median | latency max |",
             "|---|---:|---:|---:|---:|---:|"]
    for rule, faults in by_rule.items():
        lat = [f["latency_h"] for f in faults if f["latency_h"] is not None]
        lines.append(f"| `{rule}` | {len(faults)} | {sum(f['detected'] for f in faults)} | "
                     f"{100 * sum(f['detected'] for f in faults) / len(faults):.0f} % | "
                     f"{_hours(median(lat)) if lat else '-'} | "
                     f"{_hours(max(lat)) if lat else '-'} |")
    total = sum(len(f) for f in by_rule.values())
    found = sum(f["detected"] for fs in by_rule.values() for f in fs)
    lines.append(f"| **all** | {total} | {found} | {100 * found / max(total, 1):.0f} % | | |")
    lines.append("")
    lines.append(f"False alarms: **{len(false)}** in {site_years:.2f} site-years "
                 f"= **{len(false) / max(site_years, 1e-9):.2f} per site-year**"
                 + ("" if not false else " (" + "; ".join(
                     f"{e['rule']} {e['subject']} at {e['time']}" for e in false[:5]) + ")"))
    return "\n".join(lines)


def snow_table(result: dict[str, Any]) -> str:
    """The snowy year: every fault, how long after the snow left the weather data it was
    caught, and the false alarms (the target: none)."""
    lines = ["| fault | starts (UTC) | snow gone (UTC) | detected | latency | after the snow |",
             "|---|---|---|---|---:|---:|"]
    for f in result["faults"]:
        after = f["after_snow_h"]
        who = f["subject"] if f["subject"] == "system" else "…" + f["subject"][-5:]
        lines.append(f"| `{f['rule']}` {who} | {f['start'][:16]} | "
                     f"{(f['snow_gone'] or '-')[:16]} | {'yes' if f['detected'] else 'NO'} | "
                     f"{_hours(f['latency_h']) if f['latency_h'] is not None else '-'} | "
                     f"{_hours(after) if after is not None else '-'} |")
    false = result["false_alarms"]
    lines.append("")
    lines.append(f"False alarms: **{len(false)}** in {result['days']} days with "
                 f"{sum(1 for d in SNOW_DAYS if d < result['days'])} snowfalls"
                 + ("" if not false else " (" + "; ".join(
                     f"{e['rule']} {e['subject']} at {e['time']}" for e in false[:5]) + ")"))
    return "\n".join(lines)


def _hours(h: float) -> str:
    return f"{h * 60:.0f} min" if h < 2 else (f"{h:.1f} h" if h < 48 else f"{h / 24:.1f} d")


def window(s: Site, start: datetime, days: int) -> Site:
    """The site from `start` for `days`: the faults that start inside (12 h before the
    end at the latest) are scored; those begun before and still on (a firmware update)
    stay in effect, and their alerts are neither scored nor false alarms."""
    end = start + timedelta(days=days) - timedelta(hours=12)
    injected = [i.fault for i in s.faults if i.fault is not None]
    kept = [i for i in s.faults if start <= i.start < end]
    earlier = [i for i in s.faults if i.start < start and (
        i.fault is None or i.fault.end is None or i.fault.end > start)]
    traps = tuple(f for f in s.spec.faults if f not in injected)
    spec = replace(s.spec, faults=traps + tuple(i.fault for i in earlier + kept if i.fault))
    return Site(s.name, spec, kept, s.edits, start, s.snow_weather, s.traps, earlier)


def choose(days: int, names: list[str] | None = None,
           start: datetime | None = None) -> list[Site]:
    """The site-years to run: all, or those named; from `start` (a window of the full
    year: its faults as in the year run) or, without it, each site's own layout."""
    chosen = sites(days) if start is None else [window(s, start, days) for s in sites(365)]
    if names:
        unknown = set(names) - {s.name for s in chosen}
        if unknown:
            raise SystemExit(f"unknown site {sorted(unknown)}: "
                             f"choose from {[s.name for s in sites(1)]}")
        chosen = [s for s in chosen if s.name in names]
    return chosen


def describe(s: Site) -> str:
    """Every injected fault and every trap of a site, for RESULTS-alerts.md."""
    lines = [f"**{s.name}** ({s.spec.inverter_count} inverters, {s.spec.latitude}, "
             f"{s.spec.longitude}, build {s.spec.build}"
             + (", LocalAPI as fielded" if s.spec.stale_values else "")
             + ("" if s.spec.production_meter else ", no meters") + ")", "",
             "| fault | starts (UTC) | ends (UTC) | expected verdict |", "|---|---|---|---|"]
    for f in s.faults:
        verdict = " or ".join(f"`{r}`" for r in (f.rule, *f.also))
        who = f.subject if f.subject == "system" else "…" + f.subject[-5:]
        lines.append(f"| {f.what or f.rule} | {f.start:%Y-%m-%d %H:%M} | "
                     f"{f.end:%Y-%m-%d %H:%M} | {verdict} on {who}"
                     + (" ¹" if f.from_daylight else "") + " |")
    lines += ["", "¹ latency counted from the first poll with the sun >= 15° at or after "
              "the start.", "", "Traps (must stay quiet):", ""] + [f"- {t}" for t in s.traps]
    return "\n".join(lines)


def fault_table(result: dict[str, Any]) -> str:
    """One site-year, fault by fault: detected, latency; then its false alarms."""
    lines = ["| fault | starts (UTC) | detected | latency |", "|---|---|---|---:|"]
    for f in result["faults"]:
        who = f["subject"] if f["subject"] == "system" else "…" + f["subject"][-5:]
        lines.append(f"| `{f['rule']}` {who} | {f['start'][:16]} | "
                     f"{'yes' if f['detected'] else 'NO'} | "
                     f"{_hours(f['latency_h']) if f['latency_h'] is not None else '-'} |")
    false = result["false_alarms"]
    lines.append("")
    lines.append(f"False alarms: **{len(false)}** in {result['days']} days"
                 + ("" if not false else " (" + "; ".join(
                     f"{e['rule']} {e['subject'][-5:]} at {e['time'][:16]}"
                     for e in false[:40]) + ")"))
    return "\n".join(lines)


FIRST_SITES = ("boston-12", "sacramento-30")


def run(days: int, jobs: int, echo: Callable[[str], None] = print,
        keep: Path | None = None, names: list[str] | None = None,
        start: datetime | None = None) -> tuple[list[dict[str, Any]], str]:
    chosen = choose(days, names, start)
    with tempfile.TemporaryDirectory(prefix="bench-alerts-") as tmp:
        workdir = keep or Path(tmp)
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(replay_site, chosen, [days] * len(chosen),
                                    [workdir] * len(chosen)))
    for r in results:
        echo(f"{r['site']}: {r['files']} polls, generated in {r['generate_s']:.0f} s, "
             f"replayed in {r['replay_s']:.0f} s ({r['files'] / r['replay_s']:.0f} polls/s), "
             f"{r['events']} alert events")
        for f in r["faults"]:
            lat = "missed" if f["latency_h"] is None else _hours(f["latency_h"])
            echo(f"  {f['rule']:<26} {f['subject']:<16} {f['start'][:16]}  {lat}"
                 + (f"  ({f['flaps']} re-open)" if f["flaps"] else ""))
        for e in r["false_alarms"]:
            echo(f"  FALSE ALARM {e['time']} {e['rule']} {e['subject']}: {e['message'][:90]}")
    faults = [f for r in results for f in r["faults"]]
    echo(f"all: {sum(f['detected'] for f in faults)}/{len(faults)} faults caught, "
         f"{sum(len(r['false_alarms']) for r in results)} false alarms")
    first = [r for r in results if r["site"] in FIRST_SITES]
    text = table(first) if first else ""
    for r in results:
        if r["site"].startswith("snowy"):
            text += f"\n\n{r['site']}, a snowy year:\n\n" + snow_table(r)
        elif r not in first:
            text += f"\n\n{r['site']}:\n\n" + fault_table(r)
    return results, text.strip()


def _date(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=365, help="simulated days per site")
    parser.add_argument("--jobs", type=int, default=2, help="sites replayed in parallel")
    parser.add_argument("--write", type=Path, help="also write the table to this file")
    parser.add_argument("--keep", type=Path, help="keep the archives and events here")
    parser.add_argument("--site", action="append", metavar="NAME",
                        help="run only this site-year (repeatable)")
    parser.add_argument("--from", dest="start", type=_date, metavar="YYYY-MM-DD",
                        help="start here (UTC) in the year run's layout; with --days, a "
                             "short window around a fault (start it 3+ days before)")
    parser.add_argument("--list", action="store_true",
                        help="print each site's faults and traps, run nothing")
    args = parser.parse_args(argv)
    if args.list:
        for s in choose(args.days, args.site, args.start):
            print(describe(s) + "\n")
        return 0
    started = time.monotonic()
    results, text = run(args.days, args.jobs, keep=args.keep, names=args.site,
                        start=args.start)
    print()
    print(text)
    how = " ".join([f"--days {args.days}", *(f"--site {n}" for n in args.site or ()),
                    *([f"--from {args.start:%Y-%m-%d}"] if args.start else [])])
    print(f"\n({time.monotonic() - started:.0f} s; "
          f"`.venv/bin/python benchmarks/bench_alerts.py {how}`)")
    if args.write:
        args.write.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
