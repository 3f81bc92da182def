"""The digest's "watchdog itself" section: runs completed against expected, failed
heartbeat pings, the Pi's power and temperature events, from real `runs` rows."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from solar_monitor.config import config_from_dict
from solar_monitor.digest.data import build_digest_data
from solar_monitor.digest.render import render_html, render_text
from solar_monitor.pi_health import PiHealth
from solar_monitor.pipeline import open_store
from solar_monitor.runlog import RunEnd, record_run
from solar_monitor.store import iso

NOW = datetime(2026, 7, 1, 4, 30, tzinfo=UTC)  # just after local midnight, 1 July
FIRST = datetime(2026, 6, 30, 4, 0, tzinfo=UTC)  # monitoring began a day before month end


def test_the_month_of_the_watchdog(config_dict: dict, tmp_path: Path) -> None:
    config = config_from_dict(config_dict, env={})
    plan = [  # (minutes after FIRST, outcome, heartbeat, throttled, cpu °C)
        (0, "ok", "ok", 0x0, 51.0),
        (15, "ok", "failed: https://hc-ping.com: HTTP 500", 0x50000, 63.5),
        (30, "poll_failed", "ok", 0x50000, 77.9),
        (45, "storage_failed", "failed: https://hc-ping.com: no answer within 10 s", None, None),
        (60, "ok", "ok", 0x80008, 70.0),  # soft temperature limit only: not a power event
    ]
    for minutes, outcome, heartbeat, throttled, temp in plan:
        at = FIRST + timedelta(minutes=minutes)
        record_run(config, RunEnd(at, outcome, 0 if outcome == "ok" else 1,  # type: ignore[arg-type]
                                  None if outcome == "ok" else "why"),
                   heartbeat, PiHealth(throttled, temp, None), finished_at=at)
    with open_store(config) as store:
        with store.transaction():
            for rule, opened in (("pi_undervoltage", FIRST), ("pi_hot", FIRST),
                                 ("pi_undervoltage", FIRST - timedelta(days=40))):
                store.db.execute(
                    "INSERT INTO alerts (rule, subject, severity, status, opened_at, "
                    "first_bad_at, last_notified_at, message) VALUES (?, 'system', 'warning', "
                    "'resolved', ?, ?, ?, 'm')", (rule, iso(opened), iso(opened), iso(opened)))
        data = build_digest_data(store, config.tz, date(2026, 6, 1), now=NOW,
                                 site_name="Test")
    w = data.watchdog
    assert w is not None
    # from the first run (30 Jun 00:00 local) to the month's end: one day of 15-min runs
    assert (w.runs, w.runs_ok, w.expected_runs) == (5, 3, 96)
    assert dict(w.failures) == {"poll_failed": 1, "storage_failed": 1}
    assert (w.heartbeat_runs, w.heartbeat_failures) == (5, 2)
    assert w.power_runs == 2 and w.max_cpu_temp_c == 77.9
    assert dict(w.pi_alerts) == {"pi_undervoltage": 1, "pi_hot": 1, "pi_storage_failing": 0}
    text = render_text(data)
    assert "The watchdog itself" in text
    assert "Runs completed: 5 of 96 expected (5.2%); 91 missed" in text
    assert "Runs that failed: 2 (PVS poll failed 1, storage error 1)" in text
    assert "Heartbeat: 2 of 5 pings failed" in text
    assert "Pi power: under-voltage or throttling in 2 run(s); 1 pi_undervoltage alert(s)" \
        in text
    assert "Pi temperature: highest 78 °C; 1 pi_hot alert(s)" in text
    html = render_html(data)
    assert "The watchdog itself" in html and "2 of 5 pings failed" in html


def test_no_heartbeat_and_no_runs_yet(config_dict: dict) -> None:
    config = config_from_dict(config_dict, env={})
    with open_store(config) as store:
        data = build_digest_data(store, config.tz, date(2026, 6, 1), now=NOW)
        assert data.watchdog is None
        assert "Runs: none recorded this month" in render_text(data)
    record_run(config, RunEnd(FIRST, "ok", 0), None, None, finished_at=FIRST)
    with open_store(config) as store:
        text = render_text(build_digest_data(store, config.tz, date(2026, 6, 1), now=NOW))
    assert "Heartbeat: not set up: nobody hears it if the Pi dies" in text
    # a phone opens the published page, not a path in a clone of the repository
    assert ("(https://github.com/solar-monitor/solar-monitor/blob/main/docs/notifications.md"
            "#a-heartbeat-hearing-when-the-pi-itself-goes-silent)") in text
    assert "(docs/" not in text
    assert "Pi temperature: not reported; no alert" in text
