"""One run: poll -> archive -> parse -> enrich -> store -> later stages (CSV, sheet, rules...).

The raw answer is archived before anything else; parsing and storing read the archived
file, so `run` and `replay` share one path and any poll can be replayed. A failing later
stage is recorded and the others still run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from solar_monitor.archive import (
    UNPLACED,
    ArchivedPoll,
    read_error,
    recent_files,
    save_answer,
    save_error,
)
from solar_monitor.clock import (
    ANCHOR_KEY,
    TOLERANCE,
    Anchor,
    Clocks,
    Placement,
    anchor_for,
    place_poll,
    read_clocks,
    trusted_now,
)
from solar_monitor.config import Config
from solar_monitor.context import PI_HEALTH_KEY, RunContext, Stage
from solar_monitor.pi_health import ROOT as PI_ROOT
from solar_monitor.pi_health import PiHealth, read_pi_health
from solar_monitor.pvs.client import PvsClient
from solar_monitor.pvs.errors import ParseError, PvsError
from solar_monitor.pvs.models import Snapshot, Totals, totals
from solar_monitor.pvs.parse import parse
from solar_monitor.runlock import run_lock
from solar_monitor.store import Store, iso

log = logging.getLogger(__name__)

DB_NAME = "solar-monitor.db"
LOCK_NAME = "run.lock"
FUTURE_POLL_KEY = "future_poll_warned"  # store state: the future-stamped row already said


@dataclass(frozen=True, slots=True)
class RunReport:
    """The outcome of one `run`, for the CLI's one-line summary and exit code."""

    polled_at: datetime
    ok: bool
    error: str | None
    http_status: int | None
    archive_file: Path | None
    totals: Totals | None
    stage_errors: tuple[str, ...]
    recovered: int
    pi: PiHealth | None = None  # the Pi's own health, read at the start of the run


Enricher = Callable[[RunContext, datetime], dict[str, float | None]]


def _export_csv(ctx: RunContext) -> None:
    if ctx.config.csv.enabled:
        from solar_monitor.sinks.csv_files import export_csv

        # a run exports up to its own poll: a row stamped later is a wrong stamp
        until = iso(ctx.now + TOLERANCE) if ctx.poll is not None and not ctx.replay else None
        written = export_csv(ctx.store, ctx.config.data_path / "csv", ctx.config.tz, until)
        log.debug("CSV: %d rows appended", written)


def _sun_elevation(ctx: RunContext, at: datetime) -> dict[str, float | None]:
    from solar_monitor.sun import sun_elevation_deg

    site = ctx.config.site
    return {"sun_elevation_deg": round(sun_elevation_deg(site.latitude, site.longitude, at), 2)}


def _weather(ctx: RunContext, at: datetime) -> dict[str, float | None]:
    if not ctx.config.weather.enabled:
        return {}  # the columns stay empty; no weather module to import
    from solar_monitor.weather import enrich

    return enrich(ctx, at)


def _flush_notifications(ctx: RunContext) -> None:
    """Send what the stages before queued (and what earlier runs could not send)."""
    if ctx.notify and ctx.store.queued_notifications(limit=1):
        from solar_monitor.notify import flush_notifications  # only when there is mail

        flush_notifications(ctx.config, ctx.store, ctx.now)


def _digest(ctx: RunContext) -> None:
    from solar_monitor.digest.send import digest_stage

    digest_stage(ctx)


def _queue_sheet_rows(ctx: RunContext) -> None:
    from solar_monitor.sinks.outbox import enqueue_completed_days, enqueue_poll

    if ctx.poll is not None:
        enqueue_poll(ctx.store, ctx.poll.polled_at, ctx.now)
    enqueue_completed_days(ctx.store, ctx.config.tz, ctx.now, ctx.config.inverters)


def _flush_sheet(ctx: RunContext) -> None:
    if ctx.config.google_sheets is None:
        from solar_monitor.sinks.outbox import dry_run

        dry_run(ctx.store, ctx.now)
    else:
        from solar_monitor.sinks import sheets  # gspread only when a sheet is configured

        sheets.flush_and_log(ctx.store, ctx.config.google_sheets, ctx.config.tz, ctx.now)


def _rules(ctx: RunContext) -> None:
    from solar_monitor.rules.stage import rules_stage

    rules_stage(ctx)


def _site_sanity(ctx: RunContext) -> None:
    from solar_monitor.site_sanity import night_production_stage

    night_production_stage(ctx)


def _alerts_export(ctx: RunContext) -> None:
    from solar_monitor.rules.stage import alerts_export_stage

    alerts_export_stage(ctx)


def _queue_exports(ctx: RunContext) -> None:
    from solar_monitor.exports import queue_poll  # light: engines load only when configured

    queue_poll(ctx)


def _exports(ctx: RunContext) -> None:
    from solar_monitor.exports import export_all

    export_all(ctx)


ENRICHERS: list[Enricher] = [_sun_elevation, _weather]


