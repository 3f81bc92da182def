"""deploy/install.sh and uninstall.sh, run with --root into a temp dir (no system changes)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
WRAPPER = DEPLOY / "solar-monitor-wrapper.sh"
SCRIPTS = [DEPLOY / "install.sh", DEPLOY / "uninstall.sh", DEPLOY / "wifi-check.sh", WRAPPER]
PROGRAM = "/opt/solar-monitor/venv/bin/solar-monitor"
RUN_ARGS = "run --config /etc/solar-monitor/config.yaml"
CONFIG = "etc/solar-monitor/config.yaml"
ENV_FILE = "etc/solar-monitor/env"
TIMER_WANTS = "etc/systemd/system/timers.target.wants/solar-monitor.timer"
START_TIMER = "+ systemctl enable --now solar-monitor.timer"
BRIDGE_CERT = "etc/haproxy/solar-monitor-bridge.pem"
Snapshot = dict[str, tuple[int, bytes]]


def _bash(*args: str | Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["bash", *map(str, args)], capture_output=True, text=True, check=False, timeout=60
    )
    assert (result.returncode == 0) == ok, result.stdout + result.stderr
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
        "+ systemctl enable --now solar-monitor-wifi-check.timer",
        "+ chown solar-monitor:solar-monitor /etc/solar-monitor/config.yaml",
        "+ haproxy -c -q -f /etc/haproxy/haproxy.cfg",
    ):
        assert command in output, command


def test_install_makes_the_env_file_root_only_and_keeps_it(pi: Path) -> None:
    output = install(pi)
    env = pi / ENV_FILE
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert "+ chown root:root /etc/solar-monitor/env" in output
    assert all(ln.startswith("#") for ln in env.read_text().splitlines())


def test_the_timer_stays_off_until_check_passes(pi: Path) -> None:
    # The example config is not even checked: the owner has not edited it yet.
    output = install(pi)
    assert "+ /usr/local/bin/solar-monitor check" not in output
    assert "runs are NOT started yet" in output
    assert "then start them: sudo systemctl enable --now solar-monitor.timer" in output
    # An edited one is; under --root the check cannot run, so it cannot pass.
    (pi / CONFIG).write_text("site: {name: mine}\n")
    output = install(pi)
    assert "+ /usr/local/bin/solar-monitor check" in output
    assert "runs are NOT started yet" in output
    assert START_TIMER not in output
    assert not (pi / TIMER_WANTS).exists()
    # An upgrade of a Pi whose timer is on keeps it on.
    (pi / TIMER_WANTS).parent.mkdir(parents=True)
    (pi / TIMER_WANTS).symlink_to("/etc/systemd/system/solar-monitor.timer")
    output = install(pi)
    assert START_TIMER in output
    assert "already on, kept" in output


@pytest.mark.parametrize("path", [CONFIG, ENV_FILE])
def test_an_existing_config_or_env_file_is_kept_and_tightened(pi: Path, path: str) -> None:
    mine = pi / path
    mine.parent.mkdir(parents=True)
    mine.write_text("mine: 1\n")
    mine.chmod(0o644)
    output = install(pi)
    assert mine.read_text() == "mine: 1\n"
    assert stat.S_IMODE(mine.stat().st_mode) == 0o600
    assert f"keeping existing /{path}" in output


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
    cron_file = pi / "etc/cron.d/solar-monitor"
    # No runs before check passes, as with the timer; the Wi-Fi check starts at once.
    assert " /usr/local/bin/solar-monitor run " not in cron_file.read_text()
    assert "/usr/local/sbin/solar-monitor-wifi-check" in cron_file.read_text()
    assert "then start them: sudo deploy/install.sh --scheduler cron" in output
    assert "+ systemctl disable --now solar-monitor.timer" in output
    assert (pi / "etc/logrotate.d/solar-monitor").is_file()
    # Rerun before check passes: still no runs.
    output = install(pi, "--scheduler", "cron")
    assert " /usr/local/bin/solar-monitor run " not in cron_file.read_text()
    assert "already on" not in output
    # A Pi already on cron: an upgrade keeps it on, with the current crontab.
    cron_file.write_text("*/15 * * * * root /usr/local/bin/solar-monitor run --config x\n")
    output = install(pi, "--scheduler", "cron")
    assert cron_file.read_bytes() == (DEPLOY / "crontab").read_bytes()
    assert "already on, kept" in output
    assert 'MAILTO=""' in cron_file.read_text()
    # ... and back again.
    install(pi, "--scheduler", "systemd")
    assert not (pi / "etc/cron.d/solar-monitor").exists()
    assert not (pi / "etc/logrotate.d/solar-monitor").exists()


def _wrapper_setting(name: str) -> str:
    match = re.search(rf"^{name}=(.*)$", WRAPPER.read_text(), re.MULTILINE)
    assert match is not None, name
    return match.group(1)


def _cron_run_line() -> str:
    """The command of the crontab's run line (after the user field)."""
    lines = [ln for ln in (DEPLOY / "crontab").read_text().splitlines() if ln[:1] == "*"]
    runs = [ln for ln in lines if " run --config " in ln]
    assert len(runs) == 1
    return runs[0].split(" root ", 1)[1]


