"""Archive upkeep, so the SD card never fills: compaction, retention, a free-space floor.

- Compaction (`archive.compact_after_days`, default 7): a UTC day folder of 96 small
  files becomes one `raw/YYYY/MM/YYYYMMDD.tar.gz` holding the same records. On disk a year
  of loose files takes ~140 MB (one 4 KB block each, 30 inverters); compacted, ~20 MB.
  `replay` and every reader see a compacted day exactly like a folder.
- Retention (`archive.retention_days`, off by default): days older than that are deleted.
- Free-space floor (`archive.min_free_mb`, default 200): when the data filesystem has less
  free, the oldest raw days go first, down to the last `compact_after_days`, with a
  warning. The database and CSV files, the system of record, are never touched.

A day is compacted or deleted only when every poll in it is in the store, so upkeep can
never lose a reading the database does not have. Ages go by the Pi's clock (never by a
poll's stamp, which a PVS clock may have set to 2099) and by what is stored: deletion
keeps the newest `retention_days` (free-space floor: `compact_after_days`) days of the
archive whatever the clock says, so a clock thrown years ahead cannot empty it.
Each step is atomic (temp file, fsync, rename) and idempotent: a run killed halfway
leaves a day both loose and compacted, which readers take once, and the next run
finishes the job.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from solar_monitor.archive import (
    ArchivedPoll,
    classify,
    day_polls,
    day_tar_date,
    digits_time,
    pack_day,
    write_atomic,
)
from solar_monitor.store import Store, iso

log = logging.getLogger(__name__)

# After an import of years, the first runs would compact or delete hundreds of days at
# once; these caps spread that over the next runs, oldest days first (the free-space
# floor is not capped: it acts at once). A run's own day is one more at most.
# One compaction (~0.25 s for a 30-inverter day on the dev VM) keeps a run near its usual
# time; a day becomes due each day, so the steady state needs no more, and a year's
# backlog after an import is gone in ~360 runs (under 4 days of 15-minute runs).
COMPACT_PER_RUN = 1
RETIRE_PER_RUN = 30  # retention deletions a run (each reads the day to check it is stored)


@dataclass(frozen=True, slots=True)
class Day:
    """One UTC day of the archive: its loose folder and/or its compacted tar."""

    day: date
    folder: Path | None
    tar: Path | None

    def records(self) -> list[ArchivedPoll]:
        loose = ([p for f in self.folder.iterdir() if (p := classify(f, UTC))]
                 if self.folder else [])
        packed = day_polls(self.tar) if self.tar else []
        seen = {p.polled_at for p in loose}
        return sorted(loose + [p for p in packed if p.polled_at not in seen],
                      key=lambda p: p.polled_at)

    def delete(self) -> None:
        if self.folder:
            shutil.rmtree(self.folder)
        if self.tar:
            self.tar.unlink(missing_ok=True)
        month = (self.folder or self.tar).parent  # type: ignore[union-attr]
        for parent in (month, month.parent):
            if parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()


def upkeep(store: Store, raw: Path, now: datetime, *, compact_after_days: int | None,
           retention_days: int | None, min_free_mb: int | None) -> None:
    """Compact, apply retention, then keep `min_free_mb` free. Never raises for a day
    it cannot handle: it logs and moves on (the next run retries)."""
    today = now.astimezone(UTC).date()
    cutoff = today - timedelta(days=retention_days) if retention_days else None
    if compact_after_days:
        compacted = 0
        newest = today - timedelta(days=compact_after_days)
        for day in archive_days(raw):  # packing loses nothing: the clock alone decides
            if compacted >= COMPACT_PER_RUN or day.day >= newest:
                break
            if cutoff is not None and day.day < cutoff:
                continue  # retention deletes it: packing it first would be wasted work
            if day.folder is not None and _all_stored(store, day):
                compact(day)
                compacted += 1
    if cutoff is not None:
        removed: list[Day] = []
        for day in _older_than_newest(archive_days(raw), retention_days or 0):
            if len(removed) >= RETIRE_PER_RUN or day.day >= cutoff:
                break
            if _delete(store, day):
                removed.append(day)
        if removed:
            log.info("retention: deleted the raw answers of %d day(s) before %s",
                     len(removed), cutoff)
    if min_free_mb:
        keep_free(store, raw, today, min_free_mb, compact_after_days or 7)


def archive_days(raw: Path) -> list[Day]:
    """Every day of the archive, oldest first."""
    folders: dict[date, Path] = {}
    tars: dict[date, Path] = {}
    for folder in raw.glob("[0-9][0-9][0-9][0-9]/[0-9][0-9]/[0-9][0-9]"):
        if folder.is_dir() and (d := _date(folder.parent.parent.name + folder.parent.name
                                           + folder.name)):
            folders[d] = folder
    for tar in raw.glob("[0-9][0-9][0-9][0-9]/[0-9][0-9]/*.tar.gz"):
        if (text := day_tar_date(tar)) and (d := _date(text)):
            tars[d] = tar
    return [Day(d, folders.get(d), tars.get(d)) for d in sorted(folders.keys() | tars.keys())]


def _older_than_newest(days: list[Day], keep: int) -> list[Day]:
    """`days` (oldest first) without the newest `keep`: what the archive holds decides
    which days are recent, not only the clock."""
    return days[:max(0, len(days) - keep)]


def compact(day: Day) -> Path:
    """Write the day's tar (atomically), check it reads back whole, remove the folder."""
    records = day.records()
    assert day.folder is not None
    tar = day.folder.parent / f"{day.day:%Y%m%d}.tar.gz"
    write_atomic(tar, pack_day(records))
    if {p.polled_at for p in day_polls(tar)} != {p.polled_at for p in records}:
        raise OSError(f"compaction of {day.folder} did not read back whole; kept the folder")
    shutil.rmtree(day.folder)
    log.debug("compacted %s: %d records into %s", day.folder, len(records), tar.name)
    return tar


