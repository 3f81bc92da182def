"""The collector against an emulator that answers like a new-firmware PVS (Secure cookie,
HTTPS, PVS5), over real HTTP and HTTPS on loopback: `run` works with pvs.url in http://
and https:// form, for a PVS6 and a PVS5; lost sessions, refused plain http and a hanging
flashwear read cost at most one retry, never the poll."""

from __future__ import annotations

import base64
import gzip
import json
import logging
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from solar_monitor.config import Config, config_from_dict
from solar_monitor.emulation.emulator import Emulator, default_spec, start_emulator
from solar_monitor.emulation.sim import SimulatedSite
from solar_monitor.pipeline import make_client, open_store, run_once
from solar_monitor.pvs.client import PvsClient
from solar_monitor.pvs.parse import parse
from tests.test_emulator import Clock

NOON = datetime(2026, 6, 10, 16, 0, tzinfo=UTC)



@pytest.fixture
def clock() -> Clock:
    return Clock(NOON)


def make_emulator(clock: Clock, model: str = "PVS6", **kw: object) -> Emulator:
    spec = default_spec(NOON, inverter_count=6, latitude=42.36, longitude=-71.06,
                        timezone="America/New_York", seed=5, model=model)
    return start_emulator(SimulatedSite(spec), firmware="varserver", model=model, clock=clock,
                          tls=True, **kw)  # type: ignore[arg-type]


def config_for(config_dict: dict, url: str, **pvs: object) -> Config:
    config_dict["pvs"].update({"url": url, **pvs})
    return config_from_dict(config_dict, env={})


def client_for(config: Config, **attrs: object) -> PvsClient:
    client = make_client(config)
    client._sleep = lambda seconds: None  # noqa: SLF001 - retries do not really sleep
    for key, value in attrs.items():
        setattr(client, key, value)
    return client


def vars_requests(emu: Emulator) -> list:
    return [r for r in emu.request_log if r.target.startswith("/vars")]


@pytest.mark.parametrize("model", ["PVS6", "PVS5"])
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_run_on_new_firmware(model: str, scheme: str, config_dict: dict, clock: Clock):
    with make_emulator(clock, model) as emu:
        url = emu.url if scheme == "http" else emu.tls_url
        assert url is not None
        report = run_once(config_for(config_dict, url), now=clock.now)
        assert report.ok, report.error
        assert report.totals is not None and report.totals.inverters_total == 6
        assert report.totals.production_kw and report.totals.production_kw > 0.3
        snapshot = parse(gzip.decompress(report.archive_file.read_bytes()))
        assert snapshot.api == "varserver"
        assert snapshot.supervisor is not None and snapshot.supervisor.model == model
        logins = [r for r in emu.request_log if r.target.startswith("/auth")]
        assert len(logins) == 1 and {r.scheme for r in emu.request_log} == {scheme}
        reads = vars_requests(emu)
        assert reads and all(r.method == "GET" for r in reads)
        # only the session cookie, with the token the login answered, on every read
        token = emu.sessions.login("ssm_owner", "127.0.0.1")  # the live one, not a new one
        assert {r.cookie for r in reads} == {f"session={token}"}
        assert not emu.refused


def test_the_pvs_wifi_key_is_never_kept(config_dict: dict, clock: Clock):
    with make_emulator(clock) as emu:
        key = emu.site.vars(NOON)["/sys/info/wpa_key"]
        config = config_for(config_dict, emu.url)
        report = run_once(config, now=clock.now)
        assert report.ok, report.error
    assert any("wpa_key" in r.target or r.target.startswith("/vars?match=/sys/info/")
               for r in emu.request_log)  # it was served
    files = [p for p in config.data_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".gz" for p in files) and any(p.suffix == ".db" for p in files)
    for path in files:
        data = path.read_bytes()
        data = gzip.decompress(data) if path.suffix == ".gz" else data
        assert key.encode() not in data, path
    envelope = json.loads(gzip.decompress(report.archive_file.read_bytes()))
    info = json.loads(envelope["responses"][0]["body"])
    assert info["/sys/info/wpa_key"] == "(redacted by solar-monitor)"
    assert info["/sys/info/serialnum"] == emu.site.supervisor_serial


def test_pvs5_is_identified_by_model_and_swver(config_dict: dict, clock: Clock):
    with make_emulator(clock, "PVS5") as emu:
        client = client_for(config_for(config_dict, emu.url))
        raw = client.poll()
        assert (client.model, client.build, raw.build, raw.api) == ("PVS5", 5412, 5412,
                                                                  "varserver")
        assert raw.url == emu.url
        envelope = json.loads(raw.body)
        pvs = [r for r in envelope["responses"] if "/sys/pvs/" in r["path"]]
        assert pvs and pvs[0]["status"] == 400  # a PVS5 has no /sys/pvs/ names


def test_expired_session_logs_in_again_once(config_dict: dict, clock: Clock,
                                            caplog: pytest.LogCaptureFixture):
    for answer in ("401", "500", "empty"):
        with make_emulator(clock) as emu:
            emu.faults.lost_session_answer(answer)  # type: ignore[arg-type]
            client = client_for(config_for(config_dict, emu.url))
            client.poll()
            clock.now += timedelta(seconds=301)  # the session of the first poll is over
            caplog.clear()
            with caplog.at_level(logging.INFO, logger="solar_monitor.pvs.client"):
                raw = client.poll()
            assert raw.api == "varserver", answer
            relogins = [m for m in caplog.messages if "logging in again" in m]
            assert len(relogins) == 1, (answer, caplog.messages)
            assert len([r for r in emu.request_log if r.target.startswith("/auth")]) == 2
            clock.now = NOON


def test_plain_http_refused_switches_to_https_once(config_dict: dict, clock: Clock,
                                                   caplog: pytest.LogCaptureFixture):
    with make_emulator(clock, https_only=True) as emu:
        config = config_for(config_dict, emu.url, https_port=emu.tls_port)
        client = client_for(config)
        with caplog.at_level(logging.WARNING, logger="solar_monitor.pvs.client"):
            raw = client.poll()
        assert raw.url == emu.tls_url and client.switched_to_https
        switches = [m for m in caplog.messages if "switching to" in m]
        assert switches == [f"the PVS refused plain http (the PVS refused plain http for the "
                            f"login (HTTP 301)); switching to {emu.tls_url} "
                            f"(set pvs.url to it to skip this step)"]
        # nothing but the refused login and supervisor/info went over plain http
        http = [r.target for r in emu.request_log if r.scheme == "http"]
        assert http == ["/cgi-bin/dl_cgi/supervisor/info", "/auth?login"]
        assert all(r.scheme == "https" for r in vars_requests(emu))


def test_a_refused_http_without_https_keeps_the_http_error(config_dict: dict, clock: Clock):
    from solar_monitor.pvs.errors import PvsAuthError

    with make_emulator(clock, https_only=True) as emu:
        closed = emu.tls_port
    with start_emulator(firmware="varserver", clock=clock, tls=True, https_only=True) as emu:
        client = client_for(config_for(config_dict, emu.url, https_port=closed,
                                       poll_budget_s=5))
        with pytest.raises(PvsAuthError, match=r"HTTP 301.*https at https://127\.0\.0\.1:"
                                               r"\d+ failed too \(cannot reach"):
            client.poll()


def test_a_hanging_flashwear_read_does_not_cost_the_poll(config_dict: dict, clock: Clock):
    with make_emulator(clock) as emu:
        emu.faults.pvs_hang(5)
        config = config_for(config_dict, emu.url)
        client = client_for(config, slow_read_timeout_s=0.5)
        raw = client.poll()
        envelope = json.loads(raw.body)
        by_path = {r["path"].split("match=")[1].split("&")[0]: r for r in envelope["responses"]}
        assert by_path["/sys/pvs/"]["status"] is None
        assert "no answer from the PVS within" in by_path["/sys/pvs/"]["error"]
        assert by_path["/sys/devices/"]["status"] == 200
        assert len(parse(raw.body).inverters) == 6
        # one try only for the hanging read: no retry loop on a known firmware hang
        assert sum("/sys/pvs/" in r.target for r in emu.request_log) == 1


# --------------------------------------------------------------------------- the real CLI


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "solar_monitor", *args], capture_output=True,
                          text=True, timeout=120, env=dict(os.environ))


