"""The collection cycle over real HTTP against the emulator: every firmware, every fault."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from solar_monitor.archive import save_answer
from solar_monitor.config import Config, config_from_dict
from solar_monitor.emulation.emulator import Emulator, default_spec, start_emulator
from solar_monitor.emulation.sim import SimulatedSite
from solar_monitor.pipeline import make_client, open_store, run_once
from solar_monitor.pvs.client import PvsClient
from solar_monitor.pvs.parse import parse
from solar_monitor.runlock import AlreadyRunning, run_lock

NOON = datetime(2026, 6, 10, 16, 0, tzinfo=UTC)  # noon in New York: everything produces


class Clock:
    """A settable simulated clock shared by the emulator and the runs."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(NOON)


def make_emulator(clock: Clock, firmware: str, inverters: int = 8) -> Emulator:
    spec = default_spec(NOON, inverter_count=inverters, latitude=42.36, longitude=-71.06,
                        timezone="America/New_York", seed=3)
    return start_emulator(SimulatedSite(spec), firmware=firmware, clock=clock)


@pytest.fixture(params=["legacy", "auth", "varserver"])
def emulator(request, clock: Clock) -> Iterator[Emulator]:
    with make_emulator(clock, request.param) as emu:
        yield emu


def config_for(config_dict: dict, url: str, **pvs: object) -> Config:
    config_dict["pvs"].update({"url": url, **pvs})
    return config_from_dict(config_dict, env={})


def fast_client(config: Config, **overrides: object) -> PvsClient:
    """The configured client, but retries do not really sleep (counted instead)."""
    client = make_client(config)
    client._sleep = lambda seconds: None  # noqa: SLF001 - the one test seam
    for key, value in overrides.items():
        setattr(client, key, value)
    return client


def test_run_in_every_firmware_mode(emulator: Emulator, config_dict: dict, clock: Clock):
    config = config_for(config_dict, emulator.url)
    report = run_once(config, now=clock.now)
    assert report.ok, report.error
    assert report.totals is not None and report.totals.inverters_total == 8
    assert report.totals.inverters_producing == 8
    assert report.totals.production_kw and report.totals.production_kw > 0.5

    # the archive holds exactly what the PVS returned, under the contract name
    assert report.archive_file is not None
    assert report.archive_file.name == "20260610T160000Z.json.gz"
    assert report.archive_file.parent == config.data_path / "raw" / "2026" / "06" / "10"
    body = gzip.decompress(report.archive_file.read_bytes())
    snapshot = parse(body)
    assert len(snapshot.inverters) == 8

    methods = {m for m, _ in emulator.requests}
    paths = [p for _, p in emulator.requests]
    assert methods == {"GET"}  # never anything that could change PVS state
    assert not any("Command=Start" in p or "set=" in p or "Stop" in p for p in paths)
    firmware = emulator.firmware if isinstance(emulator.firmware, str) else None
    logged_in = any(p.startswith("/auth?login") for p in paths)
    if "legacy" in str(firmware):
        assert not logged_in and snapshot.api == "legacy"
    elif "varserver" in str(firmware):
        assert logged_in and snapshot.api == "varserver"
        assert not any("DeviceList" in p for p in paths)  # build >= 61845: straight to vars
    else:
        assert logged_in and snapshot.api == "legacy"

    with open_store(config) as store:
        polls = store.db.execute("SELECT ok, api, build, inverters_total FROM polls").fetchall()
        assert [tuple(r) for r in polls] == [(1, snapshot.api, snapshot.build, 8)]
        assert store.db.execute("SELECT count(*) FROM inverter_readings").fetchone()[0] == 8
        assert store.db.execute("SELECT count(*) FROM meter_readings").fetchone()[0] == 2
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        inverters = store.devices("Inverter")
        assert len(inverters) == 8 and inverters[0]["first_seen"] == "2026-06-10T16:00:00Z"
    readings = (config.data_path / "csv" / "readings.csv").read_text().splitlines()
    assert readings[0].startswith("time_utc,time_local,ok,")
    assert readings[1].startswith("2026-06-10T16:00:00Z,2026-06-10 12:00:00,1,")
    inv_csv = (config.data_path / "csv" / "inverters-2026-06.csv").read_text().splitlines()
    assert len(inv_csv) == 1 + 8


