"""The pipeline stages of the alert rules: judge each poll; at the end, save and export."""

from __future__ import annotations

import logging
from datetime import datetime, tzinfo
from pathlib import Path

from solar_monitor.context import PI_HEALTH_KEY, RunContext
from solar_monitor.pi_health import PiHealth
from solar_monitor.rules.engine import (
    AlertSettings,
    cached_engine,
    engine_for,
    events_between,
    write_events,
)
from solar_monitor.store import Store

log = logging.getLogger(__name__)


def rules_stage(ctx: RunContext) -> None:
    """Each poll (a failed one too: it feeds pvs_unreachable). Queues e-mails only when
    `ctx.notify`; always records alert events."""
    if not AlertSettings.from_config(ctx.config).enabled:
        return
    engine = engine_for(ctx.store, ctx.config, replay=ctx.replay)
    at = ctx.poll.polled_at if ctx.poll is not None else ctx.now
    pi = ctx.notes.get(PI_HEALTH_KEY)
    cloud, snow_depth_m, snowfall_cm = engine.weather(at)
    events = engine.evaluate(at, ctx.snapshot, ctx.error, cloud, notify=ctx.notify,
                             snow_depth_m=snow_depth_m, snowfall_cm=snowfall_cm,
                             pi=pi if isinstance(pi, PiHealth) and not ctx.replay else None)
    for event in events:
        log.info("alert %s: %s %s", event.event, event.rule, event.subject)


def alerts_export_stage(ctx: RunContext) -> None:
    """End of a run or replay: save the engine's memory; write `--events-out` if asked
    (`ctx.notes['events_out']`, events since `ctx.notes['replay_from']`)."""
    engine = cached_engine(ctx.store)
    if engine is not None:
        engine.flush()
    path = ctx.notes.get("events_out")
    if path is None:
        return
    start = ctx.notes.get("replay_from")
    events = events_between(ctx.store, start if isinstance(start, datetime) else None)
    count = write_events(Path(str(path)), events)
    log.info("wrote %d alert event(s) to %s", count, path)


def alert_lines(store: Store, tz: tzinfo, start: datetime | None = None) -> list[str]:
    """Alert events as short lines for a terminal (the demo's summary): local time, event,
    rule, subject, then the message's first sentence."""
    lines = []
    for e in events_between(store, start):
        lines.append(f"  {e.time.astimezone(tz):%Y-%m-%d %H:%M}  {e.event:<8}  {e.severity:<8}"
                     f"  {e.rule}  {e.subject}")
        lines.append(f"      {e.message.split('. ')[0].rstrip('.')}.")
    return lines
