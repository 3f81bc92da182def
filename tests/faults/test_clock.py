"""Clock jumps: the Pi's clock going back after a power cut, or forwards, never duplicates
or reorders a row and never raises a false alert. The PVS's own clock is the witness."""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from solar_monitor.clock import TOLERANCE, Anchor, Clocks, anchor_for, place_poll
from solar_monitor.config import Config, config_from_dict
from solar_monitor.emulation.emulator import Emulator, default_spec, start_emulator
from solar_monitor.emulation.sim import SimulatedSite
from solar_monitor.pipeline import _pvs_clock, make_client, open_store, run_once
from solar_monitor.pvs.client import PvsClient, RawPoll
from solar_monitor.pvs.parse import parse
from solar_monitor.rules.engine import events_between
from solar_monitor.sinks.csv_files import export_csv
from solar_monitor.sinks.outbox import DAILY_MARK

from ..test_pipeline import Clock

STEP = timedelta(minutes=15)
T0 = datetime(2026, 6, 10, 14, 0, tzinfo=UTC)  # 10:00 in New York
LAST = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)
NY = ZoneInfo("America/New_York")


# --- the decision, alone ----------------------------------------------------------------

def test_clocks_that_agree_stamp_with_the_pi_clock() -> None:
    p = place_poll(Clocks(T0), T0 + timedelta(seconds=40), LAST, None)
    assert (p.at, p.source, p.warning) == (T0, "pi", None)


def test_pi_clock_behind_the_pvs_is_corrected_by_the_pvs() -> None:
    p = place_poll(Clocks(T0 - timedelta(hours=6)), T0, LAST, None)
    assert (p.at, p.source) == (T0, "pvs")
    assert "6:00:00 behind" in (p.warning or "")


def test_a_pvs_clock_reset_to_the_past_is_not_believed() -> None:
    p = place_poll(Clocks(T0), datetime(2000, 1, 1, tzinfo=UTC), LAST, None)
    assert (p.at, p.source) == (T0, "pi")
    assert "PVS's clock" in (p.warning or "")


def test_a_poll_that_cannot_be_placed_after_the_last_is_not_recorded() -> None:
    p = place_poll(Clocks(LAST - timedelta(hours=3)), None, LAST, None)
    assert p.at is None and "went back" in (p.warning or "")


def test_two_runs_in_one_second_get_successive_stamps() -> None:
    p = place_poll(Clocks(LAST), LAST, LAST, None)
    assert p.at == LAST + timedelta(seconds=1)
    p = place_poll(Clocks(LAST - TOLERANCE - timedelta(seconds=1)), None, LAST, None)
    assert p.at is None


def test_failed_poll_after_a_jump_is_stamped_by_the_boot_clock() -> None:
    anchor = Anchor("boot-a", 1000.0, T0)
    jumped = Clocks(T0 + timedelta(days=1), "boot-a", 1000.0 + 900)
    p = place_poll(jumped, None, T0, anchor)
    assert (p.at, p.source) == (T0 + STEP, "boot clock")
    # after a reboot the boot clock says nothing: the Pi's clock is all there is
    rebooted = Clocks(T0 + timedelta(days=1), "boot-b", 30.0)
    assert place_poll(rebooted, None, T0, anchor).at == T0 + timedelta(days=1)


def test_millisecond_livedata_time_witnesses_the_clock() -> None:
    """A PVS that sends livedata time in ms is the same witness as one that sends seconds:
    read as seconds it would be a year-57,000 time, and the stamp would follow it."""
    body = json.dumps({"/sys/livedata/time": str(int(T0.timestamp() * 1000) + 250),
                       "/sys/livedata/pv_p": "1.5"}).encode()
    p = place_poll(Clocks(T0 - timedelta(hours=6)), _pvs_clock(body), LAST, None)
    assert (p.at, p.source) == (T0, "pvs")


def test_anchor_round_trip_and_garbage() -> None:
    anchor = Anchor("b", 12.5, T0)
    assert Anchor.from_json(anchor.to_json()) == anchor
    assert Anchor.from_json("{not json") is None
    assert Anchor.from_json('{"boot_id": "b"}') is None
    assert Anchor.from_json(None) is None