def keep_free(store: Store, raw: Path, today: date, min_free_mb: int, keep_days: int) -> None:
    """Delete the oldest raw days while the filesystem has less than `min_free_mb` free."""
    freed: list[date] = []
    # statvfs first: the list of a year's days costs a run more than the check
    days = archive_days(raw) if free_mb(raw) < min_free_mb else []
    for day in _older_than_newest(days, keep_days):
        if free_mb(raw) >= min_free_mb or day.day >= today - timedelta(days=keep_days):
            break
        if _delete(store, day):
            freed.append(day.day)
    left = free_mb(raw)
    if freed:
        log.warning("disk: under %d MB free, so the raw answers of %d day(s) from %s to %s "
                    "were deleted (the database keeps every reading); %.0f MB free now. "
                    "Set archive.retention_days to do this on purpose.",
                    min_free_mb, len(freed), freed[0], freed[-1], left)
    if left < min_free_mb:
        log.warning("disk: only %.0f MB free on %s (archive.min_free_mb is %d) and no old "
                    "raw answers are left to delete: move data_dir to a bigger card or "
                    "free space", left, raw, min_free_mb)


def free_mb(path: Path) -> float:
    """Free megabytes for an unprivileged writer on `path`'s filesystem (or its parent)."""
    while not path.exists():
        path = path.parent
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize / 1e6


def _all_stored(store: Store, day: Day) -> bool:
    records = day.records()
    if not records:
        return True
    stored = store.poll_times_since(records[0].polled_at, records[-1].polled_at)
    missing = [p for p in records if iso(p.polled_at) not in stored]
    if missing:
        where = day.folder or day.tar
        log.warning("archive: keeping %s as it is: %d poll(s) there are not in the "
                    "database (run 'solar-monitor replay %s' to store them)",
                    where, len(missing), where)
    return not missing


def _delete(store: Store, day: Day) -> bool:
    if not _all_stored(store, day):
        return False
    day.delete()
    return True


def _date(text: str) -> date | None:
    try:
        return digits_time(text).date()
    except ValueError:
        return None
