"""The parser on every real payload: actual values, not just 'it did not crash'."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime

import pytest

from solar_monitor.pvs.errors import ParseError
from solar_monitor.pvs.models import totals
from solar_monitor.pvs.parse import firmware_build, parse, pvs_time

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


def test_ess_devices_are_kept_as_other():
    s = parse(real("with_ess_devices").read_bytes())
    kinds = sorted(d.device_type for d in s.other)
    assert kinds == sorted(["PV Disconnect", "Gateway", "Storage Inverter", "ESS BMS",
                            "Battery", "Energy Storage System"])
    battery = next(d for d in s.other if d.device_type == "Battery")
    assert battery.fields["DEVICE_TYPE"] == "Battery"  # kept exactly as reported
    assert len(s.inverters) == 12


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
