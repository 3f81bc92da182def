"""The simulator's LocalAPI firmware as fielded (issue 19): stale values, late listing
after the restart, the dawn lag, a hung PVS with a moving clock, power-line dropouts,
a site without meters. Each is an option or a fault of the site spec, and seeded."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from solar_monitor.emulation.sim import (
    CommDropout,
    DataStale,
    DeadInverter,
    FlappingInverter,
    PowerLineDropouts,
    ProductionTripped,
    SimulatedSite,
    SiteSpec,
    StaleInverter,
)
from solar_monitor.pvs.parse import parse

NOON = datetime(2025, 6, 21, 20, 0, tzinfo=UTC)  # 13:00 PDT
LATE = datetime(2025, 6, 22, 6, 0, tzinfo=UTC)  # 23:00 PDT, before the 02:xx restart
LOCALAPI = SiteSpec(epoch=datetime(2025, 6, 18, tzinfo=UTC), build=61846, stale_values=True,
                    dawn_lag_max_s=1200.0)


def site(*faults: object, **options: object) -> SimulatedSite:
    return SimulatedSite(replace(LOCALAPI, faults=faults, **options))


def inverters(values: dict[str, str]) -> dict[str, dict[str, str]]:
    """{serial: {field: value}} of the varserver's inverters."""
    by_index: dict[str, dict[str, str]] = {}
    for name, value in values.items():
        if name.startswith("/sys/devices/inverter/"):
            _, _, _, _, idx, field = name.split("/")
            by_index.setdefault(idx, {})[field] = value
    return {d["sn"]: d for d in by_index.values()}


def devicelist_inverters(doc: dict) -> dict[str, dict]:
    return {d["SERIAL"]: d for d in doc["devices"] if d["DEVICE_TYPE"] == "Inverter"}


def test_silent_inverters_keep_their_last_values_at_night() -> None:
    fielded, first = site(), site(stale_values=False, dawn_lag_max_s=0.0)
    late = inverters(fielded.vars(LATE))
    assert len(late) == 12  # still listed before the nightly restart
    assert all(float(d["p3phsumKw"]) > 0 for d in late.values())  # non-zero at 11 PM
    assert all(d["msmtEps"] < "2025-06-22T04:00" for d in late.values())  # before dusk
    assert all(float(d["p3phsumKw"]) == 0 for d in inverters(first.vars(LATE)).values())
    # the varserver's own clock keeps moving
    assert fielded.vars(LATE)["/sys/livedata/time"] == str(int(LATE.timestamp()))


def test_dead_inverter_frozen_and_a_stale_inverter_outlives_the_restart() -> None:
    died = NOON - timedelta(hours=2)
    s = site(DeadInverter(inverter=2, start=died), StaleInverter(inverter=3, start=died))
    serial2, serial3, peer = (s.inverter_serials[i] for i in (2, 3, 0))
    a, b = inverters(s.vars(NOON)), inverters(s.vars(NOON + timedelta(minutes=15)))
    for serial in (serial2, serial3):
        assert a[serial] == b[serial]  # nothing moves, msmtEps included
        assert float(a[serial]["p3phsumKw"]) > 0.05  # its morning power, kept
        assert a[serial]["msmtEps"] < f"{died:%Y-%m-%dT%H:%M:%S}Z"
    assert a[peer]["msmtEps"] != b[peer]["msmtEps"]
    next_noon = inverters(s.vars(NOON + timedelta(days=1)))
    assert serial2 not in next_noon  # the restart forgot it
    assert next_noon[serial3] == a[serial3]  # the stale one is served for days
    legacy = devicelist_inverters(s.device_list(NOON + timedelta(days=1)))
    assert legacy[serial3]["STATE"] == "error" and float(legacy[serial3]["p_3phsum_kw"]) > 0.05


def test_after_the_restart_each_inverter_is_listed_up_to_20_minutes_after_it_produces() -> None:
    s, prompt = site(), site(dawn_lag_max_s=0.0)
    boot = s.last_boot(NOON)
    firsts = [prompt.first_report(i, boot) for i in range(12)]
    lagged = [s.first_report(i, boot) for i in range(12)]
    lags = [(b - a).total_seconds() for a, b in zip(firsts, lagged, strict=True)]  # type: ignore[operator]
    assert all(0 <= x <= 1200 for x in lags) and len(set(lags)) > 6
    assert len(inverters(s.vars(min(lagged) + timedelta(seconds=1)))) >= 1  # type: ignore[operator]
    t = max(firsts) + timedelta(seconds=1)  # type: ignore[type-var, operator]
    assert len(inverters(prompt.vars(t))) == 12  # without the lag: all producing, all listed
    assert len(inverters(s.vars(t))) < 12
    assert len(inverters(s.vars(max(lagged) + timedelta(seconds=1)))) == 12  # type: ignore[operator]
    assert len(inverters(s.vars(boot + timedelta(hours=1)))) == 0  # night: none yet


def test_hung_pvs_freezes_every_value_but_its_clock() -> None:
    s = site(DataStale(start=NOON, end=NOON + timedelta(hours=3)))
    a, b = s.vars(NOON), s.vars(NOON + timedelta(hours=2))
    moving = {k for k in a if a[k] != b[k]}
    assert moving == {"/sys/livedata/time"}
    assert int(b["/sys/livedata/time"]) - int(a["/sys/livedata/time"]) == 7200


