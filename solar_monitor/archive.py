"""The raw archive: every poll attempt leaves exactly one file, written atomically.

Names are a contract other tools read:
  <data_dir>/raw/YYYY/MM/DD/YYYYMMDDTHHMMSSZ.json.gz   what the PVS returned
  <data_dir>/raw/YYYY/MM/DD/YYYYMMDDTHHMMSSZ.error.json {"error": ..., "http_status": ...}
  <data_dir>/raw/YYYY/MM/YYYYMMDD.tar.gz  a compacted day (retention.py): the same
                               records as members YYYYMMDDTHHMMSSZ.json / .error.json
  <data_dir>/raw/unplaced/...  polls whose time could not be trusted (clock.place_poll),
                               named by the Pi's clock; kept, never ingested
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import re
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path

STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
_OURS = re.compile(r"^(\d{8}T\d{6}Z)(\.json\.gz|\.error\.json|\.json)$")
UNPLACED = "unplaced"
_DAY_TAR = re.compile(r"^(\d{8})\.tar\.gz$")
_CURL = re.compile(r"^(\d{8}_\d{6})\.json(\.gz)?$")  # the owner's plain curl cron job


@dataclass(frozen=True, slots=True)
class ArchivedPoll:
    """One archive file: when the poll happened, and whether it failed."""

    path: Path
    polled_at: datetime
    failed: bool
    member: str | None = None  # its name inside a compacted day (path is the .tar.gz)

    def read(self) -> bytes:
        """The record's bytes, as archived (from the day's tar when compacted).
        Raises OSError (or tarfile.TarError, an Exception, for a damaged tar)."""
        if self.member is None:
            return self.path.read_bytes()
        return day_members(self.path, self.path.stat().st_mtime_ns)[self.member]


def write_atomic(path: Path, data: bytes, mode: int | None = None, *,
                 sync: bool = True) -> None:
    """Write `data` to `path` so that a crash leaves either the old file or the new one.

    Temp file in the same directory, fsync, rename, fsync the directory. `mode` sets the
    file's permissions (default: the temp file's 0600), e.g. 0o644 for a file another
    user's process reads. Raises OSError (e.g. ENOSPC) with nothing left behind.
    `sync=False` leaves out both fsyncs, for a caller that writes many files and then
    calls sync_all() once (a killed process loses nothing either way; a power cut can
    lose what is not yet synced).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            if mode is not None:
                os.fchmod(handle.fileno(), mode)
            handle.write(data)
            if sync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sync:
        fsync_dir(path.parent)


def sync_all() -> None:
    """Make every write so far durable, files and renames alike: one sync(2) (Linux waits
    for it to finish) instead of two fsyncs a file, for a batch of unsynced writes."""
    os.sync()


