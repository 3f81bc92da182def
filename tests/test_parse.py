"""The parser on every real payload: actual values, not just 'it did not crash'."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime

import pytest

from solar_monitor.pvs.errors import ParseError
from solar_monitor.pvs.models import totals
from solar_monitor.pvs.parse import firmware_build, flash_wear_pct, parse, pvs_time

from .conftest import all_real, real


@pytest.mark.parametrize("path", all_real(), ids=lambda p: p.name[:50])
def test_every_real_fixture_parses(path):
    snapshot = parse(path.read_bytes())
    assert snapshot.api in ("legacy", "varserver")
    totals(snapshot)  # derived figures never raise either


def test_30_inverter_midday_capture():
    s = parse(real("dl_cgi_61839_30").read_bytes())
    t = totals(s)
    assert (len(s.inverters), len(s.meters), len(s.other)) == (30, 2, 0)
    assert s.build == 61839 and s.firmware == "2025.06, Build 61839"
    assert t.production_kw == pytest.approx(8.0855)
    assert t.net_grid_kw == pytest.approx(-3.0282)  # exporting
    assert t.consumption_kw == pytest.approx(8.0855 - 3.0282)
    assert t.lifetime_production_kwh == pytest.approx(43417.8)
    assert t.inverters_producing == 30
    assert s.supervisor is not None and s.supervisor.untransmitted == 0
    assert s.supervisor.comm_err == 6449
    assert s.pvs_time == datetime(2025, 7, 20, 18, 3, 33, tzinfo=UTC)
    cons = s.meter("consumption")
    assert cons is not None and cons.subtype == "NET_CONSUMPTION_LOADSIDE"


def test_dusk_all_inverters_error_gross_consumption_meter():
    s = parse(real("61640_dusk").read_bytes())
    t = totals(s)
    assert len(s.inverters) == 20
    assert {i.state for i in s.inverters} == {"error"}
    assert t.inverters_producing == 0
    assert t.production_kw == 0.0
    # line-side meter measures gross house load: net = load - production
    assert t.consumption_kw == pytest.approx(1.3493)
    assert t.net_grid_kw == pytest.approx(1.3493)
    assert t.lifetime_production_kwh == pytest.approx(19327.99)


def test_37_inverters_upload_backlog():
    s = parse(real("61410_37").read_bytes())
    assert len(s.inverters) == 37
    assert s.supervisor is not None and s.supervisor.untransmitted == 750322
    assert totals(s).production_kw == pytest.approx(0.6579)


def test_type_g_without_subtype_enums():
    s = parse(real("type_g_60203").read_bytes())
    assert len(s.inverters) == 18 and s.build == 60203
    assert {i.model for i in s.inverters} == {"AC_Module_Type_G"}
    assert {m.kind for m in s.meters} == {"production", "consumption"}
    assert totals(s).production_kw == pytest.approx(3.6379)


def test_error_inverter_without_metrics_has_none_not_zero():
    s = parse(real("inverter_error_no_metrics").read_bytes())
    (inv,) = s.inverters
    assert inv.state == "error"
    assert inv.power_kw is None and inv.lifetime_kwh is None and inv.data_time is None
    assert not inv.producing
    assert s.build == 4150


def test_old_firmware_mpptsum_and_integer_swver():
    s = parse(real("notes_devicelist_2019").read_bytes())
    assert len(s.inverters) == 3
    inv = s.inverters[0]
    assert inv.dc_power_kw == pytest.approx(0.1282)  # p_mpptsum_kw
    assert inv.firmware == "118079776"
    assert inv.lifetime_kwh == pytest.approx(13.0464)
    # no subtype on old meters: a negative consumption reading can only be net export
    assert totals(s).net_grid_kw == pytest.approx(-1.55)


def test_ess_devices_become_batteries_and_the_rest_is_kept_as_other():
    s = parse(real("with_ess_devices").read_bytes())
    assert sorted(d.device_type for d in s.other) == ["Gateway", "PV Disconnect"]
    by_type = {b.device_type: b for b in s.batteries}
    assert sorted(by_type) == ["Battery", "ESS BMS", "Energy Storage System",
                               "Storage Inverter"]
    battery = by_type["Battery"]
    assert (battery.serial, battery.model, battery.state) == (
        "M00122109A0355", "POWERAMP-Komodo 1.2", "error")
    assert battery.extra["PARENT"] == "00001ABC1234_01234567890ABCDEF"  # kept as reported
    assert battery.extra["hw_version"] == "4.34"
    assert battery.power_kw is None and battery.soc_pct is None  # this capture has none
    assert len(s.inverters) == 12
    t = totals(s)
    # a battery of unknown power makes production + net no estimate of the house load
    assert t.consumption_kw is None and t.net_grid_kw == pytest.approx(-0.1813)
    assert t.battery_kw is None and t.battery_soc_pct is None


def test_livedata_battery_power_and_charge():
    t = totals(parse(real("livedata_obj_ess").read_bytes()))
    assert t.battery_kw == pytest.approx(1.186)  # + discharging
    assert t.battery_soc_pct == pytest.approx(86.0)  # the PVS sends 0.86
    # the PVS's own site load is production + net grid + battery discharge
    assert t.consumption_kw == pytest.approx(0.015622 + 0.674694 + 1.186, abs=1e-6)


def test_varserver_livedata_and_meters():
    live = parse(real("livedata_obj_ess").read_bytes())
    t = totals(live)
    assert t.production_kw == pytest.approx(0.015622)
    assert t.consumption_kw == pytest.approx(1.876316)
    assert t.net_grid_kw == pytest.approx(0.674694)
    assert live.livedata["soc"] == pytest.approx(0.86)
    assert live.polled_at == datetime.fromtimestamp(1751083263, UTC)

    meters = parse(real("meter_data_obj_61840").read_bytes())
    kinds = {m.kind: m for m in meters.meters}
    assert kinds["production"].lifetime_net_kwh == pytest.approx(40747.87)
    assert kinds["consumption"].leg1_a == pytest.approx(13.9226713)
    assert kinds["consumption"].extra["vldFldMsk"] == "70239999"


@pytest.mark.parametrize("part", ["name_array_fmt", "match_rev_obj_fmt",
                                  "match_rev_array_fmt"])
def test_varserver_info_answers_give_build(part):
    assert parse(real(part).read_bytes()).build == 61840


def test_supervisor_info_and_login_answers():
    info = parse(real("start_supervisor_info").read_bytes())
    assert info.source == "supervisor_info" and info.build == 61839
    assert info.supervisor is not None and info.supervisor.serial == "ZT214285000549A0621"
    login = parse(real("auth_login_response").read_bytes())
    assert login.source == "login" and not login.inverters


def test_varserver_envelope_derives_inverter_state():
    def inverter(idx, kw, when):
        base = f"/sys/devices/inverter/{idx}/"
        return {base + "sn": f"E00{idx}", base + "p3phsumKw": str(kw),
                base + "msmtEps": when, base + "ltea3phsumKwh": "100.5",
                base + "newMetricKw": "1.5"}
    devices = {**inverter(0, 0.21, "2025-06-28T17:00:00Z"),
               **inverter(1, 0.0, "2025-06-28T17:00:00Z"),
               **inverter(2, 0.25, "2025-06-28T15:00:00Z")}  # stale: stopped reporting
    envelope = {"api": "varserver", "responses": [
        {"path": "/vars?match=/sys/devices/&fmt=obj", "status": 200,
         "body": json.dumps(devices)},
        {"path": "/vars?match=/sys/livedata/&fmt=obj", "status": 400, "body": "no match"}]}
    polled = datetime(2025, 6, 28, 17, 5, tzinfo=UTC)
    s = parse(gzip.compress(json.dumps(envelope).encode()), polled_at=polled)
    states = {i.serial: i.state for i in s.inverters}
    assert states == {"E000": "working", "E001": "error", "E002": "error"}
    assert all(i.state_derived for i in s.inverters)
    assert s.inverters[0].extra["newMetricKw"] == "1.5"  # new fields are kept
    assert s.polled_at == polled


def test_unknown_device_type_and_new_fields_are_kept():
    doc = {"result": "succeed", "devices": [
        {"DEVICE_TYPE": "Flux Capacitor", "SERIAL": "FC1", "STATE": "working", "gw": "1.21"},
        {"DEVICE_TYPE": "Inverter", "SERIAL": "E1", "STATE": "working",
         "p_3phsum_kw": "0.2", "brand_new_metric": "7", "ltea_3phsum_kwh": "n/a"}]}
    s = parse(json.dumps(doc).encode())
    assert s.other[0].device_type == "Flux Capacitor" and s.other[0].fields["gw"] == "1.21"
    inv = s.inverters[0]
    assert inv.extra["brand_new_metric"] == "7"
    assert inv.lifetime_kwh is None and inv.extra["ltea_3phsum_kwh"] == "n/a"


@pytest.mark.parametrize(("data", "message"), [
    (b"", "empty answer"),
    (b"   \n", "empty answer"),
    (b"<html><body><h1>503 Service Unavailable</h1></body></html>", "HTML page"),
    (b'{"devices": [{"SERIAL": "x"', "truncated JSON"),
    (b'{"devices": [], "result": "fail"}', "result='fail'"),
    (b"[1, 2]", "expected a JSON object"),
    (b'{"hello": 1}', "not a PVS answer"),
    (b"\xff\xfe\x00", "not UTF-8"),
    (b"\x1f\x8b\x08\x00garbage", "corrupt gzip"),
    (b'{"devices": "nope"}', "'devices' is not a list"),
])
def test_bad_input_gives_one_line_parse_error(data, message):
    with pytest.raises(ParseError) as info:
        parse(data)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_small_conversions():
    assert pvs_time("2025,07,20,18,03,33") == datetime(2025, 7, 20, 18, 3, 33, tzinfo=UTC)
    assert pvs_time("2025,13,40,00,00,00") is None
    assert pvs_time(None) is None
    assert firmware_build("2025.06, Build 61839") == 61839
    assert firmware_build("2025.06.24.61840") == 61840
    assert firmware_build("weird") is None


def _with(fixture: str, **changes: str) -> bytes:
    """A real varserver object answer with some variables added or changed."""
    doc = json.loads(real(fixture).read_bytes())
    doc.update({name.replace("__", "/"): value for name, value in changes.items()})
    return json.dumps(doc).encode()


def test_varserver_ess_variables_become_a_battery():
    # the names and string values are those of pypvs's public PVS6 variable list
    ess = {f"/sys/devices/ess/0/{k}": v for k, v in {
        "sn": "00001ABC1234_01234567890ABCDEF", "prodMdlNm": "SPWR-Equinox-model",
        "msmtEps": "2025-06-28T04:00:00Z", "socVal": "0.860000", "customerSocVal": "0.820000",
        "sohVal": "97", "p3phsumKw": "-1.250000", "vBattV": "52.400002",
        "opMode": "SELF_CONSUMPTION", "tInvtrDegc": "31.500000"}.items()}
    doc = json.loads(real("livedata_obj_ess").read_bytes()) | ess
    del doc["/sys/livedata/ess_p"]  # so the battery's own power is what totals use
    s = parse(json.dumps(doc).encode())
    (battery,) = s.batteries
    assert (battery.device_type, battery.serial, battery.op_mode) == (
        "ess", "00001ABC1234_01234567890ABCDEF", "SELF_CONSUMPTION")
    assert battery.soc_pct == pytest.approx(86.0)
    assert battery.customer_soc_pct == pytest.approx(82.0)
    assert battery.soh_pct == pytest.approx(97.0)
    assert battery.power_kw == pytest.approx(-1.25)  # charging
    assert battery.battery_v == pytest.approx(52.4)
    assert battery.data_time == datetime(2025, 6, 28, 4, 0, tzinfo=UTC)
    assert battery.extra["tInvtrDegc"] == "31.500000"  # unknown fields stay kept
    t = totals(s)
    assert t.battery_kw == pytest.approx(-1.25)
    assert t.battery_soc_pct == pytest.approx(86.0)  # livedata soc wins over the mean


def test_net_meter_consumption_counts_battery_power():
    base = json.loads(real("meter_data_obj_61840").read_bytes())
    plain = totals(parse(json.dumps(base).encode()))
    ess = {"/sys/devices/ess/0/sn": "E1", "/sys/devices/ess/0/p3phsumKw": "2.000000"}
    discharging = totals(parse(json.dumps(base | ess).encode()))
    assert plain.consumption_kw is not None
    # 2 kW from the battery is 2 kW more house load for the same production and grid
    assert discharging.consumption_kw == pytest.approx(plain.consumption_kw + 2.0)
    assert discharging.net_grid_kw == plain.net_grid_kw


@pytest.mark.parametrize(("raw", "pct"), [
    ("0x03", 30.0), ("0x01", 10.0), ("0x0A", 100.0), ("0x0b", 110.0), ("0x00", 0.0),
    ("5", 50.0), (8, 80.0), ("0x0C", None), ("n/a", None), ("", None), (None, None),
])
def test_flash_wear_is_hex_tenths(raw, pct):
    assert flash_wear_pct(raw) == pct


def test_varserver_flash_wear_and_cpu_usage_fields():
    s = parse(_with("match_rev_obj_fmt", __sys__pvs__flashwear_type_b="0x03",
                    __sys__pvs__usb_erase_count="4", __sys__info__cpu_usage="37"))
    sup = s.supervisor
    assert sup is not None
    assert sup.flash_wear_pct == 30.0
    assert "/sys/pvs/flashwear_type_b" not in sup.extra
    assert sup.extra["/sys/pvs/usb_erase_count"] == "4"  # unknown variables stay kept
    assert sup.cpu_usage_pct == 37.0 and sup.cpu_load is None  # a %, not a load average
    legacy = parse(real("dl_cgi_61839_30").read_bytes()).supervisor
    assert legacy is not None and legacy.cpu_load is not None and legacy.cpu_usage_pct is None


def test_millisecond_livedata_time_is_the_same_instant():
    seconds = parse(real("livedata_obj_ess").read_bytes())
    millis = parse(_with("livedata_obj_ess", __sys__livedata__time="1751083263512"))
    assert seconds.pvs_time == datetime(2025, 6, 28, 4, 1, 3, tzinfo=UTC)
    assert millis.pvs_time == datetime(2025, 6, 28, 4, 1, 3, 512000, tzinfo=UTC)
    assert millis.polled_at == millis.pvs_time
    # a garbage clock gives no time rather than one in a far year
    assert parse(_with("livedata_obj_ess", __sys__livedata__time="9e15")).pvs_time is None
