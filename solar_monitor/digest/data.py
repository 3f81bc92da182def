"""The figures of one month's digest, read from the store: no HTML, no e-mail.

Daily energy comes from `solar_monitor.daily` (the one place it is derived); this module
only sums, ranks and counts. Every figure the data cannot support is None, and `notes`
says in plain words what is missing, so the digest stays honest about gaps.
"""

from __future__ import annotations

import re
import sqlite3
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from solar_monitor.daily import DaySummary, day_bounds, summarize_days
from solar_monitor.digest.months import add_months, last_day, previous_month  # noqa: F401
from solar_monitor.digest.watchdog import WatchdogMonth, watchdog_month
from solar_monitor.names import inverter_label
from solar_monitor.rules.catalog import BY_ID
from solar_monitor.store import Store, from_iso, iso

DEFAULT_INTERVAL_S = 900.0  # the cron interval, when the month's polls cannot tell
WEAK_PANEL_PCT = 85.0
_WHOLE_DAY_SHARE = 0.8  # a day with fewer good polls than this share of expected is partial


@dataclass(frozen=True, slots=True)
class MonthTotal:
    """Production of a comparison month: kWh over the days that had data."""

    month: date
    production_kwh: float | None
    days_with_data: int
    days_in_month: int

    @property
    def whole(self) -> bool:
        return self.days_with_data == self.days_in_month


@dataclass(frozen=True, slots=True)
class InverterMonth:
    """One inverter's month. `share_of_median_pct` compares it with the median inverter
    over the same days (first to last day it reported), so a new one is judged fairly."""

    serial: str
    kwh: float
    days: int
    first_day: date
    last_day: date
    median_kwh: float
    share_of_median_pct: float | None
    new: bool
    weak: bool
    label: str = ""  # what the owner calls it (names.inverter_label); the serial's tail

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", inverter_label(self.serial))


@dataclass(frozen=True, slots=True)
class PvsHealth:
    """The PVS's own counters over the month (None: never reported)."""

    readings: int
    reboots: int  # unexpected ones: outside the nightly restart hour
    nightly_restarts: int
    nightly_hour: int | None  # the local hour the PVS restarts every night, if it does
    flash_avail_kib_min: float | None
    flash_avail_kib_last: float | None
    flash_used_pct_max: float | None
    untransmitted_max: float | None
    untransmitted_last: float | None
    firmware: tuple[str, ...]
    flash_wear_pct_max: float | None = None  # eMMC life used; new firmware only


@dataclass(frozen=True, slots=True)
class AlertLine:
    """One alert still open at the end of the month."""

    title: str
    opened_at: datetime
    severity: str | None


@dataclass(frozen=True, slots=True)
class AlertSummary:
    """Alerts over the month; `enabled` is False when the alerts table does not exist."""

    enabled: bool
    opened: int = 0
    resolved: int = 0
    still_open: tuple[AlertLine, ...] = ()


