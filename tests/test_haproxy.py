"""The shipped HAProxy bridge, run with the real haproxy in front of a PVS on loopback.

Two emulated PVSes, each serving plain HTTP and HTTPS: an old-firmware one for the
dl_cgi and browser paths, a new-firmware one (login, varserver) for what pypvs and
the Home Assistant integrations send: HTTPS, `GET /auth?login`, `POST /vars`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import http.client
import json
import select
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
    lighttpd_binary,
    run_haproxy,
    run_lighttpd,
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
def _running_bridge(
    pvs: Emulator, cert: Path, tmp_path: Path, http_port: int | None = None,
    config: Path = HAPROXY_CFG, tls_port: int | None = None, **extra: str,
) -> Iterator[Bridge]:
    """The shipped config (or `config`) in front of `pvs` (its HTTP and HTTPS ports;
    `http_port` and `tls_port` replace them) until the block ends; `extra` overrides
    presetenv defaults."""
    bridge = Bridge(free_port(), free_port())
    env = bridge_env(http_port or pvs.port, tls_port or pvs.tls_port, bridge.port,
                     bridge.tls_port, cert, **extra)
    with run_haproxy(tmp_path, env, bridge.port, config):
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
    "/vars?match=livedata&fmt=obj&cache=ldata",
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
    # A PVS's lighttpd maps /auth and /vars to their handlers by prefix.
    ("GET", "/auth.html", 403),
    ("GET", "/auth/logout.html", 403),
    ("GET", "/vars.js", 403),
    ("GET", "/vars/set.js", 403),
    ("GET", "/Vars/set.js", 403),
    # cache= names a PVS cache, which it never frees: only the names clients use, or a
    # stream of new short names would still grow the PVS's memory without end.
    ("GET", "/vars?match=/sys/info/&cache=a1", 403),
    ("GET", "/vars?cache=" + "x" * 16 + "&match=/sys/info/", 403),
    ("GET", "/vars?match=/sys/info/&cache=ldata&cache=mdata2", 403),
    ("GET", "/vars?match=/sys/info/&cache=" + "a" * 12000, 403),
    ("GET", "/vars?match=/sys/info/&cache=" + "a" * 17, 403),
    ("GET", "/vars?match=/sys/info/&cache=", 403),
    ("GET", "/vars?match=/sys/info/&cache=a%2Fb", 403),
    ("GET", "/vars?cache=a.b&match=/sys/info/", 403),
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
    log_port = free_port()
    with _running_bridge(pvs, cert, tmp_path, SM_LAN_NETS="127.0.0.2/32",
                         SM_PVS_LOG_BRIDGE="yes", SM_PVS_LOG_BIND=f"127.0.0.1:{log_port}",
                         SM_PVS_LOG_ADDR=f"127.0.0.1:{pvs.port}") as ports:
        port = ports.port
        before = len(pvs.requests)
        for refused in (port, log_port):
            with pytest.raises(requests.ConnectionError):
                requests.get(f"http://127.0.0.1:{refused}{path}", timeout=30)
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
        # No protocol switch here either.
        status, body = _send(log_bridge, "GET", "/upgrade", headers=H2C_HEADERS)
        assert (status, b"protocol upgrades" in body) == (400, True)
        assert not _seen(pvs, "/upgrade")


def test_a_70_second_devicelist_passes(pvs: Emulator, cert: Path, tmp_path: Path) -> None:
    """The shipped 150 s timeouts let a 70 s DeviceList through; Debian's stock `timeout
    server 50s` answers 504. Both run at 1/50 of real time: the shipped config with every
    timeout divided by 50, and the PVS slowed by 70 s / 50, so the test takes seconds."""
    import re

    from tests import haproxy_util

    scale = 50
    shipped = HAPROXY_CFG.read_text()
    timeout = re.compile(r"^(\s*timeout\s+[\w-]+\s+)(\d+)s\s*$", re.MULTILINE)
    promised = {m.group(1).split()[1]: int(m.group(2)) for m in timeout.finditer(shipped)}
    # the PVS may take 150 s; a client silent for 5 s is dropped (an idle TLS handshake
    # must not hold a connection), which never cuts a client waiting for its answer
    assert {k: promised[k] for k in ("server", "client", "queue")} == {
        "server": 150, "client": 5, "queue": 150}
    repo = haproxy_util.REPO
    docs = [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]
    assert any("150 s server timeout" in d.read_text() for d in docs), "docs promise 150 s"

    def answer_after(config: str, name: str, delay_s: float) -> tuple[int, float]:
        # `timeout client` (5 s) stays as shipped: it is already shorter than the scaled
        # wait, so the test also shows it never cuts a client waiting for its answer
        scaled = timeout.sub(lambda m: m.group(0) if m.group(1).split()[1] == "client" else
                             f"{m.group(1)}{int(m.group(2)) * 1000 // scale}ms", config)
        (folder := tmp_path / name).mkdir()
        (path := folder / "scaled.cfg").write_text(scaled)
        bridge = Bridge(free_port(), free_port())
        env = bridge_env(pvs.port, pvs.tls_port, bridge.port, bridge.tls_port, cert)
        with run_haproxy(folder, env, bridge.port, config=path):
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
    got = answer_after(stock, "debian-stock", 70 / scale)
    assert got[0] == 504, got
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


def _login_with(*authorizations: str) -> bytes:
    """`GET /auth?login` with these Authorization headers."""
    fields = "".join(f"Authorization: {a}\r\n" for a in authorizations)
    return _head(f"GET /auth?login HTTP/1.1\r\nHost: pvs\r\n{fields}\r\n")


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
    ("new-cache-names",
     _post(b"match=/sys/info/" + b"".join(b"&cache=n%02d" % i for i in range(60))), 403),
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
    # HAProxy reads a cookie named session here, but the PVS looks for `session=` and
    # crashes (the emulator answers 500, as the real handler does).
    ("cookie-space-before-equals", _post(b"name=/sys/info/serialnum",
                                         head="Cookie: session =0123456789abcdef\r\n"), 400),
    ("cookie-session-inside-a-value", _post(b"name=/sys/info/serialnum",
                                            head="Cookie: x=session=0123\r\n"), 400),
    ("get-chunked-body", _head("GET /vars?match=/sys/info/ HTTP/1.1\r\nHost: pvs\r\n"
                               "Transfer-Encoding: chunked\r\n\r\n5\r\nset=1\r\n0\r\n\r\n"), 400),
    # fcgi_auth decodes the Basic credential into a 256-byte stack buffer, and its
    # loop can write three bytes past it: 344 base64 characters overflow it, as would
    # two headers joined by lighttpd. One short Basic credential only.
    ("long-basic", _login_with("Basic " + "A" * 344), 400),
    ("two-authorizations", _login_with("Basic eDp5", "Basic eDp5"), 400),
    ("bearer", _login_with("Bearer eyJhbGciOiJub25lIn0.e30."), 400),
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


@pytest.mark.parametrize(("target", "message"), [
    ("/cgi-bin/dl_cgi?Command=DeviceList&set=1", b"set= is not allowed"),
    ("/?%53et=/sys/x=1", b"set= is not allowed"),
    ("/auth?logout", b"/auth?logout would end"),
])
def test_set_and_logout_are_refused_by_name_on_any_path(
    new_pvs: Emulator, new_bridge: Bridge, target: str, message: bytes
) -> None:
    # The allowlist refuses these too; their own rules answer first, and say why.
    before = len(new_pvs.request_log)
    status, body = _send(new_bridge.url, "GET", target)
    assert (status, message in body) == (403, True), body
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


# --------------------------------------------------------------------------- hardening
# Debian's lighttpd (h2 on, as it ships) in front of the emulator, the way a PVS puts
# lighttpd in front of its handlers, and the shipped bridge in front of both: the h2c
# attack of issue 18 and one test per guard of the bridge.

H2C_HEADERS = {
    "Connection": "Upgrade, HTTP2-Settings",
    "Upgrade": "h2c",
    "HTTP2-Settings": "AAMAAABkAAQCAAAAAAIAAAAA",
}
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # an empty SETTINGS frame, stream 0
ATTACK_PATHS = ["/vars?set=/sys/telemetryws/enable=0", "/auth?logout"]
VARS_READ = "/vars?name=/sys/info/sw_rev"  # the bridge sends it on over HTTPS


@pytest.fixture(scope="module")
def lit_pvs() -> Iterator[Emulator]:
    haproxy_binary()
    lighttpd_binary()
    with start_emulator(firmware="varserver", tls=True) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def lighttpd_port(lit_pvs: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """lighttpd on loopback, proxying to the emulator's plain HTTP port."""
    with run_lighttpd(tmp_path_factory.mktemp("lighttpd"), lit_pvs.port) as port:
        yield port


@pytest.fixture(scope="module")
def lighttpd_tls_port(
    lit_pvs: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[int]:
    """lighttpd over TLS (mod_openssl, ALPN h2 offered) on loopback, proxying to the
    emulator's plain HTTP port, as the PVS's lighttpd on 443 reaches its handlers."""
    with run_lighttpd(tmp_path_factory.mktemp("lighttpd"), lit_pvs.port, tls=True) as port:
        yield port


@pytest.fixture(scope="module")
def lit_bridge(
    lit_pvs: Emulator, lighttpd_port: int, lighttpd_tls_port: int, cert: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Bridge]:
    """The bridge in front of lighttpd on both sides, like a PVS: dl_cgi and the landing
    page over plain HTTP, /auth and /vars over HTTPS."""
    with _running_bridge(lit_pvs, cert, tmp_path_factory.mktemp("haproxy-lit"),
                         http_port=lighttpd_port, tls_port=lighttpd_tls_port) as ports:
        yield ports


def _writes_seen(pvs: Emulator, since: int) -> list[str]:
    """Targets after `since` in the emulator's log that write or end a session."""
    return [r.target for r in pvs.request_log[since:]
            if "set=" in r.target.lower() or "logout" in r.target.lower()]


def _tls_reads_via_lighttpd(pvs: Emulator, since: int) -> list[str]:
    """Varserver reads after `since` that reached the emulator's plain port, which over
    HTTPS only lighttpd's TLS side forwards to (a direct hop would log https)."""
    return [r.target for r in pvs.request_log[since:]
            if r.target == VARS_READ and r.scheme == "http"]


def _curl_http2(url_base: str, *options: str) -> str:
    """The issue's command, `curl --http2` with a session cookie: reads (dl_cgi, then the
    varserver), then a write and a logout on the same connection; returns curl's
    verbose trace."""
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl not installed (apt-get install -y curl)")
    urls = [f"{url_base}/cgi-bin/dl_cgi/supervisor/info", url_base + VARS_READ,
            *(url_base + p for p in ATTACK_PATHS)]
    result = subprocess.run(
        [curl, "-sv", "-k", "--max-time", "10", *options, "-H", "Cookie: session=T",
         "-o", "/dev/null", *urls],
        capture_output=True, text=True, check=False, timeout=30,
    )
    return result.stderr


def _h2_headers_frame(stream_id: int, path: str) -> bytes:
    """A HEADERS frame (END_STREAM|END_HEADERS) for a GET of `path`, every field an
    HPACK literal without indexing and without Huffman coding (each under 127 bytes)."""
    fields = [(":method", "GET"), (":scheme", "http"), (":path", path),
              (":authority", "pvs"), ("cookie", "session=T")]
    block = b"".join(b"\x00" + bytes([len(n)]) + n.encode() + bytes([len(v)]) + v.encode()
                     for n, v in fields)
    return len(block).to_bytes(3, "big") + b"\x01\x05" + stream_id.to_bytes(4, "big") + block


def _h2c_by_hand(port: int, tls: bool, path: str = "/cgi-bin/dl_cgi/supervisor/info") -> bytes:
    """The h2c attack on one connection (TLS optional, which curl cannot do): a read of
    `path` with `Upgrade: h2c`; on a 101, h2 frames carrying the write and the logout.
    Returns the answer's head."""
    sock = socket.create_connection(("127.0.0.1", port), 10)
    if tls:
        sock = ssl._create_unverified_context().wrap_socket(sock)
    with sock:
        upgrade = "".join(f"{k}: {v}\r\n" for k, v in H2C_HEADERS.items())
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: pvs\r\n"
                     f"Cookie: session=T\r\n{upgrade}\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head and (chunk := sock.recv(4096)):
            head += chunk
        if head.startswith(b"HTTP/1.1 101"):
            sock.sendall(H2_PREFACE + H2_SETTINGS + _h2_headers_frame(3, ATTACK_PATHS[0])
                         + _h2_headers_frame(5, ATTACK_PATHS[1]))
            sock.settimeout(1.0)
            with contextlib.suppress(TimeoutError):
                while sock.recv(65536):
                    pass
    return head


def test_lighttpd_as_shipped_switches_to_h2c(lit_pvs: Emulator, lighttpd_port: int) -> None:
    # The witness is vulnerable: straight to lighttpd, the attack writes. What stops
    # it below is the bridge.
    before = len(lit_pvs.request_log)
    trace = _curl_http2(f"http://127.0.0.1:{lighttpd_port}", "--http2")
    assert "HTTP/1.1 101" in trace
    assert _writes_seen(lit_pvs, before) == ATTACK_PATHS


def test_lighttpd_over_tls_speaks_h2(lit_pvs: Emulator, lighttpd_tls_port: int) -> None:
    # Its HTTPS side offers h2 by ALPN and forwards to the emulator: straight to it,
    # curl --http2 writes. The bridge's HTTPS hop below goes through this server.
    before = len(lit_pvs.request_log)
    trace = _curl_http2(f"https://127.0.0.1:{lighttpd_tls_port}", "--http2")
    assert "HTTP/2 200" in trace, trace
    assert _tls_reads_via_lighttpd(lit_pvs, before) == [VARS_READ]
    assert _writes_seen(lit_pvs, before) == ATTACK_PATHS


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("option", ["--http2", "--http2-prior-knowledge"])
def test_curl_http2_through_the_bridge_never_writes(
    lit_pvs: Emulator, lit_bridge: Bridge, scheme: str, option: str
) -> None:
    before = len(lit_pvs.request_log)
    trace = _curl_http2(lit_bridge.url if scheme == "http" else lit_bridge.tls_url, option)
    assert " 101" not in trace and "HTTP/2 " not in trace, trace
    assert _writes_seen(lit_pvs, before) == []
    if scheme == "https" and option == "--http2":  # the read took lighttpd's TLS side
        assert _tls_reads_via_lighttpd(lit_pvs, before) == [VARS_READ]


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_h2c_by_hand_through_the_bridge_never_writes(
    lit_pvs: Emulator, lit_bridge: Bridge, tls: bool
) -> None:
    # Over https it asks for a varserver read, which the bridge would send to
    # lighttpd's TLS side.
    before = len(lit_pvs.request_log)
    head = _h2c_by_hand(lit_bridge.tls_port if tls else lit_bridge.port, tls,
                        VARS_READ if tls else "/cgi-bin/dl_cgi/supervisor/info")
    assert head.startswith(b"HTTP/1.1 400"), head
    assert _writes_seen(lit_pvs, before) == []


@pytest.mark.parametrize(("name", "value"), [
    ("Upgrade", "h2c"), ("upgrade", "websocket"), ("HTTP2-Settings", "AAMAAABkAAQCAAAAAAIAAAAA"),
])
@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_guard_upgrade_headers_are_refused(
    lit_pvs: Emulator, lit_bridge: Bridge, name: str, value: str, tls: bool
) -> None:
    before = len(lit_pvs.request_log)
    answer = _raw(lit_bridge, _head(f"GET /cgi-bin/dl_cgi/supervisor/info HTTP/1.1\r\n"
                                    f"Host: pvs\r\n{name}: {value}\r\n\r\n"), tls=tls)
    assert answer.startswith(b"HTTP/1.1 400"), answer
    assert b"protocol upgrades are not allowed" in answer
    assert lit_pvs.request_log[before:] == []


@pytest.mark.parametrize("side", ["http", "https", "log"])
def test_guard_a_101_answer_is_refused(
    lit_pvs: Emulator, lighttpd_port: int, cert: Path, tmp_path: Path, side: str
) -> None:
    # HAProxy passes a 101 only to a request that asked for an upgrade, which the
    # header rule refuses; so this runs the shipped file without that rule (in both
    # frontends), to show the 101 rule alone still stops the attack. The optional log
    # port is put in front of the same lighttpd.
    source = HAPROXY_CFG.read_text().splitlines(keepends=True)
    config = tmp_path / "without-upgrade-rule.cfg"
    config.write_text("".join(ln for ln in source if "req.fhdr_cnt(upgrade)" not in ln))
    before = len(lit_pvs.request_log)
    log_port = free_port()
    with _running_bridge(lit_pvs, cert, tmp_path, http_port=lighttpd_port, config=config,
                         SM_PVS_LOG_BRIDGE="yes", SM_PVS_LOG_BIND=f"127.0.0.1:{log_port}",
                         SM_PVS_LOG_ADDR=f"127.0.0.1:{lighttpd_port}") as ports:
        port = {"http": ports.port, "https": ports.tls_port, "log": log_port}[side]
        head = _h2c_by_hand(port, side == "https")
    assert head.startswith(b"HTTP/1.1 502"), head
    assert _writes_seen(lit_pvs, before) == []


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_guard_http2_prior_knowledge_is_refused(new_bridge: Bridge, tls: bool) -> None:
    # An h2 server answers the preface with a SETTINGS frame; the bridge with HTTP/1.1.
    answer = _raw(new_bridge, H2_PREFACE + H2_SETTINGS, tls=tls)
    assert answer.startswith(b"HTTP/1.1 400"), answer


def test_guard_an_idle_tls_handshake_is_dropped_in_seconds(new_bridge: Bridge) -> None:
    # A connection that never sends its ClientHello; `timeout client` (5 s) ends it.
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", new_bridge.tls_port), 10) as sock:
        sock.settimeout(8.0)
        assert sock.recv(1) == b""
    assert time.monotonic() - started < 7.0


def _answered(port: int, source: str) -> socket.socket:
    """A keep-alive connection from `source` to 127.0.0.1:`port` that the bridge has
    answered once (so it was accepted, not merely queued)."""
    sock = socket.create_connection(("127.0.0.1", port), 10, (source, 0))
    sock.sendall(b"GET /cgi-bin/dl_cgi/supervisor/info HTTP/1.1\r\nHost: pvs\r\n\r\n")
    assert sock.recv(12) == b"HTTP/1.1 200"
    return sock


def _closed_at_once(port: int, source: str) -> bool:
    """Whether a new connection from `source` is closed without an answer (a reset may
    come before connect() returns)."""
    with contextlib.suppress(ConnectionResetError), socket.create_connection(
        ("127.0.0.1", port), 10, (source, 0)
    ) as sock:
        sock.settimeout(2.0)
        try:
            return sock.recv(1) == b""
        except TimeoutError:
            return False
    return True


@pytest.mark.slow
def test_guard_a_request_head_must_arrive_within_10_seconds(new_bridge: Bridge) -> None:
    # Slowloris: a header line a second keeps `timeout client` (idle time) from ever
    # firing; `timeout http-request` bounds the whole head and answers 408.
    started = time.monotonic()
    answer = b""
    with socket.create_connection(("127.0.0.1", new_bridge.port), 10) as sock:
        sock.sendall(b"GET /vars?match=/sys/info/ HTTP/1.1\r\nHost: pvs\r\n")
        for line in range(30):
            if select.select([sock], [], [], 1.0)[0]:
                answer = sock.recv(100)
                break
            sock.sendall(b"X-Line-%d: a\r\n" % line)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert time.monotonic() - started < 13.0


def test_guard_connections_per_source_are_capped(new_bridge: Bridge) -> None:
    with contextlib.ExitStack() as stack:
        for _ in range(10):
            stack.enter_context(_answered(new_bridge.port, "127.0.0.4"))
        assert _closed_at_once(new_bridge.port, "127.0.0.4")
        # Another LAN host still gets in.
        _answered(new_bridge.port, "127.0.0.5").close()


@pytest.fixture(scope="module")
def log_bridge(
    pvs: Emulator, cert: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Bridge, int]]:
    """The bridge with its optional log port on (towards the legacy emulator's HTTP
    port): the bridge's ports and the log port."""
    log_port = free_port()
    with _running_bridge(pvs, cert, tmp_path_factory.mktemp("haproxy-log"),
                         SM_PVS_LOG_BRIDGE="yes", SM_PVS_LOG_BIND=f"127.0.0.1:{log_port}",
                         SM_PVS_LOG_ADDR=f"127.0.0.1:{pvs.port}") as ports:
        yield ports, log_port


def test_guard_the_log_port_counts_in_the_per_source_cap(
    log_bridge: tuple[Bridge, int],
) -> None:
    # Both ports share one cap: the log port is no way around it (one host taking all
    # 64 connections there would shut the PVS API too).
    ports, log_port = log_bridge
    with contextlib.ExitStack() as stack:
        for port in [log_port] * 5 + [ports.port] * 5:
            stack.enter_context(_answered(port, "127.0.0.8"))
        assert _closed_at_once(log_port, "127.0.0.8")
        assert _closed_at_once(ports.port, "127.0.0.8")
        _answered(log_port, "127.0.0.9").close()


@pytest.mark.parametrize(("request_bytes", "status"), [
    (H2_PREFACE + H2_SETTINGS, 400),
    (_head("GET /browse HTTP/1.1\r\nHost: pvs\r\nContent-Length: 5\r\n\r\nset=1"), 400),
    (_head("GET /browse HTTP/1.1\r\nHost: pvs\r\nTransfer-Encoding: chunked\r\n\r\n"
           "5\r\nset=1\r\n0\r\n\r\n"), 400),
], ids=["h2-prior-knowledge", "body", "chunked-body"])
def test_guard_the_log_port_takes_no_h2_and_no_body(
    pvs: Emulator, log_bridge: tuple[Bridge, int], request_bytes: bytes, status: int,
) -> None:
    _, log_port = log_bridge
    before = len(pvs.requests)
    answer = _raw(Bridge(log_port, log_port), request_bytes, tls=False)
    assert answer.startswith(b"HTTP/1.1 %d" % status), answer[:200]
    assert pvs.requests[before:] == []


def test_guard_control_bytes_are_refused_on_the_log_port(
    pvs: Emulator, log_bridge: tuple[Bridge, int],
) -> None:
    _, log_port = log_bridge
    before = len(pvs.requests)
    answer = _raw(Bridge(log_port, log_port), _head(
        "GET /browse HTTP/1.1\r\nHost: pvs\r\nX-Note: a\x00b\r\n\r\n"), tls=False)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert pvs.requests[before:] == []


def test_guard_logins_are_rate_limited_per_source(new_pvs: Emulator, new_bridge: Bridge) -> None:
    before = len(new_pvs.request_log)
    answers = []
    for _ in range(12):
        conn = http.client.HTTPConnection("127.0.0.1", new_bridge.port, timeout=10,
                                          source_address=("127.0.0.6", 0))
        try:
            conn.request("GET", "/auth?login", headers={"Authorization": "basic eDp5"})
            resp = conn.getresponse()
            answers.append((resp.status, b"solar-monitor bridge" in resp.read()))
        finally:
            conn.close()
    assert [a for a in answers if a[1]] == [(429, True)] * 2
    assert sum(r.target == "/auth?login" for r in new_pvs.request_log[before:]) == 10


@pytest.mark.parametrize("header", [
    "Cookie: foo=1\x00; session=1",
    "X-Note: a\x00b",
    "X-Note: a\x1bb",
    "X-Note: a\x7fb",
    "X-Note: " + "a" * 9000 + "\x00",
], ids=["nul-in-cookie", "nul", "esc", "del", "nul-after-9k"])
@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_guard_control_bytes_in_headers_are_refused(
    new_pvs: Emulator, new_bridge: Bridge, header: str, tls: bool
) -> None:
    before = len(new_pvs.request_log)
    answer = _raw(new_bridge, _head(f"GET /vars?match=/sys/info/ HTTP/1.1\r\nHost: pvs\r\n"
                                    f"{header}\r\n\r\n"), tls=tls)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert new_pvs.request_log[before:] == []


def test_a_tab_in_a_header_value_still_passes(new_pvs: Emulator, new_bridge: Bridge) -> None:
    status, body = _send(new_bridge.url, "GET", "/cgi-bin/dl_cgi/supervisor/info",
                         headers={"X-Note": "a\tb"})
    assert status == 200, body
