"""How the watchdog itself did over a month: runs completed against the runs expected,
heartbeat pings that failed, and the Pi's own power, temperature and storage events.

Read from the `runs` table (one row per `run`, runlog.py) and the pi_* alerts. A run
that left no row (the Pi off, the card refusing writes) shows up as a missed run.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from solar_monitor.links import doc_link
from solar_monitor.pi_health import POWER_MASK
from solar_monitor.store import Store, from_iso, iso

PI_RULES = ("pi_undervoltage", "pi_hot", "pi_storage_failing")
_OUTCOME_LABEL = {"poll_failed": "PVS poll failed", "stage_failed": "a later stage failed",
                  "storage_failed": "storage error", "error": "unexpected error"}


@dataclass(frozen=True, slots=True)
class WatchdogMonth:
    """The watchdog's month. `expected_runs` counts from the month's start, or from the
    first run ever recorded if that is later, to its end (or now)."""

    runs: int
    runs_ok: int
    expected_runs: int
    failures: tuple[tuple[str, int], ...]  # outcome, runs
    heartbeat_runs: int  # runs that had a heartbeat configured
    heartbeat_failures: int
    power_runs: int  # runs whose Pi reported under-voltage or throttling
    max_cpu_temp_c: float | None
    pi_alerts: tuple[tuple[str, int], ...]  # pi_* rule, alerts opened in the month

    @property
    def completed_pct(self) -> float:
        return 100.0 * min(self.runs, self.expected_runs) / self.expected_runs \
            if self.expected_runs else 0.0


def watchdog_month(store: Store, start: datetime, end: datetime,
                   interval_s: float) -> WatchdogMonth | None:
    """The month [start, end) from the store; None when no run was ever recorded (a
    database from before runs were kept). Raises sqlite3.Error only."""
    try:
        first = store.db.execute("SELECT min(started_at) FROM runs").fetchone()[0]
    except sqlite3.OperationalError:  # no runs table
        return None
    if first is None:
        return None
    a, b = iso(start), iso(end)
    rows = store.db.execute(
        "SELECT outcome, heartbeat, throttled, cpu_temp_c FROM runs "
        "WHERE started_at >= ? AND started_at < ?", (a, b)).fetchall()
    span_from = max(start, from_iso(first) or start)
    expected = max(0, round((end - span_from).total_seconds() / interval_s)) \
        if span_from < end else 0
    outcomes = Counter(r["outcome"] for r in rows)
    temps = [r["cpu_temp_c"] for r in rows if r["cpu_temp_c"] is not None]
    opened = dict(store.db.execute(
        f"SELECT rule, count(*) FROM alerts WHERE rule IN ({', '.join('?' * len(PI_RULES))}) "
        "AND opened_at >= ? AND opened_at < ? GROUP BY rule", (*PI_RULES, a, b)).fetchall())
    return WatchdogMonth(
        runs=len(rows), runs_ok=outcomes.pop("ok", 0), expected_runs=max(expected, len(rows)),
        failures=tuple(sorted(outcomes.items(), key=lambda kv: -kv[1])),
        heartbeat_runs=sum(1 for r in rows if r["heartbeat"] is not None),
        heartbeat_failures=sum(1 for r in rows if (r["heartbeat"] or "ok") != "ok"),
        power_runs=sum(1 for r in rows if (r["throttled"] or 0) & POWER_MASK),
        max_cpu_temp_c=max(temps, default=None),
        pi_alerts=tuple((rule, int(opened.get(rule, 0))) for rule in PI_RULES))


def watchdog_lines(w: WatchdogMonth | None) -> list[tuple[str, str]]:
    """(label, value) rows for the HTML table and the text version alike."""
    if w is None:
        return [("Runs", "none recorded this month (each run is recorded as it ends)")]
    missed = max(0, w.expected_runs - w.runs)
    failed = ", ".join(f"{_OUTCOME_LABEL.get(k, k)} {n}" for k, n in w.failures)
    rows = [
        ("Runs completed", f"{w.runs:,} of {w.expected_runs:,} expected "
                           f"({w.completed_pct:.1f}%); {missed:,} missed"),
        ("Runs that failed", f"{w.runs - w.runs_ok:,}" + (f" ({failed})" if failed else "")),
        ("Heartbeat", "not set up: nobody hears it if the Pi dies ("
         + doc_link("notifications.md", "a-heartbeat-hearing-when-the-pi-itself-goes-silent")
         + ")"
         if not w.heartbeat_runs else
         f"{w.heartbeat_failures:,} of {w.heartbeat_runs:,} pings failed"),
        ("Pi power", f"under-voltage or throttling in {w.power_runs:,} run(s); "
                     f"{_opened(w, 'pi_undervoltage')}"),
        ("Pi temperature", ("highest " + f"{w.max_cpu_temp_c:.0f} °C"
                            if w.max_cpu_temp_c is not None else "not reported")
         + f"; {_opened(w, 'pi_hot')}"),
        ("Pi storage", _opened(w, "pi_storage_failing")),
    ]
    return rows


def _opened(w: WatchdogMonth, rule: str) -> str:
    n = dict(w.pi_alerts).get(rule, 0)
    return f"{n} {rule} alert(s)" if n else "no alert"
