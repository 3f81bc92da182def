"""`solar-monitor run`, as cron starts it, against a PVS address that drips, sends 2 GiB,
sends a gzip bomb or refuses the connection: the run ends within poll_budget_s + 5 s, its
peak RSS stays under 100 MiB, and the failure is a recorded failed poll with one line."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.test_notify import free_port

from .hostile import (
    Answer,
    drip,
    endless,
    fixed,
    gzip_answer,
    gzip_bomb_body,
    header_drip,
    hostile_pvs,
    stall,
)

BUDGET_S = 3.0
MAX_RSS_BYTES = 100 * 1024 * 1024


# The run is started by a small wrapper process, which reports its child's peak RSS:
# ru_maxrss of a child forked straight from pytest would include pytest's own memory
# (the kernel records the forking process's high-water mark at exec).
_WRAPPER = ("import resource, subprocess, sys; "
            "code = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)")


@dataclass(frozen=True)
class Child:
    code: int
    stderr: str
    seconds: float
    peak_rss_bytes: int  # the run's own VmHWM (ru_maxrss, reported by the wrapper)


def run_cli(tmp_path: Path, config_dict: dict, url: str) -> Child:
    """`python -m solar_monitor run` with pvs.url = `url`, measured from outside."""
    config_dict["pvs"].update({"url": url, "poll_budget_s": BUDGET_S, "request_timeout_s": 2})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config_dict))
    path.chmod(0o600)
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", _WRAPPER, sys.executable, "-m",
                           "solar_monitor", "run", "--config", str(path)],
                          capture_output=True, text=True, timeout=BUDGET_S + 60)
    seconds = time.monotonic() - start
    return Child(done.returncode, done.stderr, seconds, int(done.stdout) * 1024)


def stored_failures(config_dict: dict) -> list[tuple[int, str]]:
    with sqlite3.connect(Path(config_dict["data_dir"]) / "solar-monitor.db") as db:
        return db.execute("SELECT ok, error FROM polls").fetchall()


def error_lines(child: Child) -> list[str]:
    return [line for line in child.stderr.splitlines() if line.strip()]


@pytest.mark.parametrize(("answer", "said"), [
    (drip, "did not finish its answer"), (header_drip, "did not send the headers")],
    ids=["body", "headers"])
def test_a_dripping_pvs_ends_the_run_within_the_budget(tmp_path: Path, config_dict: dict,
                                                       answer: Answer, said: str) -> None:
    with hostile_pvs(answer) as url:
        child = run_cli(tmp_path, config_dict, url)
    assert child.code == 1, child.stderr
    assert child.seconds <= BUDGET_S + 5, child
    [(ok, error)] = stored_failures(config_dict)
    assert ok == 0 and said in error and "\n" not in error


@pytest.mark.parametrize("answer", [endless(declared=False), endless(declared=True),
                                    gzip_answer(gzip_bomb_body())],
                         ids=["2GiB-streamed", "2GiB-declared", "gzip-bomb"])
def test_a_huge_answer_is_a_failed_poll_in_bounded_memory(tmp_path: Path, config_dict: dict,
                                                          answer: Answer) -> None:
    with hostile_pvs(answer) as url:
        child = run_cli(tmp_path, config_dict, url)
    assert child.code == 1, child.stderr
    assert child.peak_rss_bytes <= MAX_RSS_BYTES, child
    assert child.seconds <= BUDGET_S + 5, child
    [(ok, error)] = stored_failures(config_dict)
    assert ok == 0 and "too large" in error and "limit is 16 MiB" in error
    assert [line for line in error_lines(child) if "poll failed" in line] == [
        f"solar-monitor: poll failed: {error}"]


def test_a_refused_port_fails_in_seconds_with_one_line_and_the_hint(
        tmp_path: Path, config_dict: dict) -> None:
    child = run_cli(tmp_path, config_dict, f"http://127.0.0.1:{free_port()}")
    assert child.code == 1
    assert child.seconds <= 5, child
    assert len(error_lines(child)) == 1, child.stderr
    assert "connection refused" in child.stderr and "LAN1" in child.stderr


def test_a_stall_mid_body_ends_at_the_deadline_not_the_read_timeout() -> None:
    """Each socket wait is cut to what is left of the budget: a 60 s read timeout does
    not let a body that stops after one byte hold the poll past its 3 s."""
    from solar_monitor.pvs.client import PvsClient
    from solar_monitor.pvs.errors import PvsCommunicationError

    with hostile_pvs(stall) as url:
        start = time.monotonic()
        with pytest.raises(PvsCommunicationError, match="did not finish its answer"):
            PvsClient(url, budget_s=BUDGET_S, request_timeout_s=60).poll()
        assert time.monotonic() - start <= BUDGET_S + 0.5


@pytest.mark.parametrize(("status", "budget_s"), [(503, 6.0), (None, BUDGET_S)],
                         ids=["503-forever", "silent"])
def test_retries_never_outlast_the_one_deadline(status: int | None, budget_s: float) -> None:
    """A bridge answering 503 for ever is retried with back-off, and a PVS that never
    answers is waited for, both only until the poll's deadline: real sleeps, real clock."""
    from solar_monitor.pvs.client import PvsClient
    from solar_monitor.pvs.errors import PvsCommunicationError

    tries: list[float] = []

    def answer(handler: Any) -> None:
        tries.append(time.monotonic())
        if status is None:
            time.sleep(30)  # accepts, never answers
        fixed(status or 200, b"<html>503 Service Unavailable</html>", "text/html")(handler)

    with hostile_pvs(answer) as url:
        client = PvsClient(url, budget_s=budget_s, request_timeout_s=20)
        start = time.monotonic()
        with pytest.raises(PvsCommunicationError):
            client.poll()
        seconds = time.monotonic() - start
    assert seconds <= budget_s + 0.5, seconds
    assert len(tries) >= (2 if status else 1)  # 503 is retried inside the budget


def test_an_answer_without_a_usable_device_is_a_failed_poll(tmp_path: Path,
                                                            config_dict: dict) -> None:
    """Devices of the wrong types: before, exit 0 with '? kW production, 0/0 inverters
    producing'; now a failed poll that says why."""
    body = (b'{"devices": [{"DEVICE_TYPE": ["Inverter"], "SERIAL": {"x": 1}}, 7, "x", null,'
            b' {"DEVICE_TYPE": "Inverter", "SERIAL": null}], "result": "succeed"}')
    with hostile_pvs(fixed(200, body)) as url:
        child = run_cli(tmp_path, config_dict, url)
    assert child.code == 1, child.stderr
    [(ok, error)] = stored_failures(config_dict)
    assert ok == 0 and error == ("unusable answer: no usable device: 5 device(s) listed, "
                                 "none an inverter, meter or battery with a serial")
    assert "0/0" not in child.stderr
