"""The Pi's own health: the readers on a fake sysfs/proc root, the three rules through the
real engine and store, a run that reads a fake Pi, and a real read-only filesystem.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from solar_monitor import pi_health, pipeline
from solar_monitor.config import Config, config_from_dict
from solar_monitor.pi_health import (
    CPU_TEMP,
    MOUNTINFO,
    THROTTLED_SYSFS,
    PiHealth,
    describe_flags,
    read_cpu_temp_c,
    read_pi_health,
    read_throttled,
    storage_problem,
)
from solar_monitor.rules.engine import Engine
from solar_monitor.store import Store

pytestmark = pytest.mark.usefixtures("no_retry_sleep")
AT = datetime(2026, 7, 1, 16, 0, tzinfo=UTC)
STEP = timedelta(minutes=15)


class FakePi:
    """A fake root: sysfs files, /proc/self/mountinfo and an optional vcgencmd."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, rel: str, text: str) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def throttled(self, value: int) -> None:
        self.write(THROTTLED_SYSFS, f"{value:x}\n")  # the kernel prints hex, no 0x

    def temp(self, celsius: float) -> None:
        self.write(CPU_TEMP, f"{round(celsius * 1000)}\n")

    def vcgencmd(self, output: str) -> None:
        tool = self.root / "usr/bin/vcgencmd"
        tool.parent.mkdir(parents=True, exist_ok=True)
        tool.write_text(f"#!/bin/sh\n[ \"$1\" = get_throttled ] && echo '{output}'\n")
        tool.chmod(0o755)

    def mounts(self, data: Path, options: str) -> None:
        self.write(MOUNTINFO,
                   "22 1 179:2 / / rw,relatime shared:1 - ext4 /dev/mmcblk0p2 rw\n"
                   f"40 22 179:3 / {data.resolve()} {options},noatime shared:2 - ext4 "
                   f"/dev/mmcblk0p3 {options}\n")


@pytest.fixture
def fake(tmp_path: Path) -> FakePi:
    return FakePi(tmp_path / "root")


# --- readers -------------------------------------------------------------------------------

def test_throttled_from_sysfs_then_vcgencmd_then_nothing(fake: FakePi) -> None:
    assert read_throttled(fake.root) is None  # neither exists: not a Pi
    fake.vcgencmd("throttled=0x50000")
    assert read_throttled(fake.root) == 0x50000  # a real process, as on a Pi without sysfs
    fake.throttled(0x50005)
    assert read_throttled(fake.root) == 0x50005  # sysfs wins when it exists
    fake.write(THROTTLED_SYSFS, "garbage\n")
    assert read_throttled(fake.root) == 0x50000  # unreadable sysfs: the tool


def test_flags_are_named() -> None:
    assert describe_flags(0x1) == "under-voltage now"
    assert describe_flags(0x50000) == "under-voltage, throttled since boot"
    assert describe_flags(0x50005) == "under-voltage, throttled now"
    assert describe_flags(0x20002 | 0x10000) == \
        "ARM frequency capped now; under-voltage since boot"
    assert PiHealth(0x80008, None, None).power_flags == 0  # the soft temperature limit only


def test_cpu_temperature(fake: FakePi) -> None:
    assert read_cpu_temp_c(fake.root) is None
    fake.write(CPU_TEMP, "81234\n")
    assert read_cpu_temp_c(fake.root) == 81.2
    fake.write(CPU_TEMP, "n/a\n")
    assert read_cpu_temp_c(fake.root) is None