# --- whole runs against the emulator ----------------------------------------------------

def _site_emulator(pvs_clock: Clock, firmware: str) -> Emulator:
    spec = default_spec(T0, inverter_count=8, latitude=42.36, longitude=-71.06,
                        timezone="America/New_York", seed=5)
    return start_emulator(SimulatedSite(spec), firmware=firmware, clock=pvs_clock)


def _config(config_dict: dict, url: str) -> Config:
    config_dict["pvs"].update({"url": url, "poll_budget_s": 2.0, "request_timeout_s": 1.0})
    return config_from_dict(config_dict, env={})


def _assert_in_order_once(config: Config, expected: list[datetime]) -> None:
    """Stored polls, readings.csv and the inverter CSVs: each poll once, in time order,
    at the PVS's (true) times."""
    with open_store(config) as store:
        rows = store.db.execute("SELECT polled_at FROM polls ORDER BY id").fetchall()
        times = [datetime.fromisoformat(r[0].replace("Z", "+00:00")) for r in rows]
        assert events_between(store, None) == []  # a healthy site: no alert at all
    assert times == expected
    csv_dir = config.data_path / "csv"
    with (csv_dir / "readings.csv").open(newline="") as f:
        csv_times = [row[0] for row in csv.reader(f)][1:]
    assert len(csv_times) == len(expected)
    assert csv_times == sorted(csv_times) and len(set(csv_times)) == len(csv_times)
    for path in csv_dir.glob("inverters-*.csv"):
        with path.open(newline="") as f:
            keys = [(row[0], row[2]) for row in csv.reader(f)][1:]
        assert len(set(keys)) == len(keys), f"duplicate inverter rows in {path.name}"