def _archive_upkeep(ctx: RunContext) -> None:
    if not ctx.replay:
        from solar_monitor.retention import upkeep

        a = ctx.config.archive
        upkeep(ctx.store, raw_dir(ctx.config), ctx.wall or ctx.now,
               compact_after_days=a.compact_after_days,
               retention_days=a.retention_days, min_free_mb=a.min_free_mb)


# Order matters: the rules run before the sheet queue (its "open alerts" must be
# current), and notify runs last but the exports: it sends what the rules and the digest
# queued, and a broker or database that is down (each bounded by its timeout_s) must not
# hold back an alert.
STAGES: list[Stage] = [
    Stage("csv", _export_csv),
    Stage("rules", _rules, when="each_poll"),  # a failed poll too: pvs_unreachable
    Stage("site_sanity", _site_sanity, when="each_poll"),  # production at "night"
    Stage("alerts_export", _alerts_export),  # saves rule memory; replay --events-out
    Stage("digest", _digest),  # last month's digest, once
    Stage("sheets_queue", _queue_sheet_rows, when="each_poll"),
    Stage("sheets", _flush_sheet),  # never fails the run: rows stay queued
    Stage("exports_queue", _queue_exports, when="each_poll"),  # InfluxDB: every poll kept
    Stage("notify", _flush_notifications),
    Stage("exports", _exports),  # MQTT, InfluxDB, Prometheus: never fail or stall the run
    Stage("retention", _archive_upkeep),  # compaction, retention, free-space floor
]


def raw_dir(config: Config) -> Path:
    return config.data_path / "raw"


def open_store(config: Config) -> Store:
    return Store(config.data_path / DB_NAME)


def make_client(config: Config) -> PvsClient:
    pvs = config.pvs
    return PvsClient(pvs.url, api=pvs.api, serial=pvs.serial, username=pvs.username,
                     password=pvs.password, verify_tls=pvs.verify_tls,
                     https_port=pvs.https_port,
                     request_timeout_s=pvs.request_timeout_s, budget_s=pvs.poll_budget_s)


def run_once(config: Config, *, now: datetime | None = None,
             client: PvsClient | None = None, clocks: Clocks | None = None,
             pi_root: Path | None = None) -> RunReport:
    """One collection cycle. Raises AlreadyRunning (another run holds the lock) and
    OSError / sqlite3.Error when the archive or store cannot be written.

    `now` runs in simulated time (demo, tests) with the boot-clock check off; `clocks`
    gives the wall and boot clocks explicitly (tests of clock jumps). The Pi's own health
    is read from `pi_root` (a fake sysfs/proc tree in tests), by default from `/` in a
    real run and not at all in simulated time (the demo's machine is not the site's Pi)."""
    if clocks is None:
        clocks = (Clocks(now.astimezone(UTC).replace(microsecond=0)) if now is not None
                  else read_clocks())
    data = config.data_path
    data.mkdir(parents=True, exist_ok=True)
    with run_lock(data / LOCK_NAME), open_store(config) as store:
        if pi_root is None and now is None:
            pi_root = PI_ROOT  # a real run reads this Pi; simulated time reads none
        pi = read_pi_health(data, pi_root) if pi_root is not None else None
        recovered = ingest_pending(config, store, clocks.wall)
        collected = collect(config, client or make_client(config), clocks, store)
        archived, placement = collected.archived, collected.placement
        ctx = RunContext(config=config, store=store, now=placement.at or clocks.wall,
                         poll=archived if placement.at else None, wall=clocks.wall)
        if placement.at is None:  # the clock went back: record nothing, flush the rest
            ctx.error = f"poll not recorded: {placement.warning}"
            stages = [s for s in STAGES if s.when == "end_of_run"]
        else:
            ctx.notes[ANCHOR_KEY] = collected.anchor
            ctx.snapshot, ctx.error = ingest(ctx, archived)
            stages = STAGES
        if pi is not None:
            ctx.notes[PI_HEALTH_KEY] = pi
        stage_errors = run_stages(ctx, stages)
        return RunReport(
            polled_at=archived.polled_at, ok=ctx.snapshot is not None, error=ctx.error,
            http_status=collected.http_status, archive_file=archived.path,
            totals=totals(ctx.snapshot) if ctx.snapshot else None,
            stage_errors=tuple(stage_errors), recovered=recovered, pi=pi)


@dataclass(frozen=True, slots=True)
class Collected:
    """One poll, archived: where, with what HTTP status, and how its time was placed."""

    archived: ArchivedPoll
    http_status: int | None
    placement: Placement
    anchor: Anchor | None


