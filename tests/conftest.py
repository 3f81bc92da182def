"""Shared test fixtures: real payloads, a temporary data folder, a config for it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from solar_monitor.config import Config, config_from_dict
from solar_monitor.store import Store

REPO = Path(__file__).resolve().parent.parent
# Copies of the project's real-payload collection, byte for byte (SOURCES.md credits each): a clone
# must test on its own.
REAL_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "real"


def real(name_part: str) -> Path:
    """The one real fixture whose name contains `name_part`."""
    matches = [p for p in REAL_FIXTURES.glob("*.json") if name_part in p.name]
    assert len(matches) == 1, f"{name_part!r} matches {matches}"
    return matches[0]


def all_real() -> list[Path]:
    return sorted(REAL_FIXTURES.glob("*.json"))


def without_clock(body: bytes) -> bytes:
    """A DeviceList with its CURTIME and DATATIME fields removed: a canned answer replayed
    at a simulated time must not carry the capture's clock (the run would trust the PVS's
    clock over its own and restamp the poll, see solar_monitor/clock.py; and every value
    would be as old as the capture, never current power)."""
    doc = json.loads(body)
    for device in doc.get("devices", []):
        device.pop("CURTIME", None)
        device.pop("DATATIME", None)
    return json.dumps(doc).encode()


@pytest.fixture
def config_dict(tmp_path: Path) -> dict:
    return {
        "site": {"latitude": 42.36, "longitude": -71.06, "timezone": "America/New_York"},
        "pvs": {"url": "http://127.0.0.1:9", "poll_budget_s": 10.0, "request_timeout_s": 5.0},
        "data_dir": str(tmp_path / "data"),
        "weather": {"enabled": False},  # tests never reach the internet (test_weather: a fake)
    }


@pytest.fixture
def no_retry_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """The PVS client's back-off does not really sleep (the retries still happen)."""
    from solar_monitor import pipeline

    make = pipeline.make_client

    def fast(config: Any) -> Any:
        client = make(config)
        client._sleep = lambda seconds: None  # noqa: SLF001 - the client's one test seam
        return client

    monkeypatch.setattr(pipeline, "make_client", fast)


@pytest.fixture
def config(config_dict: dict) -> Config:
    """The test config, validated (env-free)."""
    return config_from_dict(config_dict, env={})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh store in a temporary folder (modules may define their own)."""
    with Store(tmp_path / "db.sqlite") as s:
        yield s


# --- the fuzz tests' count of inputs tried (the README quotes it), also under xdist -------
# Here, not in tests/faults/: the xdist controller loads only this conftest.


def pytest_sessionfinish(session: pytest.Session) -> None:
    """In a pytest-xdist worker: hand this worker's count to the controller."""
    from tests.faults.fuzzing import TRIED

    if hasattr(session.config, "workeroutput"):
        session.config.workeroutput["fuzz_inputs"] = TRIED["inputs"]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """In the xdist controller: add up the workers' counts."""
    from tests.faults.fuzzing import TRIED

    TRIED["inputs"] += getattr(node, "workeroutput", {}).get("fuzz_inputs", 0)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    from tests.faults.fuzzing import EXAMPLES, TRIED

    if TRIED["inputs"]:
        terminalreporter.write_line(
            f"fuzz: {TRIED['inputs']} inputs tried (SOLAR_FUZZ_EXAMPLES={EXAMPLES})")