def fsync_dir(directory: Path) -> None:
    """Make a rename durable: fsync the directory that holds it."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def stamp(at: datetime) -> str:
    """'20250720T180333Z' for an aware datetime."""
    return at.astimezone(UTC).strftime(STAMP_FORMAT)


def _free_path(raw_dir: Path, at: datetime, suffix: str) -> tuple[Path, datetime]:
    """The file for `at`; if a poll already took that second, the next free second."""
    at = at.astimezone(UTC).replace(microsecond=0)
    while True:
        day = raw_dir / f"{at:%Y}" / f"{at:%m}" / f"{at:%d}"
        stem = stamp(at)
        if not any((day / f"{stem}{s}").exists() for s in (".json.gz", ".error.json")):
            return day / f"{stem}{suffix}", at
        at += timedelta(seconds=1)


def save_answer(raw_dir: Path, at: datetime, body: bytes, *, sync: bool = True,
                reuse: bool = False, gzipped: bytes | None = None) -> ArchivedPoll:
    """Archive exactly what the PVS returned, gzipped (`gzipped`: a gzip of `body` already
    made, e.g. an imported .json.gz, kept as it is). `reuse`: when the file for `at`
    already holds these bytes (an import killed before it stored it), that file is the
    record, not a new one a second later. `sync`: see write_atomic."""
    data = gzipped if gzipped is not None else gzip.compress(body, compresslevel=6, mtime=0)
    if reuse and (same := _same_record(raw_dir, at, ".json.gz", data)):
        return same
    path, at = _free_path(raw_dir, at, ".json.gz")
    write_atomic(path, data, sync=sync)
    return ArchivedPoll(path, at, failed=False)


def save_error(raw_dir: Path, at: datetime, error: str, http_status: int | None, *,
               sync: bool = True, reuse: bool = False) -> ArchivedPoll:
    """Record a failed poll: `{"error": text, "http_status": int or null}`. `sync` and
    `reuse`: as for save_answer."""
    record = json.dumps({"error": error, "http_status": http_status}, ensure_ascii=False)
    data = record.encode("utf-8") + b"\n"
    if reuse and (same := _same_record(raw_dir, at, ".error.json", data)):
        return same
    path, at = _free_path(raw_dir, at, ".error.json")
    write_atomic(path, data, sync=sync)
    return ArchivedPoll(path, at, failed=True)


def _same_record(raw_dir: Path, at: datetime, suffix: str, data: bytes) -> ArchivedPoll | None:
    """The archive file for `at` when it holds exactly `data`, else None."""
    at = at.astimezone(UTC).replace(microsecond=0)
    path = raw_dir / f"{at:%Y}" / f"{at:%m}" / f"{at:%d}" / f"{stamp(at)}{suffix}"
    try:
        if path.stat().st_size != len(data) or path.read_bytes() != data:
            return None
    except OSError:
        return None
    return ArchivedPoll(path, at, failed=suffix == ".error.json")


def read_error(archived: ArchivedPoll) -> tuple[str, int | None]:
    """(error text, http status) from an .error.json record; tolerant of hand edits."""
    try:
        record = json.loads(archived.read().decode("utf-8"))
        status = record.get("http_status")
        text = str(record.get("error", "unknown error"))
        return text, status if isinstance(status, int) else None
    except (OSError, ValueError, AttributeError, KeyError, tarfile.TarError):
        return "unreadable error record", None


def classify(path: Path, local_tz: tzinfo) -> ArchivedPoll | None:
    """An ArchivedPoll for a file name we understand, else None.

    Our names are UTC; the `YYYYMMDD_HHMMSS.json` names of a plain curl cron job are
    taken as local time (`date` in cron runs in the Pi's zone).
    """
    if m := _OURS.match(path.name):
        return ArchivedPoll(path, digits_time(m.group(1)), failed=m.group(2) == ".error.json")
    if m := _CURL.match(path.name):
        return ArchivedPoll(path, digits_time(m.group(1), local_tz).astimezone(UTC),
                            failed=False)
    return None


def digits_time(text: str, tz: tzinfo = UTC) -> datetime:
    """'YYYYMMDD', 'YYYYMMDDTHHMMSSZ' or 'YYYYMMDD_HHMMSS' (digits already matched by a
    pattern) -> that time in `tz`; ValueError for an impossible date. strptime costs ten
    times as much, and every run reads a few hundred archive names."""
    hms = text[9:15] or "000000"
    return datetime(int(text[:4]), int(text[4:6]), int(text[6:8]),
                    int(hms[:2]), int(hms[2:4]), int(hms[4:6]), tzinfo=tz)


@dataclass(frozen=True, slots=True)
class _Source:
    """One folder's loose files, or one compacted day, and the time span it covers."""

    first: datetime
    last: datetime
    path: Path
    loose: bool  # a folder's loose files, else a compacted day's tar


@dataclass(frozen=True, slots=True)
class ArchiveScan:
    """An archive's sources in time order, grouped where their spans overlap; iterate
    it for the records. Holds one entry per folder or day tar, never one per record."""

    groups: tuple[tuple[_Source, ...], ...]
    local_tz: tzinfo
    since: datetime | None

    @property
    def span(self) -> tuple[datetime, datetime] | None:
        """(first, last) time the sources cover; None for an empty archive."""
        if not self.groups:
            return None
        return self.groups[0][0].first, max(s.last for s in self.groups[-1])

    def __iter__(self) -> Iterator[ArchivedPoll]:
        for group in self.groups:
            found: dict[datetime, ArchivedPoll] = {}
            for source in group:
                items = (_loose_files(source.path, self.local_tz) if source.loose
                         else day_polls(source.path))
                for item in items:
                    if item and (self.since is None or item.polled_at > self.since):
                        # a day both loose and compacted (compaction killed before it
                        # removed the folder): one record per poll time
                        found.setdefault(item.polled_at, item)
            yield from sorted(found.values(), key=lambda p: (p.polled_at, p.path.name))


def iter_archive(root: Path, local_tz: tzinfo, since: datetime | None = None
                 ) -> Iterator[ArchivedPoll]:
    """Archive files under `root` in time order (optionally only after `since`)."""
    return iter(scan_archive(root, local_tz, since))


def scan_archive(root: Path, local_tz: tzinfo, since: datetime | None = None) -> ArchiveScan:
    """Walk `root` once, noting only each folder's and each day tar's time span; the
    records are read when the scan is iterated, a source (or a few whose spans overlap)
    at a time, so a replay of years holds a day's records, not the whole archive's."""
    return ArchiveScan(tuple(tuple(g) for g in _source_groups(root, local_tz, since)),
                       local_tz, since)


def _loose_files(folder: Path, local_tz: tzinfo) -> Iterator[ArchivedPoll | None]:
    """The loose archive files of one folder (listed again: the walk kept no names)."""
    with os.scandir(folder) as entries:
        for entry in entries:
            if (not entry.name.startswith(".") and day_tar_date(Path(entry.name)) is None
                    and not entry.is_dir()):
                yield classify(Path(entry.path), local_tz)


def _source_groups(root: Path, local_tz: tzinfo, since: datetime | None
                   ) -> Iterator[list[_Source]]:
    """The archive's sources in walk order, grouped where their time spans overlap
    (a flat curl folder is one source; a day both loose and compacted, two in a group)."""
    sources: list[_Source] = []
    for dirpath, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d != UNPLACED]
        folder = Path(dirpath)
        first = last = None
        for name in names:
            if name.startswith("."):
                continue  # temp files of an interrupted write
            if (day := day_tar_date(Path(name))) is not None:
                try:
                    start = digits_time(day)
                except ValueError:
                    continue
                end = start + timedelta(days=1) - timedelta(microseconds=1)
                sources.append(_Source(start, end, folder / name, loose=False))
            elif item := classify(folder / name, local_tz):
                first = item.polled_at if first is None else min(first, item.polled_at)
                last = item.polled_at if last is None else max(last, item.polled_at)
        if first is not None and last is not None:
            sources.append(_Source(first, last, folder, loose=True))
    if since is not None:
        sources = [s for s in sources if s.last > since]
    group: list[_Source] = []
    group_last: datetime | None = None
    # sorted() is stable: sources that start together keep their walk order
    for source in sorted(sources, key=lambda s: s.first):
        if group_last is not None and source.first > group_last:
            yield group
            group = []
        group.append(source)
        group_last = source.last if group_last is None else max(group_last, source.last)
    if group:
        yield group


