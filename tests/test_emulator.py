"""The PVS emulator over real HTTP on loopback: firmware modes, login, varserver, faults."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests

from solar_monitor.emulation.emulator import (
    HAPROXY_503_BODY,
    SUPERVISOR_INFO_PATH,
    EmulatorFault,
    accelerated_clock,
    parse_fault,
    start_emulator,
)
from solar_monitor.emulation.sim import FirmwareChange, SimulatedSite, SiteSpec

NOON = datetime(2025, 6, 21, 20, 0, tzinfo=UTC)
DEVICE_LIST = "/cgi-bin/dl_cgi?Command=DeviceList"


class Clock:
    """A settable emulator clock."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock(NOON)


def make_site(build: int = 61839) -> SimulatedSite:
    return SimulatedSite(SiteSpec(build=build, epoch=datetime(2025, 6, 20, tzinfo=UTC)))


@pytest.fixture
def legacy(clock: Clock) -> Iterator:
    with start_emulator(make_site(), firmware="legacy", clock=clock) as emu:
        yield emu


def login(
    session: requests.Session, url: str, serial: str, user: str = "ssm_owner"
) -> requests.Response:
    """Log in; on 200 the session sends `Cookie: session=<token>` itself from then on
    (the real cookie is Secure, so a cookie jar never sends it over http://)."""
    token = base64.b64encode(f"{user}:{serial[-5:]}".encode()).decode()
    r = session.get(url + "/auth?login", headers={"Authorization": f"basic {token}"},
                    timeout=5, verify=False)
    if r.status_code == 200:
        session.headers["Cookie"] = f"session={r.json()['session']}"
    return r


