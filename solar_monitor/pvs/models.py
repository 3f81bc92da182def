"""Typed snapshot of one PVS reading: the data type every pipeline stage shares.

Units are in the field names (`_kw`, `_kwh`, `_v`, `_a`, `_hz`, `_c`, `_s`, `_kib`, `_pct`).
Battery power follows the PVS's livedata `ess_p`: positive while the battery discharges
(it feeds the house), negative while it charges.
Times are aware UTC datetimes. A metric the PVS did not send is None, never 0.
Fields the parser does not map are kept in `extra`, so new firmware loses nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

Api = Literal["legacy", "varserver"]
MeterKind = Literal["production", "consumption", "unknown"]

# An inverter counts as producing at or above this AC power. Night-time draw and
# rounding noise sit well below it; a shaded panel at dawn sits just above it.
PRODUCING_MIN_KW = 0.005
# A device's values measured longer ago than this before the poll (two 15-minute polls)
# are not current: new firmware keeps a silent inverter's last power for days.
STALE_AFTER_S = 30 * 60


def _stale(age_s: float | None) -> bool:
    return age_s is not None and age_s > STALE_AFTER_S


@dataclass(frozen=True, slots=True)
class Supervisor:
    """The PVS itself: identity and health counters."""

    serial: str | None = None
    model: str | None = None
    firmware: str | None = None
    build: int | None = None
    hardware: str | None = None
    state: str | None = None
    data_time: datetime | None = None
    uptime_s: float | None = None
    cpu_load: float | None = None  # legacy dl_cpu_load: the load average (no unit)
    mem_used_kib: float | None = None
    flash_avail_kib: float | None = None
    flash_used_pct: float | None = None
    untransmitted: float | None = None
    err_count: float | None = None
    comm_err: float | None = None
    skipped_scans: float | None = None
    scan_time_s: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    # varserver only: /sys/info/cpu_usage, a percentage, never mixed with the load average
    cpu_usage_pct: float | None = None
    # share of the eMMC's rated life used (/sys/pvs/flashwear_type_b, in steps of 10 %)
    flash_wear_pct: float | None = None


@dataclass(frozen=True, slots=True)
class Meter:
    """A PVS power meter (production `...p` or consumption `...c`)."""

    serial: str
    kind: MeterKind
    subtype: str | None = None
    model: str | None = None
    state: str | None = None
    data_time: datetime | None = None
    power_kw: float | None = None
    reactive_kvar: float | None = None
    apparent_kva: float | None = None
    power_factor: float | None = None
    freq_hz: float | None = None
    lifetime_net_kwh: float | None = None
    lifetime_pos_kwh: float | None = None
    lifetime_neg_kwh: float | None = None
    ct_scale_a: float | None = None
    current_a: float | None = None
    voltage_v: float | None = None
    leg1_v: float | None = None
    leg2_v: float | None = None
    leg1_a: float | None = None
    leg2_a: float | None = None
    leg1_kw: float | None = None
    leg2_kw: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    # seconds from its own measurement time (`data_time`) to the poll; None if unknown
    age_s: float | None = None

    @property
    def stale(self) -> bool:
        """True when its values are older than STALE_AFTER_S: not current power."""
        return _stale(self.age_s)

    @property
    def measures_net_grid(self) -> bool:
        """True for a load-side consumption meter, whose power is net grid flow (+ import)."""
        return self.kind == "consumption" and (self.subtype or "").startswith("NET")


@dataclass(frozen=True, slots=True)
class Inverter:
    """One microinverter (one per panel)."""

    serial: str
    state: str | None = None
    state_derived: bool = False
    model: str | None = None
    panel: str | None = None
    firmware: str | None = None
    data_time: datetime | None = None
    power_kw: float | None = None
    lifetime_kwh: float | None = None
    ac_voltage_v: float | None = None
    ac_current_a: float | None = None
    freq_hz: float | None = None
    heatsink_c: float | None = None
    dc_voltage_v: float | None = None
    dc_current_a: float | None = None
    dc_power_kw: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    # seconds from its own measurement time (`data_time`) to the poll; None if unknown
    age_s: float | None = None

    @property
    def stale(self) -> bool:
        """True when its values are older than STALE_AFTER_S: not current power."""
        return _stale(self.age_s)

    @property
    def live_power_kw(self) -> float | None:
        """AC power (kW) to count as production now: 0 for a stale value (what it
        claims is not current power), None when it sent none."""
        if self.power_kw is None:
            return None
        return 0.0 if self.stale else self.power_kw

    @property
    def producing(self) -> bool:
        """True when the inverter is delivering real AC power right now."""
        return (
            self.state != "error"
            and not self.stale
            and self.power_kw is not None
            and self.power_kw >= PRODUCING_MIN_KW
        )


@dataclass(frozen=True, slots=True)
class Battery:
    """A SunVault storage device: the ESS (varserver `ess`, DeviceList "Energy Storage
    System"), its BMS, a battery module or the storage inverter.

    `power_kw` is + while discharging, - while charging. `state` is the DeviceList STATE
    ("working"/"error"); `op_mode` is varserver's operating mode (e.g. "SELF_CONSUMPTION").
    """

    device_type: str
    serial: str | None
    model: str | None = None
    state: str | None = None
    op_mode: str | None = None
    data_time: datetime | None = None
    soc_pct: float | None = None
    customer_soc_pct: float | None = None
    soh_pct: float | None = None
    power_kw: float | None = None
    battery_v: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Device:
    """Any other device (gateway, PV disconnect, ...), kept exactly as reported."""

    device_type: str
    serial: str | None
    state: str | None
    fields: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Totals:
    """Site-level figures derived from the meters, or from the inverters without one."""

    production_kw: float | None
    consumption_kw: float | None
    net_grid_kw: float | None
    lifetime_production_kwh: float | None
    inverters_total: int
    inverters_producing: int
    battery_kw: float | None = None  # + discharging, - charging; None without a battery
    battery_soc_pct: float | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One parsed PVS answer.

    `polled_at` is when the collector asked (from the archive name when known, else the
    PVS clock); `pvs_time` is the PVS's own CURTIME, kept as a sanity check on our clock.
    """

    polled_at: datetime | None
    api: Api
    source: str
    firmware: str | None = None
    build: int | None = None
    pvs_time: datetime | None = None
    supervisor: Supervisor | None = None
    meters: tuple[Meter, ...] = ()
    inverters: tuple[Inverter, ...] = ()
    other: tuple[Device, ...] = ()
    livedata: Mapping[str, Any] = field(default_factory=dict)
    batteries: tuple[Battery, ...] = ()
    warnings: tuple[str, ...] = ()  # what was read around (a variable printed unescaped)

    def meter(self, kind: MeterKind) -> Meter | None:
        """The first meter of that kind, or None."""
        return next((m for m in self.meters if m.kind == kind), None)


def _net_grid_meter(meter: Meter) -> bool:
    """Whether a consumption meter's power is net grid flow rather than gross house load.

    Old firmware sends no subtype; the usual metering kit is load side (net), and a
    negative reading (export) could only come from a net meter, so net is assumed.
    """
    subtype = (meter.subtype or "").upper()
    return not subtype.startswith("GROSS")


# Which storage devices carry the site's battery power, most trusted first: summing every
# device would count the ESS and its storage inverter twice.
BATTERY_POWER_TYPES = ("ess", "Energy Storage System", "Storage Inverter")


def battery_power(snapshot: Snapshot) -> float | None:
    """Site battery power in kW (+ discharging, - charging): livedata `ess_p`, else the sum
    over the first device type of BATTERY_POWER_TYPES that reports power; None when the
    site has no battery or none reports its power."""
    live = snapshot.livedata.get("ess_p")
    if isinstance(live, float) and _live_battery(snapshot):
        return live
    for device_type in BATTERY_POWER_TYPES:
        powers = [b.power_kw for b in snapshot.batteries
                  if b.device_type == device_type and b.power_kw is not None]
        if powers:
            return round(sum(powers), 4)
    return None


def battery_soc(snapshot: Snapshot) -> float | None:
    """Site state of charge in %: livedata `soc`, else the mean over the batteries."""
    live = snapshot.livedata.get("soc")
    if isinstance(live, float) and live >= 0 and _live_battery(snapshot):
        return soc_percent(live)
    values = [b.soc_pct for b in snapshot.batteries if b.soc_pct is not None]
    return round(sum(values) / len(values), 1) if values else None


def _live_battery(snapshot: Snapshot) -> bool:
    """Whether the site has a battery: a storage device, or livedata that shows one (a PVS
    without a SunVault may still list ess_p and soc, as zeros)."""
    live = snapshot.livedata
    return bool(snapshot.batteries) or any(
        isinstance(live.get(k), float) and live[k] != 0 for k in ("soc", "ess_p"))


def soc_percent(value: float) -> float:
    """A PVS state of charge -> %. The PVS sends a fraction (livedata `soc` 0.86 on a real
    SunVault; the ESS config bounds SoC "between 0.0 and 1.0"); a value above 1 is taken
    as already in %."""
    return round(value * 100, 2) if value <= 1.0 else value


def totals(snapshot: Snapshot) -> Totals:
    """Site figures: production from the production meter (else varserver livedata, else
    the sum of inverters), consumption and net grid (+ import) from the consumption meter
    or livedata. A figure the site cannot measure is None, never a guess, and a stale
    value (older than STALE_AFTER_S) is never current power: without a current production
    meter the figure is the inverters' current values (livedata `pv_p` would repeat the
    stale ones).

    With a battery, house consumption = production + net grid + battery power (+ while
    discharging), as the PVS's own site_load_p = pv_p + net_p + ess_p. A site with a
    battery whose power is unknown gets no estimate."""
    inverter_kw = [kw for i in snapshot.inverters if (kw := i.live_power_kw) is not None]
    prod = snapshot.meter("production")
    live = snapshot.livedata
    production = prod.power_kw if prod and not prod.stale else None
    # livedata pv_p repeats the stale values it is made of: then the current ones count
    repeats_stale = (prod is not None and prod.stale) or any(
        i.stale for i in snapshot.inverters)
    if production is None and not repeats_stale and isinstance(live.get("pv_p"), float):
        production = live["pv_p"]
    if production is None and inverter_kw:
        production = round(sum(inverter_kw), 4)

    battery = battery_power(snapshot)
    has_battery = bool(snapshot.batteries) or battery is not None
    storage = battery if battery is not None else 0.0
    consumption = net = None
    cons = snapshot.meter("consumption")
    if cons is not None and cons.stale:
        cons = None
    if isinstance(live.get("site_load_p"), float) and isinstance(live.get("net_p"), float):
        consumption, net = live["site_load_p"], live["net_p"]
    elif cons is not None and cons.power_kw is not None:
        unknown = production is None or (has_battery and battery is None)
        if _net_grid_meter(cons):
            net = cons.power_kw
            consumption = None if unknown else round(production + net + storage, 4)
        else:
            consumption = cons.power_kw
            net = None if unknown else round(consumption - production - storage, 4)

    lifetime = prod.lifetime_net_kwh if prod else None
    if lifetime is None and isinstance(live.get("pv_en"), float):
        lifetime = live["pv_en"]
    if lifetime is None:
        counters = [i.lifetime_kwh for i in snapshot.inverters if i.lifetime_kwh is not None]
        lifetime = round(sum(counters), 4) if counters else None
    return Totals(
        production_kw=production, consumption_kw=consumption, net_grid_kw=net,
        lifetime_production_kwh=lifetime, inverters_total=len(snapshot.inverters),
        inverters_producing=sum(1 for i in snapshot.inverters if i.producing),
        battery_kw=battery, battery_soc_pct=battery_soc(snapshot),
    )
