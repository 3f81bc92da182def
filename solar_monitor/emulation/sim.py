"""A pure, deterministic simulated PVS site: sun, clouds, panels, a household, faults.

No I/O and no wall clock: every answer is a function of (spec, faults, t). The same seed
gives the same payloads, so tests and benchmarks know the truth behind each answer
(`cloud_cover_pct`, `inverter_power_kw`, the declared faults).

Physics, simple but honest:
- power follows the sun (astral, via `solar_monitor.sun`) and each roof face's angle of
  incidence (Kasten-Young air mass, Meinel clear-sky beam, 10 % isotropic diffuse),
  reduced by an hourly seeded cloud cover (Kasten-Czeplak) with clear spells and
  overcast weeks, scaled by each panel's kW rating and clipped at the AC rating;
- power is sampled on a 5-minute grid and linearly interpolated between samples, so
  every lifetime kWh counter is the exact integral of the power the site reports:
  monotonic, consistent across calls, and computable at any t from per-day cached
  integrals (a simulated year costs ~365 day integrations, not one per poll);
- a household load with morning and evening peaks, 240 V split phase near nominal,
  60 Hz, and supervisor health counters (uptime, flash, upload backlog).

Faults are declarative frozen dataclasses with a time window (`start`/`end`, aware
datetimes, None = open-ended), listed on `SiteSpec.faults` or added with
`SimulatedSite.add_fault`. An inverter is named by serial or by 0-based index.
"""

from __future__ import annotations

import csv
import functools
import math
import re
import struct
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Literal
from zoneinfo import ZoneInfo

from solar_monitor.sun import daylight_utc, sun_position_deg

ConsumptionSubtype = Literal["NET_CONSUMPTION_LOADSIDE", "GROSS_CONSUMPTION_LINESIDE"]
SupervisorModel = Literal["PVS6", "PVS5"]
InverterRef = str | int

STEP_S = 300  # power grid resolution: 5 minutes
_STEPS = 86400 // STEP_S
_STEP_H = STEP_S / 3600.0
_WORKING_MIN_KW = 0.005  # below this an inverter reports STATE "error" (dawn, dusk, night)
_START_MIN_KW = 0.002  # below this an inverter does not produce at all
_NIGHT_DRAW_KW = 0.015  # the production meter reads about -15 W at night
_METER_GAIN = 0.995  # the production meter reads a little under the inverters' sum
_FLASH_TOTAL_KIB = 131072.0
_GRID_V_LIMITS = (211.0, 264.0)  # IEEE 1547 trip limits, 240 V split phase
_GRID_HZ_LIMITS = (59.3, 60.5)
_MASK64 = (1 << 64) - 1


# --------------------------------------------------------------------------- faults


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
    """The PVS answers, but every value is frozen at its state at `start` (required);
    only CURTIME moves."""


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


# --------------------------------------------------------------------------- spec


@dataclass(frozen=True)
class RoofFace:
    """A roof plane: compass azimuth of its downslope (180 = south), tilt, panel count."""

    azimuth_deg: float
    tilt_deg: float
    count: int


FIRMWARE_NAMES: dict[int, tuple[str, str]] = {
    # build: (legacy SWVER, varserver /sys/info/sw_rev)
    61839: ("2025.06, Build 61839", "2025.06.03.61839"),
    61840: ("2025.06, Build 61840", "2025.06.24.61840"),
    61842: ("2025.07, Build 61842", "2025.07.15.61842"),
    61846: ("2025.09, Build 61846", "2025.09.04.61846"),
    # PVS5: legacy, DeviceList behind a login, LocalAPI (varserver) from 5412
    5405: ("2025.03, Build 5405", "2025.03.11.5405"),
    5408: ("2025.06, Build 5408", "2025.06.17.5408"),
    5412: ("2025.11, Build 5412", "2025.11.04.5412"),
}


def firmware_names(build: int) -> tuple[str, str]:
    """(SWVER like "2025.06, Build 61839", sw_rev like "2025.06.03.61839") for a build."""
    return FIRMWARE_NAMES.get(build, (f"2025.06, Build {build}", f"2025.06.01.{build}"))


@dataclass(frozen=True)
class SiteSpec:
    """Everything that defines a simulated site. Angles in degrees, power in kW.

    `roof_faces` must add up to `inverter_count` (empty = all on one south face at
    20°). Lifetime counters start at `epoch` from a seeded value worth
    `years_in_service` of production, and integrate forward (and backward) from there.
    `restart_hour_local` is the PVS's nightly restart hour (None: no nightly restart).
    """

    latitude: float = 37.77
    longitude: float = -122.42
    timezone: str = "America/Los_Angeles"
    inverter_count: int = 12
    seed: int = 1
    roof_faces: tuple[RoofFace, ...] = ()
    panel_kw: float = 0.32
    production_meter: bool = True
    consumption_subtype: ConsumptionSubtype | None = "NET_CONSUMPTION_LOADSIDE"
    build: int = 61839
    model: SupervisorModel = "PVS6"
    flash_wear_pct: int = 10  # /sys/pvs/flashwear_type_b, in steps of 10 %
    livedata_time_ms: bool = False  # some firmware sends /sys/livedata/time in ms
    household_kwh_per_day: float = 20.0
    years_in_service: float = 5.0
    restart_hour_local: int | None = 2
    epoch: datetime = datetime(2025, 1, 1, tzinfo=UTC)
    faults: tuple[SiteFault, ...] = field(default=())
    serial: str | None = None  # the supervisor's serial (None: made from the seed)

    def __post_init__(self) -> None:
        if self.inverter_count < 0:
            raise ValueError("inverter_count must be >= 0")
        if self.roof_faces and sum(f.count for f in self.roof_faces) != self.inverter_count:
            raise ValueError("roof_faces counts must add up to inverter_count")
        if self.epoch.tzinfo is None:
            raise ValueError("epoch must be an aware datetime")
        if self.model not in ("PVS6", "PVS5"):
            raise ValueError(f"model must be PVS6 or PVS5, not {self.model!r}")

    def faces(self) -> tuple[RoofFace, ...]:
        """The roof faces, defaulting to one south face at 20° tilt."""
        return self.roof_faces or (RoofFace(180.0, 20.0, self.inverter_count),)


# --------------------------------------------------------------------------- noise


def _hash_unit(*parts: int) -> float:
    """A deterministic uniform float in [0, 1) from integers (splitmix64 mixing)."""
    x = 0x243F6A8885A308D3
    for p in parts:
        x = (x ^ (p & _MASK64)) + 0x9E3779B97F4A7C15 & _MASK64
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & _MASK64
        x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _MASK64
        x ^= x >> 31
    return (x >> 11) / float(1 << 53)