def test_successive_runs_append_and_survive_restart(config_dict: dict, clock: Clock):
    with make_emulator(clock, "auth") as emu:
        config = config_for(config_dict, emu.url)
        for _ in range(4):
            assert run_once(config, now=clock.now).ok
            clock.now += timedelta(minutes=15)
    with open_store(config) as store:
        assert store.db.execute("SELECT count(*) FROM polls").fetchone()[0] == 4
    lines = (config.data_path / "csv" / "inverters-2026-06.csv").read_text().splitlines()
    assert len(lines) == 1 + 4 * 8
    assert len(set(lines)) == len(lines)


def test_night_inverters_in_error_without_metrics(config_dict: dict):
    night = Clock(datetime(2026, 6, 10, 6, 0, tzinfo=UTC))  # 02:00 in New York
    with make_emulator(night, "legacy") as emu:
        config = config_for(config_dict, emu.url)
        report = run_once(config, now=night.now)
    assert report.ok and report.totals is not None
    assert report.totals.inverters_producing == 0
    snapshot = parse(gzip.decompress(report.archive_file.read_bytes()))
    assert {i.state for i in snapshot.inverters} == {"error"}


def _last_error(config: Config) -> dict:
    files = sorted((config.data_path / "raw").rglob("*.error.json"))
    assert files, "a failed poll must leave an error record"
    return json.loads(files[-1].read_text())


def test_503_outage_is_retried_then_recorded_then_recovers(config_dict: dict, clock: Clock):
    with make_emulator(clock, "legacy") as emu:
        config = config_for(config_dict, emu.url, poll_budget_s=30.0)
        sleeps: list[float] = []
        emu.faults.unavailable(minutes=20)
        client = fast_client(config)
        client._sleep = sleeps.append  # noqa: SLF001
        report = run_once(config, now=clock.now, client=client)
        assert not report.ok and report.http_status == 503
        assert _last_error(config) == {"error": "the PVS (or its bridge) answered HTTP 503",
                                       "http_status": 503}
        assert len(sleeps) == 5 and sleeps[0] < sleeps[-1]  # exponential backoff, 6 tries
        clock.now += timedelta(minutes=30)
        assert run_once(config, now=clock.now).ok
    with open_store(config) as store:
        rows = store.db.execute("SELECT ok, http_status FROM polls ORDER BY polled_at")
        assert [tuple(r) for r in rows] == [(0, 503), (1, None)]


@pytest.mark.parametrize(("fault", "error", "status"), [
    ("truncated", "DeviceList: truncated JSON", 200),
    ("html", "DeviceList: an HTML page, not JSON", 200),
    ("fail", "DeviceList answered result='error'", 200),
])
def test_bad_answers_are_recorded(config_dict: dict, clock: Clock, fault, error, status):
    with make_emulator(clock, "legacy") as emu:
        config = config_for(config_dict, emu.url)
        getattr(emu.faults, fault)()
        report = run_once(config, now=clock.now, client=fast_client(config))
    assert not report.ok
    record = _last_error(config)
    assert error in record["error"], record
    if status is not None:
        assert record["http_status"] == status


def test_slow_pvs_hits_the_request_timeout(config_dict: dict, clock: Clock):
    with make_emulator(clock, "legacy") as emu:
        config = config_for(config_dict, emu.url, request_timeout_s=1.0, poll_budget_s=3.0)
        emu.faults.slow(2.5)
        report = run_once(config, now=clock.now, client=fast_client(config))
    assert not report.ok
    assert "within" in report.error or "budget" in report.error
    assert _last_error(config)["http_status"] is None


def test_spontaneous_403_on_old_firmware(config_dict: dict, clock: Clock):
    with make_emulator(clock, "legacy") as emu:
        config = config_for(config_dict, emu.url)
        emu.faults.forbidden()
        report = run_once(config, now=clock.now, client=fast_client(config))
    assert not report.ok and report.http_status == 403
    assert "power cycle" in report.error


