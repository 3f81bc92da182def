"""The emulator's LocalAPI (new firmware) over real HTTP and HTTPS on loopback: it must
answer like the real server (README, "Firmware"), so that a client written against the
old emulator (a `Path=/` cookie without Secure, 403s) fails here as it fails on a PVS."""

from __future__ import annotations

import base64
import json
import re
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests
import urllib3

from solar_monitor.emulation.emulator import (
    Emulator,
    RequestRecord,
    start_emulator,
    wifi_variables,
)
from solar_monitor.emulation.sim import SimulatedSite, SiteSpec, public_variables
from solar_monitor.emulation.varserver import _float32
from tests.test_emulator import Clock

NOON = datetime(2025, 6, 21, 20, 0, tzinfo=UTC)



@pytest.fixture(autouse=True)
def _quiet_tls() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
        yield


@pytest.fixture
def clock() -> Clock:
    return Clock(NOON)


def site(model: str = "PVS6", build: int = 61846, **kw: object) -> SimulatedSite:
    return SimulatedSite(SiteSpec(build=build, model=model,  # type: ignore[arg-type]
                                  epoch=datetime(2025, 6, 20, tzinfo=UTC), **kw))


@pytest.fixture
def emu(clock: Clock) -> Iterator[Emulator]:
    with start_emulator(site(), firmware="varserver", clock=clock, tls=True) as e:
        yield e


def basic(emu: Emulator, scheme_word: str = "basic") -> dict[str, str]:
    token = base64.b64encode(f"ssm_owner:{emu.site.supervisor_serial[-5:]}".encode()).decode()
    return {"Authorization": f"{scheme_word} {token}"}


def token_of(emu: Emulator, base: str, **kw: object) -> str:
    r = requests.get(base + "/auth?login", headers=basic(emu), timeout=5, verify=False)
    assert r.status_code == 200
    return str(r.json()["session"])


def vars_get(base: str, query: str, token: str | None, **kw: object) -> requests.Response:
    headers = {"Cookie": f"session={token}"} if token else {}
    return requests.get(f"{base}/vars?{query}", headers=headers, timeout=5, verify=False)


def test_login_answers_the_real_cookie_on_both_listeners(emu: Emulator) -> None:
    assert emu.url.startswith("http://") and emu.tls_url and emu.tls_url.startswith("https://")
    assert emu.cert_path is not None and emu.cert_path.read_text().startswith("-----BEGIN")
    for base in (emu.url, emu.tls_url):
        r = requests.get(base + "/auth?login", headers=basic(emu), timeout=5, verify=False)
        token = r.json()["session"]
        assert len(token) == 64 and r.json() == {"session": token}
        assert r.headers["Set-Cookie"] == f"session={token}; Secure; HttpOnly"
    # the certificate is the one served: a verifying client accepts it
    r = requests.get(emu.tls_url + "/cgi-bin/dl_cgi/supervisor/info", timeout=5,
                     verify=str(emu.cert_path))
    assert r.json()["supervisor"]["MODEL"] == "PVS6"


def test_login_forms_and_shared_sessions(emu: Emulator) -> None:
    assert emu.tls_url
    first = token_of(emu, emu.url)
    # same client address, same token, on either listener and by either login form
    assert token_of(emu, emu.tls_url) == first
    r = requests.post(emu.url + "/auth", data="login", headers=basic(emu, "Basic"), timeout=5)
    assert r.json()["session"] == first
    r = requests.get(emu.url + "/auth?login", headers=basic(emu, "BASIC"), timeout=5)
    assert r.status_code == 200
    # a token from the http listener reads over https: one session table
    assert vars_get(emu.tls_url, "name=/sys/info/model", first).status_code == 200
    bad = {"Authorization": "basic " + base64.b64encode(b"ssm_owner:00000").decode()}
    r = requests.get(emu.url + "/auth?login", headers=bad, timeout=5)
    assert (r.status_code, r.json()) == (401, {"status": 401, "description": "Unauthorized"})
    assert "Set-Cookie" not in r.headers


def test_sessions_last_300_s_from_login_even_in_use(emu: Emulator, clock: Clock) -> None:
    token = token_of(emu, emu.url)
    for _ in range(5):
        clock.now += timedelta(seconds=59)
        assert vars_get(emu.url, "name=/sys/info/uptime", token).status_code == 200
    clock.now += timedelta(seconds=6)  # 301 s after login, in use all along
    r = vars_get(emu.url, "name=/sys/info/uptime", token)
    assert (r.status_code, r.json()) == (
        401, {"status": 401, "description": "Unauthorized", "errorcode": "0x0012"})
    r = vars_get(emu.url, "name=/sys/info/uptime", None)  # pvsguest may not read it
    assert (r.status_code, r.json()["errorcode"]) == (400, "0x0100")
    assert vars_get(emu.url, "name=/sys/info/uptime", "0" * 64).json()["errorcode"] == "0x0012"
    fresh = token_of(emu, emu.url)  # after the end, a new token: the old one stays dead
    assert fresh != token and vars_get(emu.url, "name=/sys/info/uptime", token).status_code == 401
    assert vars_get(emu.url, "name=/sys/info/uptime", fresh).status_code == 200


def test_a_secure_cookie_in_a_jar_never_reaches_plain_http(emu: Emulator) -> None:
    """The old client's way (requests' jar) fails over http:// exactly as on a PVS: the
    read goes without a session, as pvsguest, who may not read the model."""
    assert emu.tls_url
    for base, status in ((emu.url, 400), (emu.tls_url, 200)):
        s = requests.Session()
        s.get(base + "/auth?login", headers=basic(emu), timeout=5, verify=False)
        assert "session" in s.cookies
        assert s.get(base + "/vars?name=/sys/info/model&fmt=obj", timeout=5,
                     verify=False).status_code == status
    http_read, https_read = (r for r in emu.request_log if r.target.startswith("/vars"))
    assert (http_read.scheme, http_read.cookie) == ("http", None)
    assert https_read.scheme == "https" and https_read.cookie.startswith("session=")


def test_vars_get_and_post_formats_and_limits(emu: Emulator) -> None:
    token = token_of(emu, emu.url)
    cookie = {"Cookie": f"session={token}"}
    truth = emu.site.vars(NOON)
    obj = {k: v for k, v in truth.items() if "/sys/info/" in k}
    for fmt in ("obj", "o", "object"):
        assert vars_get(emu.url, f"match=/sys/info/&fmt={fmt}", token).json() == obj
    arr = vars_get(emu.url, "match=/sys/info/", token).json()
    assert arr == {"values": [{"name": k, "value": v} for k, v in obj.items()],
                   "count": len(obj)}
    r = vars_get(emu.url, "match=/sys/info/&fmt=json", token)
    assert r.status_code == 400
    r = requests.post(emu.url + "/vars", data="match=/sys/info/&fmt=obj", headers=cookie,
                      timeout=5)
    assert r.json() == obj
    r = requests.post(emu.url + "/vars", data="name=/sys/info/model," + "x" * 1020,
                      headers=cookie, timeout=5)
    assert r.status_code == 413
    # never URL-decoded: %2F is not a slash
    r = vars_get(emu.url, "match=%2Fsys%2Finfo%2F", token)
    assert (r.status_code, r.json()["errorcode"]) == (400, "0x0040")
    # one unknown name fails the whole query: no partial answer
    r = vars_get(emu.url, "name=/sys/info/model,/sys/info/nope&fmt=obj", token)
    assert (r.status_code, r.json()["errorcode"]) == (400, "0x0100")
    assert vars_get(emu.url, "name=/sys/info/model&fmt=obj", token).json() == {
        "/sys/info/model": "PVS6"}


def test_set_writes_and_a_foreign_cookie_crashes(emu: Emulator) -> None:
    """set= writes what ssm_owner may write, as the real server does, and nothing else."""
    token = token_of(emu, emu.url)
    r = requests.post(emu.url + "/vars", data="set=/sys/telemetryws/enable=0",
                      headers={"Cookie": f"session={token}"}, timeout=5)
    assert (r.status_code, r.json()["values"]) == (
        200, [{"name": "/sys/telemetryws/enable", "value": "0"}])
    assert emu.request_log[-1] == RequestRecord(
        "POST", "/vars", "http", b"set=/sys/telemetryws/enable=0", f"session={token}")
    r = vars_get(emu.url, "set=/ess/config/dcm/control_param/min_customer_soc=0.5", token)
    assert r.json()["values"][0]["value"] == "0.500000"  # stored as the float it is
    assert vars_get(emu.url, "set=/sys/info/model=X", token).status_code == 401
    assert vars_get(emu.url, "set=/sys/telemetryws/enable=on", token).status_code == 400
    assert vars_get(emu.url, "match=telemetryws/enable&fmt=obj", token).json() == {
        "/sys/telemetryws/enable": "0"}
    assert emu.writes == [("/sys/telemetryws/enable", "0"),
                          ("/ess/config/dcm/control_param/min_customer_soc", "0.500000")]
    assert [t for _, t in emu.refused] == ["/vars?set=/sys/info/model=X",
                                            "/vars?set=/sys/telemetryws/enable=on"]
    r = requests.get(emu.url + "/vars?name=/sys/info/model", headers={"Cookie": "lang=en"},
                     timeout=5)
    assert r.status_code == 500
    r = requests.get(emu.url + "/vars?name=/sys/info/model",
                     headers={"Cookie": f"lang=en; session={token}"}, timeout=5)
    assert r.status_code == 200


def test_values_are_typed_like_the_varserver(emu: Emulator) -> None:
    values = vars_get(emu.url, "match=/sys/&fmt=obj", token_of(emu, emu.url)).json()
    types = public_variables("PVS6")
    assert {"/sys/info/ssid", "/sys/info/sys_type", "/sys/info/lmac"} <= set(values)
    assert values["/sys/pvs/flashwear_type_b"] == "0x01"  # 10 % in hex tenths
    freq = values["/sys/devices/inverter/0/freqHz"]
    assert freq.count(".") == 1 and len(freq.split(".")[1]) == 6  # C's %f
    for name, value in values.items():
        kind = types[re.sub(r"^(/sys/devices/\w+/)\d+/", r"\1{index}/", name)]
        if kind == "float":  # a float32 printed with %f: printing it again changes nothing
            assert _float32(float(value)) == value, name
        elif kind.startswith(("int", "uint")) and name != "/sys/pvs/flashwear_type_b":
            assert value.lstrip("-").isdigit(), name
    assert _float32(60.01) == "60.009998"


def test_a_few_names_answer_before_login(emu: Emulator) -> None:
    """pypvs reads the serial, ssid and lmac before it can log in."""
    r = vars_get(emu.url, "name=/sys/info/serialnum,/sys/info/ssid,/sys/info/lmac", None)
    assert r.status_code == 200 and r.json()["count"] == 3
    r = vars_get(emu.url, "name=/sys/info/serialnum,/sys/info/uptime", None)
    assert (r.status_code, r.json()["errorcode"]) == (400, "0x0100")  # pvsguest's answer
    with start_emulator(site(), firmware="varserver", auth="strict") as strict:
        r = vars_get(strict.url, "name=/sys/info/serialnum", None)
        assert (r.status_code, r.json()["errorcode"]) == (401, "0x0011")


def test_pvs5_answers_like_a_pvs5(clock: Clock) -> None:
    with start_emulator(firmware="varserver", model="PVS5", clock=clock, tls=True) as e:
        assert e.model == "PVS5" and e.site.spec.build == 5412 and e.firmware == "varserver"
        sup = requests.get(e.url + "/cgi-bin/dl_cgi/supervisor/info", timeout=5).json()
        assert "BUILD" not in sup["supervisor"]
        assert sup["supervisor"]["SWVER"] == "2025.11, Build 5412"
        token = token_of(e, e.url)
        values = vars_get(e.url, "match=/sys/&fmt=obj", token).json()
        assert values["/sys/info/model"] == "PVS5"
        assert set(values) <= {n for n in public_variables("PVS5")} | {
            n for n in values if "/sys/devices/" in n}
        assert vars_get(e.url, "match=/sys/pvs/", token).status_code == 400  # not on a PVS5
    with start_emulator(firmware="legacy", model="PVS5") as e:
        assert e.site.spec.build == 5405 and e.firmware == "legacy"
        assert requests.get(e.url + "/auth?login", timeout=5).status_code == 404


