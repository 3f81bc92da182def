"""What every pipeline stage sees: the run's context and the stage record.

Its own module so that the stages (rules, weather, digest, sheet, exports) import it
without importing the pipeline that imports them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from solar_monitor.archive import ArchivedPoll
from solar_monitor.config import Config
from solar_monitor.pvs.models import Snapshot
from solar_monitor.store import Store

PI_HEALTH_KEY = "pi_health"  # ctx.notes: this run's PiHealth, for the pi_* rules


@dataclass
class RunContext:
    """What the stages of one run (or one replayed poll) see."""

    config: Config
    store: Store
    now: datetime
    poll: ArchivedPoll | None = None
    snapshot: Snapshot | None = None
    error: str | None = None
    replay: bool = False
    notify: bool = True
    notes: dict[str, object] = field(default_factory=dict)
    # The Pi's own clock at the start of the run (`now` is the poll's stamp): archive
    # upkeep goes by it, never by a stamp a PVS clock may have set.
    wall: datetime | None = None


@dataclass(frozen=True, slots=True)
class Stage:
    """A step after the poll is stored. `each_poll` stages see every replayed poll in
    order (rules); `end_of_run` stages run once per run or replay (exports, flushes)."""

    name: str
    run: Callable[[RunContext], None]
    when: Literal["each_poll", "end_of_run"] = "end_of_run"