@dataclass(frozen=True, slots=True)
class DigestData:
    """Everything one month's digest shows. kWh are site totals unless named otherwise."""

    site_name: str
    month: date
    tz_name: str
    generated_at: datetime
    days: tuple[DaySummary, ...]
    catch_up_days: frozenset[date]
    monitored_from: date | None  # the first day the store has any poll (None: no poll yet)
    production_kwh: float | None
    previous: MonthTotal
    last_year: MonthTotal
    consumption_kwh: float | None
    import_kwh: float | None
    export_kwh: float | None
    self_consumption_pct: float | None
    best_day: DaySummary | None
    worst_day: DaySummary | None
    inverters: tuple[InverterMonth, ...]
    weak_threshold_pct: float
    polls: int
    polls_ok: int
    expected_polls: int
    interval_s: float
    days_without_data: tuple[date, ...]
    health: PvsHealth
    alerts: AlertSummary
    cloud_cover_pct: float | None
    notes: tuple[str, ...]
    watchdog: WatchdogMonth | None = None  # how the watchdog itself did (digest/watchdog.py)
    # days the whole array stayed dark under snow, and the daylight hours it lost (h):
    # told to the owner here, quietly; no alert goes out for snow
    snow_days: tuple[date, ...] = ()
    snow_hours_lost: float = 0.0
    consumption_measured: bool = False  # a consumption reading, even if no energy yet
    # inverters whose reports were often lost (issue 19): (serial, % of the daylight polls
    # it was missing or its values old), worst first. A quiet line, never an alert.
    report_gaps: tuple[tuple[str, float], ...] = ()

    @property
    def completeness_pct(self) -> float:
        """Good polls as a share of the polls expected at the cron interval, in %."""
        if not self.expected_polls:
            return 0.0
        return min(100.0, 100.0 * self.polls_ok / self.expected_polls)

    @property
    def has_consumption(self) -> bool:
        return self.consumption_kwh is not None or self.import_kwh is not None

    @property
    def weak_inverters(self) -> tuple[InverterMonth, ...]:
        return tuple(i for i in self.inverters if i.weak)

    @property
    def label(self) -> str:
        """'June 2026'."""
        return f"{self.month:%B %Y}"

    @property
    def key(self) -> str:
        """'2026-06', the month's key in the digests table and file names."""
        return f"{self.month:%Y-%m}"


# --- months ----------------------------------------------------------------------------

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def parse_month(text: str) -> date:
    """'YYYY-MM' -> the first day of that month. Raises ValueError when malformed."""
    m = _MONTH.match(text.strip())
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise ValueError(f"{text!r} is not a month; write YYYY-MM, e.g. 2026-06")
    return date(int(m.group(1)), int(m.group(2)), 1)


# --- building --------------------------------------------------------------------------


