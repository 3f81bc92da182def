"""The faults a simulated site can have: frozen dataclasses with a time window.

Each is active while start <= t < end (aware datetimes, None = open on that side); an
inverter is named by serial or by 0-based index. `SimulatedSite` reads them; the answer
formats (devicelist, varserver) render their effect.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

InverterRef = str | int
DropoutMode = Literal["absent", "stale"]


@dataclass(frozen=True, kw_only=True)
class _Window:
    """A time window: active when start <= t < end; None means open on that side."""

    start: datetime | None = None
    end: datetime | None = None

    def active(self, t: datetime) -> bool:
        """True when `t` (aware) is inside the window."""
        return (self.start is None or self.start <= t) and (self.end is None or t < self.end)


@dataclass(frozen=True, kw_only=True)
class DeadInverter(_Window):
    """An inverter that has failed: STATE "error", zero (or no) metrics, no energy, in
    daylight too. Its DATATIME stays at its last production before `start`."""

    inverter: InverterRef


@dataclass(frozen=True, kw_only=True)
class MissingInverter(_Window):
    """An inverter absent from DeviceList and varserver (the PVS lost it). It still
    produces: the production meter keeps counting its power."""

    inverter: InverterRef


@dataclass(frozen=True, kw_only=True)
class WeakInverter(_Window):
    """An inverter (or its panel) producing only `factor` of its peers, all day."""

    inverter: InverterRef
    factor: float = 0.6


@dataclass(frozen=True, kw_only=True)
class ShadedInverters(_Window):
    """Regular, expected shade (a tree, a chimney): the listed inverters produce
    `factor` of normal between `from_hour`..`to_hour` site-local time, every day."""

    inverters: tuple[InverterRef, ...]
    from_hour: float = 14.0
    to_hour: float = 17.0
    factor: float = 0.25


@dataclass(frozen=True, kw_only=True)
class SnowCover(_Window):
    """Snow on the array from `start`: a covered inverter produces `factor` of normal.

    Snow does not leave a roof all at once: `rows` groups inverters (a row of panels),
    and row k clears at `clears_at[k]` (the bottom row last); an inverter in no row
    clears at `end`. `depth_m` is the snow on the ground that the weather reports: it
    falls over the first `snowfall_h` hours and melts linearly to 0 at `end` (0: a snow
    the weather never saw). `meter_zero`: while the whole array is dark the production
    meter reads 0 instead of its standby draw (a buried array then looks tripped).
    """

    factor: float = 0.02
    rows: tuple[tuple[InverterRef, ...], ...] = ()
    clears_at: tuple[datetime, ...] = ()
    depth_m: float = 0.0
    snowfall_h: float = 6.0
    meter_zero: bool = False

    def covers(self, row: int | None, t: datetime) -> bool:
        """Whether row `row` (None: no row) is still under snow at `t`."""
        if not self.active(t):
            return False
        clear = self.clears_at[row] if row is not None and row < len(self.clears_at) else None
        return clear is None or t < clear

    def snow_depth_m(self, t: datetime) -> float:
        """Snow on the ground (m) at `t`: falling, then melting to 0 at `end`."""
        if self.depth_m <= 0 or self.start is None or not self.active(t):
            return 0.0
        peak = self.start + timedelta(hours=self.snowfall_h)
        if t < peak:
            return self.depth_m * (t - self.start) / (peak - self.start)
        if self.end is None or self.end <= peak:
            return self.depth_m
        return self.depth_m * (self.end - t) / (self.end - peak)

    def snowfall_cm(self, t: datetime) -> float:
        """Snowfall (cm) in the hour before `t`: depth_m spread over `snowfall_h` hours."""
        if self.depth_m <= 0 or self.start is None:
            return 0.0
        lo, hi = max(self.start, t - timedelta(hours=1)), \
            min(t, self.start + timedelta(hours=self.snowfall_h))
        hours = max(0.0, (hi - lo).total_seconds() / 3600.0)
        return 100.0 * self.depth_m * hours / max(self.snowfall_h, 1e-9)


@dataclass(frozen=True, kw_only=True)
class PvsReboot(_Window):
    """The PVS restarts at `start` (required): uptime resets, DeviceList lists no
    inverters for `missing_s`, and varserver lists an inverter only once it has
    produced again after the boot."""

    missing_s: float = 600.0


@dataclass(frozen=True, kw_only=True)
class FirmwareChange(_Window):
    """The PVS runs firmware `build` from `start` (an over-the-air update).

    The emulator follows it: a build >= 61845 turns DeviceList off, for example."""

    build: int


@dataclass(frozen=True, kw_only=True)
class DataStale(_Window):
    """A hung PVS: it answers, but every value and measurement time is frozen at its
    state at `start` (required); only its clock moves (CURTIME, `/sys/livedata/time`)."""


@dataclass(frozen=True, kw_only=True)
class FlashLow(_Window):
    """Free flash falls linearly from normal to `flash_avail_kib` over `ramp_h` hours
    after `start` (the logs-fill-the-flash firmware bug)."""

    flash_avail_kib: float = 1500.0
    ramp_h: float = 48.0


@dataclass(frozen=True, kw_only=True)
class UploadBacklog(_Window):
    """Cloud upload is failing: `dl_untransmitted` grows by `records_per_hour`."""

    records_per_hour: float = 12.0


@dataclass(frozen=True, kw_only=True)
class FlashWorn(_Window):
    """The eMMC reports `tenths` of its life used (`/sys/pvs/flashwear_type_b`, varserver
    only); outside the window it reports 0x01 (10 %)."""

    tenths: int = 8


@dataclass(frozen=True, kw_only=True)
class GridOutOfRange(_Window):
    """The grid is out of range: V12 (V) and/or frequency (Hz) forced to these values.
    Outside IEEE 1547 limits the inverters trip (zero power)."""

    voltage_v: float | None = None
    freq_hz: float | None = None


@dataclass(frozen=True, kw_only=True)
class ProductionTripped(_Window):
    """The PV breaker is off: every inverter at 0 (STATE "error") even in full sun;
    the production meter reads 0 and the house runs on the grid."""


@dataclass(frozen=True, kw_only=True)
class StaleInverter(DeadInverter):
    """A dead inverter that the varserver keeps serving: listed (even after the nightly
    restart) with the values and msmtEps of its last production before `start`, while
    the SunStrong app shows it as not working. DeviceList shows it in "error" with those
    values and DATATIME."""


@dataclass(frozen=True, kw_only=True)
class CommDropout(_Window):
    """Power-line communication lost: the inverters still produce (the production meter
    counts them) but are `absent` from the answer, or `stale`: listed with the values
    and measurement time of `start` (STATE "error" in DeviceList)."""

    inverters: tuple[InverterRef, ...]
    mode: DropoutMode = "absent"


@dataclass(frozen=True, kw_only=True)
class PowerLineDropouts(_Window):
    """Everyday power-line noise: about `per_day` times a day (at seeded times, day and
    night) one to `max_inverters` inverters drop out for one to `max_polls` polls of
    `poll_s`, absent or (a `stale_share` of them) stale, as in `CommDropout`. Each
    dropout starts a minute before a poll instant (multiples of `poll_s`), so it covers
    exactly its polls."""

    per_day: float = 5.0
    max_inverters: int = 3
    max_polls: int = 2
    poll_s: int = 900
    stale_share: float = 0.5
    salt: int = 0


@dataclass(frozen=True, kw_only=True)
class FlappingInverter(_Window):
    """One inverter with bad power-line communication: every hour it drops out for one
    to `max_polls` consecutive polls of `poll_s` (absent or stale, seeded per hour), and
    produces normally throughout (the production meter shows the whole array)."""

    inverter: InverterRef
    max_polls: int = 3
    poll_s: int = 900
    stale_share: float = 0.5
    salt: int = 0


SiteFault = (
    DeadInverter
    | MissingInverter
    | WeakInverter
    | ShadedInverters
    | SnowCover
    | PvsReboot
    | FirmwareChange
    | DataStale
    | FlashLow
    | FlashWorn
    | UploadBacklog
    | GridOutOfRange
    | ProductionTripped
    | StaleInverter
    | CommDropout
    | PowerLineDropouts
    | FlappingInverter
)

# Faults that change produced energy: adding one invalidates the energy caches.
_ENERGY_FAULTS = (
    DeadInverter,
    WeakInverter,
    ShadedInverters,
    SnowCover,
    GridOutOfRange,
    ProductionTripped,
)
