"""The armv6l install for real: Debian armel in a qemu-emulated chroot, as on a Pi Zero W.

Slow (minutes; a first debootstrap adds about 6), so only with SOLAR_ARM_CHROOT=1, as
root, with Debian's qemu-user-static, binfmt-support and debootstrap installed:

    apt-get install -y qemu-user-static binfmt-support debootstrap
    SOLAR_ARM_CHROOT=1 .venv/bin/python -m pytest -q -p no:cacheprovider tests/test_arm_chroot.py

QEMU_CPU=arm1176 is the Pi Zero's CPU, so `uname -m` says armv6l and install.sh takes
its armv6l path by itself. The chroot (SOLAR_ARM_CHROOT_DIR, default
/var/tmp/solar-monitor-armel-bookworm) is kept for the next try. Everything the
installed program talks to is the emulator on loopback. Results: docs/raspberry-pi.md.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, real

pytestmark = [
    pytest.mark.skipif(os.environ.get("SOLAR_ARM_CHROOT") != "1",
                       reason="slow: set SOLAR_ARM_CHROOT=1 (root, qemu-user-static)"),
    pytest.mark.timeout(3600),
]

CHROOT = Path(os.environ.get("SOLAR_ARM_CHROOT_DIR", "/var/tmp/solar-monitor-armel-bookworm"))
SUITE = os.environ.get("SOLAR_ARM_CHROOT_SUITE", "bookworm")
MIRROR = "http://deb.debian.org/debian"
VENV = "/opt/solar-monitor/venv"
CHECKOUT = "/root/solar-monitor"
# Behind a TLS-inspecting proxy pip needs the host's CA bundle (PIP_CERT) inside too.
HOST_CA = "/etc/ssl/certs/host-ca-bundle.crt"


def _in_chroot(*argv: str, timeout_s: float = 1800) -> subprocess.CompletedProcess[str]:
    """Run `argv` in the armel chroot as the Pi Zero's CPU; fails with its output."""
    result = subprocess.run(_chroot_argv(*argv), capture_output=True, text=True,
                            check=False, timeout=timeout_s)
    assert result.returncode == 0, f"{argv}:\n{result.stdout}\n{result.stderr}"
    return result


def _chroot_argv(*argv: str) -> list[str]:
    env = ["QEMU_CPU=arm1176", "HOME=/root", "LANG=C.UTF-8", "DEBIAN_FRONTEND=noninteractive",
           "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    if (CHROOT / HOST_CA.lstrip("/")).is_file():
        env.append(f"PIP_CERT={HOST_CA}")
    return ["chroot", str(CHROOT), "env", "-i", *env, *argv]


def _prerequisites() -> None:
    assert os.geteuid() == 0, "SOLAR_ARM_CHROOT needs root (chroot, mount, debootstrap)"
    for tool in ("debootstrap", "qemu-arm-static"):
        assert shutil.which(tool), f"{tool} missing: apt-get install -y qemu-user-static " \
            "binfmt-support debootstrap"
    binfmt = Path("/proc/sys/fs/binfmt_misc/qemu-arm")
    assert binfmt.is_file() and "enabled" in binfmt.read_text(), \
        "ARM binaries do not run: update-binfmts --enable qemu-arm (binfmt_misc mounted?)"


@pytest.fixture(scope="module")
def chroot() -> Iterator[Path]:
    """A Debian armel chroot with python3, /proc and /dev mounted, this checkout in it."""
    _prerequisites()
    if not (CHROOT / "usr/bin/python3").exists():
        subprocess.run(["debootstrap", "--arch=armel", "--variant=minbase",
                        "--include=python3,python3-venv,ca-certificates", SUITE,
                        str(CHROOT), MIRROR], check=True, capture_output=True, timeout=3600)
    shutil.copy("/etc/resolv.conf", CHROOT / "etc/resolv.conf")
    ca = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE")
    if ca and Path(ca).is_file():
        shutil.copy(ca, CHROOT / HOST_CA.lstrip("/"))
    mounts = []
    for kind, target in (("proc", "proc"), ("dev", "dev")):
        path = CHROOT / target
        if subprocess.run(["mountpoint", "-q", str(path)], check=False).returncode != 0:
            args = ["-t", "proc", "proc"] if kind == "proc" else ["--bind", "/dev"]
            subprocess.run(["mount", *args, str(path)], check=True)
            mounts.append(path)
    checkout = CHROOT / CHECKOUT.lstrip("/")
    shutil.rmtree(checkout, ignore_errors=True)
    shutil.copytree(REPO, checkout, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "demo-data", "__pycache__", ".hypothesis", "out"))
    try:
        yield CHROOT
    finally:
        for path in reversed(mounts):
            subprocess.run(["umount", str(path)], check=False)


