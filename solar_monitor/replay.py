"""Replay an archive through the same pipeline as `run`, with the clock at each file's time.

This is how an owner imports an existing archive (including a curl cron job's
`YYYYMMDD_HHMMSS.json` files, taken as local time) and backtests the alert rules.
Files from outside the data folder are copied into the archive first, so it stays whole.
"""

from __future__ import annotations

import contextlib
import gzip
import itertools
import logging
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from solar_monitor.archive import (
    ArchivedPoll,
    read_error,
    save_answer,
    save_error,
    scan_archive,
    sync_all,
)
from solar_monitor.config import Config
from solar_monitor.context import RunContext
from solar_monitor.exports import ExportError, engine
from solar_monitor.exports.data import pvs_serial
from solar_monitor.pipeline import (
    LOCK_NAME,
    STAGES,
    ingest,
    open_store,
    raw_dir,
    run_stages,
)
from solar_monitor.pvs.errors import ParseError
from solar_monitor.pvs.models import Snapshot
from solar_monitor.pvs.parse import parse
from solar_monitor.runlock import run_lock
from solar_monitor.store import iso

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 2.0
BATCH = 250  # polls per transaction during a replay


@dataclass(frozen=True, slots=True)
class ReplayReport:
    files: int
    stored: int
    failed: int
    skipped: int
    seconds: float
    stage_errors: tuple[str, ...]
    exported: int = 0  # points written by --export


def replay(config: Config, source: Path, *, notify: bool = False, events_out: Path | None = None,
           progress: Callable[[int, float], None] | None = None,
           weather: Path | None = None, export: str | None = None) -> ReplayReport:
    """Ingest every archive file under `source` in time order; run the stages.

    `weather` is a `time,cloud_cover[,snow_depth,snowfall]` CSV (see weather.CsvWeather);
    without it cloud cover and snow stay empty, as a replay never calls the network.
    Raises WeatherError for a bad CSV.
    `export` ('influxdb') also writes every poll of the archive, stored before or not,
    straight to that configured export, in batches (a backfill: years of history land in
    Grafana). Raises ExportError when it is not configured or the server refuses: what
    was written stays, and running the same replay again finishes the job (a point
    written twice is the same point).
    `progress(files so far, fraction of the archive's time span)` every few seconds.

    Streams, and saves and forgets: files are read a day at a time (scan_archive), each
    poll is stored and judged, and nothing of it is kept, so memory stays flat
    whatever the archive's length (a year of 30 inverters peaks near that of a month).
    """
    started = time.monotonic()
    from solar_monitor.weather import NOTES_KEY, CsvWeather

    weather_csv = CsvWeather.load(weather) if weather else None
    data = config.data_path
    data.mkdir(parents=True, exist_ok=True)
    archive_root = raw_dir(config).resolve()
    copy = not _inside(source.resolve(), archive_root)
    scan = scan_archive(source, config.tz)
    span = scan.span
    polls = iter(scan)
    first: ArchivedPoll | None = None
    last: ArchivedPoll | None = None
    seen = stored = failed = skipped = 0
    errors: dict[str, None] = {}  # each distinct stage error once, not once a poll
    each_poll = [s for s in STAGES if s.when == "each_poll"]
    last_report = time.monotonic()
    backfill = _backfill(config, export)
    cleaned: set[Path] = set()  # archive folders an import writes to, rid of stale temps
    with run_lock(data / LOCK_NAME), open_store(config) as store:
        # One transaction per batch, not per poll: a killed replay redoes its last batch
        # (ingestion is idempotent by poll time), and replays run several times faster.
        while batch := list(itertools.islice(polls, BATCH)):
            # the batch's stored poll times: one query, and a set no bigger than a batch
            known = store.poll_times_since(batch[0].polled_at, batch[-1].polled_at)
            copied = False
            with store.transaction():
                for archived in batch:
                    seen += 1
                    first, last = first or archived, archived
                    ctx = RunContext(config=config, store=store, now=archived.polled_at,
                                     poll=archived, replay=True, notify=notify,
                                     notes={NOTES_KEY: weather_csv})
                    if iso(archived.polled_at) in known:
                        skipped += 1
                        if backfill is not None:
                            ctx.snapshot = _parsed(archived)
                            _send(backfill, ctx)
                        continue
                    if copy:
                        archived = ctx.poll = _import(config, archived, cleaned)
                        copied = True
                    ctx.snapshot, ctx.error = ingest(ctx, archived)
                    if backfill is not None:
                        _send(backfill, ctx)
                    stored += ctx.snapshot is not None
                    failed += ctx.snapshot is None
                    errors.update(dict.fromkeys(run_stages(ctx, each_poll)))
                    if progress and span and time.monotonic() - last_report >= PROGRESS_EVERY_S:
                        progress(seen, _fraction(span, archived.polled_at))
                        last_report = time.monotonic()
                if copied:  # the batch's copies are on disk before its rows commit
                    sync_all()
        end = RunContext(config=config, store=store,
                         now=last.polled_at if last else datetime.now(UTC),
                         replay=True, notify=notify,
                         # the alerts_export stage writes the events of this replay
                         notes={"events_out": events_out,
                                "replay_from": first.polled_at if first else None})
        errors.update(dict.fromkeys(run_stages(end, [s for s in STAGES
                                                     if s.when == "end_of_run"])))
    exported = backfill.close() if backfill is not None else 0
    if progress and seen:
        progress(seen, 1.0)
    return ReplayReport(seen, stored, failed, skipped, time.monotonic() - started,
                        tuple(errors), exported)