def write_config(tmp_path: Path, config_dict: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config_dict))
    path.chmod(0o600)
    return path


def test_cli_run_and_check_report_the_scheme(tmp_path: Path, config_dict: dict) -> None:
    with start_emulator(firmware="varserver", model="PVS5", tls=True) as emu:
        config_dict["pvs"]["url"] = emu.tls_url
        path = write_config(tmp_path, config_dict)
        ok = run_cli("run", "--config", str(path))
        assert ok.returncode == 0, ok.stderr
        assert "poll stored" in ok.stderr and "Warning" not in ok.stderr  # no TLS warnings
        check = run_cli("check", "--config", str(path))
        assert check.returncode == 0, check.stdout
        assert (f"PASS pvs: {emu.tls_url}: PVS5 build 5412, varserver API, 12 inverters, "
                f"2 meters; https works") in check.stdout
    with start_emulator(firmware="varserver", tls=True, https_only=True) as emu:
        config_dict["pvs"].update({"url": emu.url, "https_port": emu.tls_port})
        check = run_cli("check", "--config", str(write_config(tmp_path, config_dict)))
        assert check.returncode == 0, check.stdout
        assert f"plain http refused, https works: set pvs.url: {emu.tls_url}" in check.stdout



# ------------------------------------------------ what fcgi_vars really prints (unescaped)

HOSTILE_SSID = 'My "Home" \\ net{x}'
HOSTILE_KEY = 'Wk"sec\\ret}{"'


def _printed_as_the_real_server(client: PvsClient, ssid: str, key: str) -> PvsClient:
    """The emulator's /sys/info/ answer with the SSID and Wi-Fi key printed as the real
    fcgi_vars prints them: unescaped (localapi-observed/README.md), so not JSON."""
    request = client._request  # noqa: SLF001 - the transport, wrapped

    def unescaped(path: str, headers: dict | None, remaining: float) -> tuple[int, bytes]:
        status, body = request(path, headers, remaining)
        if "match=/sys/info/" in path and status == 200:
            for name, value in (("ssid", ssid), ("wpa_key", key)):
                body, n = re.subn(rf'"/sys/info/{name}": ?"[^"]*"'.encode(),
                                  f'"/sys/info/{name}":"{value}"'.encode(), body)
                assert n == 1, name
        return status, body

    client._request = unescaped  # type: ignore[method-assign]
    return client


