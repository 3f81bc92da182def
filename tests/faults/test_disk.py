"""A full disk, and the upkeep that keeps the card from filling: compaction, retention
and the free-space floor. The full-disk cases run on a real small tmpfs."""

from __future__ import annotations

import gzip
import logging
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from solar_monitor.archive import iter_archive, pack_day, save_answer, save_error, write_atomic
from solar_monitor.cli import main
from solar_monitor.config import Config, config_from_dict
from solar_monitor.emulation.emulator import start_emulator
from solar_monitor.replay import replay
from solar_monitor.retention import (
    COMPACT_PER_RUN,
    RETIRE_PER_RUN,
    archive_days,
    free_mb,
    upkeep,
)
from solar_monitor.store import Store

from ..conftest import real
from .test_kills import check_invariants, write_config

DAY0 = datetime(2025, 6, 1, tzinfo=UTC)
BODY = real("dl_cgi_61839_30").read_bytes()


def _archive_days(raw: Path, days: int, per_day: int = 24) -> list[tuple[datetime, bool]]:
    """`days` days of hourly polls, every fifth one failed; returns (time, failed)."""
    made = []
    for n in range(days * per_day):
        at = DAY0 + timedelta(hours=24 * n / per_day)
        if n % 5 == 4:
            save_error(raw, at, "HTTP 503 from the bridge", 503)
        else:
            save_answer(raw, at, BODY)
        made.append((at, n % 5 == 4))
    return made


def _upkeep(config: Config, now: datetime, **settings: int | None) -> None:
    options = {"compact_after_days": 7, "retention_days": None, "min_free_mb": None}
    with Store(config.data_path / "solar-monitor.db") as store:
        upkeep(store, config.data_path / "raw", now, **{**options, **settings})


def test_compaction_keeps_every_record_readable(tmp_path: Path, config_dict: dict) -> None:
    config = config_from_dict(config_dict, env={})
    raw = config.data_path / "raw"
    made = _archive_days(raw, 10)
    replay(config, raw)
    loose_blocks = sum(os.stat(f).st_blocks * 512 for f in raw.rglob("*.*"))
    _upkeep(config, DAY0 + timedelta(days=12))
    days = archive_days(raw)
    packed = [d for d in days if d.tar is not None]
    assert len(packed) == COMPACT_PER_RUN  # a run's time stays bounded
    for _ in range(5):
        _upkeep(config, DAY0 + timedelta(days=12))
    days = archive_days(raw)
    assert [d.folder is None for d in days] == [True] * 5 + [False] * 5  # last 7 days loose
    records = list(iter_archive(raw, UTC))
    assert [(r.polled_at, r.failed) for r in records] == made
    good = [r for r in records if not r.failed]
    assert all(r.read() in (BODY, gzip.compress(BODY, 6, mtime=0)) for r in good)
    assert all(b"503" in r.read() for r in records if r.failed)
    packed_blocks = sum(os.stat(f).st_blocks * 512 for f in raw.rglob("*.*"))
    assert packed_blocks < loose_blocks * 0.75
    # a compacted archive replays into a fresh database exactly like the loose one
    other = config_from_dict({**config_dict, "data_dir": str(tmp_path / "other")}, env={})
    report = replay(other, raw)
    assert (report.stored, report.failed) == (len(good), len(made) - len(good))


def test_a_day_is_compacted_only_when_stored(config_dict: dict,
                                             caplog: pytest.LogCaptureFixture) -> None:
    config = config_from_dict(config_dict, env={})
    raw = config.data_path / "raw"
    _archive_days(raw, 2)
    replay(config, raw)
    save_answer(raw, DAY0 + timedelta(hours=5, minutes=30), BODY)  # archived, not stored
    _upkeep(config, DAY0 + timedelta(days=30), compact_after_days=7)
    first, second = archive_days(raw)
    assert first.folder is not None and first.tar is None
    assert second.folder is None and second.tar is not None
    assert "not in the database" in caplog.text


def test_compaction_killed_between_rename_and_removal(config_dict: dict) -> None:
    """The tar is in place but the folder is still there: readers see each poll once,
    and the next upkeep finishes the job."""
    config = config_from_dict(config_dict, env={})
    raw = config.data_path / "raw"
    made = _archive_days(raw, 1)
    replay(config, raw)
    (day,) = archive_days(raw)
    assert day.folder is not None
    write_atomic(day.folder.parent / "20250601.tar.gz", pack_day(day.records()[:10]))
    assert [(r.polled_at, r.failed) for r in iter_archive(raw, UTC)] == made
    _upkeep(config, DAY0 + timedelta(days=30))
    (day,) = archive_days(raw)
    assert day.folder is None
    assert [(r.polled_at, r.failed) for r in iter_archive(raw, UTC)] == made


def test_retention_deletes_compacted_days_too(config_dict: dict) -> None:
    config = config_from_dict(config_dict, env={})
    raw = config.data_path / "raw"
    _archive_days(raw, 10)
    replay(config, raw)
    for _ in range(4):
        _upkeep(config, DAY0 + timedelta(days=12))
    _upkeep(config, DAY0 + timedelta(days=12), retention_days=5)
    # cutoff June 8 by the clock, but the archive's newest 5 days stay whatever the clock
    assert [d.day.day for d in archive_days(raw)] == [6, 7, 8, 9, 10]