def test_tripped_breaker_on_localapi_inverters_stale_meter_zero() -> None:
    s = site(ProductionTripped(start=NOON - timedelta(hours=1)))
    v = s.vars(NOON)
    invs = inverters(v)
    assert len(invs) == 12 and all(float(d["p3phsumKw"]) > 0.05 for d in invs.values())
    assert float(v["/sys/devices/meter/0/p3phsumKw"]) == 0.0
    assert float(v["/sys/livedata/pv_p"]) == 0.0


def test_comm_dropout_absent_or_stale_on_both_formats() -> None:
    start = NOON - timedelta(minutes=1)
    absent = CommDropout(inverters=(1,), start=start, end=start + timedelta(minutes=30))
    stale = CommDropout(inverters=(4, 5), mode="stale", start=start,
                        end=start + timedelta(minutes=30))
    s, clean = site(absent, stale), site()
    later = NOON + timedelta(minutes=15)
    serial = s.inverter_serials
    v, dl = inverters(s.vars(later)), devicelist_inverters(s.device_list(later))
    assert serial[1] not in v and serial[1] not in dl
    for i in (4, 5):
        assert v[serial[i]]["msmtEps"] == f"{start:%Y-%m-%dT%H:%M:%S}Z"
        assert dl[serial[i]]["STATE"] == "error"
        assert dl[serial[i]]["DATATIME"] == f"{start:%Y,%m,%d,%H,%M,%S}"
    # the array keeps producing: the production meter is untouched
    assert s.vars(later)["/sys/devices/meter/0/p3phsumKw"] == \
        clean.vars(later)["/sys/devices/meter/0/p3phsumKw"]
    assert len(inverters(s.vars(NOON + timedelta(minutes=45)))) == 12


def polls(day: datetime) -> list[datetime]:
    return [day + timedelta(minutes=15 * k) for k in range(96)]


def test_power_line_dropouts_are_short_few_and_seeded() -> None:
    day = datetime(2025, 6, 22, tzinfo=UTC)
    s = site(PowerLineDropouts(per_day=5.0))
    again = site(PowerLineDropouts(per_day=5.0))
    events = s._line_events(PowerLineDropouts(per_day=5.0), int(day.timestamp() // 86400))
    assert len(events) == 5
    assert all(1 <= len(invs) <= 3 and (b - a) in (900.0, 1800.0) for a, b, invs, _ in events)
    bad = []
    for t in polls(day):
        st = s.state(t)
        out = {i.index for i in st.inverters if i.missing or i.frozen_at is not None}
        bad.append(len(out))
        assert st == again.state(t)
    assert 3 <= sum(1 for x in bad if x) <= 10


def test_flapping_inverter_drops_one_to_three_polls_every_hour() -> None:
    day = datetime(2025, 6, 22, tzinfo=UTC)
    s = site(FlappingInverter(inverter=7, start=day, end=day + timedelta(days=7)))
    per_hour = [0] * 24
    for t in polls(day):
        inv = s.state(t).inverters[7]
        if inv.missing or inv.frozen_at is not None:
            per_hour[t.hour] += 1
            assert t.minute != 0  # it reports at least once each hour
    assert all(1 <= n <= 3 for n in per_hour)
    assert len(set(per_hour)) > 1


def test_site_without_meters_parses() -> None:
    s = site(production_meter=False, consumption_subtype=None)
    v = s.vars(NOON)
    assert not any(k.startswith("/sys/devices/meter/") for k in v)
    assert len(inverters(v)) == 12
    doc = s.device_list(NOON)
    assert not [d for d in doc["devices"] if d["DEVICE_TYPE"] == "Power Meter"]
    snap = parse(json.dumps(doc).encode(), polled_at=NOON)
    assert len(snap.inverters) == 12


def test_pypvs_reads_a_fielded_localapi_site_without_meters() -> None:
    """The witness: SunStrong's pypvs reads the stale and the live inverters of a site
    without meters, as our parser does, from the emulator over HTTPS."""
    import asyncio

    from solar_monitor.emulation.emulator import start_emulator
    from tests.test_pypvs import read_with_pypvs

    died = NOON - timedelta(hours=2)
    s = site(StaleInverter(inverter=2, start=died),
             CommDropout(inverters=(5,), mode="stale", start=NOON - timedelta(minutes=20)),
             production_meter=False, consumption_subtype=None)
    expected = inverters(s.vars(NOON))
    with start_emulator(s, firmware="varserver", tls=True, clock=lambda: NOON) as emu:
        assert emu.tls_url is not None
        data, _ = asyncio.run(read_with_pypvs(emu.tls_url.removeprefix("https://")))
    assert len(data.inverters) == 12 and not data.meters
    for serial in (s.inverter_serials[2], s.inverter_serials[5]):
        theirs = data.inverters[serial]
        ours = expected[serial]
        assert theirs.last_report_kw == pytest.approx(float(ours["p3phsumKw"]), abs=1e-4)
        assert theirs.last_report_kw > 0.05  # a stale value, still non-zero
        assert theirs.last_report_date == int(datetime.fromisoformat(
            ours["msmtEps"].replace("Z", "+00:00")).timestamp())
        assert theirs.last_report_date < int(NOON.timestamp()) - 600