def test_crontab_runs_the_same_command_as_the_timer_under_flock() -> None:
    # As root through the wrapper, which reads the env file and drops to the user.
    assert _cron_run_line().startswith(
        "umask 077; flock -n /run/solar-monitor-cron.lock /usr/local/bin/solar-monitor "
        + RUN_ARGS
    )
    assert _wrapper_setting("PROGRAM") == PROGRAM
    assert _wrapper_setting("USER_NAME") == "solar-monitor"
    service = (REPO / "systemd/solar-monitor.service").read_text()
    assert f"ExecStart={PROGRAM} {RUN_ARGS}\n" in service


def test_the_cron_lock_and_log_are_roots_alone(tmp_path: Path) -> None:
    # The cron line runs as root: a lock another user can open (a 0644 file, or one in
    # the world-writable /run/lock, where anyone may create it first) lets any local
    # account hold it and silently stop every run.
    command = _cron_run_line()
    lock = re.search(r"flock -n (\S+)", command)
    assert lock is not None and Path(lock.group(1)).parent == Path("/run"), command
    # The line itself, run by cron's /bin/sh with cron's umask, the wrapper a stand-in.
    stub = tmp_path / "solar-monitor"
    stub.write_text("#!/bin/sh\necho ran\n")
    stub.chmod(0o755)
    log = tmp_path / "cron.log"
    command = (command.replace(lock.group(1), str(tmp_path / "lock"))
               .replace("/usr/local/bin/solar-monitor", str(stub))
               .replace("/var/log/solar-monitor/cron.log", str(log)))
    subprocess.run(["/bin/sh", "-c", f"umask 022; {command}"], check=True, timeout=30)
    assert log.read_text() == "ran\n"
    assert stat.S_IMODE((tmp_path / "lock").stat().st_mode) == 0o600
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


def test_the_cron_log_directory_is_not_the_service_users(pi: Path) -> None:
    # Root's shell appends to the cron log: in a directory the service user owned, it
    # could swap the log for a symlink and have root append to any file it names.
    output = install(pi, "--scheduler", "cron")
    assert "+ chown root:adm /var/log/solar-monitor" in output
    assert "/var/log/solar-monitor" not in "".join(
        ln for ln in output.splitlines() if ln.startswith("+ chown solar-monitor"))
    logrotate = (pi / "etc/logrotate.d/solar-monitor").read_text()
    assert "\n    create 0640 root adm\n" in logrotate
    assert "su solar-monitor" not in logrotate


def test_the_unit_the_wrapper_and_the_cron_line_read_the_same_env_file() -> None:
    service = (REPO / "systemd/solar-monitor.service").read_text()
    assert "\nEnvironmentFile=-/etc/solar-monitor/env\n" in service
    assert _wrapper_setting("ENV_FILE") == "/etc/solar-monitor/env"
    assert " /usr/local/bin/solar-monitor run " in (DEPLOY / "crontab").read_text()


_ECHO_PROGRAM = ('#!/bin/bash\nprintf "%s\\n" "$GMAIL_APP_PASSWORD" "$QUOTED" '
                 '"$SOLAR_MONITOR_CONFIG" "$PWD" "$(id -un)" "$*"\n')