def test_after_a_large_import_upkeep_is_spread_over_runs_oldest_first(
        config_dict: dict) -> None:
    """40 imported loose days: each run compacts COMPACT_PER_RUN of them and deletes at
    most RETIRE_PER_RUN, oldest first, so no run does the whole backlog; a day that
    retention is about to delete is not packed first."""
    config = config_from_dict(config_dict, env={})
    raw = config.data_path / "raw"
    made = _archive_days(raw, 40, per_day=2)
    replay(config, raw)
    now = DAY0 + timedelta(days=40, hours=1)  # June 1 + 40 days: July 11
    _upkeep(config, now)  # compaction only
    assert [d.day.day for d in archive_days(raw) if d.tar] == list(range(1, COMPACT_PER_RUN + 1))
    _upkeep(config, now, retention_days=10)  # cutoff July 1: 30 days before it
    days = archive_days(raw)
    assert len(days) == 40 - RETIRE_PER_RUN  # June 1..30 gone, capped at 30 this run
    assert (days[0].day.month, days[0].day.day) == (7, 1)
    # July 1 on: days before the cutoff were not packed first
    assert [d.day.day for d in days if d.tar] == list(range(1, COMPACT_PER_RUN + 1))
    _upkeep(config, now, retention_days=12)  # cutoff June 29: nothing more to delete
    assert len(archive_days(raw)) == 40 - RETIRE_PER_RUN
    left = {r.polled_at for r in iter_archive(raw, UTC)}
    assert left == {at for at, _failed in made if at.date() >= DAY0.date().replace(month=7)}


def test_retention_skips_packing_days_it_will_delete(config_dict: dict) -> None:
    config = config_from_dict(config_dict, env={})
    raw = config.data_path / "raw"
    _archive_days(raw, 12, per_day=2)
    replay(config, raw)
    _upkeep(config, DAY0 + timedelta(days=12, hours=1), retention_days=8)  # cutoff June 5
    days = archive_days(raw)
    assert [d.day.day for d in days] == list(range(5, 13))
    assert [d.day.day for d in days if d.tar] == [5]  # June 5: the oldest kept, packed


def test_free_space_floor_acts_at_once_whatever_the_caps(config_dict: dict,
                                                         caplog: pytest.LogCaptureFixture
                                                         ) -> None:
    """After a large import on a short disk the floor does not wait for the per-run caps:
    one run deletes every raw day but the last `compact_after_days`."""
    config = config_from_dict(config_dict, env={})
    raw = config.data_path / "raw"
    _archive_days(raw, 40, per_day=2)
    replay(config, raw)
    # a floor no disk here meets: the filesystem is always "short"
    _upkeep(config, DAY0 + timedelta(days=40, hours=1), min_free_mb=10_000_000)
    days = archive_days(raw)
    assert [(d.day.month, d.day.day) for d in days] == [(7, n) for n in range(4, 11)]
    assert 40 - len(days) > RETIRE_PER_RUN  # more than a capped run would delete
    assert "33 day(s)" in caplog.text and "no old raw answers are left" in caplog.text


# --- a real small filesystem -------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 6 MB tmpfs: a disk that really fills."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path, leave_kb: int) -> Path:
    """A ballast file that leaves about `leave_kb` free."""
    ballast = disk / "ballast"
    ballast.unlink(missing_ok=True)
    size = max(0, int(free_mb(disk) * 1e6) - leave_kb * 1024)
    with ballast.open("wb") as f:
        f.write(b"\0" * size)
    return ballast


@pytest.mark.parametrize("leave_kb", [8, 48, 160, 400])
def test_disk_full_is_a_clear_error_and_recovers(small_disk: Path, leave_kb: int,
                                                 capsys: pytest.CaptureFixture) -> None:
    """Runs on a filling disk fail with exit 3 and a plain message, never a traceback;
    nothing is corrupted; when space returns, the next run stores everything."""
    with start_emulator(firmware="varserver") as emu:
        config_file = write_config(small_disk, emu.url)
        args = ["run", "--config", str(config_file)]
        assert main(args) == 0
        ballast = _fill(small_disk, leave_kb)
        codes = []
        for _ in range(60):
            codes.append(main(args))
            if codes[-1] == 3:
                break
        out = capsys.readouterr()
        assert codes[-1] == 3, codes
        assert "disk full" in out.err and "Traceback" not in out.err + out.out
        config = config_from_dict(yaml.safe_load(config_file.read_text()), env={})
        ballast.unlink()  # space returns
        assert main(args) == 0
        assert main(args) == 0
    check_invariants(config)


def test_free_space_floor_deletes_oldest_raw_days(small_disk: Path, config_dict: dict,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    config = config_from_dict({**config_dict, "data_dir": str(small_disk / "data")}, env={})
    raw = config.data_path / "raw"
    _archive_days(raw, 12)
    replay(config, raw)
    now = DAY0 + timedelta(days=12, hours=1)
    _fill(small_disk, 200)
    with caplog.at_level(logging.WARNING):
        _upkeep(config, now, compact_after_days=None, min_free_mb=1)
    # the oldest went first, and the last 7 days stay whatever the disk says
    assert [d.day.day for d in archive_days(raw)] == list(range(6, 13))
    assert "5 day(s) from 2025-06-01 to 2025-06-05 were deleted" in caplog.text
    assert "no old raw answers are left to delete" in caplog.text
    with Store(config.data_path / "solar-monitor.db") as store:
        polls = store.db.execute("SELECT count(*) FROM polls").fetchone()[0]
    assert polls == 12 * 24  # the system of record is untouched