def collect(config: Config, client: PvsClient, clocks: Clocks, store: Store) -> Collected:
    """Poll the PVS, place the poll in time (clock.place_poll) and archive the answer, or
    a record of the failure. Never raises PvsError: a failed poll is data too."""
    body: bytes | None = None
    try:
        body = client.poll().body
        error, status = None, 200
    except PvsError as exc:
        # the caller says it once (the CLI's error line, check's FAIL line)
        log.debug("poll failed: %s", str(exc))  # a kept record must not hold the frames
        error, status = str(exc), exc.http_status
    pvs_time = _pvs_clock(body)
    placement = place_poll(clocks, pvs_time, _last_placed(store, clocks, pvs_time),
                           Anchor.from_json(store.get_state(ANCHOR_KEY)))
    if placement.warning:
        log.warning("clock: %s", placement.warning)
    root = raw_dir(config) if placement.at else raw_dir(config) / UNPLACED
    at = placement.at or clocks.wall
    archived = (save_answer(root, at, body) if body is not None
                else save_error(root, at, error or "poll failed", status))
    return Collected(archived, status, placement, anchor_for(clocks, placement, pvs_time))


def _last_placed(store: Store, clocks: Clocks, pvs_time: datetime | None) -> datetime | None:
    """The last stored poll's time, not counting polls stamped after a time two clocks
    agree on: an older version stamped polls with a PVS clock in 2099, and such a row
    must not keep every later poll out. Said once per such row."""
    last = store.last_poll()
    now = trusted_now(clocks, pvs_time)
    if last is None or now is None or last.polled_at <= now + TOLERANCE:
        return last.polled_at if last else None
    before = store.last_poll(before=now + TOLERANCE)
    if store.get_state(FUTURE_POLL_KEY) != iso(last.polled_at):
        log.warning("clock: a stored poll is stamped %s, in the future (this Pi's clock and "
                    "the PVS's say %s): an earlier version took a wrong PVS clock. Later "
                    "polls are placed after %s, and that row is left as it is.",
                    iso(last.polled_at), iso(now), iso(before.polled_at) if before else "none")
        with store.transaction():
            store.set_state(FUTURE_POLL_KEY, iso(last.polled_at) or "")
    return before.polled_at if before else None


def _pvs_clock(body: bytes | None) -> datetime | None:
    """The PVS's own time in its answer, if it parses (ingest reports a bad answer)."""
    if body is None:
        return None
    try:
        return parse(body).pvs_time
    except ParseError:
        return None


def ingest(ctx: RunContext, archived: ArchivedPoll) -> tuple[Snapshot | None, str | None]:
    """Parse an archived file and store it in one transaction; idempotent per poll time.

    Returns (snapshot, None) for a good poll, (None, reason) for a failed one.
    """
    store = ctx.store
    if archived.failed:
        error, status = read_error(archived)
        with store.transaction():
            store.record_failure(archived.polled_at, error, status, _rel(ctx, archived.path))
        return None, error
    try:
        snapshot = parse(archived.read(), polled_at=archived.polled_at)
    except ParseError as exc:
        with store.transaction():
            store.record_failure(archived.polled_at, f"unusable answer: {exc}", None,
                                 _rel(ctx, archived.path))
        return None, f"unusable answer: {exc}"
    for warning in snapshot.warnings:
        log.warning("%s", warning)
    enrichment: dict[str, float | None] = {}
    for enricher in ENRICHERS:
        try:
            enrichment.update(enricher(ctx, archived.polled_at))
        except Exception as exc:  # an enrichment never costs the reading
            log.warning("enrichment %s failed: %s", getattr(enricher, "__name__", "?"), exc)
    with store.transaction():
        poll_id = store.record_snapshot(archived.polled_at, snapshot, _rel(ctx, archived.path))
        if poll_id is not None and enrichment:
            store.enrich_poll(poll_id, enrichment)
        if isinstance(anchor := ctx.notes.get(ANCHOR_KEY), Anchor):
            store.set_state(ANCHOR_KEY, anchor.to_json())
    return snapshot, None


def ingest_pending(config: Config, store: Store, now: datetime) -> int:
    """Store polls that an interrupted run archived but did not store. Returns how many."""
    stored = store.poll_times_since(now - timedelta(days=3))
    count = 0
    for archived in recent_files(raw_dir(config), now):
        if archived.polled_at.strftime("%Y-%m-%dT%H:%M:%SZ") in stored:
            continue
        # real, recent readings the owner has not been told about: alerts do notify
        ctx = RunContext(config=config, store=store, now=archived.polled_at,
                         poll=archived, replay=False, notify=True)
        ctx.snapshot, ctx.error = ingest(ctx, archived)
        run_stages(ctx, [s for s in STAGES if s.when == "each_poll"])
        count += 1
    if count:
        log.info("recovered %d archived poll(s) an interrupted run had not stored", count)
    return count


def run_stages(ctx: RunContext, stages: Iterable[Stage]) -> list[str]:
    """Run each stage; a failure is logged and recorded, and the next stage still runs."""
    errors = []
    for stage in stages:
        try:
            stage.run(ctx)
        except Exception as exc:
            log.error("%s stage failed: %s", stage.name, exc)
            errors.append(f"{stage.name}: {exc}")
    return errors


def _rel(ctx: RunContext, path: Path) -> str:
    try:
        return str(path.relative_to(ctx.config.data_path))
    except ValueError:
        return str(path)