def test_livedata_time_in_seconds_or_milliseconds() -> None:
    for ms, scale in ((False, 1), (True, 1000)):
        values = site(livedata_time_ms=ms).vars(NOON)
        assert int(values["/sys/livedata/time"]) == int(NOON.timestamp()) * scale


def test_a_hanging_flashwear_read(emu: Emulator) -> None:
    token = token_of(emu, emu.url)
    emu.faults.pvs_hang(0.5)
    started = time.monotonic()
    assert vars_get(emu.url, "match=/sys/info/&fmt=obj", token).status_code == 200
    assert time.monotonic() - started < 0.4
    with pytest.raises(requests.ReadTimeout):
        requests.get(emu.url + "/vars?match=/sys/pvs/&fmt=obj", timeout=0.2,
                     headers={"Cookie": f"session={token}"})


# --------------------------------------------------------------------------- hostile strings

OBSERVED_SSID = 'My "Home" \\ net{x}'  # the fixtures README's example, and its answer:
OBSERVED_SSID_ANSWER = b'{ "/sys/info/ssid":"My "Home" \\ net{x}"}\n'


def raw_vars(base: str, query: str, token: str | None) -> bytes:
    """The body as sent: it is not JSON when a string holds a quote."""
    return vars_get(base, query, token).content


def test_strings_are_printed_unescaped_as_the_real_server_does(clock: Clock) -> None:
    with start_emulator(site(), firmware="varserver", clock=clock,
                        variables={"/sys/info/ssid": OBSERVED_SSID}) as emu:
        assert raw_vars(emu.url, "name=/sys/info/ssid&fmt=obj", None) == OBSERVED_SSID_ANSWER
    with start_emulator(site(), firmware="varserver", clock=clock,
                        variables=wifi_variables(None, None, hostile=True)) as emu:
        token = token_of(emu, emu.url)
        body = raw_vars(emu.url, "match=/sys/info/&fmt=obj", token)
        assert b'"/sys/info/ssid":"Our "Home" \\ {net}\n\xff",' in body
        assert b'"/sys/info/wpa_key":"p\\a"ss{}\tw\xfe",' in body
        with pytest.raises(ValueError):
            json.loads(body)  # as from a PVS: one quote breaks the whole answer
        assert raw_vars(emu.url, "name=/sys/info/ssid", None) == (
            b'{"values" : [ { "name": "/sys/info/ssid", "value" : "Our "Home" \\ {net}\n\xff" }]'
            b',"count": 1 }\n')
        # fcgi_vars prints a value that looks like JSON (braces or brackets) unquoted
        r = requests.post(emu.url + "/vars", timeout=5, headers={"Cookie": f"session={token}"},
                          data='set=/ess/config/dcm/mode_param/control_mode={"m": 1}')
        assert r.content.endswith(b'"value" : {"m": 1} }],"count": 1 }\n')


def test_the_cli_options_reach_the_answers() -> None:
    """`solar-monitor emulator --auth strict --ssid ... --wpa-key ...`, with a byte that
    is not UTF-8 in argv, as a user would start it."""
    key = b'k\xffey"\\'
    proc = subprocess.Popen(
        [sys.executable, "-m", "solar_monitor", "emulator", "--port", "0", "--firmware",
         "varserver", "--auth", "strict", "--ssid", OBSERVED_SSID.encode(), "--wpa-key", key],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # Ctrl-C works as in a terminal even when this suite runs as a background job
        # (`make test &` in .ci/run): a non-interactive shell starts those with SIGINT
        # ignored, which every child would inherit, and the SIGINT below would not stop it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        base = re.search(r"http://[\d.]+:\d+", banner)
        serial = re.search(r"serial (\w+)", banner)
        assert base and serial and "auth strict" in banner, banner
        assert vars_get(base[0], "name=/sys/info/ssid", None).status_code == 401
        password = base64.b64encode(f"ssm_owner:{serial[1][-5:]}".encode()).decode()
        r = requests.get(base[0] + "/auth?login", timeout=5,
                         headers={"Authorization": f"basic {password}"})
        body = raw_vars(base[0], "name=/sys/info/ssid,/sys/info/wpa_key&fmt=obj",
                        r.json()["session"])
        assert body == OBSERVED_SSID_ANSWER[:-2] + b',"/sys/info/wpa_key":"' + key + b'"}\n'
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
