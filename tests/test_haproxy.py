"""The shipped HAProxy bridge, run with the real haproxy in front of a PVS on loopback.

Two emulated PVSes, each serving plain HTTP and HTTPS: an old-firmware one for the
dl_cgi and browser paths, a new-firmware one (login, varserver) for what pypvs and
the Home Assistant integrations send: HTTPS, `GET /auth?login`, `POST /vars`.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import http.client
import json
import shutil
import socket
import ssl
import subprocess
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path

import pytest
import requests

from solar_monitor.emulation.emulator import Emulator, start_emulator
from tests.haproxy_util import (
    HAPROXY_CFG,
    bridge_env,
    free_port,
    haproxy_binary,
    installer_certificate,
    run_haproxy,
)


@dataclass(frozen=True)
class Bridge:
    """A running bridge: its plain and TLS ports on 127.0.0.1."""

    port: int
    tls_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        return f"https://127.0.0.1:{self.tls_port}"


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The certificate deploy/install.sh makes, as the bridge serves it on a Pi."""
    haproxy_binary()
    return installer_certificate(tmp_path_factory.mktemp("pi"))


@contextmanager
def _running_bridge(pvs: Emulator, cert: Path, tmp_path: Path, **extra: str) -> Iterator[Bridge]:
    """The shipped config in front of `pvs` (its HTTP and HTTPS ports) until the block
    ends; `extra` overrides presetenv defaults."""
    bridge = Bridge(free_port(), free_port())
    env = bridge_env(pvs.port, pvs.tls_port, bridge.port, bridge.tls_port, cert, **extra)
    with run_haproxy(tmp_path, env, bridge.port):
        yield bridge


@pytest.fixture(scope="module")
def pvs() -> Iterator[Emulator]:
    haproxy_binary()
    with start_emulator(firmware="legacy", tls=True) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def bridge(
    pvs: Emulator, cert: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Base URL (plain HTTP) of the shipped config running in front of the emulator."""
    with _running_bridge(pvs, cert, tmp_path_factory.mktemp("haproxy")) as ports:
        yield ports.url


def _seen(pvs: Emulator, path: str, method: str = "GET") -> bool:
    """Whether the emulator received this request: the bridge forwarded it."""
    return (method, path) in pvs.requests


def _send(
    base: str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    """One request with the path sent byte for byte (requests would normalise it);
    over TLS without verifying the bridge's self-signed certificate for https."""
    scheme, _, hostport = base.partition("://")
    host, port = hostport.split(":")
    conn: http.client.HTTPConnection
    if scheme == "https":
        conn = http.client.HTTPSConnection(
            host, int(port), timeout=30, context=ssl._create_unverified_context()
        )
    else:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_haproxy_accepts_the_shipped_file(cert: Path) -> None:
    # Only the certificate is exported: every address is the file's own default.
    for extra in ({}, {"SM_PVS_LOG_BRIDGE": "yes"}):
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SM_BRIDGE_CERT": str(cert), **extra}
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


def test_a_source_outside_the_lan_acl_is_refused(
    pvs: Emulator, cert: Path, tmp_path: Path
) -> None:
    # The ACL admits only 127.0.0.2; connecting from 127.0.0.1 must be refused.
    path = "/cgi-bin/dl_cgi/supervisor/info"
    with _running_bridge(pvs, cert, tmp_path, SM_LAN_NETS="127.0.0.2/32") as ports:
        port = ports.port
        before = len(pvs.requests)
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}{path}", timeout=30)
        # The HTTPS side too: closed before the TLS handshake.
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _send(ports.tls_url, "GET", path)
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


def test_optional_log_port_bridge(pvs: Emulator, cert: Path, tmp_path: Path) -> None:
    log_port = free_port()
    with _running_bridge(
        pvs, cert, tmp_path,
        SM_PVS_LOG_BRIDGE="yes",
        SM_PVS_LOG_BIND=f"127.0.0.1:{log_port}",
        SM_PVS_LOG_ADDR=f"127.0.0.1:{pvs.port}",
    ):
        log_bridge = f"http://127.0.0.1:{log_port}"
        _send(log_bridge, "GET", "/browse")
        assert _seen(pvs, "/browse")
        status, body = _send(log_bridge, "POST", "/entries")
        assert (status, b"solar-monitor bridge" in body) == (405, True)
        assert not _seen(pvs, "/entries", "POST")