def _testable_wrapper(pi: Path, program_text: str = _ECHO_PROGRAM) -> Path:
    """The wrapper install.sh put under `pi`, with its settings (the NAME= lines at its
    top) pointed at `pi` and, as root, at the user `nobody`; its program is a stand-in
    (by default one that prints what it was given)."""
    program = pi / "opt/solar-monitor/venv/bin/solar-monitor"
    program.parent.mkdir(parents=True)
    program.write_text(program_text)
    program.chmod(0o755)
    settings = {"PROGRAM": program, "ENV_FILE": pi / ENV_FILE, "DATA_DIR": pi,
                "USER_NAME": "nobody" if os.geteuid() == 0 else None}
    text = (pi / "usr/local/bin/solar-monitor").read_text()
    for name, value in settings.items():
        if value is not None:
            text, count = re.subn(rf"^{name}=.*$", f"{name}={value}", text, flags=re.MULTILINE)
            assert count == 1, name
    wrapper = pi / "wrapper"
    wrapper.write_text(text)
    return wrapper


def _call(wrapper: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `wrapper` from `cwd` with none of the variables it should bring."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("GMAIL_APP_PASSWORD", "QUOTED", "SOLAR_MONITOR_CONFIG")}
    return subprocess.run(["bash", str(wrapper), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, check=False, timeout=30)


def test_the_wrapper_hands_on_a_variable_that_is_only_in_the_env_file() -> None:
    # In a root the user `nobody` can enter, for when the test runs as root.
    with tempfile.TemporaryDirectory() as tmp:
        pi = Path(tmp) / "pi"
        install(pi, "--network", "none", "--no-haproxy")
        (pi / ENV_FILE).write_text(
            "# a comment\n\nGMAIL_APP_PASSWORD=abcd efgh $HOME; `x`\n"
            "  QUOTED=\"in quotes\"  \n")
        for path in (Path(tmp), pi, pi / "etc", pi / "etc/solar-monitor"):
            path.chmod(0o755)
        wrapper = _testable_wrapper(pi)
        result = _call(wrapper, pi, "check", "two words")
        assert result.returncode == 0, result.stderr
        user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
        assert result.stdout.splitlines() == [
            "abcd efgh $HOME; `x`", "in quotes", "/etc/solar-monitor/config.yaml",
            str(pi), "nobody" if os.geteuid() == 0 else user, "check two words",
        ]
        assert result.stderr == ""
        if os.geteuid() == 0:
            # Under sudo from a directory the service user cannot enter: from /, and said.
            private = pi / "private"
            private.mkdir(mode=0o700)
            result = _call(wrapper, private, "check")
            assert result.stdout.splitlines()[3] == "/"
            assert result.stderr == ""  # no path given: nothing to say
            (private / "answer.json").write_text("{}")
            for args in (("parse", "answer.json"), ("digest", "--out", "june.html"),
                         ("digest", "--out=june.html")):
                result = _call(wrapper, private, *args)
                assert result.stdout.splitlines()[3] == "/"
                assert "nobody cannot enter" in result.stderr, args
            assert _call(wrapper, private, "digest", "--out", "/tmp/x.html").stderr == ""


# A program that types a command into its terminal (TIOCSTI) through every way it may
# hold one: its standard streams and /dev/tty.
_TYPIST = """#!/usr/bin/python3
import fcntl, os, termios
fds = [0, 1, 2]
try:
    fds.append(os.open("/dev/tty", os.O_RDWR))
except OSError:
    pass
for fd in fds:
    try:
        for byte in b"echo TYPED\\n":
            fcntl.ioctl(fd, termios.TIOCSTI, bytes([byte]))
    except OSError:
        continue
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="runuser needs root")
@pytest.mark.parametrize("redirect", ["", "</dev/null >/dev/null 2>&1"],
                         ids=["on-a-terminal", "redirected"])
def test_the_service_user_cannot_type_into_roots_terminal(redirect: str) -> None:
    # `sudo solar-monitor ...` from a root shell: whatever runs as the service user must
    # not be able to push a command into that shell's input, to run as root once the
    # program ends. `script` gives the shell a terminal; the shell reads what is left.
    if shutil.which("script") is None:
        pytest.skip("script not installed (apt-get install -y bsdutils)")
    with tempfile.TemporaryDirectory() as tmp:
        pi = Path(tmp) / "pi"
        install(pi, "--network", "none", "--no-haproxy")
        for path in (Path(tmp), pi, pi / "opt", pi / "opt/solar-monitor"):
            path.chmod(0o755)
        wrapper = _testable_wrapper(pi, _TYPIST)
        shell = (f"bash {wrapper} check {redirect}; read -r -t 1 line; "
                 'echo "left in the input: [$line]"')
        # The pipe keeps script's input open while the shell reads.
        result = subprocess.run(
            f"(sleep 2) | script -qec {shlex.quote(shell)} /dev/null", shell=True,
            cwd=tmp, capture_output=True, text=True, check=False, timeout=30)
    assert "left in the input: []" in result.stdout.replace("\r", ""), result.stdout


def test_uninstall_keeps_data_and_config_unless_purge(pi: Path) -> None:
    install(pi)
    # install enabled systemd-time-wait-sync (it was off): uninstall turns it off again
    assert (pi / "opt/solar-monitor/enabled-time-wait-sync").is_file()
    reading = pi / "var/lib/solar-monitor/solar-monitor.db"
    reading.write_text("readings")
    output = uninstall(pi)
    assert "+ systemctl disable systemd-time-wait-sync.service" in output
    assert reading.read_text() == "readings"
    assert (pi / CONFIG).is_file()
    assert not (pi / "opt/solar-monitor").exists()
    assert not (pi / "etc/systemd/system/solar-monitor.timer").exists()
    assert not (pi / "usr/local/bin/solar-monitor").exists()
    assert "+ systemctl disable --now solar-monitor.timer" in output
    # The bridge stays for other LAN tools unless asked.
    assert (pi / "etc/haproxy/haproxy.cfg").is_file()
    assert "172.27.153.10" in (pi / "etc/dhcpcd.conf").read_text()

    assert (pi / ENV_FILE).is_file()  # the secrets go with the config, on --purge

    output = uninstall(pi, "--purge", "--remove-bridge")
    assert not (pi / "var/lib/solar-monitor").exists()
    assert not (pi / "etc/solar-monitor").exists()
    assert "+ userdel solar-monitor" in output
    assert (pi / "etc/dhcpcd.conf").read_text() == "hostname\nclientid\n"
    assert not (pi / "usr/local/sbin/solar-monitor-wifi-check").exists()
    # No earlier HAProxy config was saved: HAProxy ran only the bridge, which goes,
    # certificate and all.
    assert not (pi / "etc/haproxy/haproxy.cfg").exists()
    assert not (pi / BRIDGE_CERT).exists()
    assert "+ systemctl disable --now haproxy" in output


def test_remove_bridge_restores_the_previous_haproxy_config(pi: Path) -> None:
    (pi / "etc/haproxy").mkdir()
    (pi / "etc/haproxy/haproxy.cfg").write_text("# Debian's own\n")
    install(pi)
    install(pi)
    assert (pi / "etc/haproxy/haproxy.cfg.before-solar-monitor").read_text() == "# Debian's own\n"
    uninstall(pi, "--remove-bridge")
    assert (pi / "etc/haproxy/haproxy.cfg").read_text() == "# Debian's own\n"
    assert not (pi / BRIDGE_CERT).exists()


def test_another_haproxy_setup_stops_the_install_before_any_change(pi: Path) -> None:
    (pi / "etc/haproxy").mkdir()
    theirs = "global\nfrontend www\n    bind :80\n    default_backend web\n"
    (pi / "etc/haproxy/haproxy.cfg").write_text(theirs)
    before = snapshot(pi)
    result = _bash(DEPLOY / "install.sh", "--root", pi, ok=False)
    assert "already defines proxies of its own" in result.stderr
    assert "--no-haproxy" in result.stderr and "--replace-haproxy" in result.stderr
    assert snapshot(pi) == before
    install(pi, "--no-haproxy")
    assert (pi / "etc/haproxy/haproxy.cfg").read_text() == theirs
    output = install(pi, "--replace-haproxy")
    assert (pi / "etc/haproxy/haproxy.cfg.before-solar-monitor").read_text() == theirs
    assert "kept the previous /etc/haproxy/haproxy.cfg as haproxy.cfg.before" in output
    # Ours from then on: a rerun goes through without the option.
    install(pi)


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
