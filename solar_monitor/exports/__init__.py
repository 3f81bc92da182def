"""Exports: copies of each poll for the engines people already run (issue 20).

One module per engine (`mqtt`, `influxdb`, `prometheus`), each with the same two
functions: `export_stage(ctx, settings)` at the end of a run and `probe(settings)` for
`check`. An engine's module (and its library) is imported only when its section is
configured, so a run without exports imports none of them. A failing export is logged
once per outage and never fails the run (telegraf's outputs, borgmatic's hooks).

This module stays light: the pipeline imports it on every run.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from solar_monitor.config import Config
    from solar_monitor.context import RunContext
    from solar_monitor.store import Store

log = logging.getLogger(__name__)

ENGINES = ("mqtt", "influxdb", "prometheus")  # the order they run in at the end of a run
QUEUED = ("influxdb",)  # engines that queue every poll in the outbox (exports.<name>.queue_poll)


class ExportError(Exception):
    """An export could not take the data; the message says what to do."""


def configured(config: Config, names: tuple[str, ...] = ENGINES) -> Iterator[tuple[str, Any]]:
    """(name, settings) of each configured engine among `names`."""
    for name in names:
        settings = getattr(config.exports, name, None)
        if settings is not None:
            yield name, settings


def engine(name: str) -> ModuleType:
    """An engine's module, imported on first use."""
    return importlib.import_module(f"solar_monitor.exports.{name}")


def queue_poll(ctx: RunContext) -> None:
    """Each-poll stage: queue this poll for the engines that must never lose one. A replay
    queues nothing: `replay --export` writes its polls straight to the engine."""
    if ctx.replay or ctx.snapshot is None:
        return
    for name, settings in configured(ctx.config, QUEUED):
        engine(name).queue_poll(ctx, settings)


def export_all(ctx: RunContext) -> None:
    """End-of-run stage: each configured engine's export_stage, one after the other; none
    of them can fail the run (an escaped error is logged, like any export failure)."""
    if ctx.replay:
        return
    for name, settings in configured(ctx.config):
        try:
            engine(name).export_stage(ctx, settings)
        except Exception as exc:  # an export must never cost the run (the stage contract)
            note_outcome(ctx.store, name, f"{exc.__class__.__name__}: {exc}")


def note_outcome(store: Store, name: str, error: str | None, backlog: str = "") -> None:
    """Log an export's failure once per outage (WARNING), its repeats at INFO, and its
    recovery; `backlog` says what waits (e.g. '12 poll(s) queued')."""
    key = f"exports.{name}.failing"
    previous = store.get_state(key)
    tail = f"; {backlog}" if backlog else ""
    if error is None:
        if previous is not None:
            log.info("%s export works again%s", name, tail)
            store.clear_state(key)
        return
    if previous == error:
        log.info("%s export still failing: %s%s", name, error, tail)
    else:
        log.warning("%s export failed: %s%s (the run goes on; `solar-monitor check` "
                    "probes it)", name, error, tail)
        store.set_state(key, error)