def test_a_70_second_devicelist_passes(
    pvs: Emulator, cert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shipped 150 s timeouts let a 70 s DeviceList through; Debian's stock `timeout
    server 50s` answers 504. Both run at 1/50 of real time: the shipped config with every
    timeout divided by 50, and the PVS slowed by 70 s / 50, so the test takes seconds."""
    import re

    from tests import haproxy_util

    scale = 50
    shipped = HAPROXY_CFG.read_text()
    timeout = re.compile(r"^(\s*timeout\s+[\w-]+\s+)(\d+)s\s*$", re.MULTILINE)
    promised = {m.group(1).split()[1]: int(m.group(2)) for m in timeout.finditer(shipped)}
    assert {k: promised[k] for k in ("server", "client", "queue")} == {
        "server": 150, "client": 150, "queue": 150}
    repo = haproxy_util.REPO
    docs = [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]
    assert any("150 s timeouts" in d.read_text() for d in docs), "the docs promise 150 s"

    def answer_after(config: str, name: str, delay_s: float) -> tuple[int, float]:
        scaled = timeout.sub(lambda m: f"{m.group(1)}{int(m.group(2)) * 1000 // scale}ms",
                             config)
        (folder := tmp_path / name).mkdir()
        (path := folder / "scaled.cfg").write_text(scaled)
        monkeypatch.setattr(haproxy_util, "HAPROXY_CFG", path)
        bridge = Bridge(free_port(), free_port())
        env = bridge_env(pvs.port, pvs.tls_port, bridge.port, bridge.tls_port, cert)
        with run_haproxy(folder, env, bridge.port):
            pvs.faults.slow(delay_s)
            try:
                started = time.monotonic()
                resp = requests.get(f"{bridge.url}/cgi-bin/dl_cgi?Command=DeviceList",
                                    timeout=30)
                elapsed_s = time.monotonic() - started
            finally:
                pvs.faults.slow(0.0)
        if resp.status_code == 200:
            assert resp.json()["result"] == "succeed"
        return resp.status_code, elapsed_s

    stock = timeout.sub(lambda m: m.group(0).replace("150s", "50s")
                        if m.group(1).split()[1] == "server" else m.group(0), shipped)
    assert answer_after(stock, "debian-stock", 70 / scale)[0] == 504
    status, elapsed_s = answer_after(shipped, "shipped", 70 / scale)
    assert status == 200
    assert elapsed_s >= 70 / scale


# --------------------------------------------------------------------------- new firmware
# pypvs, both Home Assistant integrations and curl, through the bridge over HTTPS.


@pytest.fixture(scope="module")
def new_pvs() -> Iterator[Emulator]:
    haproxy_binary()
    with start_emulator(firmware="varserver", tls=True) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def new_bridge(
    new_pvs: Emulator, cert: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Bridge]:
    with _running_bridge(new_pvs, cert, tmp_path_factory.mktemp("haproxy-new")) as ports:
        yield ports


def _password(pvs: Emulator) -> str:
    return pvs.site.supervisor_serial[-5:]


def _login(pvs: Emulator, base: str) -> str:
    """Log in through the bridge; returns the Cookie header value to send."""
    conn = http.client.HTTPSConnection(
        "127.0.0.1", int(base.rsplit(":", 1)[1]), timeout=30,
        context=ssl._create_unverified_context(),
    )
    token = base64.b64encode(f"ssm_owner:{_password(pvs)}".encode()).decode()
    try:
        conn.request("GET", "/auth?login", headers={"Authorization": f"basic {token}"})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
        cookie = SimpleCookie(resp.getheader("Set-Cookie") or "")
    finally:
        conn.close()
    return f"session={cookie['session'].value}"


def test_pypvs_reads_through_the_bridge_over_https(
    new_pvs: Emulator, new_bridge: Bridge
) -> None:
    aiohttp = pytest.importorskip("aiohttp")
    pypvs = pytest.importorskip("pypvs.pvs")
    before = len(new_pvs.request_log)

    async def read() -> tuple[str, set[str]]:
        # What pvs-hass does: discover, log in with the last five of the serial, read.
        async with aiohttp.ClientSession() as session:
            pvs = pypvs.PVS(
                session=session, host=f"127.0.0.1:{new_bridge.tls_port}", user="ssm_owner"
            )
            await pvs.discover()
            await pvs.setup(auth_password=_password(new_pvs))
            data = await pvs.update()
            return pvs.serial_number, set(data.inverters)

    serial, inverters = asyncio.run(read())
    assert serial == new_pvs.site.supervisor_serial
    assert inverters == set(new_pvs.site.inverter_serials)
    arrived = new_pvs.request_log[before:]
    assert {(r.method, r.scheme) for r in arrived} >= {("GET", "https"), ("POST", "https")}
    assert any(r.body.startswith(b"match=") for r in arrived)


def test_login_post_read_and_get_read_over_https(
    new_pvs: Emulator, new_bridge: Bridge
) -> None:
    cookie = _login(new_pvs, new_bridge.tls_url)
    status, body = _send(
        new_bridge.tls_url, "POST", "/vars",
        body=b"name=/sys/info/serialnum", headers={"Cookie": cookie},
    )
    assert status == 200, body
    values = json.loads(body)["values"]
    assert values == [{"name": "/sys/info/serialnum", "value": new_pvs.site.supervisor_serial}]
    status, body = _send(
        new_bridge.tls_url, "POST", "/vars",
        body=b"match=/sys/devices/&fmt=obj", headers={"Cookie": cookie},
    )
    assert status == 200, body
    assert any(k.endswith("/p3phsumKw") for k in json.loads(body))
    status, body = _send(
        new_bridge.tls_url, "GET", "/vars?match=/sys/info/&fmt=obj", headers={"Cookie": cookie}
    )
    assert status == 200, body
    assert json.loads(body)["/sys/info/serialnum"] == new_pvs.site.supervisor_serial
    # The bridge spoke HTTPS to the PVS, and passed the body on byte for byte.
    last = new_pvs.request_log[-3:]
    assert [(r.method, r.scheme, r.body) for r in last] == [
        ("POST", "https", b"name=/sys/info/serialnum"),
        ("POST", "https", b"match=/sys/devices/&fmt=obj"),
        ("GET", "https", b""),
    ]


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_the_collector_polls_through_the_bridge(
    new_pvs: Emulator, new_bridge: Bridge, scheme: str
) -> None:
    # solar-monitor on another LAN machine, `pvs.url` the Pi's address either way.
    from solar_monitor.pvs.client import PvsClient

    before = len(new_pvs.request_log)
    url = new_bridge.tls_url if scheme == "https" else new_bridge.url
    poll = PvsClient(url, serial=new_pvs.site.supervisor_serial).poll()
    assert poll.api == "varserver"
    assert new_pvs.site.supervisor_serial in poll.body.decode()
    arrived = new_pvs.request_log[before:]
    assert {r.scheme for r in arrived if r.target.startswith(("/auth", "/vars"))} == {"https"}
    assert sum(r.target.startswith("/vars?match=") for r in arrived) == 4


def test_curl_post_read_over_https(
    new_pvs: Emulator, new_bridge: Bridge, tmp_path: Path
) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl not installed (apt-get install -y curl)")
    jar = tmp_path / "cookies"
    base = [curl, "-sS", "-k", "--max-time", "30", "-b", str(jar), "-c", str(jar)]
    login = subprocess.run(
        [*base, "-u", f"ssm_owner:{_password(new_pvs)}", f"{new_bridge.tls_url}/auth?login"],
        capture_output=True, text=True, check=False, timeout=60,
    )
    assert login.returncode == 0 and "session" in login.stdout, login.stderr
    read = subprocess.run(
        [*base, "-w", "\n%{http_code}", "--data", "match=/sys/info/&fmt=obj",
         f"{new_bridge.tls_url}/vars"],
        capture_output=True, text=True, check=False, timeout=60,
    )
    body, _, code = read.stdout.rpartition("\n")
    assert (read.returncode, code) == (0, "200"), read.stdout + read.stderr
    assert json.loads(body)["/sys/info/serialnum"] == new_pvs.site.supervisor_serial


def test_the_plain_side_reaches_the_pvs_api_over_https_and_dl_cgi_over_http(
    new_pvs: Emulator, new_bridge: Bridge
) -> None:
    cookie = _login(new_pvs, new_bridge.tls_url)
    status, _ = _send(
        new_bridge.url, "POST", "/vars", body=b"name=/sys/info/uptime", headers={"Cookie": cookie}
    )
    assert status == 200
    assert new_pvs.request_log[-1].scheme == "https"
    status, _ = _send(new_bridge.tls_url, "GET", "/cgi-bin/dl_cgi/supervisor/info")
    assert status == 200
    assert (new_pvs.request_log[-1].target, new_pvs.request_log[-1].scheme) == (
        "/cgi-bin/dl_cgi/supervisor/info", "http",
    )


def test_a_1024_byte_body_passes(new_pvs: Emulator, new_bridge: Bridge) -> None:
    # The PVS's own limit; the PVS answers this unknown name with a 400 of its own.
    body = b"name=/sys/info/" + b"x" * (1024 - 15)
    assert len(body) == 1024
    status, answer = _send(new_bridge.tls_url, "POST", "/vars", body=body)
    assert b"solar-monitor bridge" not in answer, (status, answer)
    assert new_pvs.request_log[-1].body == body


SESSION = "Cookie: session=0123456789abcdef\r\n"
CLOSE = "Connection: close\r\n"


def _post(
    body: bytes, target: str = "/vars", head: str = SESSION, version: str = "1.1",
    close: bool = True,
) -> bytes:
    """A POST written by hand, with a Content-Length (and by default the last one on
    its connection, so a request the bridge wrongly passes still ends quickly)."""
    return (
        f"POST {target} HTTP/{version}\r\nHost: pvs\r\n{head}{CLOSE if close else ''}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def _head(text: str) -> bytes:
    """A hand-written request head (and body) that closes its connection."""
    return text.replace("\r\n\r\n", f"\r\n{CLOSE}\r\n", 1).encode("latin-1")


def _raw(bridge: Bridge, data: bytes, tls: bool = True, half_close: bool = False) -> bytes:
    """Send bytes exactly as given on one connection; all the bridge answers until it
    closes. `half_close` ends our side of the stream after a short pause (plain HTTP
    only: Python's TLS socket cannot half-close; both sides share every rule)."""
    assert not (tls and half_close)
    sock = socket.create_connection(("127.0.0.1", bridge.tls_port if tls else bridge.port), 30)
    if tls:
        sock = ssl._create_unverified_context().wrap_socket(sock)
    with sock:
        sock.sendall(data)
        if half_close:
            time.sleep(0.2)
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


# (id, raw request, status): each is refused by the bridge and never reaches the PVS.
REFUSED_NEW = [
    ("set", _post(b"name=/sys/info/serialnum&set=/sys/telemetryws/enable=1"), 403),
    ("set-alone", _post(b"set=/sys/telemetryws/enable=1"), 403),
    ("set-upper", _post(b"name=/sys/info/serialnum&SET=/sys/x=1"), 403),
    ("set-percent", _post(b"name=/sys/info/serialnum&%73et=/sys/x=1"), 403),
    ("set-percent-upper", _post(b"name=/sys/info/serialnum&%53ET=/sys/x=1"), 403),
    ("set-semicolon", _post(b"name=/sys/info/serialnum;set=/sys/x=1"), 403),
    ("set-after-empty", _post(b"name=/sys/info/serialnum&&set=/sys/x=1"), 403),
    ("set-bad-escape", _post(b"name=/sys/info/serialnum&%zz&set=1"), 403),
    ("set-after-nul", _post(b"name=/sys/info/serialnum\x00&set=/sys/x=1"), 400),
    ("nul", _post(b"name=/sys/info/serialnum\x00"), 400),
    ("semicolon", _post(b"name=/sys/info/serialnum;fmt=obj"), 403),
    ("empty-param", _post(b"name=/sys/info/serialnum&&fmt=obj"), 403),
    ("unknown-param", _post(b"name=/sys/info/serialnum&x=1"), 403),
    ("param-case", _post(b"Name=/sys/info/serialnum"), 403),
    ("equals-in-value", _post(b"name=/sys/x=1"), 403),
    ("newline", _post(b"name=/sys/info/serialnum\n"), 403),
    ("empty-body", _post(b""), 403),
    ("too-big", _post(b"name=/sys/info/" + b"x" * (1025 - 15)), 413),
    ("no-length", _head(f"POST /vars HTTP/1.1\r\nHost: pvs\r\n{SESSION}\r\n"), 411),
    ("chunked", _head("POST /vars HTTP/1.1\r\nHost: pvs\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "18\r\nname=/sys/info/serialnum\r\n0\r\n\r\n"), 411),
    ("chunked-and-length", _head("POST /vars HTTP/1.1\r\nHost: pvs\r\nTransfer-Encoding: chunked"
                                 "\r\nContent-Length: 24\r\n\r\n18\r\nname=/sys/info/serialnum"
                                 "\r\n0\r\n\r\n"), 411),
    ("query-and-body", _post(b"name=/sys/info/serialnum", target="/vars?fmt=obj"), 400),
    ("http10-set", _post(b"set=/sys/x=1", version="1.0"), 403),
    ("http10-no-length", _head("POST /vars HTTP/1.0\r\nHost: pvs\r\n\r\nset=/sys/x=1"), 411),
    ("request-in-body", _post(b"name=/sys/info/serialnum\r\n\r\nPOST /vars HTTP/1.1\r\n"
                              b"Content-Length: 12\r\n\r\nset=/sys/x=1"), 403),
    ("post-dl-cgi", _post(b"Command=DeviceList", target="/cgi-bin/dl_cgi?Command=DeviceList"),
     405),
    ("post-dl-cgi-start", _post(b"Command=Start", target="/cgi-bin/dl_cgi"), 405),
    ("post-auth", _post(b"", target="/auth?login"), 405),
    ("post-root", _post(b"name=/sys/info/serialnum", target="/"), 405),
    ("put-vars", _post(b"name=/sys/info/serialnum").replace(b"POST", b"PUT", 1), 405),
    ("logout", _head(f"GET /auth?logout HTTP/1.1\r\nHost: pvs\r\n{SESSION}\r\n"), 403),
    ("cookie-without-session", _post(b"name=/sys/info/serialnum", head="Cookie: foo=1\r\n"),
     400),
    ("cookie-session-no-equals", _post(b"name=/sys/info/serialnum", head="Cookie: session\r\n"),
     400),
    ("two-cookie-headers", _post(b"name=/sys/info/serialnum",
                                 head=SESSION + "Cookie: foo=1\r\n"), 400),
    ("get-cookie-without-session",
     _head("GET /vars?match=/sys/info/ HTTP/1.1\r\nHost: pvs\r\nCookie: x=1\r\n\r\n"), 400),
]


@pytest.mark.parametrize(("request_bytes", "status"),
                         [pytest.param(r, s, id=i) for i, r, s in REFUSED_NEW])
@pytest.mark.parametrize("tls", [True, False], ids=["https", "http"])
def test_refused_requests_never_reach_the_pvs(
    new_pvs: Emulator, new_bridge: Bridge, request_bytes: bytes, status: int, tls: bool
) -> None:
    before = len(new_pvs.request_log)
    answer = _raw(new_bridge, request_bytes, tls=tls)
    assert _status(answer) == status, answer
    assert b"solar-monitor bridge" in answer
    assert new_pvs.request_log[before:] == []


def test_a_pipelined_write_behind_a_read_is_refused(
    new_pvs: Emulator, new_bridge: Bridge
) -> None:
    before = len(new_pvs.request_log)
    read = _post(b"name=/sys/info/serialnum", close=False)
    write = _post(b"set=/sys/telemetryws/enable=1")
    answer = _raw(new_bridge, read + write)
    assert answer.count(b"HTTP/1.1 ") == 2, answer
    assert b"solar-monitor bridge: set= is not allowed" in answer
    assert [r.body for r in new_pvs.request_log[before:]] == [b"name=/sys/info/serialnum"]


def test_bytes_past_the_content_length_are_a_new_request_and_refused(
    new_pvs: Emulator, new_bridge: Bridge
) -> None:
    before = len(new_pvs.request_log)
    smuggled = _post(b"name=/a", close=False) + b"set=/sys/x=1\r\n\r\n"
    answer = _raw(new_bridge, smuggled, tls=False, half_close=True)
    assert b"set=" not in b"".join(r.body for r in new_pvs.request_log[before:])
    assert b" 400 " in answer


def test_a_body_cut_short_never_reaches_the_pvs(new_pvs: Emulator, new_bridge: Bridge) -> None:
    before = len(new_pvs.request_log)
    partial = _post(b"name=/sys/info/serialnum&fmt=obj")[:-8]
    # HAProxy refuses it (its log says 400, PR) but answers nothing to a closed side.
    _raw(new_bridge, partial, tls=False, half_close=True)
    assert new_pvs.request_log[before:] == []


def test_the_tls_side_speaks_http11_and_tls12_or_later(new_bridge: Bridge) -> None:
    context = ssl._create_unverified_context()
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", new_bridge.tls_port), 30) as raw, \
            context.wrap_socket(raw) as tls:
        assert tls.selected_alpn_protocol() == "http/1.1"
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    # A client that offers only TLS 1.1 (and the old ciphers it needs) is turned away.
    old = ssl._create_unverified_context()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    with socket.create_connection(("127.0.0.1", new_bridge.tls_port), 30) as raw, \
            pytest.raises(ssl.SSLError):
        old.wrap_socket(raw)
