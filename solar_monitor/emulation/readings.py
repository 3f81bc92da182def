"""What the devices measure at an instant, and how the PVS spells numbers and times:
shared by the answer formats (`devicelist`, `supervisor_info`, `varserver`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from solar_monitor.emulation.faults import ProductionTripped, SnowCover
from solar_monitor.emulation.sky import _hash_unit, _ts, _utc

if TYPE_CHECKING:
    from solar_monitor.emulation.site import InverterState, SimulatedSite, SiteState

_NIGHT_DRAW_KW = 0.015  # the production meter reads about -15 W at night


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
    freq_hz: float


def _inverter_reading(site: SimulatedSite, st: SiteState, inv: InverterState) -> _InverterReading:
    """What the PVS shows for `inv`: its live reading, or the stale one of `inv.frozen_at`."""
    if inv.frozen_at is not None:
        return _frozen_reading(site, inv.index, inv.frozen_at)
    return _live_reading(site, st, inv)


def _frozen_reading(site: SimulatedSite, i: int, at: datetime) -> _InverterReading:
    """Inverter `i`'s values of instant `at`, as the PVS keeps showing them once the
    inverter fell silent: measurement time `at`, STATE "error" (memoised per site)."""
    memo = site.frozen_readings.get((i, at))
    if isinstance(memo, _InverterReading):
        return memo
    st = site.state(at)
    r = replace(_live_reading(site, st, st.inverters[i]), working=False, report_time=at,
                has_metrics=True)
    if len(site.frozen_readings) > 4096:
        site.frozen_readings.clear()
    site.frozen_readings[(i, at)] = r
    return r


def _live_reading(site: SimulatedSite, st: SiteState, inv: InverterState) -> _InverterReading:
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
        freq_hz=st.grid_hz,
    )