def test_forced_legacy_on_varserver_firmware_explains(config_dict: dict, clock: Clock):
    with make_emulator(clock, "varserver") as emu:
        config = config_for(config_dict, emu.url, api="legacy")
        report = run_once(config, now=clock.now, client=fast_client(config))
    assert not report.ok and "pvs.api: varserver" in report.error


def test_wrong_password_is_an_auth_failure(config_dict: dict, clock: Clock):
    with make_emulator(clock, "auth") as emu:
        config = config_for(config_dict, emu.url, password="Xyzzy9")
        report = run_once(config, now=clock.now, client=fast_client(config))
    assert not report.ok
    assert "refused the login as ssm_owner" in report.error and "Xyzzy9" not in report.error
    assert "wrong serial or password" in report.error


def test_dead_and_missing_inverters(config_dict: dict, clock: Clock):
    with make_emulator(clock, "legacy") as emu:
        config = config_for(config_dict, emu.url)
        emu.faults.dead_inverter(2)
        emu.faults.missing_inverter(5)
        report = run_once(config, now=clock.now)
    assert report.ok and report.totals is not None
    assert report.totals.inverters_total == 7
    assert report.totals.inverters_producing == 6


def test_second_run_exits_cleanly_while_one_holds_the_lock(config_dict: dict, clock: Clock):
    config = config_for(config_dict, "http://127.0.0.1:9")
    config.data_path.mkdir(parents=True)
    with run_lock(config.data_path / "run.lock"), pytest.raises(AlreadyRunning):
        run_once(config, now=clock.now)


def test_archived_but_unstored_poll_is_ingested_by_next_run(config_dict: dict, clock: Clock):
    with make_emulator(clock, "legacy") as emu:
        config = config_for(config_dict, emu.url)
        # a run killed after archiving, before storing: only the raw file exists
        body = make_client(config).poll().body
        save_answer(config.data_path / "raw", clock.now - timedelta(minutes=15), body)
        report = run_once(config, now=clock.now)
    assert report.ok and report.recovered == 1
    with open_store(config) as store:
        assert store.db.execute("SELECT count(*) FROM polls").fetchone()[0] == 2
    csv_rows = (config.data_path / "csv" / "readings.csv").read_text().splitlines()[1:]
    assert [r[:20] for r in csv_rows] == ["2026-06-10T15:45:00Z", "2026-06-10T16:00:00Z"]


def test_poll_budget_bounds_a_dead_pvs(config_dict: dict, clock: Clock):
    config = config_for(config_dict, "http://127.0.0.1:9", poll_budget_s=2.0)
    started = datetime.now(UTC)
    report = run_once(config, now=clock.now)
    assert not report.ok and "cannot reach the PVS" in report.error
    assert datetime.now(UTC) - started < timedelta(seconds=10)
    assert _last_error(config) == {
        "error": "cannot reach the PVS at http://127.0.0.1:9 (connection refused); is the Pi "
                 "cabled to the PVS LAN1 port (or on its network), and is pvs.url right?",
        "http_status": None}


def test_nothing_but_archive_files_in_raw(config_dict: dict, clock: Clock, tmp_path: Path):
    with make_emulator(clock, "varserver") as emu:
        config = config_for(config_dict, emu.url)
        run_once(config, now=clock.now)
        emu.faults.html()
        run_once(config, now=clock.now + timedelta(minutes=15), client=fast_client(config))
    names = sorted(p.name for p in (config.data_path / "raw").rglob("*") if p.is_file())
    assert names == ["20260610T160000Z.json.gz", "20260610T161500Z.error.json"]
    envelope = json.loads(gzip.decompress(
        next((config.data_path / "raw").rglob("*.json.gz")).read_bytes()))
    assert envelope["api"] == "varserver"
    assert [r["path"].split("&")[0] for r in envelope["responses"]] == [
        "/vars?match=/sys/info/", "/vars?match=/sys/pvs/", "/vars?match=/sys/devices/",
        "/vars?match=/sys/livedata/"]