def _every_file_bytes(folder: Path) -> bytes:
    """Every file under `folder`, gzip members inflated (the raw archive is gzipped)."""
    out = []
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            out.append(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
    return b"\n".join(out)


def test_quotes_and_backslashes_in_ssid_and_wifi_key_cost_no_value_and_leak_no_key(
        config_dict: dict, clock: Clock, caplog: pytest.LogCaptureFixture):
    with make_emulator(clock) as emu:
        config = config_for(config_dict, emu.url)
        client = _printed_as_the_real_server(client_for(config), HOSTILE_SSID, HOSTILE_KEY)
        with caplog.at_level(logging.WARNING):
            report = run_once(config, now=clock.now, client=client)
    assert report.ok, report.error
    assert report.totals is not None and report.totals.inverters_total == 6
    assert any("/sys/info/ssid" in m and "unescaped" in m for m in caplog.messages)
    files = _every_file_bytes(config.data_path)
    assert b"sec\\ret" not in files and b"Wk" not in files  # no part of the key anywhere
    envelope = json.loads(gzip.decompress(report.archive_file.read_bytes()))
    info = next(r for r in envelope["responses"] if "/sys/info/" in r["path"])
    assert f'"/sys/info/ssid":"{HOSTILE_SSID}"' in info["body"]  # as received
    assert '"/sys/info/wpa_key":"(redacted by solar-monitor)"' in info["body"]
    with open_store(config) as store:
        assert store.db.execute("SELECT count(*) FROM inverter_readings").fetchone()[0] == 6


def test_a_non_utf8_value_is_named_and_the_bytes_are_archived(config_dict: dict,
                                                              clock: Clock):
    with make_emulator(clock) as emu:
        config = config_for(config_dict, emu.url)
        client = client_for(config)
        request = client._request  # noqa: SLF001

        def latin1(path: str, headers: dict | None, remaining: float) -> tuple[int, bytes]:
            status, body = request(path, headers, remaining)
            if "match=/sys/info/" in path:
                body = re.sub(rb'"/sys/info/ssid": ?"[^"]*"', b'"/sys/info/ssid":"Caf\xe9"',
                              body)
            return status, body

        client._request = latin1  # type: ignore[method-assign]
        raw = client.poll()
    snapshot = parse(raw.body)
    assert len(snapshot.inverters) == 6
    assert any("could not read /sys/info/ssid" in w for w in snapshot.warnings)
    info = next(r for r in json.loads(raw.body)["responses"] if "/sys/info/" in r["path"])
    assert b'"/sys/info/ssid":"Caf\xe9"' in base64.b64decode(info["body_b64"])


def test_a_refused_login_says_wrong_serial_or_password_once_and_stays_on_http(
        tmp_path: Path, config_dict: dict) -> None:
    """A 401 at login is a wrong password, not "plain http refused": no https switch, one
    login, one error line. The serial typed in lower case gives the upper-case password
    the real (case-sensitive) server expects."""
    from tests.faults.hostile import hostile_pvs

    logins: list[str] = []

    def pvs(handler: Any) -> None:
        if handler.path.startswith("/auth"):
            logins.append(base64.b64decode(handler.headers["Authorization"].split()[1]).decode())
            status, body = 401, b'{"status": 401, "description" : "Unauthorized"}'
        else:
            status, body = 200, json.dumps({"result": "succeed", "supervisor": {
                "SWVER": "2025.09, Build 61846", "MODEL": "PVS6", "BUILD": 61846}}).encode()
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    with hostile_pvs(pvs) as url:
        config_dict["pvs"].update({"url": url, "serial": "zt01234567890abcdef"})
        failed = run_cli("run", "--config", str(write_config(tmp_path, config_dict)))
    assert failed.returncode == 1
    assert logins == ["ssm_owner:BCDEF"]
    lines = [line for line in failed.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "wrong serial or password" in lines[0], failed.stderr
    assert "https" not in failed.stderr


def _port_80_open() -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", 80)) == 0


def test_port_80_refused_switches_to_https(config_dict: dict, clock: Clock,
                                           caplog: pytest.LogCaptureFixture):
    if _port_80_open():
        pytest.skip("something listens on 127.0.0.1:80: the refusal cannot be shown here")
    with make_emulator(clock) as emu:
        config = config_for(config_dict, "http://127.0.0.1", https_port=emu.tls_port)
        with caplog.at_level(logging.WARNING, logger="solar_monitor.pvs.client"):
            raw = client_for(config).poll()
        assert raw.url == emu.tls_url
        assert [m for m in caplog.messages if "switching to" in m] == [
            f"the PVS refused plain http (port 80 refused the connection); switching to "
            f"{emu.tls_url} (set pvs.url to it to skip this step)"]
    from solar_monitor.pvs.errors import PvsUnreachableError

    client = client_for(config_for(config_dict, "http://127.0.0.1", https_port=emu.tls_port))
    with pytest.raises(PvsUnreachableError, match=r"^cannot reach the PVS at http://127\.0\.0"
                       r"\.1 \(connection refused\) nor at https://127\.0\.0\.1:\d+ \(connection "
                       r"refused\); is the Pi cabled"):
        client.poll()  # the emulator is gone: neither answers, said in one line


def test_a_slow_answer_is_announced_once(config_dict: dict, clock: Clock,
                                         caplog: pytest.LogCaptureFixture,
                                         monkeypatch: pytest.MonkeyPatch):
    from solar_monitor.pvs import client as client_module

    monkeypatch.setattr(client_module, "WAIT_NOTICE_S", 0.2)
    with start_emulator(firmware="legacy", clock=clock) as emu:
        emu.faults.slow(0.5)  # supervisor/info and DeviceList, each 0.5 s late
        with caplog.at_level(logging.INFO, logger="solar_monitor.pvs.client"):
            client_for(config_for(config_dict, emu.url, poll_budget_s=10)).poll()
    waits = [m for m in caplog.messages if m.startswith("waiting for the PVS")]
    assert waits == ["waiting for the PVS, up to 10 s"]