def day_tar_date(path: Path) -> str | None:
    """'YYYYMMDD' for a compacted day's file name, else None."""
    m = _DAY_TAR.match(path.name)
    return m.group(1) if m else None


def day_polls(path: Path) -> list[ArchivedPoll]:
    """The records of a compacted day; [] for an unreadable tar (kept for a human)."""
    try:
        names = day_members(path, path.stat().st_mtime_ns)
    except (OSError, tarfile.TarError, EOFError):
        return []
    polls = []
    for name in names:
        if item := classify(Path(name), UTC):
            polls.append(ArchivedPoll(path, item.polled_at, item.failed, member=name))
    return polls


@functools.lru_cache(maxsize=1)  # replay reads a day's members in a row: open it once
def day_members(path: Path, _mtime_ns: int) -> dict[str, bytes]:
    """Every member of a compacted day, by name."""
    with tarfile.open(path, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
                for m in tar.getmembers() if m.isfile()}


def pack_day(records: list[ArchivedPoll]) -> bytes:
    """A tar.gz of a day's records, answers un-gzipped (one gzip over the whole day
    compresses ~3x better than per file, and saves a 4 KB block per poll)."""
    import io

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as tar:
        for record in records:
            data = record.read()
            name = f"{stamp(record.polled_at)}{'.error.json' if record.failed else '.json'}"
            if not record.failed and data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), int(record.polled_at.timestamp())
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def recent_files(raw_dir: Path, now: datetime, days: int = 2) -> Iterator[ArchivedPoll]:
    """Archive files of the last `days` UTC days: where an interrupted run's poll can be.

    Temp files there are a killed run's unfinished writes (the caller holds the run
    lock, so no live writer owns them): they are deleted on the way."""
    for back in range(days, -1, -1):
        day = (now - timedelta(days=back)).astimezone(UTC)
        folder = raw_dir / f"{day:%Y}" / f"{day:%m}" / f"{day:%d}"
        if folder.is_dir():
            for stale in folder.glob(".*.tmp"):
                stale.unlink(missing_ok=True)
            yield from iter_archive(folder, UTC)
