"""Per local day figures computed from the store: the one place daily energy is derived.

Used by the demo, the sheet's Daily tab and the monthly digest.
- Production kWh: the production counter's rise over the day (the lifetime kWh of the
  last good poll of the day minus that of the last good poll before the day); this is
  exact however many polls were missed. Without a counter, power is integrated.
- Consumption / import / export kWh: integrated from the 15-minute power readings
  (trapezoids; a gap over MAX_GAP_S is not bridged), so they are estimates.
- Per-inverter kWh: each inverter's lifetime counter rise over the day.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from solar_monitor.store import Store, from_iso, iso

MAX_GAP_S = 2 * 3600


@dataclass(frozen=True, slots=True)
class DaySummary:
    """One local day. kWh figures are None when the data cannot support them."""

    day: date
    polls: int
    polls_ok: int
    production_kwh: float | None
    consumption_kwh: float | None
    import_kwh: float | None
    export_kwh: float | None
    peak_kw: float | None
    peak_at: datetime | None
    cloud_cover_pct: float | None
    inverter_kwh: dict[str, float] = field(default_factory=dict)

    @property
    def completeness_pct(self) -> float:
        return 100.0 * self.polls_ok / self.polls if self.polls else 0.0


def day_bounds(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) of a local day as aware datetimes (23 or 25 hours on DST days)."""
    start = datetime.combine(day, time(0), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
    return start, end


def summarize_days(store: Store, tz: ZoneInfo, first: date, last: date, *,
                   inverters: bool = True) -> list[DaySummary]:
    """Summaries for each local day from `first` to `last` inclusive. `inverters=False`
    skips the per-inverter kWh (the costly part) when only site totals are needed."""
    return list(_iter_days(store, tz, first, last, inverters))


def _iter_days(store: Store, tz: ZoneInfo, first: date, last: date,
               inverters: bool) -> Iterator[DaySummary]:
    day = first
    while day <= last:
        yield summarize_day(store, tz, day, inverters=inverters)
        day += timedelta(days=1)


def summarize_day(store: Store, tz: ZoneInfo, day: date, *,
                  inverters: bool = True) -> DaySummary:
    start, end = day_bounds(day, tz)
    rows = store.db.execute(
        "SELECT id, polled_at, ok, production_kw, consumption_kw, net_grid_kw, "
        "lifetime_production_kwh, cloud_cover_pct FROM polls "
        "WHERE polled_at >= ? AND polled_at < ? ORDER BY polled_at",
        (iso(start), iso(end))).fetchall()
    good = [r for r in rows if r["ok"]]
    before = store.db.execute(
        "SELECT lifetime_production_kwh FROM polls WHERE ok=1 AND polled_at < ? "
        "AND lifetime_production_kwh IS NOT NULL ORDER BY polled_at DESC LIMIT 1",
        (iso(start),)).fetchone()
    counters = [r for r in good if r["lifetime_production_kwh"] is not None]
    production = None
    if counters:
        base = before["lifetime_production_kwh"] if before else \
            counters[0]["lifetime_production_kwh"]
        production = round(max(0.0, counters[-1]["lifetime_production_kwh"] - base), 3)
    elif good:
        production = _integrate(good, "production_kw", positive=True)
    peak = max((r for r in good if r["production_kw"] is not None),
               key=lambda r: r["production_kw"], default=None)
    clouds = [r["cloud_cover_pct"] for r in good if r["cloud_cover_pct"] is not None]
    has_net = any(r["net_grid_kw"] is not None for r in good)
    return DaySummary(
        day=day, polls=len(rows), polls_ok=len(good), production_kwh=production,
        consumption_kwh=_integrate(good, "consumption_kw", positive=True)
        if any(r["consumption_kw"] is not None for r in good) else None,
        import_kwh=_integrate(good, "net_grid_kw", positive=True) if has_net else None,
        export_kwh=_integrate(good, "net_grid_kw", positive=False) if has_net else None,
        peak_kw=peak["production_kw"] if peak else None,
        peak_at=from_iso(peak["polled_at"]) if peak else None,
        cloud_cover_pct=round(sum(clouds) / len(clouds), 1) if clouds else None,
        inverter_kwh=_inverter_kwh(store, start, end) if inverters else {},
    )


def _integrate(rows: list, column: str, *, positive: bool) -> float | None:
    """kWh from kW samples by trapezoids, counting only the positive (or negative) part."""
    total = 0.0
    seen = False
    for a, b in zip(rows, rows[1:], strict=False):
        pa, pb = a[column], b[column]
        if pa is None or pb is None:
            continue
        seconds = (from_iso(b["polled_at"]) - from_iso(a["polled_at"])).total_seconds()
        if seconds <= 0 or seconds > MAX_GAP_S:
            continue
        sign = 1.0 if positive else -1.0
        total += (max(0.0, sign * pa) + max(0.0, sign * pb)) / 2 * seconds / 3600
        seen = True
    return round(total, 3) if seen else None


def _inverter_kwh(store: Store, start: datetime, end: datetime) -> dict[str, float]:
    """Each inverter's lifetime counter rise: its highest reading of the day minus its
    highest in the week before (counters only rise), or its first of the day when new."""
    sql = ("SELECT r.serial, min(r.lifetime_kwh) AS first, max(r.lifetime_kwh) AS last "
           "FROM inverter_readings r JOIN polls p ON p.id = r.poll_id "
           "WHERE p.polled_at >= ? AND p.polled_at < ? AND p.ok = 1 "
           "AND r.lifetime_kwh IS NOT NULL GROUP BY r.serial")
    rows = store.db.execute(sql, (iso(start), iso(end))).fetchall()
    if not rows:
        return {}
    base = {r["serial"]: r["last"] for r in store.db.execute(
        sql, (iso(start - timedelta(days=7)), iso(start)))}
    return {r["serial"]: round(max(0.0, r["last"] - base.get(r["serial"], r["first"])), 4)
            for r in rows}