def build_digest_data(store: Store, tz: ZoneInfo, month: date, *, site_name: str = "",
                      now: datetime | None = None,
                      weak_threshold_pct: float = WEAK_PANEL_PCT,
                      inverter_labels: Mapping[str, str] | None = None) -> DigestData:
    """The digest figures of the local month starting `month` (any day in it will do),
    inverters named by `inverter_labels` (serial -> the owner's name, config `inverters`).

    A month still in progress is summarised up to `now`. Raises sqlite3.Error only.
    """
    month = month.replace(day=1)
    now = (now or datetime.now(UTC)).astimezone(UTC)
    # a month in progress runs to the day `now` falls in (a day starting at `now` has not begun)
    today = (now - timedelta(microseconds=1)).astimezone(tz).date()
    first, last = month, min(last_day(month), today)
    days = summarize_days(store, tz, first, last) if first <= last else []
    start = day_bounds(first, tz)[0]
    end = min(day_bounds(last_day(month), tz)[1], now)
    notes: list[str] = []

    monitored_from = from_iso(store.db.execute("SELECT min(polled_at) FROM polls")
                              .fetchone()[0])
    interval_s = _interval_s(store, start, end)
    span_from = max(start, monitored_from) if monitored_from else end
    expected = max(0, round((end - span_from).total_seconds() / interval_s))
    polls = sum(d.polls for d in days)
    polls_ok = sum(d.polls_ok for d in days)
    expected = max(expected, polls)
    monitored_day = monitored_from.astimezone(tz).date() if monitored_from else None
    if monitored_day and monitored_day > first:
        notes.append(f"First month: data from {monitored_day:%d %B %Y}, when monitoring "
                     f"started; earlier days have none.")
    if last < last_day(month):
        notes.append(f"The month is not over: figures run to {last:%d %B}.")

    missing = tuple(d.day for d in days if d.polls_ok == 0
                    and monitored_day is not None and d.day >= monitored_day)
    catch_up = _catch_up_days([d for d in days if d.day >= (monitored_day or first)])
    if missing:
        shown = ", ".join(f"{d:%d %b}" for d in missing[:10]) + \
            (", ..." if len(missing) > 10 else "")
        notes.append(f"{len(missing)} day(s) without any good poll ({shown}). The PVS kept "
                     "counting: their production is included in the next day with data"
                     + (", next month for the last days." if missing[-1] == last
                        and last == last_day(month) else "."))

    production = _sum(d.production_kwh for d in days)
    consumption = _sum(d.consumption_kwh for d in days)
    imported = _sum(d.import_kwh for d in days)
    exported = _sum(d.export_kwh for d in days)
    self_pct = None
    if production and exported is not None:
        self_pct = round(max(0.0, min(100.0, 100.0 * (production - exported) / production)),
                         1)
    measured = _consumption_measured(store, start, end)
    if consumption is None and imported is None and polls_ok and measured:
        notes.append("Consumption is measured, but too few polls were stored to add it up "
                     "(energy needs two polls in a day); the next digest has it.")
    elif consumption is None and imported is None and polls_ok:
        notes.append("No consumption meter reported this month: consumption, grid import "
                      "and export and self-consumption cannot be shown.")
    elif consumption is not None or imported is not None:
        notes.append("Consumption, import and export are estimated from the 15-minute "
                     "power readings; production is the PVS's own counter.")

    per_day = _expected_per_day(days, tz, interval_s)
    whole = [d for d in days if d.production_kwh is not None and d.day not in catch_up
             and d.polls_ok >= _WHOLE_DAY_SHARE * per_day.get(d.day, 0)]
    candidates = whole or [d for d in days if d.production_kwh is not None]
    best = max(candidates, key=lambda d: d.production_kwh or 0.0, default=None)
    worst = min(candidates, key=lambda d: d.production_kwh or 0.0, default=None)

    inverters = _inverters(store, days, monitored_day or first, weak_threshold_pct,
                           inverter_labels or {})
    if any(i.new for i in inverters):
        notes.append("An inverter first seen this month is compared with the others over "
                     "the days it reported only.")
    clouds = [d.cloud_cover_pct for d in days if d.cloud_cover_pct is not None]
    if not clouds and polls_ok:
        notes.append("No cloud cover was recorded this month.")
    alerts = _alerts(store, start, end)
    snow_days, snow_hours = _snow_buried(store, tz, start, end, interval_s)
    gaps = _report_gaps(store, start, end)
    return DigestData(
        site_name=site_name, month=month, tz_name=str(tz.key), generated_at=now,
        days=tuple(days), catch_up_days=frozenset(catch_up), monitored_from=monitored_day,
        production_kwh=production,
        previous=_month_total(store, tz, add_months(month, -1)),
        last_year=_month_total(store, tz, add_months(month, -12)),
        consumption_kwh=consumption, import_kwh=imported, export_kwh=exported,
        self_consumption_pct=self_pct, best_day=best,
        worst_day=worst if worst is not best else None,
        inverters=inverters, weak_threshold_pct=weak_threshold_pct, polls=polls,
        polls_ok=polls_ok, expected_polls=expected, interval_s=interval_s,
        days_without_data=missing, health=_health(store, tz, start, end), alerts=alerts,
        cloud_cover_pct=round(statistics.fmean(clouds), 1) if clouds else None,
        notes=tuple(notes), watchdog=watchdog_month(store, start, end, interval_s),
        snow_days=snow_days, snow_hours_lost=snow_hours, consumption_measured=measured,
        report_gaps=gaps)


def _consumption_measured(store: Store, start: datetime, end: datetime) -> bool:
    """Whether any good poll in [start, end) had a consumption or net grid reading: one
    poll has readings but no energy yet (energy integrates between polls)."""
    return store.db.execute(
        "SELECT 1 FROM polls WHERE ok=1 AND polled_at >= ? AND polled_at < ? AND "
        "(consumption_kw IS NOT NULL OR net_grid_kw IS NOT NULL) LIMIT 1",
        (iso(start), iso(end))).fetchone() is not None


