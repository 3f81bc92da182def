"""Run the shipped haproxy/haproxy.cfg with the real `haproxy` binary on loopback.

The config takes every address and its certificate from `presetenv` defaults, so a
test only exports other values (bind addresses, PVS addresses, LAN ACL, the
certificate deploy/install.sh made under a temp root) and runs the shipped file.
`run_lighttpd` puts Debian's lighttpd (the PVS's own web server, h2 on as it ships)
in front of an emulator, as the PVS puts it in front of its handlers, over HTTP or
(mod_openssl, ALPN h2 offered) HTTPS.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

from solar_monitor.emulation.emulator import make_self_signed_cert

REPO = Path(__file__).resolve().parent.parent
# Debian ships lighttpd's TLS in its own package; the binary loads modules from here.
LIGHTTPD_OPENSSL = Path("/usr/lib/lighttpd/mod_openssl.so")
HAPROXY_CFG = REPO / "haproxy" / "haproxy.cfg"
BRIDGE_CERT = "etc/haproxy/solar-monitor-bridge.pem"  # where install.sh puts it
# Privilege drop needs root; as an ordinary user haproxy refuses to start with it.
_ROOT_ONLY = ("chroot ", "user ", "group ")


def haproxy_binary() -> str:
    """Path of `haproxy`; skips the calling test when it is not installed."""
    return _binary("haproxy", "haproxy")


def lighttpd_binary() -> str:
    """Path of `lighttpd`; skips the calling test when it is not installed."""
    return _binary("lighttpd", "lighttpd")


def _binary(name: str, apt_package: str) -> str:
    """Path of `name` on PATH or in the sbin directories (Debian puts daemons there);
    skips the calling test when it is not installed."""
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.access(p, os.X_OK)), None
    )
    if path is None:
        pytest.skip(f"{name} binary not installed (apt-get install -y {apt_package})")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on `host`."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def render_config(dest: Path, source: Path = HAPROXY_CFG) -> Path:
    """Copy the shipped config (or `source`) to `dest`, minus the privilege drop when
    not root."""
    lines = source.read_text().splitlines(keepends=True)
    if os.geteuid() != 0:
        lines = [ln for ln in lines if not ln.strip().startswith(_ROOT_ONLY)]
    dest.write_text("".join(lines))
    return dest


def installer_certificate(root: Path) -> Path:
    """The bridge's certificate as `deploy/install.sh --root root` makes it (the real
    step, so the tests serve what a Pi serves); skips when openssl is absent."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed (apt-get install -y openssl)")
    result = subprocess.run(
        ["bash", str(REPO / "deploy" / "install.sh"), "--root", str(root), "--network", "none"],
        capture_output=True, text=True, check=False, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return root / BRIDGE_CERT


def bridge_env(
    pvs_port: int, pvs_tls_port: int, bind_port: int, tls_bind_port: int, cert: Path,
    **extra: str,
) -> dict[str, str]:
    """Environment for the config: everything on 127.0.0.1, logs to stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    env.update(
        SM_BRIDGE_BIND=f"127.0.0.1:{bind_port}",
        SM_BRIDGE_TLS_BIND=f"127.0.0.1:{tls_bind_port}",
        SM_BRIDGE_CERT=str(cert),
        SM_PVS_ADDR=f"127.0.0.1:{pvs_port}",
        SM_PVS_TLS_ADDR=f"127.0.0.1:{pvs_tls_port}",
        SM_LOG_TARGET="stderr",
    )
    env.update(extra)
    return env


def wait_listening(port: int, timeout_s: float = 10.0) -> None:
    """Block until something accepts TCP connections on 127.0.0.1:`port`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextmanager
def _stopping(proc: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    """Terminate `proc` (kill after 10 s) when the block ends."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def run_haproxy(
    tmp_path: Path, env: Mapping[str, str], port: int, config: Path = HAPROXY_CFG
) -> Iterator[None]:
    """Run haproxy in the foreground with the shipped config (or `config`) until the
    block ends."""
    cfg = render_config(tmp_path / f"haproxy-{port}.cfg", config)
    log_path = tmp_path / f"haproxy-{port}.log"
    with log_path.open("wb") as log, _stopping(subprocess.Popen(
        [haproxy_binary(), "-db", "-f", str(cfg)], env=dict(env), stdout=log, stderr=log
    )) as proc:
        try:
            wait_listening(port)
        except OSError:
            proc.kill()
            proc.wait()
            raise AssertionError(f"haproxy did not start:\n{log_path.read_text()}") from None
        yield


# Debian's lighttpd with its compiled-in defaults, which enable HTTP/2 and the h2c
# upgrade (no server.feature-flags line), proxying every path to one upstream; with
# TLS, mod_openssl's defaults too, which offer h2 by ALPN.
_LIGHTTPD_CONF = """\
server.modules = ("mod_proxy"{tls_module})
server.document-root = "{root}"
server.bind = "127.0.0.1"
server.port = {port}
server.errorlog = "{root}/error.log"
proxy.server = ("" => (("host" => "127.0.0.1", "port" => {upstream})))
"""
_LIGHTTPD_TLS = """\
ssl.engine = "enable"
ssl.pemfile = "{cert}"
ssl.privkey = "{key}"
"""


@contextmanager
def run_lighttpd(tmp_path: Path, upstream_port: int, tls: bool = False) -> Iterator[int]:
    """lighttpd on a free 127.0.0.1 port, mod_proxy to 127.0.0.1:`upstream_port` (plain
    HTTP, as the PVS's lighttpd reaches its handlers), until the block ends; yields its
    port. `tls` serves HTTPS there with a self-signed certificate, as the PVS does on
    443; skips when lighttpd's TLS module is not installed."""
    binary = lighttpd_binary()
    root = tmp_path / ("lighttpd-tls" if tls else "lighttpd")
    root.mkdir(exist_ok=True)
    port = free_port()
    text = _LIGHTTPD_CONF.format(root=root, port=port, upstream=upstream_port,
                                 tls_module=', "mod_openssl"' if tls else "")
    if tls:
        if not LIGHTTPD_OPENSSL.exists():
            pytest.skip("lighttpd's TLS module not installed "
                        "(apt-get install -y lighttpd-mod-openssl)")
        cert, key = make_self_signed_cert(root)
        text += _LIGHTTPD_TLS.format(cert=cert, key=key)
    conf = root / "lighttpd.conf"
    conf.write_text(text)
    with _stopping(subprocess.Popen([binary, "-D", "-f", str(conf)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)) as proc:
        try:
            wait_listening(port)
        except OSError:
            proc.kill()
            raise AssertionError(f"lighttpd did not start: {proc.communicate()[1]!r}") from None
        yield port