def test_storage_read_only_from_mountinfo(fake: FakePi, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    assert storage_problem(data, fake.root) is None  # no mountinfo: nothing known
    fake.mounts(data, "rw")
    assert storage_problem(data, fake.root) is None
    fake.mounts(data, "ro")
    assert "mounted read-only" in (storage_problem(data, fake.root) or "")
    assert "mounted read-only" in (storage_problem(data / "not-yet", fake.root) or "")


def test_storage_write_failing_with_an_io_error(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A dying card: the write reaches the kernel, the fsync comes back EIO."""
    data = tmp_path / "data"
    data.mkdir()
    real = os.fsync

    def fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", fsync)
    assert storage_problem(data, tmp_path / "root") == \
        f"writing to {data} fails: Input/output error"
    monkeypatch.setattr(os, "fsync", real)
    assert storage_problem(data, tmp_path / "root") is None


# --- the rules, through the engine ----------------------------------------------------------

@pytest.fixture
def engine(tmp_path: Path, config: Config) -> Iterator[Engine]:
    with Store(tmp_path / "db.sqlite") as store:
        yield Engine(store, config)


def judge(engine: Engine, readings: list[PiHealth | None], start: datetime = AT
          ) -> list[tuple[int, str, str]]:
    """Feed one failed poll per reading (the Pi is judged even when the PVS is down);
    return (index, event, rule) of the pi_* transitions."""
    out = []
    for n, pi in enumerate(readings):
        for e in engine.evaluate(start + n * STEP, None, "cannot reach the PVS", pi=pi):
            if e.rule.startswith("pi_"):
                out.append((n, e.event, e.rule))
    return out


def test_undervoltage_opens_at_once_names_the_cause_and_clears_after_reboot(
        engine: Engine) -> None:
    bad, good = PiHealth(0x50000, None, None), PiHealth(0x0, None, None)
    events = judge(engine, [good, bad, bad, good, good])
    assert events == [(1, "open", "pi_undervoltage"), (4, "resolved", "pi_undervoltage")]
    (message,) = [r[0] for r in engine.store.db.execute(
        "SELECT message FROM alerts WHERE rule='pi_undervoltage'")]
    assert "under-voltage, throttled since boot" in message and "0x50000" in message
    assert "PVS USB port" in message and "own 5 V supply" in message


def test_undervoltage_is_silent_on_a_machine_that_is_not_a_pi(engine: Engine) -> None:
    assert judge(engine, [PiHealth(None, None, None)] * 6 + [None] * 3) == []


def test_hot_needs_a_sustained_period_and_has_hysteresis(engine: Engine) -> None:
    def t(c: float) -> PiHealth:
        return PiHealth(None, c, None)

    # 3 hot runs (30 min) are not enough; 4 spanning 45 min are
    assert judge(engine, [t(80), t(81), t(79), t(60)]) == []
    readings = [t(80), t(81), t(79), t(78), t(76), t(72), t(69), t(68), t(68)]
    events = judge(engine, readings, AT + 10 * STEP)
    # 72 °C is inside the 5 °C band below 75: neither hot nor cool, the alert stays open
    assert events == [(3, "open", "pi_hot"), (8, "resolved", "pi_hot")]


def test_hot_threshold_is_configurable(tmp_path: Path, config_dict: dict) -> None:
    config_dict["alerts"] = {"rules": {"pi_hot": {"max_c": 60, "open_polls": 1,
                                                  "open_after_min": 0}}}
    with Store(tmp_path / "db.sqlite") as store:
        engine = Engine(store, config_from_dict(config_dict, env={}))
        assert judge(engine, [PiHealth(None, 61.0, None)]) == [(0, "open", "pi_hot")]


def test_storage_failing_is_critical_and_queued_in_the_outbox(engine: Engine) -> None:
    bad = PiHealth(None, None, "the filesystem holding /var/lib/solar-monitor is mounted "
                               "read-only")
    assert judge(engine, [bad]) == [(0, "open", "pi_storage_failing")]
    row = engine.store.db.execute(
        "SELECT title, body, level FROM notifications WHERE title LIKE '%SD card%'").fetchone()
    assert row["level"] == "failure" and "mounted read-only" in row["body"]
    assert "how SD cards die" in row["body"] and "Replace the SD card" in row["body"]


# --- a run reads the Pi --------------------------------------------------------------------

def test_a_run_judges_the_pi_it_runs_on(fake: FakePi, config_dict: dict) -> None:
    """run_once with a fake root: the reading is in the report and opens the alert; a
    replay of the same archive judges no pi_* rule (a replay is not this Pi, now)."""
    config = config_from_dict(config_dict, env={})
    fake.throttled(0x50005)
    fake.temp(52.0)
    report = pipeline.run_once(config, now=AT, pi_root=fake.root)
    assert not report.ok  # the PVS is unreachable; the Pi is judged all the same
    assert report.pi == PiHealth(0x50005, 52.0, None)
    with pipeline.open_store(config) as store:
        rules = [r[0] for r in store.db.execute("SELECT rule FROM alerts")]
    assert rules == ["pi_undervoltage"]
    assert pipeline.run_once(config, now=AT + STEP).pi is None  # simulated time: no Pi


def test_replay_judges_no_pi_rule(fake: FakePi, config_dict: dict, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from solar_monitor.replay import replay

    config = config_from_dict(config_dict, env={})
    pipeline.run_once(config, now=AT)
    fake.throttled(0x1)
    monkeypatch.setattr(pi_health, "ROOT", fake.root)
    config_dict["data_dir"] = str(tmp_path / "replayed")
    other = config_from_dict(config_dict, env={})
    replay(other, config.data_path / "raw", notify=False)
    with pipeline.open_store(other) as store:
        assert store.db.execute("SELECT count(*) FROM alerts WHERE rule LIKE 'pi_%'"
                                ).fetchone()[0] == 0


# --- a real read-only filesystem -----------------------------------------------------------

@pytest.fixture
def read_only_disk(tmp_path: Path) -> Iterator[Path]:
    """A real tmpfs holding a data folder with a database, then remounted read-only: what
    the kernel does to an SD card after I/O errors."""
    mount = tmp_path / "card"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


class Webhook:
    """A loopback JSON webhook (apprise json://) that keeps each body."""

    def __init__(self) -> None:
        self.bodies: list[str] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                hook.bodies.append(self.rfile.read(int(self.headers["Content-Length"]))
                                   .decode())
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/hook"


def test_a_read_only_card_is_said_directly_once(read_only_disk: Path, config_dict: dict,
                                                tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The run cannot write (exit 3); the database on the card cannot hold an alert, so the
    e-mail goes straight through apprise, and only once per reminder period."""
    from solar_monitor.cli import main

    data = read_only_disk / "data"
    config_dict["data_dir"] = str(data)
    config = config_from_dict(config_dict, env={})
    pipeline.run_once(config, now=AT)  # a working card first: a database, an archive
    subprocess.run(["mount", "-o", "remount,ro", str(read_only_disk)], check=True)
    assert "mounted read-only" in (read_pi_health(data).storage_problem or "")
    hook = Webhook()
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path / "run"))
    config_dict["notify"] = {"targets": [{"url": hook.url}]}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config_dict))
    path.chmod(0o600)
    try:
        assert main(["run", "--config", str(path)]) == 3
        assert main(["run", "--config", str(path)]) == 3
    finally:
        hook.server.shutdown()
        hook.server.server_close()
    assert len(hook.bodies) == 1, hook.bodies
    assert "SD card is failing" in hook.bodies[0] and "mounted read-only" in hook.bodies[0]
    with sqlite3.connect(f"file:{data / pipeline.DB_NAME}?immutable=1", uri=True) as con:
        assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 0  # could not
    con.close()