SNOW_MIN_ELEVATION_DEG = 10.0  # "daylight" for snow: the sun high enough to produce
SNOW_MIN_DEPTH_M = 0.01
SNOW_DARK_KW = 0.005  # production at or below this (a meter's standby reads negative)


def _snow_buried(store: Store, tz: ZoneInfo, start: datetime, end: datetime,
                 interval_s: float) -> tuple[tuple[date, ...], float]:
    """Local days whose every good daylight poll (sun >= 10°) saw the whole array dark
    with snow in the weather (depth >= 1 cm or snow falling), and the daylight hours
    those days lost (h). Days without snow data never count."""
    rows = store.db.execute(
        "SELECT polled_at, production_kw, snow_depth_m, snowfall_cm FROM polls "
        "WHERE polled_at >= ? AND polled_at < ? AND ok = 1 AND sun_elevation_deg >= ? "
        "ORDER BY polled_at", (iso(start), iso(end), SNOW_MIN_ELEVATION_DEG))
    per_day: dict[date, list[bool]] = {}
    for at, kw, depth, snowfall in rows:
        buried = ((depth is not None and depth >= SNOW_MIN_DEPTH_M)
                  or (snowfall is not None and snowfall > 0)) and (kw or 0.0) <= SNOW_DARK_KW
        per_day.setdefault(from_iso(at).astimezone(tz).date(), []).append(buried)
    days = tuple(d for d, polls in per_day.items() if len(polls) >= 4 and all(polls))
    hours = sum(len(per_day[d]) for d in days) * interval_s / 3600
    return days, round(hours, 1)


GAPS_MIN_ELEVATION_DEG = 15.0  # daylight, as the inverter rules judge it
GAPS_MIN_PCT = 5.0  # everyday power-line noise stays under this
GAPS_MIN_POLLS = 20
# values older than this at the poll were not reported: the inverter rules' default
GAPS_SILENT_AGE_S = BY_ID["inverter_offline"].params["max_age_min"] * 60


def _report_gaps(store: Store, start: datetime, end: datetime
                 ) -> tuple[tuple[str, float], ...]:
    """Inverters missing from (or listed with old values in) at least GAPS_MIN_PCT of the
    month's good daylight polls, between the first and last poll that listed them."""
    polls = [r[0] for r in store.db.execute(
        "SELECT id FROM polls WHERE ok = 1 AND sun_elevation_deg >= ? AND polled_at >= ? "
        "AND polled_at < ? ORDER BY polled_at",
        (GAPS_MIN_ELEVATION_DEG, iso(start), iso(end)))]
    index = {poll_id: n for n, poll_id in enumerate(polls)}
    seen: dict[str, list[int]] = {}  # serial -> [first, last, polls reporting]
    for poll_id, serial, age_s in store.db.execute(
            "SELECT r.poll_id, r.serial, r.age_s FROM inverter_readings r "
            "JOIN polls p ON p.id = r.poll_id WHERE p.ok = 1 AND p.sun_elevation_deg >= ? "
            "AND p.polled_at >= ? AND p.polled_at < ?",
            (GAPS_MIN_ELEVATION_DEG, iso(start), iso(end))):
        n = index[poll_id]
        entry = seen.setdefault(serial, [n, n, 0])
        entry[0], entry[1] = min(entry[0], n), max(entry[1], n)
        entry[2] += age_s is None or age_s <= GAPS_SILENT_AGE_S
    gaps = []
    for serial, (first, last, reporting) in seen.items():
        span = last - first + 1
        pct = round(100.0 * (span - reporting) / span, 1)
        if span >= GAPS_MIN_POLLS and pct >= GAPS_MIN_PCT:
            gaps.append((serial, pct))
    return tuple(sorted(gaps, key=lambda g: (-g[1], g[0])))