@pytest.mark.parametrize("firmware", ["legacy", "varserver"])
def test_power_cut_sets_the_pi_clock_back_hours(config_dict: dict, firmware: str,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """fake-hwclock restores a time 5 h old and NTP is out of reach for two hours: the
    PVS's clock stamps those polls; rows stay in order, once, and nothing alerts."""
    real = Clock(T0)
    with _site_emulator(real, firmware) as emu:
        config = _config(config_dict, emu.url)
        expected = []
        for step in range(24):
            behind = timedelta(hours=5) if 8 <= step < 16 else timedelta(0)
            caplog.clear()
            with caplog.at_level(logging.WARNING):
                assert run_once(config, now=real.now - behind).ok
            assert ("stamped with the PVS's time" in caplog.text) == bool(behind)
            expected.append(real.now)
            real.now += STEP
    _assert_in_order_once(config, expected)


def test_pvs_down_while_the_clock_is_wrong_records_nothing_false(config_dict: dict) -> None:
    """With the Pi 5 h behind and the PVS unreachable, no time can be trusted: the failed
    polls are kept under raw/unplaced/ but not recorded; nothing is reordered."""
    real = Clock(T0)
    with _site_emulator(real, "legacy") as emu:
        config = _config(config_dict, emu.url)
        expected = []
        for _ in range(4):
            assert run_once(config, now=real.now).ok
            expected.append(real.now)
            real.now += STEP
        emu.faults.unavailable(minutes=45)
        for _ in range(3):
            report = run_once(config, now=real.now - timedelta(hours=5))
            assert not report.ok and "went back" in (report.error or "")
            real.now += STEP
        for _ in range(2):
            assert run_once(config, now=real.now).ok
            expected.append(real.now)
            real.now += STEP
    unplaced = list((config.data_path / "raw" / "unplaced").rglob("*.error.json"))
    assert len(unplaced) == 3
    _assert_in_order_once(config, expected)
    assert run_once(config, now=real.now).recovered == 0  # never ingested later


def test_forward_jump_at_night_raises_no_false_alert(config_dict: dict) -> None:
    """From 21:00 to 04:00 in New York the Pi's clock jumps 12 h ahead (noon by its count).
    Stamped with the Pi's clock the dark inverters would read as a dead array at noon;
    stamped with the PVS's, they are asleep at night."""
    start = datetime(2026, 6, 11, 1, 0, tzinfo=UTC)  # 21:00 in New York
    real = Clock(start)
    with _site_emulator(real, "legacy") as emu:
        config = _config(config_dict, emu.url)
        expected = []
        for step in range(29):
            ahead = timedelta(hours=12) if 2 <= step < 27 else timedelta(0)
            assert run_once(config, now=real.now + ahead).ok
            expected.append(real.now)
            real.now += STEP
    _assert_in_order_once(config, expected)
    with open_store(config) as store:
        elevations = [r[0] for r in store.db.execute(
            "SELECT sun_elevation_deg FROM polls ORDER BY id")]
    assert max(e for e in elevations if e is not None) < 5  # judged as night throughout


def test_failed_polls_after_a_forward_jump_use_the_boot_clock(config_dict: dict) -> None:
    """Same boot: the Pi's clock jumps a day ahead while the PVS is down. The failures are
    stamped by time elapsed since the last PVS-confirmed poll, so when the PVS answers
    again its polls follow them in order."""
    real = Clock(T0)
    uptime = [5000.0]

    def clocks(ahead: timedelta = timedelta(0)) -> Clocks:
        return Clocks(real.now + ahead, "boot-1", uptime[0])

    with _site_emulator(real, "legacy") as emu:
        config = _config(config_dict, emu.url)
        expected = []
        for step in range(12):
            if step == 4:
                emu.faults.unavailable(minutes=45)
            ahead = timedelta(days=1) if step >= 4 else timedelta(0)
            report = run_once(config, clocks=clocks(ahead))
            assert report.ok == (not 4 <= step < 7)
            assert report.polled_at == real.now
            expected.append(real.now)
            real.now += STEP
            uptime[0] += STEP.total_seconds()
    with open_store(config) as store:
        rows = store.db.execute("SELECT polled_at, ok FROM polls ORDER BY id").fetchall()
    times = [datetime.fromisoformat(r[0].replace("Z", "+00:00")) for r in rows]
    assert times == expected and [r[1] for r in rows].count(0) == 3


def test_unplaced_files_are_not_replayed(tmp_path: Path, config_dict: dict) -> None:
    """`replay` of the raw folder skips raw/unplaced/: those times are not trusted."""
    from solar_monitor.archive import UNPLACED, iter_archive, save_error

    raw = tmp_path / "raw"
    save_error(raw, T0, "x", None)
    save_error(raw / UNPLACED, T0 - timedelta(hours=5), "y", None)
    assert [p.polled_at for p in iter_archive(raw, UTC)] == [T0]


# --- a PVS clock in 2099: never the stamp, never data loss -------------------------------

Y2099 = datetime(2099, 1, 1, 12, 0, tzinfo=UTC)


def test_a_pvs_clock_far_from_a_synced_pi_clock_is_not_the_stamp() -> None:
    p = place_poll(Clocks(T0, synced=True), T0 - timedelta(hours=6), LAST, None)
    assert (p.at, p.source) == (T0, "pi") and "NTP-synced" in (p.warning or "")
    synced = Clocks(T0, "boot-a", 10.0, synced=True)
    assert anchor_for(synced, p, T0 - timedelta(hours=6)) == Anchor("boot-a", 10.0, T0)


def test_a_pvs_clock_far_ahead_of_the_last_poll_is_not_the_stamp() -> None:
    unsynced = Clocks(T0, "boot-a", 10.0)
    p = place_poll(unsynced, Y2099, LAST, None)
    assert (p.at, p.source) == (T0, "pi") and "more than 31 days after" in (p.warning or "")
    assert anchor_for(unsynced, p, Y2099) is None  # the PVS confirmed nothing
    # weeks unplugged: the PVS still corrects a Pi that restarted at its last saved time
    weeks = place_poll(Clocks(LAST), LAST + timedelta(days=20), LAST, None)
    assert (weeks.at, weeks.source) == (LAST + timedelta(days=20), "pvs")


def _pvs_clock_at(config: Config, when: datetime) -> PvsClient:
    """The configured client, with every CURTIME of its DeviceList answer set to `when`
    (the emulator's answer, wrapped: a PVS whose clock says 2099 once)."""
    stamp = when.strftime("%Y,%m,%d,%H,%M,%S").encode()
    client = make_client(config)
    poll = client.poll

    def wrong_clock() -> RawPoll:
        raw = poll()
        body = re.sub(rb'"CURTIME": *"[0-9,]+"', b'"CURTIME": "' + stamp + b'"', raw.body)
        assert body != raw.body
        return dataclasses.replace(raw, body=body)

    client.poll = wrong_clock  # type: ignore[method-assign]
    return client


@pytest.mark.parametrize("synced", [False, True], ids=["pi-unsynced", "pi-ntp-synced"])
def test_one_answer_in_2099_between_good_polls_loses_nothing(
        config_dict: dict, synced: bool, caplog: pytest.LogCaptureFixture) -> None:
    """Before: the 2099 poll was stored as 2099, every later poll was refused ("poll not
    recorded", blaming the Pi's clock) and retention_days 30 deleted every raw file."""
    real = Clock(T0)
    config_dict["archive"] = {"retention_days": 30}
    with _site_emulator(real, "legacy") as emu:
        config = _config(config_dict, emu.url)
        expected = []
        for step in range(5):
            client = _pvs_clock_at(config, Y2099) if step == 2 else make_client(config)
            with caplog.at_level(logging.WARNING):
                report = run_once(config, clocks=Clocks(real.now, synced=synced),
                                  client=client, pi_root=config.data_path / "no-pi")
            assert report.ok and report.polled_at == real.now, report.error
            expected.append(real.now)
            real.now += STEP
    assert "PVS's clock is wrong" in caplog.text and "poll not recorded" not in caplog.text
    raw = sorted((config.data_path / "raw").rglob("*.json.gz"))
    assert len(raw) == 5 and not list((config.data_path / "raw").rglob("unplaced/*"))
    _assert_in_order_once(config, expected)


def test_a_2099_row_stored_by_an_older_version_blocks_no_later_poll(
        config_dict: dict, caplog: pytest.LogCaptureFixture) -> None:
    real = Clock(T0)
    with _site_emulator(real, "legacy") as emu:
        config = _config(config_dict, emu.url)
        assert run_once(config, now=real.now).ok
        with open_store(config) as store:
            with store.transaction():
                store.record_snapshot(Y2099, parse(_pvs_clock_at(config, Y2099).poll().body),
                                      "raw/2099/01/01/20990101T120000Z.json.gz")
                store.set_state(DAILY_MARK, "2098-12-31")
            export_csv(store, config.data_path / "csv", NY)  # as the older version did
        for _ in range(3):
            real.now += STEP
            with caplog.at_level(logging.WARNING):
                report = run_once(config, now=real.now)
            assert report.ok and report.polled_at == real.now, report.error
    said = [m for m in caplog.messages if "in the future" in m]
    assert len(said) == 1 and "2099-01-01T12:00:00Z" in said[0]  # once, not every run
    with open_store(config) as store:
        assert store.poll_times_since(T0, T0 + timedelta(hours=1)) == {
            f"2026-06-10T14:{m:02d}:00Z" for m in (0, 15, 30, 45)}
        assert store.get_state(DAILY_MARK) == "2026-06-09"  # the Daily tab is not frozen
    # the CSV files lose their 2099 lines and hold every real poll, in order, once
    expected = [T0 + STEP * i for i in range(4)]
    with open_store(config) as store, store.transaction():
        store.db.execute("DELETE FROM polls WHERE polled_at LIKE '2099%'")  # for the check
    _assert_in_order_once(config, expected)
    assert not list((config.data_path / "csv").glob("inverters-2099-*.csv")) or all(
        len(p.read_text().splitlines()) == 1
        for p in (config.data_path / "csv").glob("inverters-2099-*.csv"))