def _smooth_noise(x: float, *key: int) -> float:
    """Value noise in [0, 1]: seeded values at integers, cosine-interpolated between."""
    i = math.floor(x)
    f = x - i
    a = _hash_unit(*key, i)
    b = _hash_unit(*key, i + 1)
    w = (1.0 - math.cos(math.pi * f)) / 2.0
    return a + (b - a) * w


def _gauss(x: float, mu: float, sigma: float) -> float:
    return math.exp(-0.5 * ((x - mu) / sigma) ** 2)


def _ts(t: datetime) -> float:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"need an aware datetime, got naive {t!r}")
    return t.timestamp()


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


# --------------------------------------------------------------------------- state


@dataclass(frozen=True)
class _Day:
    """Per-UTC-day samples on the 5-minute grid (index 0..288, both ends included)."""

    inv_kw: tuple[tuple[float, ...], ...]  # [inverter][k]
    inv_prefix_kwh: tuple[tuple[float, ...], ...]  # energy from day start to sample k
    inv_last_prod: tuple[tuple[int, ...], ...]  # last k' <= k with power > 0, else -1
    load_kw: tuple[float, ...]
    load_prefix_kwh: tuple[float, ...]
    import_prefix_kwh: tuple[float, ...]
    export_prefix_kwh: tuple[float, ...]


@dataclass(frozen=True)
class _Totals:
    """Lifetime energies (kWh) at a UTC midnight."""

    inv_kwh: tuple[float, ...]
    load_kwh: float
    import_kwh: float
    export_kwh: float


@dataclass(frozen=True)
class InverterState:
    """The truth about one inverter at one instant (kW, kWh, aware UTC times)."""

    index: int
    serial: str
    power_kw: float
    lifetime_kwh: float
    last_production: datetime | None
    dead: bool
    missing: bool
    reports_metrics_at_night: bool

    @property
    def working(self) -> bool:
        """True when the PVS would say STATE "working"."""
        return not self.dead and self.power_kw >= _WORKING_MIN_KW


@dataclass(frozen=True)
class SiteState:
    """The truth about the whole site at one instant; renderers turn it into payloads."""

    data_time: datetime
    inverters: tuple[InverterState, ...]
    production_kw: float
    production_kwh: float
    load_kw: float
    load_kwh: float
    import_kwh: float
    export_kwh: float
    grid_v: float
    grid_hz: float
    ambient_c: float
    build: int
    last_boot: datetime
    flash_avail_kib: float
    untransmitted: int
    cpu_load: float
    mem_used_kib: float