def _sum(values: object) -> float | None:
    known = [v for v in values if v is not None]  # type: ignore[attr-defined]
    return round(sum(known), 3) if known else None


def _interval_s(store: Store, start: datetime, end: datetime) -> float:
    """The cron interval, as the median spacing of the month's polls (s)."""
    times = [from_iso(r[0]) for r in store.db.execute(
        "SELECT polled_at FROM polls WHERE polled_at >= ? AND polled_at < ? "
        "ORDER BY polled_at", (iso(start), iso(end)))]
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    gaps = [g for g in gaps if g > 0]
    return statistics.median(gaps) if gaps else DEFAULT_INTERVAL_S


def _expected_per_day(days: Sequence[DaySummary], tz: ZoneInfo,
                      interval_s: float) -> dict[date, float]:
    out = {}
    for d in days:
        a, b = day_bounds(d.day, tz)
        out[d.day] = (b - a).total_seconds() / interval_s
    return out


def _catch_up_days(days: Sequence[DaySummary]) -> set[date]:
    """Days whose production includes earlier days without data (the counter's rise)."""
    out = set()
    gap = False
    for d in days:
        if d.polls_ok == 0:
            gap = True
        elif gap:
            out.add(d.day)
            gap = False
    return out


def _month_total(store: Store, tz: ZoneInfo, month: date) -> MonthTotal:
    """Production of a comparison month, summed from its daily figures."""
    days = summarize_days(store, tz, month, last_day(month), inverters=False)
    with_data = [d for d in days if d.production_kwh is not None]
    return MonthTotal(month, _sum(d.production_kwh for d in with_data), len(with_data),
                      len(days))


def _inverters(store: Store, days: Sequence[DaySummary], monitored_day: date,
               threshold_pct: float, labels: Mapping[str, str]) -> tuple[InverterMonth, ...]:
    """Per-inverter kWh, weakest first (lowest share of the median). An inverter is new
    when it first reported after the first day of monitoring, within this month."""
    reported: dict[str, list[date]] = {}
    for d in days:
        for serial in d.inverter_kwh:
            reported.setdefault(serial, []).append(d.day)
    first_seen = {r["serial"]: from_iso(r["first_seen"]) for r in store.devices("Inverter")}
    rows = []
    for serial, on in reported.items():
        a, b = on[0], on[-1]
        window = [d for d in days if a <= d.day <= b]
        sums = {s: sum(d.inverter_kwh.get(s, 0.0) for d in window)
                for s in reported if any(s in d.inverter_kwh for d in window)}
        kwh = round(sums[serial], 3)
        median = statistics.median(sums.values())
        share = round(100.0 * kwh / median, 1) if median > 0 else None
        seen = first_seen.get(serial)
        rows.append(InverterMonth(
            serial=serial, kwh=kwh, days=len(on), first_day=a, last_day=b,
            median_kwh=round(median, 3), share_of_median_pct=share,
            new=a > monitored_day and (seen is None or seen.date() >= days[0].day),
            weak=share is not None and share < threshold_pct,
            label=inverter_label(serial, labels)))
    rows.sort(key=lambda i: (i.share_of_median_pct is None,
                             i.share_of_median_pct or 0.0, i.kwh, i.serial))
    return tuple(rows)


