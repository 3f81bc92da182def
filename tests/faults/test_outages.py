"""Long outages on one simulated week of 15-minute runs: the PVS down 2 days, Google
Sheets down 7 days, the mail server down 1 day while an inverter dies.

Afterwards every row is in the sheet and the CSV files exactly once, in time order, every
pending alert e-mail is delivered once, and there is no alert storm. "No alert storm"
here means: each e-mail is one alert transition recorded in the store (or the monthly
digest), no transition is e-mailed twice, and no reminder is queued while the owner has
not yet received the alert's previous e-mail (a reminder comes `alerts.reminder_hours`
after the previous e-mail was delivered, not in a burst behind it).

The timeline runs once (a module fixture, ~35 s); each test checks one property of it.
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from solar_monitor.emulation.sim import DeadInverter
from solar_monitor.pipeline import RunReport
from solar_monitor.rules.catalog import BY_ID
from tests.faults.harness import STEP, TZ, Rig, make_site, rig

T0 = datetime(2026, 6, 9, tzinfo=TZ)  # local midnight; long June days, no DST change


def at(days: int, hours: float = 0.0) -> datetime:
    """Local time `days` and `hours` after T0, as UTC."""
    return (T0 + timedelta(days=days, hours=hours)).astimezone(UTC)


GOOGLE_DOWN = (at(0, 6), at(7, 6))  # 7 days
PVS_DOWN = (at(1, 8), at(3, 8))  # 2 days
SMTP_DOWN = (at(4, 6), at(5, 6))  # 1 day
DEAD = (at(4, 12), at(5, 15))  # inverter 2 dies at noon while the mail server is down
END = at(7, 12)
REMINDER_H = 6.0  # short, so a day without mail could pile up reminders


@dataclass
class Outcome:
    rig: Rig
    reports: list[RunReport]
    logged: list[logging.LogRecord]
    data: Path


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    tmp = tmp_path_factory.mktemp("outages")
    site = make_site(at(0))
    site.add_fault(DeadInverter(inverter=2, start=DEAD[0], end=DEAD[1]))
    keep = _Keep()
    root = logging.getLogger()
    root.addHandler(keep)
    level = root.level
    root.setLevel(logging.INFO)
    try:
        with rig(tmp, site, at(0), alerts={"reminder_hours": REMINDER_H}) as r:
            faults = r.emulator.faults
            r.run_until(END, {
                GOOGLE_DOWN[0]: r.sheet.down, GOOGLE_DOWN[1]: r.sheet.heal,
                PVS_DOWN[0]: lambda: faults.unavailable(
                    (PVS_DOWN[1] - PVS_DOWN[0]).total_seconds() / 60),
                SMTP_DOWN[0]: r.mail.down, SMTP_DOWN[1]: r.mail.up,
            })
    finally:
        root.removeHandler(keep)
        root.setLevel(level)
    yield Outcome(r, r.reports, keep.records, r.config.data_path)


def grid(start: datetime, end: datetime) -> list[datetime]:
    """The run times in [start, end)."""
    times, t = [], start
    while t < end:
        times.append(t)
        t += STEP
    return times


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def lifecycle(rule: str, bad: tuple[datetime, datetime],
              mail_down: tuple[datetime, datetime] | None = None) -> list[tuple[str, str]]:
    """(time, event) of one alert as documented: it opens after `open_polls` bad polls
    spanning `open_after_min`, reminds every REMINDER_H hours counted from the delivery
    of its previous e-mail, and resolves after `clear_polls` good polls spanning
    `clear_after_min`. An e-mail queued while the mail server is down is delivered by
    the first run after it is back (whose rules run before its notify stage)."""
    p = BY_ID[rule].params
    events: list[tuple[str, str]] = []
    opened = delivered = None
    good: list[datetime] = []
    for t in grid(bad[0], END):
        if bad[0] <= t < bad[1]:
            bad_n = (t - bad[0]) // STEP + 1
            if opened is None and bad_n >= p["open_polls"] and \
                    t - bad[0] >= timedelta(minutes=p["open_after_min"]):
                opened = delivered = t
                events.append((iso(t), "open"))
        elif opened is not None and t >= bad[1]:
            good.append(t)
            if len(good) >= p["clear_polls"] and \
                    good[-1] - good[0] >= timedelta(minutes=p["clear_after_min"]):
                events.append((iso(t), "resolved"))
                return events
        if opened is None or events[-1][1] == "resolved":
            continue
        if mail_down and mail_down[0] <= delivered < mail_down[1]:
            delivered = mail_down[1]  # the previous e-mail waits in the outbox
        if t - delivered >= timedelta(hours=REMINDER_H):
            events.append((iso(t), "reminder"))
            delivered = t
    return events


def events(outcome: Outcome) -> list[tuple[str, str, str, str]]:
    return [tuple(r) for r in outcome.rig.query(
        "SELECT time, event, rule, subject FROM alert_events ORDER BY time, id")]


# --- the runs ----------------------------------------------------------------------------

def test_every_run_completes_without_a_stage_error_or_traceback(outcome: Outcome) -> None:
    assert len(outcome.reports) == len(grid(at(0), END))
    assert [r.stage_errors for r in outcome.reports if r.stage_errors] == []
    assert not [r for r in outcome.logged if r.exc_info or "Traceback" in r.getMessage()]
    failed = [r.polled_at for r in outcome.reports if not r.ok]
    assert failed == grid(*PVS_DOWN)


def test_a_week_without_google_is_one_warning(outcome: Outcome) -> None:
    """One warning when the sheet starts failing, then a quiet info line per run."""
    warnings = [r.getMessage() for r in outcome.logged if r.levelno >= logging.WARNING
                and r.name.startswith("solar_monitor.sinks")]
    assert len(warnings) == 1 and "503" in warnings[0], warnings


# --- the PVS outage ----------------------------------------------------------------------

def test_failed_polls_are_recorded_and_the_pvs_alert_follows_the_policy(
        outcome: Outcome) -> None:
    rows = outcome.rig.query("SELECT polled_at, http_status FROM polls WHERE ok=0 "
                             "ORDER BY polled_at")
    assert [r[0] for r in rows] == [iso(t) for t in grid(*PVS_DOWN)]
    assert {r[1] for r in rows} == {503}
    expected = lifecycle("pvs_unreachable", PVS_DOWN)
    assert [(t, e) for t, e, rule, _ in events(outcome) if rule == "pvs_unreachable"] \
        == expected
    # 48 h at one reminder every 6 h: 7 reminders, then one "resolved"
    assert Counter(e for _, e in expected) == {"open": 1, "reminder": 7, "resolved": 1}


def test_no_other_alert_than_the_injected_faults(outcome: Outcome) -> None:
    assert {(rule, subject) for _, _, rule, subject in events(outcome)} == {
        ("pvs_unreachable", "system"),
        ("inverter_offline", outcome.rig.emulator.site.inverter_serials[2])}


# --- Google Sheets down for a week -------------------------------------------------------

def test_every_sheet_row_is_present_exactly_once_in_time_order(outcome: Outcome) -> None:
    r = outcome.rig
    assert r.query("SELECT count(*) FROM sheet_outbox WHERE sent_at IS NULL")[0][0] == 0
    readings = [row["Time (UTC)"] for row in r.sheet_rows("Readings")]
    stored = [row[0] for row in r.query("SELECT polled_at FROM polls WHERE ok=1 "
                                        "ORDER BY polled_at")]
    assert [_utc_text(v) for v in readings] == stored
    assert len(stored) == len(grid(at(0), END)) - len(grid(*PVS_DOWN))

    days = [_date_text(row["Date"]) for row in r.sheet_rows("Daily")]
    # the first run sets the mark, then each completed local day once (June 9..15)
    assert days == [(T0 + timedelta(days=n)).date().isoformat() for n in range(7)]

    alerts = [(_utc_text(row["Time (UTC)"]), row["Event"], row["Rule"], row["Subject"])
              for row in r.sheet_rows("Alerts")]
    assert alerts == events(outcome)


def _utc_text(serial: float) -> str:
    at_ = datetime(1899, 12, 30, tzinfo=UTC) + timedelta(seconds=round(serial * 86400))
    return iso(at_)


def _date_text(serial: int) -> str:
    return (datetime(1899, 12, 30) + timedelta(days=serial)).date().isoformat()


# --- the mail server down for a day -----------------------------------------------------

def test_the_dead_inverter_alert_is_mailed_once_and_reminders_do_not_pile_up(
        outcome: Outcome) -> None:
    serial = outcome.rig.emulator.site.inverter_serials[2]
    expected = lifecycle("inverter_offline", DEAD, SMTP_DOWN)
    assert [(t, e) for t, e, rule, s in events(outcome) if rule == "inverter_offline"
            and s == serial] == expected
    subjects = [m["Subject"] for m in outcome.rig.mail.messages if serial in m["Subject"]]
    assert subjects == [
        f"Test house: {prefix}Inverter offline (inverter {serial})"
        for prefix in ("", "Reminder: ", "Resolved: ")]
    assert Counter(e for _, e in expected) == {"open": 1, "reminder": 1, "resolved": 1}


def test_every_email_is_one_transition_and_every_transition_one_email(
        outcome: Outcome) -> None:
    r = outcome.rig
    expected = Counter(_title(*row) for row in r.query(
        "SELECT event, rule, subject FROM alert_events"))
    mailed = Counter(m["Subject"] for m in r.mail.messages)
    digests = r.query("SELECT count(*) FROM digests WHERE status='sent'")[0][0]
    assert Counter({t: n for t, n in mailed.items() if t in expected}) == expected
    assert sum(mailed.values()) == sum(expected.values()) + digests
    assert r.query("SELECT count(*) FROM notifications WHERE sent_at IS NULL")[0][0] == 0


def _title(event: str, rule: str, subject: str) -> str:
    """The e-mail subject an owner sees for one transition."""
    prefix = {"open": "", "reminder": "Reminder: ", "resolved": "Resolved: "}[event]
    label = "system" if subject == "system" else f"{BY_ID[rule].subject} {subject}"
    return f"Test house: {prefix}{BY_ID[rule].title} ({label})"


# --- CSV --------------------------------------------------------------------------------

def test_every_stored_poll_is_once_in_the_csv_files(outcome: Outcome) -> None:
    folder = outcome.data / "csv"
    readings = [row["time_utc"] for row in _csv(folder / "readings.csv")]
    stored = [row[0] for row in outcome.rig.query("SELECT polled_at FROM polls "
                                                  "ORDER BY polled_at")]
    assert readings == stored
    inverter_rows = [(row["time_utc"], row["serial"])
                     for path in sorted(folder.glob("inverters-*.csv")) for row in _csv(path)]
    stored_rows = [tuple(row) for row in outcome.rig.query(
        "SELECT p.polled_at, r.serial FROM inverter_readings r JOIN polls p "
        "ON p.id = r.poll_id ORDER BY p.polled_at, r.serial")]
    assert inverter_rows == stored_rows
    assert len(set(inverter_rows)) == len(inverter_rows)


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))