def get(url: str, **kw: object) -> requests.Response:
    return requests.get(url, timeout=5, **kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- firmware modes


def test_legacy_serves_device_list_without_login(legacy) -> None:
    for path in (DEVICE_LIST, "/cgi-bin/dl.cgi?Command=DeviceList"):
        r = get(legacy.url + path)
        assert r.status_code == 200
        payload = r.json()
        assert payload == legacy.site.device_list(NOON)
        assert payload["result"] == "succeed" and len(payload["devices"]) == 15
    info = get(legacy.url + SUPERVISOR_INFO_PATH).json()
    assert info["supervisor"]["BUILD"] == 61839
    assert get(legacy.url + "/auth?login").status_code == 404
    assert get(legacy.url + "/vars?match=info").status_code == 404
    assert legacy.firmware == "legacy"
    assert legacy.url == f"http://127.0.0.1:{legacy.port}"


def test_auth_mode_needs_a_session_cookie(clock: Clock) -> None:
    with start_emulator(make_site(61842), firmware="auth", clock=clock, session_ttl_s=120) as emu:
        r = get(emu.url + DEVICE_LIST)
        assert (r.status_code, r.json()) == (403, {"status": 403, "error": "Unauthorized"})
        assert get(emu.url + SUPERVISOR_INFO_PATH).json()["supervisor"]["BUILD"] == 61842
        s = requests.Session()
        r = login(s, emu.url, "ZZZZZZZ00000")
        assert (r.status_code, r.json()) == (401, {"status": 401, "description": "Unauthorized"})
        assert login(s, emu.url, emu.site.supervisor_serial, user="spwr_owner").status_code == 401
        r = login(s, emu.url, emu.site.supervisor_serial)
        assert r.status_code == 200
        assert r.json()["session"] == s.cookies["session"]
        assert s.get(emu.url + DEVICE_LIST, timeout=5).json()["result"] == "succeed"
        assert s.get(emu.url + "/vars?match=sw_rev", timeout=5).status_code == 200
        clock.advance(seconds=121)  # the session expires on the emulator's clock
        assert s.get(emu.url + DEVICE_LIST, timeout=5).status_code == 403
        r = s.get(emu.url + "/vars?match=sw_rev", timeout=5)
        assert (r.status_code, r.json()["errorcode"]) == (401, "0x0012")
        assert login(s, emu.url, emu.site.supervisor_serial).status_code == 200
        assert s.get(emu.url + DEVICE_LIST, timeout=5).status_code == 200


def test_varserver_mode_refuses_device_list_and_serves_vars(clock: Clock) -> None:
    with start_emulator(make_site(61846), firmware="varserver", clock=clock) as emu:
        s = requests.Session()
        # without a session, pvsguest's three names only (auth="guest", the default)
        r = s.get(emu.url + "/vars?match=info&fmt=obj", timeout=5)
        assert list(r.json()) == ["/sys/info/serialnum", "/sys/info/ssid", "/sys/info/lmac"]
        login(s, emu.url, emu.site.supervisor_serial)
        assert s.get(emu.url + DEVICE_LIST, timeout=5).status_code == 403
        truth = emu.site.vars(NOON)
        arr = s.get(emu.url + "/vars?match=/sys/info/", timeout=5).json()
        assert arr["count"] == len(arr["values"]) == sum(k.startswith("/sys/info/") for k in truth)
        assert {"name": "/sys/info/sw_rev", "value": "2025.09.04.61846"} in arr["values"]
        obj = s.get(emu.url + "/vars?match=livedata&fmt=obj", timeout=5).json()
        assert obj == {k: v for k, v in truth.items() if "livedata" in k}
        named = s.get(
            emu.url + "/vars?name=/sys/info/serialnum,/sys/info/model&fmt=obj", timeout=5
        ).json()
        assert named == {
            "/sys/info/serialnum": emu.site.supervisor_serial,
            "/sys/info/model": "PVS6",
        }
        inv = s.get(emu.url + "/vars?match=/sys/devices/inverter/&fmt=obj", timeout=5).json()
        assert sum(k.endswith("/sn") for k in inv) == 12
        r = s.get(emu.url + "/vars?match=no_such_variable", timeout=5)
        assert (r.status_code, r.json()["errorcode"]) == (400, "0x0040")
        assert get(emu.url + SUPERVISOR_INFO_PATH).json()["supervisor"]["BUILD"] == 61846


def test_default_site_matches_the_requested_firmware() -> None:
    with start_emulator(firmware="varserver") as emu:
        assert emu.site.spec.build == 61846
        assert emu.firmware == "varserver"
        r = get(emu.url + SUPERVISOR_INFO_PATH)
        assert r.json()["supervisor"]["SERIAL"] == emu.site.supervisor_serial
    with pytest.raises(ValueError):
        start_emulator(firmware="nope")


def test_firmware_change_switches_behaviour_live(clock: Clock) -> None:
    site = make_site()
    site.add_fault(FirmwareChange(start=NOON + timedelta(hours=1), build=61846))
    with start_emulator(site, firmware="legacy", clock=clock) as emu:
        assert get(emu.url + DEVICE_LIST).status_code == 200
        clock.advance(hours=2)
        assert get(emu.url + DEVICE_LIST).status_code == 403
        assert get(emu.url + SUPERVISOR_INFO_PATH).json()["supervisor"]["BUILD"] == 61846


# --------------------------------------------------------------------------- never write


def test_writes_and_unsafe_commands_are_refused_and_logged(clock: Clock) -> None:
    with start_emulator(make_site(61846), firmware="varserver", clock=clock) as emu:
        s = requests.Session()
        login(s, emu.url, emu.site.supervisor_serial)
        assert s.post(emu.url + DEVICE_LIST, timeout=5).status_code == 405
        assert s.put(emu.url + "/vars?name=/sys/info/model", data="x", timeout=5).status_code == 405
        assert s.delete(emu.url + "/auth?login", timeout=5).status_code == 405
        assert s.get(emu.url + "/vars?set=/sys/foo=1", timeout=5).status_code == 400  # unknown
        assert s.get(emu.url + "/cgi-bin/dl_cgi?Command=Start", timeout=5).status_code == 403
        assert (
            s.get(emu.url + "/cgi-bin/dl_cgi?Command=SetCellPurchased", timeout=5).status_code
            == 403
        )
        assert s.get(emu.url + "/vars?match=uptime", timeout=5).status_code == 200
        assert emu.refused == [
            ("POST", DEVICE_LIST),
            ("PUT", "/vars?name=/sys/info/model"),
            ("DELETE", "/auth?login"),
            ("GET", "/vars?set=/sys/foo=1"),
            ("GET", "/cgi-bin/dl_cgi?Command=Start"),
            ("GET", "/cgi-bin/dl_cgi?Command=SetCellPurchased"),
        ]
        assert len(emu.requests) == 8 and emu.requests[-1] == ("GET", "/vars?match=uptime")


# --------------------------------------------------------------------------- faults


def test_haproxy_503_for_n_simulated_minutes(legacy, clock: Clock) -> None:
    legacy.faults.unavailable(10)
    for path in (DEVICE_LIST, SUPERVISOR_INFO_PATH):
        r = get(legacy.url + path)
        assert r.status_code == 503
        assert r.text == HAPROXY_503_BODY
        assert "No server is available to handle this request." in r.text
    clock.advance(minutes=9)
    assert get(legacy.url + DEVICE_LIST).status_code == 503
    clock.advance(minutes=2)
    assert get(legacy.url + DEVICE_LIST).status_code == 200


def test_slow_answers_and_client_timeouts(legacy) -> None:
    legacy.faults.slow(0.4)
    started = time.monotonic()
    assert get(legacy.url + SUPERVISOR_INFO_PATH).status_code == 200
    assert time.monotonic() - started >= 0.4
    with pytest.raises(requests.ReadTimeout):
        requests.get(legacy.url + DEVICE_LIST, timeout=0.1)
    legacy.faults.slow(0)
    started = time.monotonic()
    assert get(legacy.url + DEVICE_LIST).status_code == 200
    assert time.monotonic() - started < 0.4


def test_content_faults(legacy) -> None:
    legacy.faults.truncated()
    r = get(legacy.url + DEVICE_LIST)
    assert r.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.text)
    assert r.text.startswith('{"devices": [')
    legacy.faults.clear()
    legacy.faults.html()
    r = get(legacy.url + DEVICE_LIST)
    assert r.status_code == 200 and r.headers["Content-Type"] == "text/html"
    assert r.text.lstrip().startswith("<html>")
    legacy.faults.clear()
    legacy.faults.fail()
    assert get(legacy.url + DEVICE_LIST).json()["result"] != "succeed"
    legacy.faults.clear()
    legacy.faults.forbidden()
    r = get(legacy.url + DEVICE_LIST)
    assert (r.status_code, r.json()) == (403, {"status": 403, "error": "Unauthorized"})
    assert get(legacy.url + SUPERVISOR_INFO_PATH).status_code == 200
    legacy.faults.clear()
    assert get(legacy.url + DEVICE_LIST).json()["result"] == "succeed"