def _backfill(config: Config, export: str | None) -> Any:
    """The export's Backfill writer, or None without --export."""
    if export is None:
        return None
    settings = getattr(config.exports, export, None)
    if settings is None or not hasattr(engine(export), "Backfill"):
        raise ExportError(f"exports.{export} is not configured" if settings is None else
                         f"{export} takes no history; --export works with influxdb")
    return engine(export).Backfill(settings)


def _parsed(archived: ArchivedPoll) -> Snapshot | None:
    """An already stored poll read again for --export (a failed or unusable one: None)."""
    if archived.failed:
        return None
    try:
        return parse(archived.read(), polled_at=archived.polled_at)
    except (ParseError, OSError):
        return None


def _send(backfill: Any, ctx: RunContext) -> None:
    if ctx.snapshot is not None and ctx.poll is not None:
        backfill.add(ctx.snapshot, pvs_serial(ctx), ctx.poll.polled_at)


def _import(config: Config, archived: ArchivedPoll, cleaned: set[Path]) -> ArchivedPoll:
    """Copy a foreign file into our archive under our name; the copy is what we ingest.

    Unsynced (the batch syncs once before its rows commit); a copy an import killed
    before it stored it is found again, not made twice; a killed copy's temp file goes."""
    if archived.failed:
        error, status = read_error(archived)
        copy = save_error(raw_dir(config), archived.polled_at, error, status, sync=False,
                          reuse=True)
    else:
        body = gzipped = archived.read()
        if body[:2] == b"\x1f\x8b":
            # a corrupt file is archived as found; ingest then records it as unusable
            with contextlib.suppress(OSError, EOFError, zlib.error):
                body = gzip.decompress(body)
        copy = save_answer(raw_dir(config), archived.polled_at, body, sync=False, reuse=True,
                           gzipped=gzipped if body is not gzipped else None)
    if (folder := copy.path.parent) not in cleaned:
        cleaned.add(folder)  # the caller holds the run lock: no live writer owns these
        for stale in folder.glob(".*.tmp"):
            stale.unlink(missing_ok=True)
    return copy


def _fraction(span: tuple[datetime, datetime], at: datetime) -> float:
    """How far `at` is through the archive's time span, 0.0 to 1.0."""
    whole = (span[1] - span[0]).total_seconds()
    return min(1.0, max(0.0, (at - span[0]).total_seconds() / whole)) if whole > 0 else 1.0


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents
