"""deploy/install.sh and uninstall.sh, run with --root into a temp dir (no system changes)."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
SCRIPTS = [DEPLOY / "install.sh", DEPLOY / "uninstall.sh", DEPLOY / "wifi-check.sh"]
RUN_COMMAND = (
    "/opt/solar-monitor/venv/bin/solar-monitor run --config /etc/solar-monitor/config.yaml"
)
CONFIG = "etc/solar-monitor/config.yaml"
BRIDGE_CERT = "etc/haproxy/solar-monitor-bridge.pem"
Snapshot = dict[str, tuple[int, bytes]]


def _bash(*args: str | Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["bash", *map(str, args)], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def install(root: Path, *args: str) -> str:
    """Run install.sh --root `root`; returns what it printed."""
    return _bash(DEPLOY / "install.sh", "--root", root, *args).stdout


def uninstall(root: Path, *args: str) -> str:
    return _bash(DEPLOY / "uninstall.sh", "--root", root, *args).stdout


def snapshot(root: Path) -> Snapshot:
    """Every path under `root` -> (mode, content); directories have empty content."""
    found: Snapshot = {}
    for path in sorted(root.rglob("*")):
        mode = path.lstat().st_mode
        content = path.read_bytes() if stat.S_ISREG(mode) else b""
        found[str(path.relative_to(root))] = (stat.S_IMODE(mode), content)
    return found


@pytest.fixture
def pi(tmp_path: Path) -> Path:
    """An empty target root that looks like a dhcpcd-based Raspberry Pi OS."""
    root = tmp_path / "pi"
    (root / "etc").mkdir(parents=True)
    (root / "etc/dhcpcd.conf").write_text("hostname\nclientid\n")
    return root


def test_scripts_parse_and_pass_shellcheck() -> None:
    for script in SCRIPTS:
        _bash("-n", script)
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (apt-get install -y shellcheck)")
    result = subprocess.run(
        [shellcheck, *map(str, SCRIPTS)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


def test_install_twice_changes_nothing_the_second_time(pi: Path) -> None:
    install(pi)
    first = snapshot(pi)
    second_output = install(pi)
    assert snapshot(pi) == first
    assert "installed" not in second_output


def test_install_writes_the_config_0600_and_the_shipped_files(pi: Path) -> None:
    output = install(pi)
    config = pi / CONFIG
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert config.read_bytes() == (REPO / "config.example.yaml").read_bytes()
    assert stat.S_IMODE((pi / "etc/solar-monitor").stat().st_mode) == 0o750
    assert (pi / "var/lib/solar-monitor").is_dir()
    for unit in ("solar-monitor.service", "solar-monitor.timer"):
        assert (pi / "etc/systemd/system" / unit).read_bytes() == (
            REPO / "systemd" / unit
        ).read_bytes()
    assert (pi / "etc/haproxy/haproxy.cfg").read_bytes() == (
        REPO / "haproxy/haproxy.cfg"
    ).read_bytes()
    journald = (pi / "etc/systemd/journald.conf.d/solar-monitor.conf").read_text()
    assert "Storage=volatile" in journald
    assert "RuntimeMaxUse=" in journald
    wifi = pi / "usr/local/sbin/solar-monitor-wifi-check"
    assert wifi.stat().st_mode & stat.S_IXUSR
    # Nothing ran: the commands that would change the system were printed.
    for command in (
        "+ useradd --system",
        "+ python3 -m venv /opt/solar-monitor/venv",
        f"+ /opt/solar-monitor/venv/bin/pip install --quiet --upgrade {REPO}",
        "+ systemctl enable systemd-time-wait-sync.service",
        "+ systemctl enable --now solar-monitor.timer",
        "+ chown solar-monitor:solar-monitor /etc/solar-monitor/config.yaml",
        "+ haproxy -c -q -f /etc/haproxy/haproxy.cfg",
    ):
        assert command in output, command


def test_an_existing_config_is_kept_and_tightened(pi: Path) -> None:
    config = pi / CONFIG
    config.parent.mkdir(parents=True)
    config.write_text("site: {name: mine}\n")
    config.chmod(0o644)
    output = install(pi)
    assert config.read_text() == "site: {name: mine}\n"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert "keeping existing /etc/solar-monitor/config.yaml" in output


def test_dhcpcd_gets_a_static_address_and_no_gateway_once(pi: Path) -> None:
    install(pi)
    install(pi, "--network", "dhcpcd")
    text = (pi / "etc/dhcpcd.conf").read_text()
    assert text.startswith("hostname\nclientid\n")
    assert text.count("interface eth0") == 1
    assert "static ip_address=172.27.153.10/24" in text
    assert "nogateway" in text
    assert "static routers" not in text


def test_networkmanager_gets_a_keyfile(tmp_path: Path) -> None:
    root = tmp_path / "bookworm"
    (root / "etc/NetworkManager/system-connections").mkdir(parents=True)
    output = install(root)
    assert "network: networkmanager" in output
    keyfile = root / "etc/NetworkManager/system-connections/solar-monitor-pvs.nmconnection"
    # NetworkManager ignores keyfiles that others can read.
    assert stat.S_IMODE(keyfile.stat().st_mode) == 0o600
    text = keyfile.read_text()
    assert "interface-name=eth0" in text
    assert "address1=172.27.153.10/24" in text
    assert "never-default=true" in text
    assert "gateway" not in text.split("[ipv4]")[1].split("[ipv6]")[0].replace(
        "never-default", ""
    )
    powersave = root / "etc/NetworkManager/conf.d/solar-monitor-wifi-powersave.conf"
    assert "wifi.powersave = 2" in powersave.read_text()
    assert "+ nmcli connection reload" in output
    assert not (root / "etc/dhcpcd.conf").exists()


def test_cron_scheduler_replaces_the_timer(pi: Path) -> None:
    install(pi)
    output = install(pi, "--scheduler", "cron")
    cron = (pi / "etc/cron.d/solar-monitor").read_text()
    assert (pi / "etc/cron.d/solar-monitor").read_bytes() == (DEPLOY / "crontab").read_bytes()
    assert "+ systemctl disable --now solar-monitor.timer" in output
    assert (pi / "etc/logrotate.d/solar-monitor").is_file()
    assert 'MAILTO=""' in cron
    # ... and back again.
    install(pi, "--scheduler", "systemd")
    assert not (pi / "etc/cron.d/solar-monitor").exists()
    assert not (pi / "etc/logrotate.d/solar-monitor").exists()


def test_crontab_runs_the_same_command_as_the_timer_under_flock() -> None:
    lines = [ln for ln in (DEPLOY / "crontab").read_text().splitlines() if ln[:1] == "*"]
    runs = [ln for ln in lines if " run --config " in ln]
    assert len(runs) == 1
    assert runs[0].startswith(
        "*/15 * * * * solar-monitor flock -n /var/lib/solar-monitor/cron.lock "
        + RUN_COMMAND
    )
    service = (REPO / "systemd/solar-monitor.service").read_text()
    assert f"ExecStart={RUN_COMMAND}\n" in service


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "untouched"
    root.mkdir()
    output = _bash(DEPLOY / "install.sh", "--root", root, "--dry-run").stdout
    assert list(root.iterdir()) == []
    assert "would install /etc/solar-monitor/config.yaml" in output
    uninstall(root, "--dry-run", "--purge")
    assert list(root.iterdir()) == []


def test_uninstall_keeps_data_and_config_unless_purge(pi: Path) -> None:
    install(pi)
    reading = pi / "var/lib/solar-monitor/solar-monitor.db"
    reading.write_text("readings")
    output = uninstall(pi)
    assert reading.read_text() == "readings"
    assert (pi / CONFIG).is_file()
    assert not (pi / "opt/solar-monitor").exists()
    assert not (pi / "etc/systemd/system/solar-monitor.timer").exists()
    assert not (pi / "usr/local/bin/solar-monitor").exists()
    assert "+ systemctl disable --now solar-monitor.timer" in output
    # The bridge stays for other LAN tools unless asked.
    assert (pi / "etc/haproxy/haproxy.cfg").is_file()
    assert "172.27.153.10" in (pi / "etc/dhcpcd.conf").read_text()

    output = uninstall(pi, "--purge", "--remove-bridge")
    assert not (pi / "var/lib/solar-monitor").exists()
    assert not (pi / "etc/solar-monitor").exists()
    assert "+ userdel solar-monitor" in output
    assert (pi / "etc/dhcpcd.conf").read_text() == "hostname\nclientid\n"
    assert not (pi / "usr/local/sbin/solar-monitor-wifi-check").exists()


def test_remove_bridge_restores_the_previous_haproxy_config(pi: Path) -> None:
    (pi / "etc/haproxy").mkdir()
    (pi / "etc/haproxy/haproxy.cfg").write_text("# Debian's own\n")
    install(pi)
    install(pi)
    assert (pi / "etc/haproxy/haproxy.cfg.before-solar-monitor").read_text() == "# Debian's own\n"
    uninstall(pi, "--remove-bridge")
    assert (pi / "etc/haproxy/haproxy.cfg").read_text() == "# Debian's own\n"
    assert not (pi / BRIDGE_CERT).exists()


def _openssl(*args: str | Path) -> str:
    result = subprocess.run(
        ["openssl", *map(str, args)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_bridge_certificate_is_made_once_and_kept(pi: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed (apt-get install -y openssl)")
    (pi / "etc/hostname").write_text("pvs-pi\n")
    output = install(pi)
    pem = pi / BRIDGE_CERT
    assert stat.S_IMODE(pem.stat().st_mode) == 0o640
    assert "+ chown root:haproxy /etc/haproxy/solar-monitor-bridge.pem" in output
    # One file with the certificate and the key that belongs to it (HAProxy's crt).
    assert "PRIVATE KEY-----" in pem.read_text()
    text = _openssl("x509", "-in", pem, "-noout", "-subject", "-ext", "subjectAltName")
    assert "DNS:pvs-pi, DNS:pvs-pi.local" in text
    assert _openssl("x509", "-in", pem, "-noout", "-pubkey") == _openssl(
        "pkey", "-in", pem, "-pubout"
    )
    first = pem.read_bytes()
    pem.chmod(0o644)
    output = install(pi)
    assert pem.read_bytes() == first
    assert stat.S_IMODE(pem.stat().st_mode) == 0o640
    assert "keeping existing /etc/haproxy/solar-monitor-bridge.pem" in output


def test_no_haproxy_makes_no_certificate(pi: Path) -> None:
    install(pi, "--no-haproxy")
    assert not (pi / BRIDGE_CERT).exists()


def test_wifi_check_leaves_a_missing_interface_alone() -> None:
    # Safe on any machine: with no such interface the script changes nothing.
    result = _bash(DEPLOY / "wifi-check.sh", "smtest-no-if0")
    assert "no interface smtest-no-if0" in result.stderr


# --- armv6l (Pi Zero W, Pi 1): compiled dependencies from Debian -------------------
DEBIAN_COMPILED = ("python3-cryptography", "python3-cffi", "python3-yaml")
VENV_COMMAND = "+ python3 -m venv"


def _printed(output: str, prefix: str) -> list[str]:
    """The printed commands (under --root) that start with `prefix`."""
    return [line for line in output.splitlines() if line.startswith(prefix)]


def test_armv6l_installs_the_compiled_dependencies_from_debian(pi: Path) -> None:
    output = install(pi, "--arch", "armv6l")
    apt = [line for line in _printed(output, "+ apt-get install") if "python3-" in line]
    assert len(apt) == 1, output
    for package in DEBIAN_COMPILED:
        assert package in apt[0].split(), package
    venv = _printed(output, VENV_COMMAND)
    assert venv == [f"{VENV_COMMAND} --system-site-packages /opt/solar-monitor/venv"]
    # Debian's packages are there before pip looks for them.
    lines = output.splitlines()
    assert lines.index(apt[0]) < lines.index(venv[0])
    pip = _printed(output, "+ /opt/solar-monitor/venv/bin/pip install --quiet --upgrade --only")
    assert len(pip) == 1 and pip[0].endswith(f" {REPO}"), output
    # No source build of cryptography (Rust, hours on a Zero): a wheel or Debian's copy.
    assert "--only-binary cryptography" in pip[0]


@pytest.mark.parametrize("arch", ["armv7l", "aarch64", "x86_64"])
def test_other_arches_take_wheels_from_pypi(pi: Path, arch: str) -> None:
    output = install(pi, "--arch", arch)
    assert "python3-cryptography" not in output
    assert "--system-site-packages" not in output
    assert _printed(output, VENV_COMMAND) == [f"{VENV_COMMAND} /opt/solar-monitor/venv"]
    assert f"+ /opt/solar-monitor/venv/bin/pip install --quiet --upgrade {REPO}" in output


def test_arch_defaults_to_the_machine_and_needs_a_value(tmp_path: Path) -> None:
    machine = subprocess.run(["uname", "-m"], capture_output=True, text=True).stdout.strip()
    pi = tmp_path / "pi"
    detected = install(pi).replace(str(pi), "ROOT")
    assert detected == install(tmp_path / "given", "--arch", machine).replace(
        str(tmp_path / "given"), "ROOT"
    )
    result = subprocess.run(
        ["bash", DEPLOY / "install.sh", "--root", pi, "--arch"],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode != 0
    assert "--arch needs a machine name" in result.stderr
