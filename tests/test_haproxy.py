"""The shipped HAProxy bridge, run with the real haproxy in front of a PVS on loopback."""

from __future__ import annotations

import gzip
import http.client
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from solar_monitor.emulation.emulator import Emulator, start_emulator
from tests.haproxy_util import (
    HAPROXY_CFG,
    bridge_env,
    free_port,
    haproxy_binary,
    run_haproxy,
)


@pytest.fixture(scope="module")
def pvs() -> Iterator[Emulator]:
    haproxy_binary()
    with start_emulator(firmware="legacy") as emulator:
        yield emulator


@pytest.fixture(scope="module")
def bridge(pvs: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of the shipped config running in front of the emulator."""
    port = free_port()
    with run_haproxy(tmp_path_factory.mktemp("haproxy"), bridge_env(pvs.port, port), port):
        yield f"http://127.0.0.1:{port}"


def _seen(pvs: Emulator, path: str, method: str = "GET") -> bool:
    """Whether the emulator received this request: the bridge forwarded it."""
    return (method, path) in pvs.requests


def _send(bridge: str, method: str, path: str) -> tuple[int, bytes]:
    """One request with the path sent byte for byte (requests would normalise it)."""
    host, port = bridge.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_haproxy_accepts_the_shipped_file() -> None:
    for extra in ({}, {"SM_PVS_LOG_BRIDGE": "yes"}):
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **extra}
        result = subprocess.run(
            [haproxy_binary(), "-c", "-f", str(HAPROXY_CFG)],
            env=env, capture_output=True, text=True, check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_devicelist_passes(bridge: str, pvs: Emulator) -> None:
    resp = requests.get(f"{bridge}/cgi-bin/dl_cgi", params={"Command": "DeviceList"}, timeout=30)
    assert resp.status_code == 200
    assert resp.json()["result"] == "succeed"
    assert _seen(pvs, "/cgi-bin/dl_cgi?Command=DeviceList")


READ_PATHS = [
    "/cgi-bin/dl_cgi?Command=Get_Comm&SerialNumber=ZT01234567890ABCDEF",
    "/cgi-bin/dl.cgi?Command=CheckFW",
    "/cgi-bin/dl_cgi?Command=GridProfileGet",
    "/cgi-bin/dl_cgi?Command=GetDiscoveryProgress",
    "/cgi-bin/dl_cgi/supervisor/info",
    "/cgi-bin/dl_cgi/communication/interfaces",
    "/cgi-bin/dl_cgi/devices/list",
    "/cgi-bin/dl_cgi/network/powerProduction",
    "/cgi-bin/dl_cgi/network/interfaces",
    "/auth?login",
    "/vars?match=/sys/info/&fmt=obj",
    "/vars?match=%2Fsys%2Fdevices%2F&fmt=obj&cache=mdata",
    "/vars?name=/sys/info/serialnum,/sys/info/sw_rev",
    "/",
    "/index.html",
    "/js/app.min.js",
]


@pytest.mark.parametrize("path", READ_PATHS)
def test_read_paths_pass(bridge: str, pvs: Emulator, path: str) -> None:
    # The legacy emulator answers 404 to new-firmware and browser paths: what
    # matters here is that the bridge forwarded the request untouched.
    status, body = _send(bridge, "GET", path)
    assert b"solar-monitor bridge" not in body, (status, body)
    assert _seen(pvs, path)


def test_head_passes(bridge: str) -> None:
    resp = requests.head(f"{bridge}/cgi-bin/dl_cgi/supervisor/info", timeout=30)
    assert resp.status_code == 200 and resp.content == b""


def test_the_collectors_own_requests_pass(bridge: str, pvs: Emulator) -> None:
    from solar_monitor.pvs import client

    paths = [
        client.DEVICELIST_PATH,
        client.SUPERVISOR_INFO_PATH,
        client.LOGIN_PATH,
        *client.VARSERVER_PATHS,
    ]
    for path in paths:
        status, body = _send(bridge, "GET", path)
        assert b"solar-monitor bridge" not in body, (path, status, body)
        assert _seen(pvs, path), path


REFUSED = [
    ("POST", "/cgi-bin/dl_cgi?Command=DeviceList", 405),
    ("PUT", "/vars?name=/sys/info/uptime", 405),
    ("DELETE", "/cgi-bin/dl_cgi/devices/list", 405),
    ("GET", "/cgi-bin/dl_cgi?Command=Start", 403),
    ("GET", "/cgi-bin/dl_cgi?Command=Stop", 403),
    ("GET", "/cgi-bin/dl.cgi?Command=SetCellPurchased&SerialNumber=ZT0", 403),
    ("GET", "/cgi-bin/dl_cgi?Command=GridProfileRefresh", 403),
    ("GET", "/cgi-bin/dl_cgi?Command=DeviceList&Command=Start", 403),
    ("GET", "/cgi-bin/dl_cgi?command=start", 403),
    ("GET", "/vars?set=/sys/pvs/foo=1", 403),
    ("GET", "/vars?name=/sys/info/uptime&set=1", 403),
    ("GET", "/vars?name=/sys/info/uptime&%73et=1", 403),
    ("GET", "/vars", 403),
    ("GET", "/auth?logout", 403),
    ("GET", "/cgi-bin/dl_cgi/supervisor/info?Command=Start", 403),
    ("GET", "/cgi-bin/dl_cgi/app.js?Command=Start", 403),
    ("GET", "/cgi-bin/dl_cgi/app.js", 403),
    ("GET", "/cgi-bin/other", 403),
    ("GET", "/index.html?Command=Start", 403),
]


@pytest.mark.parametrize(("method", "path", "status"), REFUSED)
def test_writes_are_refused(
    bridge: str, pvs: Emulator, method: str, path: str, status: int
) -> None:
    answer, body = _send(bridge, method, path)
    assert answer == status, body
    assert b"solar-monitor bridge" in body
    assert not _seen(pvs, path, method)


def test_a_get_with_a_body_is_refused(bridge: str, pvs: Emulator) -> None:
    path = "/cgi-bin/dl_cgi?Command=DeviceList"
    before = len(pvs.requests)
    resp = requests.get(f"{bridge}{path}", data="Command=Start", timeout=30)
    assert resp.status_code == 400
    assert len(pvs.requests) == before


def test_gzip_when_the_client_asks(bridge: str) -> None:
    url = f"{bridge}/cgi-bin/dl_cgi?Command=DeviceList"
    conn_headers = {"Accept-Encoding": "gzip"}
    resp = requests.get(url, headers=conn_headers, timeout=30, stream=True)
    assert resp.headers.get("Content-Encoding") == "gzip"
    assert json.loads(gzip.decompress(resp.raw.read()))["result"] == "succeed"
    plain = requests.get(url, headers={"Accept-Encoding": "identity"}, timeout=30)
    assert "Content-Encoding" not in plain.headers


def test_a_source_outside_the_lan_acl_is_refused(pvs: Emulator, tmp_path: Path) -> None:
    # The ACL admits only 127.0.0.2; connecting from 127.0.0.1 must be refused.
    port = free_port()
    env = bridge_env(pvs.port, port, SM_LAN_NETS="127.0.0.2/32")
    path = "/cgi-bin/dl_cgi/supervisor/info"
    with run_haproxy(tmp_path, env, port):
        before = len(pvs.requests)
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}{path}", timeout=30)
        assert len(pvs.requests) == before
        # ... while the admitted source gets through the same bridge.
        conn = http.client.HTTPConnection(
            "127.0.0.1", port, timeout=30, source_address=("127.0.0.2", 0)
        )
        try:
            conn.request("GET", path)
            assert conn.getresponse().status == 200
        finally:
            conn.close()


def test_optional_log_port_bridge(pvs: Emulator, tmp_path: Path) -> None:
    port, log_port = free_port(), free_port()
    env = bridge_env(
        pvs.port, port,
        SM_PVS_LOG_BRIDGE="yes",
        SM_PVS_LOG_BIND=f"127.0.0.1:{log_port}",
        SM_PVS_LOG_ADDR=f"127.0.0.1:{pvs.port}",
    )
    with run_haproxy(tmp_path, env, port):
        log_bridge = f"http://127.0.0.1:{log_port}"
        _send(log_bridge, "GET", "/browse")
        assert _seen(pvs, "/browse")
        status, body = _send(log_bridge, "POST", "/entries")
        assert (status, b"solar-monitor bridge" in body) == (405, True)
        assert not _seen(pvs, "/entries", "POST")


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_a_70_second_devicelist_passes(bridge: str, pvs: Emulator) -> None:
    # Debian's stock `timeout server 50s` would answer 504 here.
    pvs.faults.slow(70.0)
    try:
        started = time.monotonic()
        resp = requests.get(f"{bridge}/cgi-bin/dl_cgi?Command=DeviceList", timeout=150)
        elapsed_s = time.monotonic() - started
    finally:
        pvs.faults.slow(0.0)
    assert resp.status_code == 200
    assert resp.json()["result"] == "succeed"
    assert elapsed_s >= 70
