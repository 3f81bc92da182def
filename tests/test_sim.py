"""The simulated site: real PVS shapes, honest physics, deterministic, faults as declared."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from solar_monitor.emulation.sim import (
    DataStale,
    DeadInverter,
    FirmwareChange,
    FlashLow,
    FlashWorn,
    GridOutOfRange,
    MissingInverter,
    ProductionTripped,
    PvsReboot,
    RoofFace,
    ShadedInverters,
    SimulatedSite,
    SiteSpec,
    SnowCover,
    UploadBacklog,
    WeakInverter,
)
from solar_monitor.pvs.parse import parse
from solar_monitor.sun import daylight_utc, sun_azimuth_deg, sun_elevation_deg, sun_position_deg

SF = (37.77, -122.42)
PVS_TIME = re.compile(r"^\d{4},\d\d,\d\d,\d\d,\d\d,\d\d$")
# 2025-06-21 20:00 UTC is 13:00 PDT, near solar noon in San Francisco.
NOON = datetime(2025, 6, 21, 20, 0, tzinfo=UTC)
NIGHT = datetime(2025, 6, 22, 9, 0, tzinfo=UTC)  # 02:00 PDT
# Counters integrate day by day from the epoch: an epoch near the test dates keeps tests fast.
SPEC = SiteSpec(epoch=datetime(2025, 6, 18, tzinfo=UTC))


def clear_noon(site: SimulatedSite) -> datetime:
    """The first June day whose 13:00 PDT hour is cloudless for this site."""
    for day in range(60):
        t = NOON + timedelta(days=day)
        if site.cloud_cover_pct(t) == 0.0:
            return t
    raise AssertionError("no clear noon in 60 days")


def inverters(payload: dict) -> list[dict]:
    return [d for d in payload["devices"] if d["DEVICE_TYPE"] == "Inverter"]


def by_type(payload: dict, device_type: str) -> list[dict]:
    return [d for d in payload["devices"] if d["DEVICE_TYPE"] == device_type]


@pytest.fixture(scope="module")
def site() -> SimulatedSite:
    return SimulatedSite(SPEC)


# --------------------------------------------------------------------------- sun


def test_sun_near_solar_noon_in_june() -> None:
    el, az = sun_position_deg(*SF, NOON)
    assert el == pytest.approx(75.5, abs=0.5)
    assert az == pytest.approx(169.3, abs=1.0)
    assert sun_elevation_deg(*SF, NOON) == pytest.approx(el)
    assert sun_azimuth_deg(*SF, NOON) == pytest.approx(az)
    assert sun_elevation_deg(*SF, NIGHT) < -20


def test_sun_poles_and_naive_datetimes() -> None:
    assert sun_elevation_deg(90.0, 0.0, NOON) == pytest.approx(23.4, abs=0.3)
    assert sun_elevation_deg(-90.0, 0.0, NOON) == pytest.approx(-23.4, abs=0.3)
    assert daylight_utc(78.0, 15.0, NOON.date()) is None  # midnight sun
    rise, sunset = daylight_utc(*SF, NOON.date())  # type: ignore[misc]
    assert rise < NOON < sunset
    with pytest.raises(ValueError):
        sun_elevation_deg(*SF, datetime(2025, 6, 21, 20))


# --------------------------------------------------------------------------- shapes


def test_device_list_has_the_real_pvs_shape(site: SimulatedSite) -> None:
    payload = site.device_list(NOON)
    assert payload["result"] == "succeed"
    pvs, meters, invs = (
        by_type(payload, "PVS"),
        by_type(payload, "Power Meter"),
        inverters(payload),
    )
    assert len(pvs) == 1 and len(meters) == 2 and len(invs) == 12
    assert pvs[0]["SWVER"] == "2025.06, Build 61839"
    assert isinstance(pvs[0]["panid"], int)
    assert int(pvs[0]["dl_uptime"]) > 0
    for device in payload["devices"]:
        assert PVS_TIME.match(device["CURTIME"])
        assert device["CURTIME"] == "2025,06,21,20,00,00"
        for key, value in device.items():
            if key == "ISDETAIL":
                assert value is True
            elif key in ("panid", "slave"):
                assert isinstance(value, int)
            else:
                assert isinstance(value, str), (key, value)
    prod, cons = meters
    assert prod["SERIAL"].endswith("p") and prod["TYPE"] == "PVS5-METER-P"
    assert prod["subtype"] == "GROSS_PRODUCTION_SITE"
    assert cons["SERIAL"].endswith("c") and cons["subtype"] == "NET_CONSUMPTION_LOADSIDE"
    assert cons["consumption_subtype_enum"] == "NET_CONSUMPTION_LOADSIDE"
    assert 230 < float(prod["v12_v"]) < 250
    assert float(prod["freq_hz"]) == pytest.approx(60, abs=0.05)
    inv = invs[0]
    assert (inv["TYPE"], inv["MODEL"]) == ("SOLARBRIDGE", "AC_Module_Type_E")
    assert re.match(r"^E00\d{12}$", inv["SERIAL"])


def test_clear_noon_produces_near_rating_and_meters_agree(site: SimulatedSite) -> None:
    t = clear_noon(site)
    payload = site.device_list(t)
    invs = inverters(payload)
    assert all(i["STATE"] == "working" for i in invs)
    powers = [float(i["p_3phsum_kw"]) for i in invs]
    assert all(0.22 < p <= 0.32 * 0.96 for p in powers)
    prod, cons = by_type(payload, "Power Meter")
    assert float(prod["p_3phsum_kw"]) == pytest.approx(sum(powers) * 0.995, rel=0.002)
    load = site.state(t).load_kw
    assert float(cons["p_3phsum_kw"]) == pytest.approx(load - float(prod["p_3phsum_kw"]), abs=2e-3)
    assert float(cons["net_ltea_3phsum_kwh"]) == pytest.approx(
        float(cons["pos_ltea_3phsum_kwh"]) - float(cons["neg_ltea_3phsum_kwh"]), abs=1e-3
    )
    # A producing inverter reported within the last minute, not in the future.
    assert all(i["DATATIME"] <= i["CURTIME"] for i in invs)
    assert any(i["DATATIME"] < i["CURTIME"] for i in invs)


def test_night_inverters_are_in_error_some_without_metrics(site: SimulatedSite) -> None:
    payload = site.device_list(NIGHT)
    invs = inverters(payload)
    assert len(invs) == 12
    assert {i["STATE"] for i in invs} == {"error"}
    bare = [i for i in invs if "p_3phsum_kw" not in i]
    with_metrics = [i for i in invs if "p_3phsum_kw" in i]
    assert bare and with_metrics
    assert all("ltea_3phsum_kwh" not in i and "DATATIME" not in i for i in bare)
    assert all(i["p_3phsum_kw"] == "0" for i in with_metrics)
    # DATATIME stays at the last production, around the previous sunset (~03:35 UTC).
    _, sunset = daylight_utc(*SF, NOON.date())  # type: ignore[misc]
    for inv in with_metrics:
        last = datetime.strptime(inv["DATATIME"], "%Y,%m,%d,%H,%M,%S").replace(tzinfo=UTC)
        assert sunset - timedelta(hours=1) < last <= sunset
    prod = by_type(payload, "Power Meter")[0]
    assert float(prod["p_3phsum_kw"]) == pytest.approx(-0.015)


def test_supervisor_info_and_vars_shapes(site: SimulatedSite) -> None:
    info = site.supervisor_info(NOON)
    assert info["result"] == "succeed"
    sup = info["supervisor"]
    assert (sup["MODEL"], sup["BUILD"], sup["SERIAL"]) == ("PVS6", 61839, site.supervisor_serial)
    v = site.vars(NOON)
    assert all(isinstance(x, str) for x in v.values())
    assert v["/sys/info/sw_rev"] == "2025.06.03.61839"
    assert v["/sys/info/serialnum"] == site.supervisor_serial
    assert v["/sys/devices/meter/0/sn"].endswith("p")
    assert v["/sys/devices/meter/1/sn"].endswith("c")
    assert "/sys/devices/meter/1/p1Kw" in v and "/sys/devices/meter/0/p1Kw" not in v
    assert v["/sys/devices/inverter/0/msmtEps"].endswith("Z")
    fields = {k.rsplit("/", 1)[1] for k in v if k.startswith("/sys/devices/inverter/0/")}
    assert fields == {
        "sn", "prodMdlNm", "msmtEps", "p3phsumKw", "ltea3phsumKwh", "pMppt1Kw", "vMppt1V",
        "iMppt1A", "vln3phavgV", "i3phsumA", "freqHz", "tHtsnkDegc",
    }  # fmt: skip
    assert v["/sys/livedata/time"] == str(int(NOON.timestamp()))
    pv_p = float(v["/sys/livedata/pv_p"])
    assert pv_p == pytest.approx(float(v["/sys/devices/meter/0/p3phsumKw"]), abs=1e-5)


def test_varserver_forgets_inverters_after_the_nightly_restart(site: SimulatedSite) -> None:
    # Restart at 02:xx PDT; at 04:00 PDT no inverter has reported since.
    before = site.vars(datetime(2025, 6, 22, 8, 0, tzinfo=UTC))  # 01:00 PDT
    after = site.vars(datetime(2025, 6, 22, 11, 0, tzinfo=UTC))  # 04:00 PDT
    day = site.vars(datetime(2025, 6, 22, 19, 0, tzinfo=UTC))  # noon PDT
    count = lambda v: sum(1 for k in v if k.endswith("/sn") and "/inverter/" in k)  # noqa: E731
    assert (count(before), count(after), count(day)) == (12, 0, 12)


def test_gross_lineside_meter_and_no_consumption_meter() -> None:
    gross = SimulatedSite(replace(SPEC, consumption_subtype="GROSS_CONSUMPTION_LINESIDE"))
    cons = by_type(gross.device_list(NOON), "Power Meter")[1]
    assert cons["subtype"] == "GROSS_CONSUMPTION_LINESIDE"
    assert float(cons["p_3phsum_kw"]) == pytest.approx(gross.state(NOON).load_kw, abs=1e-3)
    none = SimulatedSite(replace(SPEC, consumption_subtype=None))
    assert len(by_type(none.device_list(NOON), "Power Meter")) == 1
    assert "/sys/livedata/net_p" not in none.vars(NOON)


# --------------------------------------------------------------------------- physics


def test_lifetime_counters_are_monotonic_and_integrate_power() -> None:
    s = SimulatedSite(replace(SPEC, seed=7))
    times = [NOON + timedelta(minutes=5 * k) for k in range(3 * 288)]
    states = [s.state(t) for t in times]
    for a, b in zip(states, states[1:], strict=False):
        assert all(
            y.lifetime_kwh >= x.lifetime_kwh for x, y in zip(a.inverters, b.inverters, strict=True)
        )
        assert b.production_kwh >= a.production_kwh
        assert b.import_kwh >= a.import_kwh and b.export_kwh >= a.export_kwh
        assert b.load_kwh > a.load_kwh
    # Sampled on the 5-minute grid, the trapezoid of reported power is the energy exactly.
    integral = sum(
        (a.inverters[0].power_kw + b.inverters[0].power_kw) / 2 * 5 / 60
        for a, b in zip(states, states[1:], strict=False)
    )
    gained = states[-1].inverters[0].lifetime_kwh - states[0].inverters[0].lifetime_kwh
    assert gained == pytest.approx(integral, rel=1e-9)
    assert 2.0 < gained / 3 < 2.6  # kWh a day from a 0.32 kW panel in June


def test_counters_do_not_depend_on_query_history() -> None:
    t = datetime(2025, 7, 3, 17, 42, 11, tzinfo=UTC)
    walked = SimulatedSite(SPEC)
    for day in range(0, 20, 3):
        walked.state(SPEC.epoch + timedelta(days=day, hours=7))
    fresh = SimulatedSite(SPEC)
    assert fresh.device_list(t) == walked.device_list(t)
    before_epoch = SimulatedSite(SPEC).state(SPEC.epoch - timedelta(days=5))
    at_epoch = SimulatedSite(SPEC).state(SPEC.epoch)
    assert 0 < before_epoch.production_kwh < at_epoch.production_kwh


def test_same_seed_same_output_other_seed_differs() -> None:
    a = SimulatedSite(replace(SPEC, seed=3)).device_list(NOON)
    b = SimulatedSite(replace(SPEC, seed=3)).device_list(NOON)
    c = SimulatedSite(replace(SPEC, seed=4)).device_list(NOON)
    assert a == b
    assert a != c
    assert inverters(a)[0]["SERIAL"] != inverters(c)[0]["SERIAL"]


def test_clouds_have_clear_spells_overcast_days_and_persistence(site: SimulatedSite) -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    cover = [site.cloud_cover_pct(start + timedelta(hours=h)) for h in range(24 * 365)]
    assert min(cover) == 0.0 and max(cover) == 100.0
    assert 0.3 < sum(c == 0.0 for c in cover) / len(cover) < 0.8
    daily = [sum(cover[d * 24 : d * 24 + 24]) / 24 for d in range(365)]
    assert sum(d > 80 for d in daily) >= 5  # overcast days exist
    steps = [abs(b - a) for a, b in zip(cover, cover[1:], strict=False)]
    assert sum(steps) / len(steps) < 10  # hour to hour, the sky mostly persists
    assert site.cloud_cover_pct(start) == SimulatedSite(SPEC).cloud_cover_pct(start)


def test_roof_faces_follow_the_sun() -> None:
    spec = replace(
        SPEC,
        inverter_count=4,
        roof_faces=(RoofFace(90.0, 30.0, 2), RoofFace(270.0, 30.0, 2)),
        consumption_subtype=None,
    )
    s = SimulatedSite(spec)
    morning = clear_noon(s) - timedelta(hours=4)
    evening = clear_noon(s) + timedelta(hours=4)
    east_am, _, west_am, _ = s.inverter_power_kw(morning).values()
    east_pm, _, west_pm, _ = s.inverter_power_kw(evening).values()
    if s.cloud_cover_pct(morning) == 0 and s.cloud_cover_pct(evening) == 0:
        assert east_am > 1.5 * west_am and west_pm > 1.5 * east_pm
    else:
        assert east_am > west_am or west_pm > east_pm
    with pytest.raises(ValueError):
        SiteSpec(inverter_count=5, roof_faces=(RoofFace(180.0, 20.0, 4),))


# --------------------------------------------------------------------------- faults


def with_faults(*faults: object) -> SimulatedSite:
    return SimulatedSite(replace(SPEC, faults=tuple(faults)))  # type: ignore[arg-type]


def test_dead_inverter_is_error_with_zero_power_and_frozen_energy(site: SimulatedSite) -> None:
    t = clear_noon(site)
    serial = site.inverter_serials[2]
    s = with_faults(DeadInverter(inverter=serial, start=t - timedelta(days=1)))
    now, later = s.state(t), s.state(t + timedelta(hours=2))
    assert now.inverters[2].power_kw == 0.0
    assert later.inverters[2].lifetime_kwh == now.inverters[2].lifetime_kwh
    assert later.inverters[3].lifetime_kwh > now.inverters[3].lifetime_kwh
    dead = next(i for i in inverters(s.device_list(t)) if i["SERIAL"] == serial)
    assert dead["STATE"] == "error"
    assert dead.get("p_3phsum_kw", "0") == "0"


def test_missing_inverter_is_absent_but_still_metered(site: SimulatedSite) -> None:
    t = clear_noon(site)
    s = with_faults(MissingInverter(inverter=5))
    payload = s.device_list(t)
    assert site.inverter_serials[5] not in {i["SERIAL"] for i in inverters(payload)}
    assert len(inverters(payload)) == 11
    prod = by_type(payload, "Power Meter")[0]
    assert float(prod["p_3phsum_kw"]) == pytest.approx(site.state(t).production_kw, abs=1e-4)
    assert site.inverter_serials[5] not in s.vars(t).values()


def test_weak_and_shaded_inverters(site: SimulatedSite) -> None:
    t = clear_noon(site)
    s = with_faults(
        WeakInverter(inverter=1, factor=0.6),
        ShadedInverters(inverters=(3, 4), from_hour=14.0, to_hour=17.0, factor=0.25),
    )
    ref, weak = site.state(t), s.state(t)
    assert weak.inverters[1].power_kw == pytest.approx(0.6 * ref.inverters[1].power_kw)
    afternoon = t + timedelta(hours=2)  # 15:00 PDT
    shade_ref, shaded = site.state(afternoon), s.state(afternoon)
    assert shaded.inverters[3].power_kw == pytest.approx(0.25 * shade_ref.inverters[3].power_kw)
    assert shaded.inverters[5].power_kw == pytest.approx(shade_ref.inverters[5].power_kw)
    assert s.state(t).inverters[3].power_kw == pytest.approx(ref.inverters[3].power_kw)


def test_snow_tripped_and_grid_out_of_range_stop_production(site: SimulatedSite) -> None:
    t = clear_noon(site)
    day = (t - timedelta(hours=12), t + timedelta(hours=12))
    snow = with_faults(SnowCover(start=day[0], end=day[1]))
    assert snow.state(t).production_kw < 0.03 * site.state(t).production_kw
    assert snow.state(t + timedelta(days=1)).production_kw > 0
    tripped = with_faults(ProductionTripped(start=day[0], end=day[1]))
    payload = tripped.device_list(t)
    assert {i["STATE"] for i in inverters(payload)} == {"error"}
    assert float(by_type(payload, "Power Meter")[0]["p_3phsum_kw"]) == 0.0
    high = with_faults(GridOutOfRange(voltage_v=270.0, start=day[0], end=day[1]))
    payload = high.device_list(t)
    assert float(by_type(payload, "Power Meter")[0]["v12_v"]) == 270.0
    assert high.state(t).production_kw == 0.0
    freq = with_faults(GridOutOfRange(freq_hz=61.0, start=day[0], end=day[1]))
    assert freq.state(t).production_kw == 0.0


def test_reboot_resets_uptime_and_hides_inverters_briefly(site: SimulatedSite) -> None:
    t = clear_noon(site)
    s = with_faults(PvsReboot(start=t, missing_s=600))
    during = s.device_list(t + timedelta(minutes=5))
    assert inverters(during) == []
    assert by_type(during, "PVS")[0]["dl_uptime"] == "300"
    after = s.device_list(t + timedelta(minutes=15))
    assert len(inverters(after)) == 12
    assert int(by_type(site.device_list(t), "PVS")[0]["dl_uptime"]) > 3600


def test_firmware_change_and_stale_data(site: SimulatedSite) -> None:
    t = clear_noon(site)
    s = with_faults(
        FirmwareChange(start=t, build=61846), DataStale(start=t, end=t + timedelta(hours=3))
    )
    assert s.supervisor_info(t - timedelta(seconds=1))["supervisor"]["BUILD"] == 61839
    info = s.supervisor_info(t)["supervisor"]
    assert (info["BUILD"], info["SWVER"]) == (61846, "2025.09, Build 61846")
    frozen, later = s.device_list(t), s.device_list(t + timedelta(hours=2))
    assert later["devices"][1]["p_3phsum_kw"] == frozen["devices"][1]["p_3phsum_kw"]
    assert later["devices"][1]["DATATIME"] == frozen["devices"][1]["DATATIME"]
    assert later["devices"][1]["CURTIME"] != frozen["devices"][1]["CURTIME"]
    thawed = s.device_list(t + timedelta(hours=4))
    assert thawed["devices"][1]["DATATIME"] != frozen["devices"][1]["DATATIME"]


def test_flash_low_and_upload_backlog(site: SimulatedSite) -> None:
    t = clear_noon(site)
    s = with_faults(
        FlashLow(start=t, flash_avail_kib=1500.0, ramp_h=24.0),
        UploadBacklog(start=t, records_per_hour=12.0),
    )
    pvs = lambda when: by_type(s.device_list(when), "PVS")[0]  # noqa: E731
    assert int(pvs(t - timedelta(hours=1))["dl_flash_avail"]) > 50000
    assert int(pvs(t + timedelta(hours=30))["dl_flash_avail"]) == 1500
    assert int(pvs(t)["dl_untransmitted"]) == 0
    assert int(pvs(t + timedelta(hours=10))["dl_untransmitted"]) == 120
    assert int(s.vars(t + timedelta(hours=30))["/sys/info/flash_usage"]) >= 98


def test_flash_worn_reports_hex_tenths_that_parse_as_percent(site: SimulatedSite) -> None:
    t = clear_noon(site)
    s = with_faults(FlashWorn(start=t, end=t + timedelta(hours=5), tenths=8))
    wear = lambda when: s.vars(when)["/sys/pvs/flashwear_type_b"]  # noqa: E731
    assert (wear(t - timedelta(hours=1)), wear(t), wear(t + timedelta(hours=6))) == \
        ("0x01", "0x08", "0x01")
    snapshot = parse(json.dumps(s.vars(t)).encode())
    assert snapshot.supervisor is not None and snapshot.supervisor.flash_wear_pct == 80.0


def test_faults_can_be_added_and_removed_at_run_time(site: SimulatedSite) -> None:
    t = clear_noon(site)
    s = SimulatedSite(SPEC)
    before = s.state(t).inverters[0].power_kw
    fault = DeadInverter(inverter=0)
    s.add_fault(fault)
    assert s.state(t).inverters[0].power_kw == 0.0
    s.remove_fault(fault)
    assert s.state(t).inverters[0].power_kw == before
