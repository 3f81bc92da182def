"""Run the shipped haproxy/haproxy.cfg with the real `haproxy` binary on loopback.

The config takes every address and its certificate from `presetenv` defaults, so a
test only exports other values (bind addresses, PVS addresses, LAN ACL, the
certificate deploy/install.sh made under a temp root) and runs the shipped file.
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

REPO = Path(__file__).resolve().parent.parent
HAPROXY_CFG = REPO / "haproxy" / "haproxy.cfg"
BRIDGE_CERT = "etc/haproxy/solar-monitor-bridge.pem"  # where install.sh puts it
# Privilege drop needs root; as an ordinary user haproxy refuses to start with it.
_ROOT_ONLY = ("chroot ", "user ", "group ")


def haproxy_binary() -> str:
    """Path of `haproxy`; skips the calling test when it is not installed."""
    path = shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy", "/sbin/haproxy") if os.access(p, os.X_OK)), None
    )
    if path is None:
        pytest.skip("haproxy binary not installed (apt-get install -y haproxy)")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on `host`."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def render_config(dest: Path) -> Path:
    """Copy the shipped config to `dest`, minus the privilege drop when not root."""
    lines = HAPROXY_CFG.read_text().splitlines(keepends=True)
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
def run_haproxy(tmp_path: Path, env: Mapping[str, str], port: int) -> Iterator[None]:
    """Run haproxy in the foreground with the shipped config until the block ends."""
    cfg = render_config(tmp_path / f"haproxy-{port}.cfg")
    log_path = tmp_path / f"haproxy-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [haproxy_binary(), "-db", "-f", str(cfg)], env=dict(env), stdout=log, stderr=log
        )
        try:
            try:
                wait_listening(port)
            except OSError:
                proc.kill()
                proc.wait()
                raise AssertionError(f"haproxy did not start:\n{log_path.read_text()}") from None
            yield
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
