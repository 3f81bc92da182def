"""Freshness per value (issue 19), on hand-built new-firmware snapshots and a real database.

The varserver keeps a silent inverter's last values with their old measurement time
(`msmtEps`); a hung PVS keeps its own clock moving while every device value freezes;
power-line dropouts hide an inverter for a poll or three. Each value is judged by its own
measurement time: a dead inverter within 30 daylight minutes, a whole-system fault as
one alert, dropouts quiet.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from solar_monitor.config import Config
from solar_monitor.pvs.models import STALE_AFTER_S, Inverter, Meter, Snapshot, Supervisor, totals
from solar_monitor.pvs.parse import parse
from solar_monitor.rules.engine import AlertEvent, Engine
from solar_monitor.store import Store
from solar_monitor.sun import sun_elevation_deg

STEP = timedelta(minutes=15)
DAY1 = datetime(2025, 6, 14, 4, 0, tzinfo=UTC)  # local midnight, Boston, June
NOON = datetime(2025, 6, 15, 16, 0, tzinfo=UTC)
SERIALS = [f"E00{i:012d}" for i in range(10)]
BOOT = DAY1 - timedelta(days=2)

# serial -> when its data stopped (its last values stay, as the varserver keeps them)
Stops = dict[str, datetime]


def kw_at(at: datetime) -> float:
    return round(0.3 * max(0.0, math.sin(math.radians(sun_elevation_deg(42.36, -71.06, at)))),
                 4)


def vsnap(at: datetime, *, stopped: Stops | None = None, absent: tuple[str, ...] = (),
          meter: str = "inverters", frozen_at: datetime | None = None) -> Snapshot:
    """A varserver-like reading at `at`. `meter`: "inverters" (their sum, absent and
    silent ones included when they still produce), "zero" (a tripped breaker), "none"."""
    stopped = stopped or {}
    data_at = frozen_at or at  # a hung PVS: every device frozen, its clock moving on
    inverters = []
    meter_sum = 0.0
    for s in SERIALS:
        since = stopped.get(s)
        measured = min(since, data_at) if since else data_at - timedelta(seconds=30)
        kw = kw_at(measured)
        if since is None or since > at:
            meter_sum += kw
        if s in absent:
            meter_sum += kw_at(at) if since is None else 0.0
            continue
        inverters.append(Inverter(s, state="working" if kw >= 0.005 else "error",
                                  power_kw=kw, data_time=measured,
                                  age_s=(at - measured).total_seconds()))
    meters: tuple[Meter, ...] = ()
    if meter != "none":
        measured = data_at - timedelta(seconds=10)
        meters = (Meter("PVS6M1p", "production", power_kw=0.0 if meter == "zero" else
                        round(meter_sum if frozen_at is None else meter_sum, 4),
                        voltage_v=242.0, freq_hz=60.0, data_time=measured,
                        age_s=(at - measured).total_seconds()),)
    sup = Supervisor(uptime_s=(data_at - BOOT).total_seconds(), data_time=data_at)
    return Snapshot(polled_at=at, api="varserver", source="test", supervisor=sup,
                    meters=meters, inverters=tuple(inverters),
                    livedata={"time": at.timestamp()})


def counted(snap: Snapshot) -> Snapshot:
    """`snap` with its production meter counting every inverter (silent ones produce)."""
    at = snap.polled_at
    assert at is not None
    meter = snap.meters[0]
    full = Meter(meter.serial, "production", power_kw=round(kw_at(at) * len(SERIALS), 4),
                 data_time=meter.data_time, age_s=meter.age_s)
    return Snapshot(at, "varserver", "test", supervisor=snap.supervisor, meters=(full,),
                    inverters=snap.inverters, livedata=snap.livedata)


def feed(engine: Engine, start: datetime, end: datetime,
         make: Callable[[datetime], Snapshot]) -> list[AlertEvent]:
    events: list[AlertEvent] = []
    at = start
    while at < end:
        events += engine.evaluate(at, make(at), None)
        at += STEP
    return events


def warm(engine: Engine, meter: str = "inverters") -> None:
    assert feed(engine, DAY1, NOON - timedelta(hours=4), lambda t: vsnap(t, meter=meter)) == []


def opens(events: list[AlertEvent]) -> list[tuple[str, str]]:
    return [(e.rule, e.subject) for e in events if e.event == "open"]


# --------------------------------------------------------------------------- the model


def test_a_stale_value_is_never_current_power() -> None:
    at = NOON
    old = at - timedelta(hours=5)
    snap = Snapshot(at, "varserver", "test", inverters=(
        Inverter("A", power_kw=0.2, state="working", data_time=at, age_s=20.0),
        Inverter("B", power_kw=0.25, state="working", data_time=old, age_s=5 * 3600.0)))
    a, b = snap.inverters
    assert not a.stale and a.producing and a.live_power_kw == 0.2
    assert b.stale and not b.producing and b.live_power_kw == 0.0
    t = totals(snap)
    assert (t.production_kw, t.inverters_producing) == (0.2, 1)
    # a stale production meter is no figure either: the current inverters' sum is
    stale_meter = Meter("PVS6M1p", "production", power_kw=3.0, data_time=old,
                        age_s=STALE_AFTER_S + 1.0)
    snap = Snapshot(at, "varserver", "test", meters=(stale_meter,), inverters=snap.inverters,
                    livedata={"pv_p": 3.0})
    assert totals(snap).production_kw == 0.2


def test_the_parser_carries_each_devices_age() -> None:
    body = (b'{"values": ['
            b'{"name": "/sys/devices/inverter/0/sn", "value": "E001"},'
            b'{"name": "/sys/devices/inverter/0/msmtEps", "value": "2025-06-15T15:10:00Z"},'
            b'{"name": "/sys/devices/inverter/0/p3phsumKw", "value": "0.21"},'
            b'{"name": "/sys/devices/inverter/1/sn", "value": "E002"},'
            b'{"name": "/sys/devices/inverter/1/msmtEps", "value": "2025-06-15T15:59:30Z"},'
            b'{"name": "/sys/devices/inverter/1/p3phsumKw", "value": "0.22"},'
            b'{"name": "/sys/devices/meter/0/sn", "value": "PVS6M1p"},'
            b'{"name": "/sys/devices/meter/0/msmtEps", "value": "2025-06-15T15:59:50Z"},'
            b'{"name": "/sys/devices/meter/0/p3phsumKw", "value": "0.2"}], "count": 9}')
    snap = parse(body, polled_at=NOON)
    ages = {i.serial: i.age_s for i in snap.inverters}
    assert ages == {"E001": 3000.0, "E002": 30.0}
    assert snap.meters[0].age_s == 10.0
    assert totals(snap).inverters_producing == 1
    devicelist = (b'{"result": "succeed", "devices": ['
                  b'{"DEVICE_TYPE": "PVS", "SERIAL": "ZT1", "CURTIME": "2025,06,15,16,00,00"},'
                  b'{"DEVICE_TYPE": "Inverter", "SERIAL": "E003", "STATE": "working",'
                  b' "DATATIME": "2025,06,15,15,59,45", "p_3phsum_kw": "0.2"}]}')
    assert parse(devicelist).inverters[0].age_s == 15.0  # the PVS's clock, no poll time
    # ages are read on the PVS's own clock: one an hour off from ours ages nothing
    off = parse(devicelist, polled_at=NOON + timedelta(hours=1))
    assert off.inverters[0].age_s == 15.0 and off.inverters[0].producing
    live_clock = body.replace(b'"count": 9', b'"count": 10').replace(
        b'"value": "0.2"}]', b'"value": "0.2"}, {"name": "/sys/livedata/time", '
        b'"value": "1750003200"}]')  # 2025-06-15T16:00:00Z
    assert [i.age_s for i in parse(live_clock, polled_at=NOON + timedelta(hours=1)
                                   ).inverters] == [3000.0, 30.0]


# --------------------------------------------------------------------------- the rules


def test_dead_inverter_keeping_its_values_is_offline_within_30_minutes(
        store: Store, config: Config) -> None:
    engine = Engine(store, config)
    warm(engine)
    death = NOON - timedelta(hours=3, minutes=9)  # 12:51 UTC: the first poll is at 13:00
    first_poll = NOON - timedelta(hours=3)
    events = feed(engine, NOON - timedelta(hours=4), NOON,
                  lambda t: vsnap(t, stopped={SERIALS[3]: death}))
    assert opens(events) == [("inverter_offline", SERIALS[3])]
    opened = next(e for e in events if e.event == "open")
    assert opened.time - first_poll <= timedelta(minutes=30)
    assert "not reported" in opened.message and "since 2025-06-15 08:51 EDT" in opened.message


def test_dead_inverter_at_dusk_is_judged_in_the_next_morning(store: Store,
                                                             config: Config) -> None:
    engine = Engine(store, config)
    warm(engine)
    death = NOON + timedelta(hours=7)  # 19:00 local, the sun under 15 degrees
    events = feed(engine, NOON - timedelta(hours=4), NOON + timedelta(hours=28),
                  lambda t: vsnap(t, stopped={SERIALS[5]: death}))
    assert opens(events) == [("inverter_offline", SERIALS[5])]
    opened = next(e for e in events if e.event == "open")
    morning = opened.time - timedelta(minutes=15)
    while sun_elevation_deg(42.36, -71.06, morning) >= 15.0:
        morning -= STEP
    assert opened.time - morning <= timedelta(minutes=45)  # <= 30 min of daylight polls
    assert opened.time.date() == (NOON + timedelta(days=1)).date()


def test_tripped_breaker_with_stale_inverter_values_is_one_alert(store: Store,
                                                                 config: Config) -> None:
    engine = Engine(store, config)
    warm(engine)
    trip = NOON - timedelta(hours=3, minutes=5)
    everyone = dict.fromkeys(SERIALS, trip)
    events = feed(engine, NOON - timedelta(hours=4), NOON + timedelta(hours=1),
                  lambda t: vsnap(t, stopped=everyone if t >= trip else {},
                                  meter="zero" if t >= trip else "inverters"))
    assert opens(events) == [("production_low", "system")]


def test_frozen_pvs_with_a_moving_clock_is_one_data_stale(store: Store,
                                                          config: Config) -> None:
    engine = Engine(store, config)
    warm(engine)
    freeze = NOON - timedelta(hours=3, minutes=10)
    events = feed(engine, NOON - timedelta(hours=4), NOON + timedelta(hours=2),
                  lambda t: vsnap(t, frozen_at=freeze if t >= freeze else None))
    assert opens(events) == [("data_stale", "system")]


def test_most_inverters_silent_while_the_meter_counts_them_is_communications(
        store: Store, config: Config) -> None:
    engine = Engine(store, config)
    warm(engine)
    lost = NOON - timedelta(hours=3, minutes=5)
    silent = {s: lost for s in SERIALS[:8]}

    def make(t: datetime) -> Snapshot:
        return counted(vsnap(t, stopped=silent)) if t >= lost else vsnap(t)

    events = feed(engine, NOON - timedelta(hours=4), NOON + timedelta(hours=1), make)
    assert opens(events) == [("inverters_silent", "system")]
    opened = next(e for e in events if e.event == "open")
    assert "8 of 10 inverters" in opened.message and "communications" in opened.message


def test_flapping_inverter_counted_by_the_meter_stays_quiet(store: Store,
                                                           config: Config) -> None:
    """Out of the list for 1, 2 or 3 polls every hour, all day, while the production
    meter counts its power: neither offline nor missing."""
    engine = Engine(store, config)
    warm(engine)
    start = NOON - timedelta(hours=4)

    def make(t: datetime) -> Snapshot:
        n = int((t - start) / STEP)
        hour, slot = divmod(n, 4)
        gone = slot < 1 + hour % 3
        return vsnap(t, absent=(SERIALS[2],) if gone else ())

    assert feed(engine, start, NOON + timedelta(hours=5), make) == []


def test_dropouts_in_error_with_stale_values_stay_quiet(store: Store, config: Config) -> None:
    """A dropout that leaves the inverter listed with its old values, for up to three
    polls, produces in between, while the meter counts it."""
    engine = Engine(store, config)
    warm(engine)
    start = NOON - timedelta(hours=4)

    def make(t: datetime) -> Snapshot:
        n = int((t - start) / STEP)
        hour, slot = divmod(n, 4)
        if slot < 1 + hour % 3:
            last = start + STEP * (4 * hour) - timedelta(minutes=1)
            return counted(vsnap(t, stopped={SERIALS[6]: last}))
        return vsnap(t)

    assert feed(engine, start, NOON + timedelta(hours=5), make) == []


def test_bad_polls_do_not_count_across_the_night(store: Store, config: Config) -> None:
    """A 1-poll dropout in the last daylight poll, a 2-poll dropout in the first two of
    the next morning: not three in a row (the bug of issue 19). Judged as strictly as a
    dead inverter: the meter does not count it while it is gone."""
    engine = Engine(store, config)
    warm(engine)
    at = NOON
    daylight = []
    while at < NOON + timedelta(hours=24):
        if sun_elevation_deg(42.36, -71.06, at) >= 15.0:
            daylight.append(at)
        at += STEP
    evening = max(t for t in daylight if t.date() == NOON.date() or t.hour < 4)
    morning = sorted(t for t in daylight if t > evening + timedelta(hours=4))[:2]
    gone = {evening, *morning}
    events = feed(engine, NOON, NOON + timedelta(hours=26),
                  lambda t: vsnap(t, absent=(SERIALS[4],), stopped={SERIALS[4]: t})
                  if t in gone else vsnap(t))
    assert events == []


def test_a_flapping_inverter_out_for_four_polls_is_quiet_a_lost_one_is_not(
        store: Store, config: Config) -> None:
    """Two dropouts back to back (4 polls) of an inverter that came back from one an hour
    ago stay quiet; the same gap in an inverter that never dropped out is a lost inverter
    (the meter still counts it): inverter_missing after 45 minutes."""
    engine = Engine(store, config)
    warm(engine)
    start = NOON - timedelta(hours=4)
    flapping, lost = SERIALS[2], SERIALS[7]

    def make(t: datetime) -> Snapshot:
        n = int((t - start) / STEP)
        gone = []
        if n in (1, 6, 7, 8, 9):
            gone.append(flapping)
        if n >= 6:
            gone.append(lost)
        return vsnap(t, absent=tuple(gone))

    events = feed(engine, start, start + 16 * STEP, make)
    assert opens(events) == [("inverter_missing", lost)]
    opened = next(e for e in events if e.event == "open")
    assert opened.time - (start + 6 * STEP) == timedelta(minutes=45)


def test_without_a_meter_a_breaker_is_production_low_and_a_hung_pvs_data_stale(
        store: Store, config: Config, tmp_path: Path) -> None:
    """No meter: every inverter falls silent with its last values in both faults; the
    PVS itself lives on behind a tripped breaker (its uptime moves), not when it hangs."""
    engine = Engine(store, config)
    warm(engine, meter="none")
    trip = NOON - timedelta(hours=3, minutes=5)
    everyone = dict.fromkeys(SERIALS, trip)
    events = feed(engine, NOON - timedelta(hours=4), NOON + timedelta(hours=1),
                  lambda t: vsnap(t, stopped=everyone if t >= trip else {}, meter="none"))
    assert opens(events) == [("production_low", "system")]
    with Store(tmp_path / "other.db") as other:
        engine = Engine(other, config)
        warm(engine, meter="none")
        events = feed(engine, NOON - timedelta(hours=4), NOON + timedelta(hours=1),
                      lambda t: vsnap(t, frozen_at=trip if t >= trip else None, meter="none"))
        assert opens(events) == [("data_stale", "system")]


def test_silent_inverters_old_heat_and_grid_readings_alarm_nothing(
        store: Store, config: Config) -> None:
    """The breaker trips on a grid spike, on a hot day, with no meter to read the grid:
    every inverter keeps its last 95 °C, 275 V and 61 Hz, 11 minutes old at the first
    poll after it. They are not now: one alert, the breaker's."""
    engine = Engine(store, config)
    warm(engine, meter="none")
    trip = NOON - timedelta(hours=3, minutes=11)
    everyone = dict.fromkeys(SERIALS, trip)

    def make(t: datetime) -> Snapshot:
        if t < trip:
            return vsnap(t, meter="none")
        snap = vsnap(t, stopped=everyone, meter="none")
        return replace(snap, inverters=tuple(
            replace(i, heatsink_c=95.0, ac_voltage_v=275.0, freq_hz=61.0)
            for i in snap.inverters))

    events = feed(engine, NOON - timedelta(hours=4), NOON + timedelta(hours=1), make)
    assert opens(events) == [("production_low", "system")]