@pytest.fixture(scope="module")
def installed(chroot: Path) -> Path:
    """install.sh run for real in the chroot (cron, no network changes, no bridge)."""
    _in_chroot("apt-get", "update", "-qq")
    assert _in_chroot("uname", "-m").stdout.strip() == "armv6l"
    started = time.monotonic()
    output = _in_chroot("bash", f"{CHECKOUT}/deploy/install.sh", "--scheduler", "cron",
                        "--network", "none", "--no-haproxy").stdout
    print(f"install.sh in the armel chroot: {time.monotonic() - started:.0f} s")
    assert "armv6l: compiled dependencies from Debian" in output
    return chroot


def test_the_venv_uses_debians_compiled_packages(installed: Path) -> None:
    cfg = (installed / VENV.lstrip("/") / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = true" in cfg
    code = ("import json, cryptography, cffi, yaml, gspread, apprise, platform; "
            "print(json.dumps({m.__name__: m.__file__ for m in (cryptography, cffi, yaml)}"
            " | {'crypto': cryptography.__version__, 'machine': platform.machine()}))")
    found = json.loads(_in_chroot(f"{VENV}/bin/python", "-c", code).stdout)
    assert found["machine"] == "armv6l"
    for name in ("cryptography", "cffi", "yaml"):
        assert found[name].startswith("/usr/lib/python3/dist-packages/"), found
    _in_chroot(f"{VENV}/bin/pip", "check")


def test_parse_a_real_payload(installed: Path) -> None:
    fixture = real("dl_cgi_61839_30_inverters")
    inside = f"{CHECKOUT}/tests/fixtures/real/{fixture.name}"
    snapshot = json.loads(_in_chroot(f"{VENV}/bin/solar-monitor", "parse", inside).stdout)
    assert snapshot["build"] == 61839
    assert len(snapshot["inverters"]) == 30


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_a_run_against_the_emulator(installed: Path) -> None:
    port = _free_port()
    work = installed / "tmp/armtest"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    config = work / "config.yaml"
    config.write_text(
        "site: {latitude: 42.36, longitude: -71.06, timezone: America/New_York}\n"
        f'pvs: {{url: "http://127.0.0.1:{port}"}}\n'
        "data_dir: /tmp/armtest/data\nweather: {enabled: false}\n")
    config.chmod(0o600)
    emulator = subprocess.Popen(_chroot_argv(
        f"{VENV}/bin/solar-monitor", "emulator", "--host", "127.0.0.1", "--port", str(port),
        "--firmware", "varserver", "--inverters", "12"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120  # an emulated Python starts slowly
        while not _listening(port):
            assert time.monotonic() < deadline and emulator.poll() is None, "no emulator"
            time.sleep(1)
        started = time.monotonic()
        result = _in_chroot(f"{VENV}/bin/solar-monitor", "--config", "/tmp/armtest/config.yaml",
                            "run", timeout_s=600)
        print(f"one run in the armel chroot: {time.monotonic() - started:.1f} s")
        assert "poll stored" in result.stderr, result.stderr
        assert (work / "data/solar-monitor.db").is_file()
    finally:
        emulator.terminate()
        emulator.wait(timeout=30)