def test_dead_and_missing_inverters_via_the_controller(legacy) -> None:
    serials = legacy.site.inverter_serials
    legacy.faults.dead_inverter(serials[0])
    legacy.faults.missing_inverter(3)
    devices = get(legacy.url + DEVICE_LIST).json()["devices"]
    invs = {d["SERIAL"]: d for d in devices if d["DEVICE_TYPE"] == "Inverter"}
    assert len(invs) == 11 and serials[3] not in invs
    assert invs[serials[0]]["STATE"] == "error"
    assert invs[serials[0]].get("p_3phsum_kw", "0") == "0"
    assert float(invs[serials[1]]["p_3phsum_kw"]) > 0.05


def test_cli_fault_strings_apply(legacy, clock: Clock) -> None:
    assert parse_fault("503:10") == EmulatorFault("503", minutes=10.0)
    assert parse_fault("slow:70") == EmulatorFault("slow", seconds=70.0)
    assert parse_fault("truncated") == EmulatorFault("truncated")
    assert parse_fault("dead:3") == EmulatorFault("dead", target=3)
    assert parse_fault("missing:E00202040011392") == EmulatorFault(
        "missing", target="E00202040011392"
    )
    assert parse_fault("pvshang:30") == EmulatorFault("pvshang", seconds=30.0)
    for bad in ("slow", "slow:x", "dead", "reboot", "html:3", "pvshang:x"):
        with pytest.raises(ValueError, match="bad fault"):
            parse_fault(bad)
    legacy.faults.apply(parse_fault("missing:0"))
    legacy.faults.apply(parse_fault("503:1"))
    assert get(legacy.url + DEVICE_LIST).status_code == 503
    clock.advance(minutes=2)
    devices = get(legacy.url + DEVICE_LIST).json()["devices"]
    assert legacy.site.inverter_serials[0] not in {d["SERIAL"] for d in devices}


# --------------------------------------------------------------------------- server


def test_concurrent_requests_and_close(legacy) -> None:
    results: list[int] = []

    def fetch() -> None:
        results.append(get(legacy.url + DEVICE_LIST).status_code)

    threads = [threading.Thread(target=fetch) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 8
    legacy.close()
    with pytest.raises(requests.ConnectionError):
        requests.get(legacy.url + DEVICE_LIST, timeout=1)


def test_accelerated_clock_runs_fast() -> None:
    clock = accelerated_clock(NOON, speed=3600)
    time.sleep(0.05)
    assert NOON + timedelta(seconds=150) < clock() < NOON + timedelta(minutes=10)
