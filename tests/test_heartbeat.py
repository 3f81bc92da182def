"""The heartbeat, through the real CLI: a loopback HTTP recorder stands in for
healthchecks.io, and the emulator (on the wall clock, as `run` uses it) for the PVS.

A good run pings `<url>`; a failed one `<url>/fail` with its reason as the body, even when
it fails before any poll; a ping that fails or hangs never fails the run; `check` pings
once and is not recorded as a run; a run kept out by the lock, `replay` and `demo` never
ping. Every run leaves a `runs` row (outcome, heartbeat result).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from solar_monitor import heartbeat, pipeline
from solar_monitor.cli import main
from solar_monitor.emulation.emulator import Emulator, default_spec, start_emulator
from solar_monitor.emulation.sim import SimulatedSite
from solar_monitor.runlock import run_lock
from tests.test_notify import free_port

TOKEN = "5f0c6a1e-hb-token"


@dataclass
class Ping:
    method: str
    path: str
    body: str


@dataclass
class Recorder:
    """An HTTP server on loopback that keeps every request; answers `status` after
    `delay_s` (a healthchecks.io that is down, or slow)."""

    status: int = 200
    delay_s: float = 0.0
    pings: list[Ping] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/ping/{TOKEN}"

    def bodies(self, path: str) -> list[str]:
        return [p.body for p in self.pings if p.path == path]


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode("utf-8", errors="replace")
            rec.pings.append(Ping(self.command, self.path, body))
            time.sleep(rec.delay_s)
            try:
                self.send_response(rec.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")
            except OSError:
                pass  # the client gave up waiting (the "hangs" case)

        do_POST = do_GET = _answer  # noqa: N815 - http.server's naming

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield rec
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch, no_retry_sleep: None) -> None:
    """No real back-off sleeps, the PVS client's or the ping's (the retries still happen)."""
    monkeypatch.setattr(heartbeat, "RETRY_PAUSE_S", 0.0)


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])


@pytest.fixture
def pvs() -> Iterator[Emulator]:
    spec = default_spec(datetime.now(UTC), inverter_count=4, latitude=42.36,
                        longitude=-71.06, timezone="America/New_York", seed=3)
    with start_emulator(SimulatedSite(spec), firmware="legacy") as emu:
        yield emu


def write_config(tmp_path: Path, config_dict: dict, pvs_url: str,
                 heartbeat_section: dict | None) -> Path:
    raw = {**config_dict, "logging": {"file": str(tmp_path / "run.log")}}
    raw["pvs"] = {**raw["pvs"], "url": pvs_url, "poll_budget_s": 3.0, "request_timeout_s": 2.0}
    if heartbeat_section is not None:
        raw["heartbeat"] = heartbeat_section
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    path.chmod(0o600)
    return path


def runs(data: Path) -> list[sqlite3.Row]:
    with sqlite3.connect(data / pipeline.DB_NAME) as con:
        con.row_factory = sqlite3.Row
        rows = con.execute("SELECT * FROM runs ORDER BY id").fetchall()
    con.close()
    return rows


def test_a_good_run_pings_the_url(tmp_path: Path, config_dict: dict, pvs: Emulator,
                                  recorder: Recorder) -> None:
    config = write_config(tmp_path, config_dict, pvs.url, {"url": recorder.url})
    assert main(["run", "--config", str(config)]) == 0
    assert [(p.method, p.path) for p in recorder.pings] == [("POST", f"/ping/{TOKEN}")]
    assert recorder.pings[0].body.startswith("poll stored: ")
    (row,) = runs(Path(config_dict["data_dir"]))
    assert (row["outcome"], row["exit_code"], row["heartbeat"], row["reason"]) == \
        ("ok", 0, "ok", None)


def test_an_unreachable_pvs_pings_fail_with_the_reason(
        tmp_path: Path, config_dict: dict, recorder: Recorder,
        capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, config_dict, f"http://127.0.0.1:{free_port()}",
                          {"url": recorder.url})
    assert main(["run", "--config", str(config)]) == 1
    (body,) = recorder.bodies(f"/ping/{TOKEN}/fail")
    assert body.startswith("poll failed: cannot reach the PVS"), body
    assert "\n" not in body and body in capsys.readouterr().err  # the run's own line
    assert recorder.bodies(f"/ping/{TOKEN}") == []
    (row,) = runs(Path(config_dict["data_dir"]))
    assert (row["outcome"], row["exit_code"], row["heartbeat"]) == ("poll_failed", 1, "ok")
    assert row["reason"] == body


def test_a_run_failing_before_any_poll_still_pings_fail(
        tmp_path: Path, config_dict: dict, recorder: Recorder) -> None:
    """The data folder cannot even be created (its parent is a file): exit 3, and the
    heartbeat still says why. No runs row can exist; nothing raises about that."""
    (tmp_path / "not-a-folder").write_text("x")
    config_dict["data_dir"] = str(tmp_path / "not-a-folder" / "data")
    config = write_config(tmp_path, config_dict, f"http://127.0.0.1:{free_port()}",
                          {"url": recorder.url})
    assert main(["run", "--config", str(config)]) == 3
    (body,) = recorder.bodies(f"/ping/{TOKEN}/fail")
    assert body.startswith("storage error: Not a directory"), body


@pytest.mark.parametrize("fault", ["http_500", "refused", "hangs"])
def test_a_failing_heartbeat_never_fails_the_run(
        fault: str, tmp_path: Path, config_dict: dict, pvs: Emulator,
        recorder: Recorder) -> None:
    section: dict[str, Any] = {"url": recorder.url, "timeout_s": 1}
    if fault == "http_500":
        recorder.status = 500
    elif fault == "refused":
        section["url"] = f"http://127.0.0.1:{free_port()}/ping/{TOKEN}"
    else:
        recorder.delay_s = 3.0
    config = write_config(tmp_path, config_dict, pvs.url, section)
    started = time.monotonic()
    assert main(["run", "--config", str(config)]) == 0
    assert time.monotonic() - started < 15  # two 1 s attempts, not a long retry
    log = (tmp_path / "run.log").read_text()
    assert "heartbeat ping failed (the run is not affected)" in log, log
    (row,) = runs(Path(config_dict["data_dir"]))
    assert row["outcome"] == "ok" and row["heartbeat"].startswith("failed: http://127.0.0.1:")
    if fault != "refused":
        assert len(recorder.pings) == 2  # one quick retry
    if fault == "http_500":
        assert "HTTP 500" in row["heartbeat"]


def test_a_4xx_is_not_retried(recorder: Recorder) -> None:
    from solar_monitor.config import HeartbeatConfig

    recorder.status = 404
    result = heartbeat.ping(HeartbeatConfig(url=recorder.url), failed=True, body="why")
    assert not result.ok and "HTTP 404 (is heartbeat.url the check's ping URL?)" in \
        result.detail
    assert [p.path for p in recorder.pings] == [f"/ping/{TOKEN}/fail"]
    assert TOKEN not in result.detail


def test_fail_url_keeps_the_query() -> None:
    assert heartbeat.fail_url("https://hc-ping.com/abc/") == "https://hc-ping.com/abc/fail"
    assert heartbeat.fail_url("https://hc-ping.com/abc?rid=1") == \
        "https://hc-ping.com/abc/fail?rid=1"


def test_a_run_kept_out_by_the_lock_does_not_ping(
        tmp_path: Path, config_dict: dict, recorder: Recorder) -> None:
    """The run holding the lock pings when it ends; one stuck for good must let the
    heartbeat go silent, so the runs it keeps out say nothing either."""
    config = write_config(tmp_path, config_dict, f"http://127.0.0.1:{free_port()}",
                          {"url": recorder.url})
    data = Path(config_dict["data_dir"])
    data.mkdir(parents=True)
    with run_lock(data / pipeline.LOCK_NAME):
        assert main(["run", "--config", str(config)]) == 0
    assert recorder.pings == []


def test_check_pings_once_and_is_not_a_run(tmp_path: Path, config_dict: dict,
                                           pvs: Emulator, recorder: Recorder,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, config_dict, pvs.url, {"url": recorder.url})
    assert main(["check", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if "heartbeat:" in ln)
    assert line.startswith("PASS heartbeat: http://127.0.0.1:") and TOKEN not in line, out
    (ping,) = recorder.pings
    assert ping.path == f"/ping/{TOKEN}" and "not a run" in ping.body
    data = Path(config_dict["data_dir"])
    assert not (data / pipeline.DB_NAME).exists() or runs(data) == []
    recorder.status = 404
    assert main(["check", "--config", str(config)]) == 1
    assert "FAIL heartbeat: http://127.0.0.1:" in capsys.readouterr().out


def test_check_without_heartbeat_says_skip(tmp_path: Path, config_dict: dict,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, config_dict, f"http://127.0.0.1:{free_port()}", None)
    main(["check", "--config", str(config)])
    assert "SKIP heartbeat: no heartbeat section" in capsys.readouterr().out


def test_replay_never_pings(tmp_path: Path, config_dict: dict, pvs: Emulator,
                           recorder: Recorder) -> None:
    config = write_config(tmp_path, config_dict, pvs.url, None)
    assert main(["run", "--config", str(config)]) == 0  # an archive to replay
    raw = Path(config_dict["data_dir"]) / "raw"
    config_dict["data_dir"] = str(tmp_path / "replayed")
    config = write_config(tmp_path, config_dict, pvs.url, {"url": recorder.url})
    assert main(["replay", str(raw), "--config", str(config), "--quiet"]) == 0
    assert recorder.pings == []


def test_the_example_documents_the_section() -> None:
    """config.example.yaml's commented heartbeat section, uncommented, is valid."""
    from solar_monitor.config import config_from_dict
    from tests.conftest import REPO

    lines = (REPO / "config.example.yaml").read_text().splitlines()
    start = lines.index(next(ln for ln in lines if ln.startswith("# heartbeat:")))
    section = [lines[start][2:]]
    for line in lines[start + 1:]:
        if not line.startswith("#   ") or line.startswith("#    "):
            if line.startswith("#    "):
                continue  # a comment's continuation
            break
        section.append(line[2:])
    raw = yaml.safe_load("\n".join(section))
    config = config_from_dict({"site": {"latitude": 1, "longitude": 1, "timezone": "UTC"},
                               "pvs": {"url": "http://127.0.0.1"}, "data_dir": "/tmp/x",
                               **raw}, env={})
    assert config.heartbeat is not None and "hc-ping.com" in config.heartbeat.url
    assert config.heartbeat.url in config.secrets()