class SimulatedSite:
    """A deterministic PVS site. Thread-safe: the emulator calls it from many threads."""

    def __init__(self, spec: SiteSpec | None = None) -> None:
        self.spec = spec or SiteSpec()
        self._faults: list[SiteFault] = list(self.spec.faults)
        self._tz = ZoneInfo(self.spec.timezone)
        self._lock = threading.RLock()
        seed = self.spec.seed
        self.supervisor_serial = self.spec.serial or (
            "ZT"
            + "".join(str(int(_hash_unit(seed, 1, i) * 10)) for i in range(12))
            + "A0"
            + f"{int(_hash_unit(seed, 2) * 1000):03d}"
        )
        meter_base = f"PVS6M{int(_hash_unit(seed, 3) * 1e8):08d}"
        self.production_meter_serial = meter_base + "p"
        self.consumption_meter_serial = meter_base + "c"
        base = 202040010000 + int(_hash_unit(seed, 4) * 1e6) * 10
        self.inverter_serials: tuple[str, ...] = tuple(
            f"E00{base + 137 * i:012d}" for i in range(self.spec.inverter_count)
        )
        faces = self.spec.faces()
        self._inv_face: tuple[int, ...] = tuple(
            fi for fi, face in enumerate(faces) for _ in range(face.count)
        )
        self._inv_gain = tuple(
            0.96 + 0.06 * _hash_unit(seed, 5, i) for i in range(self.spec.inverter_count)
        )
        self._no_night_metrics = frozenset(
            i for i in range(self.spec.inverter_count) if _hash_unit(seed, 6, i) < 0.3
        )
        self._epoch_day = int(_ts(self.spec.epoch) // 86400)
        self._clear_caches()

    # ---------------------------------------------------------------- faults

    @property
    def faults(self) -> tuple[SiteFault, ...]:
        """The faults currently declared on the site."""
        with self._lock:
            return tuple(self._faults)

    def add_fault(self, fault: SiteFault) -> None:
        """Declare one more fault (used by the emulator's controller at run time)."""
        with self._lock:
            self._faults.append(fault)
            if isinstance(fault, _ENERGY_FAULTS):
                self._clear_caches()

    def remove_fault(self, fault: SiteFault) -> None:
        """Withdraw a fault declared earlier (equal by value)."""
        with self._lock:
            self._faults.remove(fault)
            if isinstance(fault, _ENERGY_FAULTS):
                self._clear_caches()

    def _clear_caches(self) -> None:
        self._days: OrderedDict[int, _Day] = OrderedDict()
        self._totals: dict[int, _Totals] = {}
        self._day_energy: dict[int, _Totals] = {}

    def _index(self, ref: InverterRef) -> int | None:
        if isinstance(ref, int):
            return ref if 0 <= ref < self.spec.inverter_count else None
        try:
            return self.inverter_serials.index(ref)
        except ValueError:
            return None

    def _inverter_faulted(self, kind: type, i: int, t: datetime) -> SiteFault | None:
        for f in self._faults:
            if isinstance(f, kind) and f.active(t) and self._index(f.inverter) == i:  # type: ignore[attr-defined]
                return f
        return None

    def _active(self, kind: type, t: datetime) -> list[SiteFault]:
        return [f for f in self._faults if isinstance(f, kind) and f.active(t)]

    # ---------------------------------------------------------------- weather

    def cloud_cover_pct(self, t: datetime) -> float:
        """Cloud cover in % (0 clear .. 100 overcast), constant within each UTC hour.

        Three seeded value-noise scales (6-day spells, days, 4-hour showers) plus a
        winter bias; the threshold leaves long clear spells at 0 %.
        """
        hour = math.floor(_ts(t) / 3600)
        seed = self.spec.seed
        weekly = _smooth_noise(hour / 144.0, seed, 101)
        daily = _smooth_noise(hour / 24.0, seed, 102)
        showers = _smooth_noise(hour / 4.0, seed, 103)
        doy = (hour / 24.0) % 365.25
        winter = math.cos(2 * math.pi * (doy - 15) / 365.25)
        if self.spec.latitude < 0:
            winter = -winter
        z = 0.55 * weekly + 0.3 * daily + 0.15 * showers + 0.08 * winter
        return round(max(0.0, min(1.0, (z - 0.45) / 0.28)) * 100.0, 1)

    def ambient_c(self, t: datetime) -> float:
        """Air temperature in °C: seasonal plus diurnal swing (warmest mid-afternoon)."""
        ts = _ts(t)
        doy = (ts / 86400.0) % 365.25
        season = -math.cos(2 * math.pi * (doy - 15) / 365.25)
        if self.spec.latitude < 0:
            season = -season
        local_h = self._local_hour(ts)
        diurnal = math.cos(2 * math.pi * (local_h - 15.0) / 24.0)
        return 14.0 + 8.0 * season + 5.0 * diurnal

    def _local_hour(self, ts: float) -> float:
        local = datetime.fromtimestamp(ts, self._tz)
        return local.hour + local.minute / 60.0 + local.second / 3600.0

    # ---------------------------------------------------------------- physics

    def _face_kw(self, t: datetime) -> list[float]:
        """Clear-sky-times-cloud DC-equivalent AC power of one nominal panel per face (kW)."""
        faces = self.spec.faces()
        el, az = sun_position_deg(self.spec.latitude, self.spec.longitude, t)
        if el <= 0.5:
            return [0.0] * len(faces)
        el_r = math.radians(el)
        air_mass = 1.0 / (math.sin(el_r) + 0.50572 * (el + 6.07995) ** -1.6364)
        dni = 1353.0 * 0.7 ** (air_mass**0.678)
        dhi = 0.1 * dni
        cloud = self.cloud_cover_pct(t) / 100.0
        clearness = 1.0 - 0.75 * cloud**3.4
        out = []
        for face in faces:
            tilt = math.radians(face.tilt_deg)
            cos_inc = math.sin(el_r) * math.cos(tilt) + math.cos(el_r) * math.sin(tilt) * math.cos(
                math.radians(az - face.azimuth_deg)
            )
            poa = dni * max(cos_inc, 0.0) + dhi * (1 + math.cos(tilt)) / 2
            out.append(self.spec.panel_kw * 0.9 * poa * clearness / 1000.0)
        return out

    def _grid(self, t: datetime) -> tuple[float, float]:
        """(V12 in V, frequency in Hz), near 242 V / 60 Hz unless a fault overrides."""
        ts = _ts(t)
        slot = int(ts // 60)
        v = 242.0 + 2.5 * math.sin(ts / 5400.0) + 1.5 * (_hash_unit(self.spec.seed, 7, slot) - 0.5)
        hz = 60.0 + 0.02 * (_hash_unit(self.spec.seed, 8, slot) - 0.5)
        for f in self._active(GridOutOfRange, t):
            assert isinstance(f, GridOutOfRange)
            v = f.voltage_v if f.voltage_v is not None else v
            hz = f.freq_hz if f.freq_hz is not None else hz
        return v, hz

    def _array_factor(self, t: datetime) -> float:
        """Site-wide multiplier: 0 when tripped or the grid is out of range (snow is per
        inverter: rows clear on different days)."""
        if self._active(ProductionTripped, t):
            return 0.0
        v, hz = self._grid(t)
        if not (_GRID_V_LIMITS[0] <= v <= _GRID_V_LIMITS[1]) or not (
            _GRID_HZ_LIMITS[0] <= hz <= _GRID_HZ_LIMITS[1]
        ):
            return 0.0
        return 1.0

    def _snow_row(self, f: SnowCover, i: int) -> int | None:
        return next((k for k, row in enumerate(f.rows) if i in {self._index(r) for r in row}),
                    None)

    def snow_covered(self, i: int, t: datetime) -> bool:
        """Truth for tests: whether inverter `i` (0-based) is under snow at `t`."""
        return any(isinstance(f, SnowCover) and f.covers(self._snow_row(f, i), t)
                   for f in self._active(SnowCover, t))

    def snow_depth_m(self, t: datetime) -> float:
        """Snow on the ground (m) at `t`, as a weather service reports it."""
        return round(sum(f.snow_depth_m(t) for f in self.faults if isinstance(f, SnowCover)), 3)

    def snowfall_cm(self, t: datetime) -> float:
        """Snowfall (cm) in the hour before `t`, as a weather service reports it."""
        return round(sum(f.snowfall_cm(t) for f in self.faults if isinstance(f, SnowCover)), 2)

    def _inverter_factor(self, i: int, t: datetime, local_h: float) -> float:
        if self._inverter_faulted(DeadInverter, i, t):
            return 0.0
        factor = 1.0
        for snow in self._active(SnowCover, t):
            assert isinstance(snow, SnowCover)
            if snow.covers(self._snow_row(snow, i), t):
                factor *= snow.factor
        weak = self._inverter_faulted(WeakInverter, i, t)
        if isinstance(weak, WeakInverter):
            factor *= weak.factor
        for f in self._active(ShadedInverters, t):
            assert isinstance(f, ShadedInverters)
            if f.from_hour <= local_h < f.to_hour and i in {self._index(r) for r in f.inverters}:
                factor *= f.factor
        return factor

    def _load_kw(self, ts: float, local_h: float) -> float:
        """Household load in kW: base, morning and evening peaks, 15-minute seeded noise."""
        shape = (
            0.45
            + 0.9 * _gauss(local_h, 7.5, 1.0)
            + 0.35 * _gauss(local_h, 13.0, 3.0)
            + 1.6 * _gauss(local_h, 19.5, 2.0)
        )
        noise = 0.75 + 0.5 * _hash_unit(self.spec.seed, 9, int(ts // 900))
        # The shape integrates to ~25.7 kWh a day at noise 1.0.
        return shape * noise * self.spec.household_kwh_per_day / 25.7

    def _sample_day(self, day: int) -> _Day:
        """Sample power and load on the 5-minute grid of one UTC day and integrate."""
        n = self.spec.inverter_count
        inv_kw: list[list[float]] = [[0.0] * (_STEPS + 1) for _ in range(n)]
        load = [0.0] * (_STEPS + 1)
        net = [0.0] * (_STEPS + 1)
        no_sun = [0.0] * len(self.spec.faces())
        lit = self._lit_window(day)
        for k in range(_STEPS + 1):
            ts = day * 86400.0 + k * STEP_S
            t = _utc(ts)
            local_h = self._local_hour(ts)
            load[k] = self._load_kw(ts, local_h)
            face_kw = self._face_kw(t) if lit[0] <= ts <= lit[1] else no_sun
            total = 0.0
            if any(face_kw):
                array = self._array_factor(t)
                for i in range(n):
                    p = face_kw[self._inv_face[i]] * self._inv_gain[i] * array
                    if p > 0.0:
                        p *= self._inverter_factor(i, t, local_h)
                    p = min(p, self.spec.panel_kw * 0.96)
                    p = p if p >= _START_MIN_KW else 0.0
                    inv_kw[i][k] = p
                    total += p
            net[k] = load[k] - total * _METER_GAIN
        inv_prefix = [_prefix(row) for row in inv_kw]
        last_prod = [_last_positive(row) for row in inv_kw]
        return _Day(
            inv_kw=tuple(tuple(r) for r in inv_kw),
            inv_prefix_kwh=tuple(inv_prefix),
            inv_last_prod=tuple(last_prod),
            load_kw=tuple(load),
            load_prefix_kwh=_prefix(load),
            import_prefix_kwh=_prefix([max(x, 0.0) for x in net]),
            export_prefix_kwh=_prefix([max(-x, 0.0) for x in net]),
        )

    def _lit_window(self, day: int) -> tuple[float, float]:
        """Epoch seconds bounding when the sun can be up on a UTC day (saves astral calls).

        Outside sunrise/sunset the elevation is below the 0.5° production cut-off anyway,
        so skipping those steps changes nothing. Polar days: the whole day.
        """
        whole = (day * 86400.0 - 1, day * 86400.0 + 86401)
        if abs(self.spec.latitude) > 60:
            return whole
        d = datetime.fromtimestamp(day * 86400.0, UTC).date()
        spans = [
            daylight_utc(self.spec.latitude, self.spec.longitude, d + timedelta(days=o))
            for o in (-1, 0, 1)
        ]
        if any(span is None for span in spans):
            return whole
        start, end = day * 86400.0, day * 86400.0 + 86400
        lo, hi = math.inf, -math.inf
        for span in spans:
            assert span is not None
            a, b = span[0].timestamp() - 900, span[1].timestamp() + 900
            if b >= start and a <= end:
                lo, hi = min(lo, a), max(hi, b)
        return (lo, hi) if lo <= hi else (0.0, -1.0)

    def _day(self, day: int) -> _Day:
        cached = self._days.get(day)
        if cached is not None:
            self._days.move_to_end(day)
            return cached
        data = self._sample_day(day)
        self._days[day] = data
        if len(self._days) > 8:
            self._days.popitem(last=False)
        self._day_energy[day] = _Totals(
            inv_kwh=tuple(p[-1] for p in data.inv_prefix_kwh),
            load_kwh=data.load_prefix_kwh[-1],
            import_kwh=data.import_prefix_kwh[-1],
            export_kwh=data.export_prefix_kwh[-1],
        )
        return data

    def _energy(self, day: int) -> _Totals:
        if day not in self._day_energy:
            self._day(day)
        return self._day_energy[day]

    def _initial_totals(self) -> _Totals:
        """Seeded lifetime counters at the epoch, worth `years_in_service` of use."""
        years = self.spec.years_in_service
        seed = self.spec.seed
        return _Totals(
            inv_kwh=tuple(years * self.spec.panel_kw * 1450.0 * g for g in self._inv_gain),
            load_kwh=years * 365.0 * self.spec.household_kwh_per_day,
            import_kwh=years * 365.0 * self.spec.household_kwh_per_day * 0.7,
            export_kwh=years * self.spec.inverter_count * self.spec.panel_kw * 1450.0 * 0.6
            + 100.0 * _hash_unit(seed, 10),
        )

    def _totals_at(self, day: int) -> _Totals:
        """Lifetime counters at 00:00 UTC of `day`, walking from the nearest known day."""
        if not self._totals:
            self._totals[self._epoch_day] = self._initial_totals()
        if day in self._totals:
            return self._totals[day]
        known = min(self._totals, key=lambda d: abs(d - day))
        step = 1 if day > known else -1
        cur = self._totals[known]
        d = known
        while d != day:
            e = self._energy(d if step == 1 else d - 1)
            sign = float(step)
            cur = _Totals(
                inv_kwh=tuple(a + sign * b for a, b in zip(cur.inv_kwh, e.inv_kwh, strict=True)),
                load_kwh=cur.load_kwh + sign * e.load_kwh,
                import_kwh=cur.import_kwh + sign * e.import_kwh,
                export_kwh=cur.export_kwh + sign * e.export_kwh,
            )
            d += step
            self._totals[d] = cur
        return cur

    # ---------------------------------------------------------------- state

    def build_at(self, t: datetime) -> int:
        """The firmware build the PVS runs at `t` (latest FirmwareChange wins)."""
        with self._lock:
            changes = [f for f in self._active(FirmwareChange, t) if isinstance(f, FirmwareChange)]
        if not changes:
            return self.spec.build
        latest = max(changes, key=lambda f: f.start or datetime.min.replace(tzinfo=UTC))
        return latest.build

    def last_boot(self, t: datetime) -> datetime:
        """When the PVS last started: a PvsReboot, the nightly restart, or epoch - 3 days."""
        boots = [self.spec.epoch - timedelta(days=3)]
        hour = self.spec.restart_hour_local
        if hour is not None:
            local = t.astimezone(self._tz)
            minute = int(_hash_unit(self.spec.seed, 11) * 20)
            nightly = local.replace(hour=hour, minute=minute, second=7, microsecond=0)
            if nightly > local:
                nightly = (local - timedelta(days=1)).replace(
                    hour=hour, minute=minute, second=7, microsecond=0
                )
            boots.append(nightly.astimezone(UTC))
        with self._lock:
            for f in self._faults:
                if isinstance(f, PvsReboot) and f.start is not None and f.start <= t:
                    boots.append(f.start)
        return max(b for b in boots if b <= t) if any(b <= t for b in boots) else boots[0]

    def data_time(self, t: datetime) -> datetime:
        """The instant the PVS's values describe: `t`, or the start of a DataStale fault."""
        with self._lock:
            stale = [f for f in self._active(DataStale, t) if f.start is not None]
        return min(f.start for f in stale if f.start is not None) if stale else t

    def state(self, t: datetime) -> SiteState:
        """The truth at `t` (aware): per-inverter power and energy, meters, supervisor."""
        t = self.data_time(t)
        ts = _ts(t)
        with self._lock:
            day = int(ts // 86400)
            data = self._day(day)
            totals = self._totals_at(day)
            pos = (ts - day * 86400.0) / STEP_S
            k = min(int(pos), _STEPS - 1)
            frac = pos - k
            inverters = []
            production = 0.0
            production_kwh = 0.0
            for i, serial in enumerate(self.inverter_serials):
                p, e = _interp(data.inv_kw[i], data.inv_prefix_kwh[i], k, frac)
                lifetime = totals.inv_kwh[i] + e
                production += p
                production_kwh += lifetime
                inverters.append(
                    InverterState(
                        index=i,
                        serial=serial,
                        power_kw=p,
                        lifetime_kwh=lifetime,
                        last_production=self._last_production(i, day, data, k, frac, ts),
                        dead=self._inverter_faulted(DeadInverter, i, t) is not None,
                        missing=self._inverter_faulted(MissingInverter, i, t) is not None,
                        reports_metrics_at_night=i not in self._no_night_metrics,
                    )
                )
            load, load_e = _interp(data.load_kw, data.load_prefix_kwh, k, frac)
            imp = totals.import_kwh + _interp_energy(data.import_prefix_kwh, k, frac)
            exp = totals.export_kwh + _interp_energy(data.export_prefix_kwh, k, frac)
            grid_v, grid_hz = self._grid(t)
            flash = self._flash_avail_kib(t)
            backlog = self._untransmitted(t)
        return SiteState(
            data_time=t,
            inverters=tuple(inverters),
            production_kw=production * _METER_GAIN,
            production_kwh=production_kwh * _METER_GAIN,
            load_kw=load,
            load_kwh=totals.load_kwh + load_e,
            import_kwh=imp,
            export_kwh=exp,
            grid_v=grid_v,
            grid_hz=grid_hz,
            ambient_c=self.ambient_c(t),
            build=self.build_at(t),
            last_boot=self.last_boot(t),
            flash_avail_kib=flash,
            untransmitted=backlog,
            cpu_load=0.2 + 0.6 * _hash_unit(self.spec.seed, 12, int(ts // 300)),
            mem_used_kib=78000.0 + 6000.0 * _hash_unit(self.spec.seed, 13, int(ts // 300)),
        )

    def _last_production(
        self, i: int, day: int, data: _Day, k: int, frac: float, ts: float
    ) -> datetime | None:
        """When inverter `i` last produced at or before `ts` (looks back up to 60 days)."""
        if data.inv_kw[i][k] > 0.0 and (frac == 0.0 or data.inv_kw[i][k + 1] > 0.0):
            return _utc(ts)
        last = data.inv_last_prod[i][k]
        if last >= 0:
            return _utc(day * 86400.0 + last * STEP_S)
        for back in range(1, 61):
            prev = self._day(day - back)
            last = prev.inv_last_prod[i][_STEPS]
            if last >= 0:
                return _utc((day - back) * 86400.0 + last * STEP_S)
        return None

    def _flash_avail_kib(self, t: datetime) -> float:
        normal = 58000.0 + 2000.0 * _hash_unit(self.spec.seed, 14, int(_ts(t) // 3600))
        for f in self._active(FlashLow, t):
            assert isinstance(f, FlashLow)
            start = f.start or self.spec.epoch
            done = min(1.0, (t - start).total_seconds() / 3600.0 / max(f.ramp_h, 1e-9))
            normal = min(normal, normal + (f.flash_avail_kib - normal) * done)
        return normal

    def flash_wear_tenths(self, t: datetime) -> int:
        """The eMMC's life used at `t`, in tenths (what flashwear_type_b reports)."""
        worn = [f.tenths for f in self._active(FlashWorn, t) if isinstance(f, FlashWorn)]
        return max([max(0, self.spec.flash_wear_pct) // 10, *worn])

    def _untransmitted(self, t: datetime) -> int:
        backlog = 0.0
        for f in self._active(UploadBacklog, t):
            assert isinstance(f, UploadBacklog)
            start = f.start or self.spec.epoch
            backlog += f.records_per_hour * (t - start).total_seconds() / 3600.0
        return int(backlog)

    # ---------------------------------------------------------------- convenience

    def inverter_power_kw(self, t: datetime) -> dict[str, float]:
        """Truth for tests: AC power (kW) of every inverter at `t`, by serial."""
        return {inv.serial: inv.power_kw for inv in self.state(t).inverters}

    def device_list(self, t: datetime) -> dict[str, object]:
        """The legacy `Command=DeviceList` answer at `t`, in the real PVS shape."""
        return _render_device_list(self, self.state(t), t)

    def supervisor_info(self, t: datetime) -> dict[str, object]:
        """The `/cgi-bin/dl_cgi/supervisor/info` answer at `t`."""
        return _render_supervisor_info(self, self.build_at(t))

    def vars(self, t: datetime) -> dict[str, str]:
        """Every varserver variable at `t`, flat `{name: string value}`."""
        return _render_vars(self, self.state(t), t)


# --------------------------------------------------------------------------- helpers


def _prefix(row: Sequence[float]) -> tuple[float, ...]:
    """Trapezoid running integral (kWh) of a kW series sampled every STEP_S."""
    out = [0.0] * len(row)
    acc = 0.0
    for k in range(1, len(row)):
        acc += (row[k - 1] + row[k]) * 0.5 * _STEP_H
        out[k] = acc
    return tuple(out)


def _last_positive(row: Iterable[float]) -> tuple[int, ...]:
    out = []
    last = -1
    for k, p in enumerate(row):
        if p > 0.0:
            last = k
        out.append(last)
    return tuple(out)


def _interp(
    kw: Sequence[float], prefix: Sequence[float], k: int, frac: float
) -> tuple[float, float]:
    """(power at k+frac, energy from day start to k+frac): exact for linear power."""
    p0 = kw[k]
    p = p0 + (kw[k + 1] - p0) * frac
    return p, prefix[k] + (p0 + p) * 0.5 * frac * _STEP_H


def _interp_energy(prefix: Sequence[float], k: int, frac: float) -> float:
    """Energy from day start to k+frac for a series where only the prefix is kept."""
    return prefix[k] + (prefix[k + 1] - prefix[k]) * frac


# --------------------------------------------------------------------------- rendering
# The PVS's own spellings: every value a string, except ISDETAIL (bool), panid and slave.


def _num(x: float, digits: int = 4) -> str:
    """A PVS-style number string: fixed digits, trailing zeros stripped ("0.28", "60")."""
    text = f"{x:.{digits}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def pvs_time(t: datetime) -> str:
    """ "YYYY,MM,DD,HH,MM,SS" in UTC, the DeviceList DATATIME/CURTIME format."""
    return t.astimezone(UTC).strftime("%Y,%m,%d,%H,%M,%S")


def iso_utc(t: datetime) -> str:
    """ "2025-06-28T04:10:00Z", the varserver msmtEps format."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _floor(t: datetime, seconds: int) -> datetime:
    ts = _ts(t)
    return _utc(ts - ts % seconds)


def _jitter_s(site: SimulatedSite, i: int, t: datetime) -> float:
    """How long ago (s) inverter `i` last reported: inverters report every ~15 s."""
    return 1.0 + 58.0 * _hash_unit(site.spec.seed, 15, i, int(_ts(t) // 60))


@dataclass(frozen=True)
class _MeterValues:
    """One meter's readings at an instant (kW, kWh, V, A)."""

    power_kw: float
    net_kwh: float
    pos_kwh: float
    neg_kwh: float
    reactive_kvar: float


def _meters(site: SimulatedSite, st: SiteState) -> tuple[_MeterValues, _MeterValues | None]:
    """(production, consumption-or-None) readings, per the site's meter subtypes."""
    pv_any = any(inv.power_kw > 0 for inv in st.inverters)
    prod_kw = st.production_kw if pv_any else -_NIGHT_DRAW_KW
    if site._active(ProductionTripped, st.data_time):
        prod_kw = 0.0
    if not pv_any and any(isinstance(f, SnowCover) and f.meter_zero
                          for f in site._active(SnowCover, st.data_time)):
        prod_kw = 0.0
    prod = _MeterValues(prod_kw, st.production_kwh, st.production_kwh, 0.0, 0.4 if pv_any else 0.44)
    sub = site.spec.consumption_subtype
    if sub is None:
        return prod, None
    if sub == "NET_CONSUMPTION_LOADSIDE":
        cons = _MeterValues(
            st.load_kw - st.production_kw,
            st.import_kwh - st.export_kwh,
            st.import_kwh,
            st.export_kwh,
            0.3 + 0.2 * st.load_kw,
        )
    else:
        cons = _MeterValues(
            st.load_kw, st.load_kwh, st.load_kwh + 2.91, 2.91, 0.03 + 0.1 * st.load_kw
        )
    return prod, cons


def _pq(m: _MeterValues) -> tuple[float, float]:
    """(apparent kVA, power factor) from real and reactive power."""
    s = math.hypot(m.power_kw, m.reactive_kvar)
    return s, (m.power_kw / s if s > 0 else 0.0)


def _hidden_after_reboot(site: SimulatedSite, t: datetime) -> bool:
    """True while a PvsReboot's `missing_s` window hides every inverter from DeviceList."""
    return any(
        isinstance(f, PvsReboot)
        and f.start is not None
        and f.start <= t < f.start + timedelta(seconds=f.missing_s)
        for f in site.faults
    )


def _supervisor_entry(site: SimulatedSite, st: SiteState, curtime: str) -> dict[str, object]:
    uptime_s = max(0.0, (st.data_time - st.last_boot).total_seconds())
    return {
        "DETAIL": "detail",
        "STATE": "working",
        "STATEDESCR": "Working",
        "SERIAL": site.supervisor_serial,
        "MODEL": "PV Supervisor PVS6",
        "HWVER": "6.02",
        "SWVER": firmware_names(st.build)[0],
        "DEVICE_TYPE": "PVS",
        "DATATIME": pvs_time(_floor(st.data_time, 300)),
        "dl_err_count": "0",
        "dl_comm_err": str(int(uptime_s // 600)),
        "dl_skipped_scans": "0",
        "dl_scan_time": str(2 * site.spec.inverter_count),
        "dl_untransmitted": str(st.untransmitted),
        "dl_uptime": str(int(uptime_s)),
        "dl_cpu_load": _num(st.cpu_load, 2),
        "dl_mem_used": str(int(st.mem_used_kib)),
        "dl_flash_avail": str(int(st.flash_avail_kib)),
        "panid": 260000000 + int(_hash_unit(site.spec.seed, 16) * 1e6),
        "CURTIME": curtime,
    }


def _meter_entry(
    site: SimulatedSite, st: SiteState, m: _MeterValues, kind: str, curtime: str
) -> dict[str, object]:
    production = kind == "p"
    serial = site.production_meter_serial if production else site.consumption_meter_serial
    subtype = "GROSS_PRODUCTION_SITE" if production else str(site.spec.consumption_subtype)
    s_kva, pf = _pq(m)
    ct_a = 50 if production else 100
    out: dict[str, object] = {
        "ISDETAIL": True,
        "SERIAL": serial,
        "TYPE": "PVS5-METER-P" if production else "PVS5-METER-C",
        "STATE": "working",
        "STATEDESCR": "Working",
        "MODEL": f"PVS6M0400{kind}",
        "DESCR": f"Power Meter {serial}",
        "DEVICE_TYPE": "Power Meter",
        "interface": "mime",
        ("production_subtype_enum" if production else "consumption_subtype_enum"): subtype,
        "subtype": subtype,
        "SWVER": "3000",
        "PORT": "",
        "DATATIME": pvs_time(_floor(st.data_time, 15)),
        "ct_scl_fctr": str(ct_a),
        "net_ltea_3phsum_kwh": _num(m.net_kwh, 4),
        "p_3phsum_kw": _num(m.power_kw, 4),
        "q_3phsum_kvar": _num(m.reactive_kvar, 4),
        "s_3phsum_kva": _num(s_kva, 4),
        "tot_pf_rto": _num(pf, 4),
        "freq_hz": _num(st.grid_hz, 4),
    }
    if production:
        out["i_a"] = _num(s_kva * 1000.0 / st.grid_v, 4)
        out["v12_v"] = _num(st.grid_v, 4)
    else:
        out.update(_legs(st, m, s_kva, "legacy"))
        out["neg_ltea_3phsum_kwh"] = _num(m.neg_kwh, 4)
        out["pos_ltea_3phsum_kwh"] = _num(m.pos_kwh, 4)
    out.update(
        {"CAL0": str(ct_a), "origin": "data_logger", "OPERATION": "noop", "CURTIME": curtime}
    )
    return out


def _legs(st: SiteState, m: _MeterValues, s_kva: float, style: str) -> dict[str, str]:
    """Split-phase leg readings of the consumption meter (legacy or varserver names)."""
    v1 = st.grid_v / 2.0 + 0.3
    v2 = st.grid_v - v1
    p1 = m.power_kw * 0.58
    p2 = m.power_kw - p1
    i1 = s_kva * 0.58 * 1000.0 / v1
    i2 = s_kva * 0.42 * 1000.0 / v2
    if style == "legacy":
        names = ("i1_a", "i2_a", "v1n_v", "v2n_v", "v12_v", "p1_kw", "p2_kw")
        return dict(
            zip(names, (_num(x, 4) for x in (i1, i2, v1, v2, st.grid_v, p1, p2)), strict=True)
        )
    names = ("i1A", "i2A", "v1nV", "v2nV", "p1Kw", "p2Kw")
    return dict(zip(names, (_num(x, 6) for x in (i1, i2, v1, v2, p1, p2)), strict=True))


@dataclass(frozen=True)
class _InverterReading:
    """What an inverter reports at an instant: None metrics = no metric keys at all."""

    working: bool
    report_time: datetime | None
    power_kw: float
    lifetime_kwh: float
    ac_v: float
    ac_a: float
    dc_kw: float
    dc_v: float
    dc_a: float
    heatsink_c: float
    has_metrics: bool


def _inverter_reading(site: SimulatedSite, st: SiteState, inv: InverterState) -> _InverterReading:
    working = inv.working
    if working:
        report = st.data_time - timedelta(seconds=_jitter_s(site, inv.index, st.data_time))
    else:
        report = inv.last_production
    p = inv.power_kw if not inv.dead else 0.0
    dc_kw = p / 0.965 if p > 0 else 0.0
    dc_v = (57.5 - 0.12 * st.ambient_c) if p > 0 else 0.0
    ac_v = st.grid_v + 1.0 + 2.0 * _hash_unit(site.spec.seed, 17, inv.index)
    return _InverterReading(
        working=working,
        report_time=report,
        power_kw=p,
        lifetime_kwh=inv.lifetime_kwh,
        ac_v=ac_v,
        ac_a=p * 1000.0 / ac_v,
        dc_kw=dc_kw,
        dc_v=dc_v,
        dc_a=dc_kw * 1000.0 / dc_v if dc_v > 0 else 0.0,
        heatsink_c=st.ambient_c + 45.0 * p / site.spec.panel_kw,
        has_metrics=working or inv.reports_metrics_at_night,
    )


def _inverter_entry(
    site: SimulatedSite, st: SiteState, inv: InverterState, curtime: str
) -> dict[str, object]:
    r = _inverter_reading(site, st, inv)
    out: dict[str, object] = {
        "ISDETAIL": True,
        "SERIAL": inv.serial,
        "TYPE": "SOLARBRIDGE",
        "STATE": "working" if r.working else "error",
        "STATEDESCR": "Working" if r.working else "Error",
        "MODEL": "AC_Module_Type_E",
        "DESCR": f"Inverter {inv.serial}",
        "DEVICE_TYPE": "Inverter",
        "hw_version": "4405",
        "interface": "mime",
        "PANEL": "SPR-X22-360-E-AC",
        "slave": 0,
        "SWVER": "4.21.3",
        "PORT": "",
        "MOD_SN": "",
        "NMPLT_SKU": "",
    }
    if r.has_metrics and r.report_time is not None:
        out.update(
            {
                "DATATIME": pvs_time(r.report_time),
                "ltea_3phsum_kwh": _num(r.lifetime_kwh, 4),
                "p_3phsum_kw": _num(r.power_kw, 4),
                "vln_3phavg_v": _num(r.ac_v, 2),
                "i_3phsum_a": _num(r.ac_a, 2),
                "p_mppt1_kw": _num(r.dc_kw, 4),
                "v_mppt1_v": _num(r.dc_v, 2),
                "i_mppt1_a": _num(r.dc_a, 2),
                "t_htsnk_degc": _num(r.heatsink_c, 0),
                "freq_hz": _num(st.grid_hz, 2),
                "stat_ind": "0",
            }
        )
    out.update({"origin": "data_logger", "OPERATION": "noop", "CURTIME": curtime})
    return out


def _render_device_list(site: SimulatedSite, st: SiteState, t: datetime) -> dict[str, object]:
    curtime = pvs_time(t)
    devices: list[dict[str, object]] = [_supervisor_entry(site, st, curtime)]
    prod, cons = _meters(site, st)
    if site.spec.production_meter:
        devices.append(_meter_entry(site, st, prod, "p", curtime))
    if cons is not None:
        devices.append(_meter_entry(site, st, cons, "c", curtime))
    if not _hidden_after_reboot(site, st.data_time):
        devices.extend(
            _inverter_entry(site, st, inv, curtime) for inv in st.inverters if not inv.missing
        )
    return {"devices": devices, "result": "succeed"}


def _render_supervisor_info(site: SimulatedSite, build: int) -> dict[str, object]:
    sup: dict[str, object] = {
        "SWVER": firmware_names(build)[0],
        "SERIAL": site.supervisor_serial,
        "MODEL": site.spec.model,
    }
    if site.spec.model == "PVS6":  # a PVS5 has no BUILD: its build is only in SWVER
        sup["BUILD"] = build
    return {
        "result": "succeed",
        "supervisor": {
            **sup,
            "FWVER": "1.0.0",
            "SCVER": 1630652920,
            "EASICVER": 131329,
            "SCBUILD": 1188,
            "WNSERIAL": 16,
            "WNMODEL": 400,
            "WNVER": 3000,
        },
    }


@functools.cache
def _varlist(model: str) -> tuple[dict[str, str], ...]:
    """The rows of pypvs's public varserver list for `model` (varlists/SOURCES.md)."""
    name = f"varserver-variables-public-{model.lower()}.csv"
    text = resources.files("solar_monitor.emulation").joinpath("varlists", name).read_text()
    return tuple(csv.DictReader(text.splitlines()))


@functools.cache
def public_variables(model: str) -> dict[str, str]:
    """{name: type} of pypvs's public varserver list for `model` (PVS6|PVS5); device
    names keep their `{index}` placeholder. Copied into the package: varlists/SOURCES.md."""
    return {row["name"]: row["type"] for row in _varlist(model)}


@functools.cache
def writable_variables(model: str) -> frozenset[str]:
    """The names ssm_owner may write with `set=` on `model` (the list's write column)."""
    rows = _varlist(model)
    return frozenset(row["name"] for row in rows if "ssm_owner" in row["write"].split(","))


def _float32(x: float) -> str:
    """How the varserver prints a float variable: float32, then C's `%f` ("60.009998")."""
    return f"{struct.unpack('<f', struct.pack('<f', x))[0]:f}"


def _typed(value: float | int | str, kind: str) -> str:
    """A value as the varserver prints a variable of type `kind` (csv's type column)."""
    if isinstance(value, str):
        return value
    if kind == "float":
        return _float32(float(value))
    if kind.startswith(("int", "uint")):
        return str(int(round(value)))
    return str(value)


def _render_vars(site: SimulatedSite, st: SiteState, t: datetime) -> dict[str, str]:
    """Every variable of the model's public list that this site has, typed like the real
    varserver. Battery (ess, livedata soc/ess_*) and transfer-switch names are left out:
    the simulated site has neither."""
    types = public_variables(site.spec.model)
    uptime_s = max(0.0, (st.data_time - st.last_boot).total_seconds())
    lmac = "00:22:F2:" + ":".join(
        f"{int(_hash_unit(site.spec.seed, 18, j) * 256):02X}" for j in range(3))
    serial = site.supervisor_serial
    raw: dict[str, float | int | str] = {
        "/sys/info/serialnum": serial,
        "/sys/info/sw_rev": firmware_names(st.build)[1],
        "/sys/info/fwrev": " Major 2, Revision 0x00000001, Build 3",
        "/sys/info/model": site.spec.model,
        "/sys/info/hwrev": "6.02" if site.spec.model == "PVS6" else "5.01",
        "/sys/info/boardtype": "800-02473" if site.spec.model == "PVS6" else "800-01856",
        "/sys/info/sys_type": "PV-only",
        "/sys/info/finance_type": "UNKNOWN",
        "/sys/info/ssid": f"SunPower{serial[4:6]}{serial[-3:]}",
        "/sys/info/wpa_key": f"Wk{int(_hash_unit(site.spec.seed, 19) * 2**32):08x}",
        "/sys/info/lmac": lmac,
        "/sys/info/active_interface": "wan0",
        "/sys/info/active_interface_mac": lmac,
        "/sys/info/uptime": f"{uptime_s:.2f}",  # a str variable with two decimals
        "/sys/info/cpu_usage": int(st.cpu_load * 100 / 4),
        "/sys/info/ram_usage": int(st.mem_used_kib * 100 / 262144),
        "/sys/info/flash_usage": int(100 * (1 - st.flash_avail_kib / _FLASH_TOTAL_KIB)),
        # hex tenths of wear: 0x03 = 30 %
        "/sys/pvs/flashwear_type_b": f"0x{site.flash_wear_tenths(t):02x}",
        "/sys/pvs/usb_erase_count": 0,
        "/sys/telemetryws/enable": 1,
        "/sys/toggle_cell/broadband_connected": 1,
        "/sys/toggle_cell/cell_connected": 0,
        "/sys/toggle_cell/low_data_mode": 0,
        "/metrics/network/interface_report_request": 0,
        "/network/report/send": 0,
        "/ess/config/dcm/control_param/min_customer_soc": 0.30,
        "/ess/config/dcm/mode_param/control_mode": "STANDBY",
    }
    for net in ("sta0", "wan0", "wan1", "wwan0", "wan", "cell", "plc"):
        raw[f"/net/{net}/state"] = "up" if net in ("wan0", "wan") else "down"
    prod, cons = _meters(site, st)
    meter_time = iso_utc(_floor(st.data_time, 15))
    meters = [("p", prod)] if site.spec.production_meter else []
    if cons is not None:
        meters.append(("c", cons))
    model = site.spec.model
    for idx, (kind, m) in enumerate(meters):
        s_kva, pf = _pq(m)
        fields: dict[str, float | int | str] = {
            "sn": site.production_meter_serial if kind == "p" else site.consumption_meter_serial,
            "prodMdlNm": f"{model}M0400{kind}",
            "msmtEps": meter_time,
            "p3phsumKw": m.power_kw,
            "netLtea3phsumKwh": m.net_kwh,
            "posLtea3phsumKwh": m.pos_kwh,
            "negLtea3phsumKwh": m.neg_kwh,
            "q3phsumKvar": m.reactive_kvar,
            "s3phsumKva": s_kva,
            "totPfRto": pf,
            "freqHz": st.grid_hz,
            "ctSclFctr": 50 if kind == "p" else 100,
            "v12V": st.grid_v,
        }
        if kind == "c":
            fields.update({k: float(v) for k, v in _legs(st, m, s_kva, "varserver").items()})
        raw.update({f"/sys/devices/meter/{idx}/{k}": v for k, v in fields.items()})
    idx = 0
    for inv in st.inverters:
        # After a restart the varserver only knows inverters that reported since.
        if inv.missing or inv.last_production is None or inv.last_production < st.last_boot:
            continue
        r = _inverter_reading(site, st, inv)
        fields = {
            "sn": inv.serial,
            "prodMdlNm": "AC_Module_Type_E",
            "msmtEps": iso_utc(r.report_time or st.data_time),
            "p3phsumKw": r.power_kw,
            "ltea3phsumKwh": r.lifetime_kwh,
            "pMppt1Kw": r.dc_kw,
            "vMppt1V": r.dc_v,
            "iMppt1A": r.dc_a,
            "vln3phavgV": r.ac_v,
            "i3phsumA": r.ac_a,
            "freqHz": st.grid_hz,
            "tHtsnkDegc": r.heatsink_c,
        }
        raw.update({f"/sys/devices/inverter/{idx}/{k}": v for k, v in fields.items()})
        idx += 1
    data_ts = _ts(st.data_time)
    raw["/sys/livedata/time"] = int(data_ts * 1000) if site.spec.livedata_time_ms else int(data_ts)
    raw["/sys/livedata/pv_p"] = prod.power_kw
    raw["/sys/livedata/pv_en"] = st.production_kwh
    if cons is not None:
        raw.update({
            "/sys/livedata/net_p": st.load_kw - st.production_kw,
            "/sys/livedata/net_en": st.import_kwh - st.export_kwh,
            "/sys/livedata/site_load_p": st.load_kw,
            "/sys/livedata/site_load_en": st.load_kwh,
        })
    out: dict[str, str] = {}
    for name, value in raw.items():
        kind = types.get(_INDEX.sub("/{index}/", name, count=1))
        if kind is not None:  # only the model's public names (no /sys/pvs/ on a PVS5)
            out[name] = _typed(value, kind)
    return out


_INDEX = re.compile(r"/\d+/")