def _health(store: Store, tz: ZoneInfo, start: datetime, end: datetime) -> PvsHealth:
    """Reboots (uptime going backwards), free flash and upload backlog over the month.

    The PVS restarts itself every night at about the same time; boots in the month's most
    common boot hour (when it holds at least two boots and a third of the days with
    readings) count as nightly.
    """
    rows = store.db.execute(
        "SELECT p.polled_at, p.firmware, s.uptime_s, s.flash_avail_kib, s.flash_used_pct, "
        "s.untransmitted, s.flash_wear_pct "
        "FROM supervisor_readings s JOIN polls p ON p.id = s.poll_id "
        "WHERE p.polled_at >= ? AND p.polled_at < ? ORDER BY p.polled_at",
        (iso(start), iso(end))).fetchall()
    before = store.db.execute(
        "SELECT s.uptime_s FROM supervisor_readings s JOIN polls p ON p.id = s.poll_id "
        "WHERE p.polled_at < ? AND s.uptime_s IS NOT NULL ORDER BY p.polled_at DESC LIMIT 1",
        (iso(start),)).fetchone()
    boots: list[datetime] = []
    previous = before[0] if before else None
    for r in rows:
        if r["uptime_s"] is None:
            continue
        if previous is not None and r["uptime_s"] < previous:
            at = from_iso(r["polled_at"]) - timedelta(seconds=r["uptime_s"])
            boots.append(at.astimezone(tz))
        previous = r["uptime_s"]
    hours = Counter(b.hour for b in boots)
    days_seen = len({from_iso(r["polled_at"]).astimezone(tz).date() for r in rows})
    nightly_hour = None
    if hours:
        hour, count = hours.most_common(1)[0]
        if count >= max(2.0, days_seen / 3):
            nightly_hour = hour
    nightly = hours[nightly_hour] if nightly_hour is not None else 0

    def known(column: str) -> list[float]:
        return [r[column] for r in rows if r[column] is not None]

    flash, used, backlog = known("flash_avail_kib"), known("flash_used_pct"), \
        known("untransmitted")
    return PvsHealth(
        readings=len(rows), reboots=len(boots) - nightly, nightly_restarts=nightly,
        nightly_hour=nightly_hour,
        flash_avail_kib_min=min(flash, default=None),
        flash_avail_kib_last=flash[-1] if flash else None,
        flash_used_pct_max=max(used, default=None),
        untransmitted_max=max(backlog, default=None),
        untransmitted_last=backlog[-1] if backlog else None,
        firmware=tuple(dict.fromkeys(r["firmware"] for r in rows if r["firmware"])),
        flash_wear_pct_max=max(known("flash_wear_pct"), default=None))


def _alerts(store: Store, start: datetime, end: datetime) -> AlertSummary:
    """Alerts opened and resolved in the month, and those open at its end."""
    tables = {r[0] for r in store.db.execute(
        "SELECT name FROM sqlite_master WHERE type='table'")}
    if "alerts" not in tables:
        return AlertSummary(enabled=False)
    try:
        return _read_alerts(store, start, end)
    except sqlite3.OperationalError:  # a schema this version does not know
        return AlertSummary(enabled=False)


def _read_alerts(store: Store, start: datetime, end: datetime) -> AlertSummary:
    a, b = iso(start), iso(end)
    opened = store.db.execute("SELECT count(*) FROM alerts WHERE opened_at >= ? "
                              "AND opened_at < ?", (a, b)).fetchone()[0]
    resolved = store.db.execute("SELECT count(*) FROM alerts WHERE resolved_at >= ? "
                                "AND resolved_at < ?", (a, b)).fetchone()[0]
    still = store.db.execute(
        "SELECT rule, subject, severity, opened_at, message FROM alerts WHERE opened_at < ? "
        "AND (resolved_at IS NULL OR resolved_at >= ?) ORDER BY opened_at", (b, b)).fetchall()
    lines = tuple(AlertLine(title=_alert_title(r), opened_at=from_iso(r["opened_at"]),
                            severity=r["severity"]) for r in still)
    return AlertSummary(True, opened, resolved, lines)


def _alert_title(row: sqlite3.Row) -> str:
    """'inverter_offline E001...: first line of the message' (at most ~160 characters)."""
    first = (row["message"] or "").strip().splitlines()[0:1]
    text = f"{row['rule']} {row['subject']}" + (f": {first[0]}" if first else "")
    return text if len(text) <= 160 else text[:157] + "..."
