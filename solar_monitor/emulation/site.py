"""A simulated site: its state at any instant, with energy integrated and faults applied.

- power is sampled on a 5-minute grid and linearly interpolated between samples, so
  every lifetime kWh counter is the exact integral of the power the site reports:
  monotonic, consistent across calls, and computable at any t from per-day cached
  integrals (a simulated year costs ~365 day integrations, not one per poll);
- power is scaled by each panel's kW rating and clipped at the AC rating; a household
  load, 240 V split phase near nominal, 60 Hz, and supervisor health counters.

The answer formats live in one module each: `devicelist` (legacy), `supervisor_info`,
`varserver` (LocalAPI /vars).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from solar_monitor.emulation.devicelist import _render_device_list
from solar_monitor.emulation.faults import (
    _ENERGY_FAULTS,
    CommDropout,
    DataStale,
    DeadInverter,
    DropoutMode,
    FirmwareChange,
    FlappingInverter,
    FlashLow,
    FlashWorn,
    GridOutOfRange,
    InverterRef,
    MissingInverter,
    PowerLineDropouts,
    ProductionTripped,
    PvsReboot,
    ShadedInverters,
    SiteFault,
    SnowCover,
    StaleInverter,
    UploadBacklog,
    WeakInverter,
)
from solar_monitor.emulation.sky import Sky, _hash_unit, _ts, _utc
from solar_monitor.emulation.spec import SiteSpec
from solar_monitor.emulation.supervisor_info import _render_supervisor_info
from solar_monitor.emulation.varserver import _render_vars

_LineEvent = tuple[float, float, tuple[int, ...], DropoutMode]
STEP_S = 300  # power grid resolution: 5 minutes
_STEPS = 86400 // STEP_S
_STEP_H = STEP_S / 3600.0
_WORKING_MIN_KW = 0.005  # below this an inverter reports STATE "error" (dawn, dusk, night)
_START_MIN_KW = 0.002  # below this an inverter does not produce at all
_METER_GAIN = 0.995  # the production meter reads a little under the inverters' sum
_GRID_V_LIMITS = (211.0, 264.0)  # IEEE 1547 trip limits, 240 V split phase
_GRID_HZ_LIMITS = (59.3, 60.5)


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
    frozen_at: datetime | None = None  # the PVS shows its values of this instant (stale)
    kept: bool = False  # the varserver lists it even before it reports after a restart

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


class SimulatedSite(Sky):
    """A deterministic PVS site. Thread-safe: the emulator calls it from many threads."""

    def __init__(self, spec: SiteSpec | None = None) -> None:
        self.spec = spec or SiteSpec()
        self._faults: list[SiteFault] = list(self.spec.faults)
        self._tz = ZoneInfo(self.spec.timezone)
        self._lock = threading.RLock()
        seed = self.spec.seed
        self.supervisor_serial = (
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
        self._first_prod: dict[tuple[int, datetime], datetime] = {}
        self._line_memo: dict[tuple[PowerLineDropouts, int], tuple[_LineEvent, ...]] = {}
        self.frozen_readings: dict[tuple[int, datetime], object] = {}  # readings.py's memo

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

    # ---------------------------------------------------------------- physics

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
            comm = self._comm_lost(t)
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
                        missing=self._inverter_faulted(MissingInverter, i, t) is not None
                        or (i in comm and comm[i][0] == "absent"),
                        reports_metrics_at_night=i not in self._no_night_metrics,
                        frozen_at=self._frozen_at(i, t, day, data, k, frac, ts, comm),
                        kept=self._inverter_faulted(StaleInverter, i, t) is not None,
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

    def _frozen_at(self, i: int, t: datetime, day: int, data: _Day, k: int, frac: float,
                   ts: float, comm: dict[int, tuple[DropoutMode, float]]) -> datetime | None:
        """The instant whose values the PVS still shows for inverter `i` (None: live): a
        stale dropout's start, or a StaleInverter's last production."""
        if i in comm and comm[i][0] == "stale":
            return _utc(comm[i][1])
        if self._inverter_faulted(StaleInverter, i, t) is not None:
            return self._last_production(i, day, data, k, frac, ts)
        return None

    def _comm_lost(self, t: datetime) -> dict[int, tuple[DropoutMode, float]]:
        """{inverter: (mode, since epoch s)} for inverters whose power-line communication is
        down at `t` (CommDropout, PowerLineDropouts, FlappingInverter); absent wins."""
        out: dict[int, tuple[DropoutMode, float]] = {}
        ts = _ts(t)

        def lose(i: int | None, mode: DropoutMode, since: float) -> None:
            if i is None:
                return
            old = out.get(i)
            if old is None or (mode == "absent" and old[0] == "stale") or \
                    (mode == old[0] and since < old[1]):
                out[i] = (mode, since)

        for f in self._faults:
            if not f.active(t):
                continue
            if isinstance(f, CommDropout):
                for ref in f.inverters:
                    lose(self._index(ref), f.mode, _ts(f.start) if f.start else ts)
            elif isinstance(f, PowerLineDropouts):
                day = int(ts // 86400)
                for d in (day - 1, day):
                    for a, b, invs, mode in self._line_events(f, d):
                        if a <= ts < b:
                            for i in invs:
                                lose(i, mode, a)
            elif isinstance(f, FlappingInverter):
                span = self._flap(f, int(ts // 3600))
                if span[0] <= ts < span[1]:
                    lose(self._index(f.inverter), span[2], span[0])
        return out

    def _line_events(self, f: PowerLineDropouts, day: int) -> tuple[_LineEvent, ...]:
        """The dropouts of UTC day `day`: (start, end epoch s, inverters, mode), seeded."""
        memo = self._line_memo.get((f, day))
        if memo is not None:
            return memo
        n, seed = self.spec.inverter_count, self.spec.seed
        count = int(f.per_day) + (_hash_unit(seed, 40, f.salt, day) < f.per_day % 1)
        slots = 86400 // f.poll_s
        out: list[_LineEvent] = []
        for j in range(count if n else 0):
            def h(x: int, j: int = j) -> float:
                return _hash_unit(seed, 41, f.salt, day, j, x)
            start = day * 86400.0 + int(h(0) * slots) * f.poll_s - 60.0
            polls = 1 + int(h(1) * f.max_polls)
            picked = sorted(range(n), key=lambda i, j=j: _hash_unit(seed, 42, f.salt, day, j, i))
            invs = tuple(sorted(picked[: min(n, 1 + int(h(2) * f.max_inverters))]))
            mode: DropoutMode = "stale" if h(3) < f.stale_share else "absent"
            out.append((start, start + polls * f.poll_s, invs, mode))
        if len(self._line_memo) > 64:
            self._line_memo.clear()
        self._line_memo[(f, day)] = tuple(out)
        return self._line_memo[(f, day)]

    def _flap(self, f: FlappingInverter, hour: int) -> tuple[float, float, DropoutMode]:
        """The flapping inverter's dropout in UTC hour `hour`: 1..max_polls polls, never the
        hour's first poll, so it reports at least once an hour (start, end epoch s, mode)."""
        seed = self.spec.seed
        per_hour = max(2, 3600 // f.poll_s)
        polls = 1 + int(_hash_unit(seed, 43, f.salt, hour) * min(f.max_polls, per_hour - 1))
        offset = 1 + int(_hash_unit(seed, 44, f.salt, hour) * (per_hour - polls))
        start = hour * 3600.0 + offset * f.poll_s - 60.0
        mode: DropoutMode = "stale" if _hash_unit(seed, 45, f.salt, hour) < f.stale_share \
            else "absent"
        return start, start + polls * f.poll_s, mode

    def first_report(self, i: int, boot: datetime) -> datetime | None:
        """When inverter `i` first reports after the restart at `boot`: its first production
        (5-minute grid) plus a seeded dawn lag of up to `spec.dawn_lag_max_s`; None when
        it has not produced within two days."""
        key = (i, boot)
        with self._lock:
            if key in self._first_prod:
                return self._first_prod[key]
            ts = _ts(boot)
            day = int(ts // 86400)
            found = None
            for d in (day, day + 1, day + 2):
                row = self._day(d).inv_kw[i]
                k0 = max(0, math.ceil((ts - d * 86400.0) / STEP_S))
                k = next((k for k in range(k0, _STEPS + 1) if row[k] > 0.0), None)
                if k is not None:
                    found = _utc(d * 86400.0 + k * STEP_S)
                    break
            if found is None:
                return None
            lag = self.spec.dawn_lag_max_s * _hash_unit(self.spec.seed, 21, i, day)
            found += timedelta(seconds=lag)
            if len(self._first_prod) > 4096:
                self._first_prod.clear()
            self._first_prod[key] = found
            return found

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
