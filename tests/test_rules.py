"""The alert rules and their lifecycle, on small synthetic snapshots and a real database.

No crying wolf at night, dawn, in snow or for one missed poll; one event per transition;
reminders; resolution; and state that survives a restart (a new Store on the same file).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

from solar_monitor.config import Config, config_from_dict
from solar_monitor.pvs.models import Inverter, Meter, Snapshot, Supervisor
from solar_monitor.rules.catalog import BY_ID, RULES, check_overrides
from solar_monitor.rules.engine import AlertEvent, Engine, events_between
from solar_monitor.store import Store
from solar_monitor.sun import sun_elevation_deg

STEP = timedelta(minutes=15)
DAY1 = datetime(2025, 6, 14, 4, 0, tzinfo=UTC)  # local midnight, Boston, June
NOON = datetime(2025, 6, 15, 16, 0, tzinfo=UTC)  # local noon of the next day
SERIALS = [f"E00{i:012d}" for i in range(8)]


def elevation(at: datetime) -> float:
    return sun_elevation_deg(42.36, -71.06, at)


def snap(at: datetime, *, factor: float = 1.0, dead: tuple[str, ...] = (),
         absent: tuple[str, ...] = (), uptime_s: float | None = None,
         meter_kw: float | None = None) -> Snapshot:
    """A clear-sky reading: each inverter makes 0.3 kW x sin(elevation) x factor."""
    kw = 0.3 * max(0.0, math.sin(math.radians(elevation(at)))) * factor
    inverters = tuple(
        Inverter(s, state="error" if s in dead or kw < 0.005 else "working",
                 power_kw=0.0 if s in dead else round(kw, 4), heatsink_c=30.0)
        for s in SERIALS if s not in absent)
    boot = DAY1 - timedelta(days=2)
    sup = Supervisor(uptime_s=uptime_s if uptime_s is not None else (at - boot).total_seconds(),
                     flash_avail_kib=50000.0, untransmitted=0.0, data_time=at)
    meters = (Meter("PVS6M1p", "production", power_kw=meter_kw if meter_kw is not None
                    else round(kw * len(inverters), 4), voltage_v=242.0, freq_hz=60.0,
                    data_time=at),)
    return Snapshot(polled_at=at, api="legacy", source="test", supervisor=sup, meters=meters,
                    inverters=inverters)


def feed(engine: Engine, start: datetime, end: datetime, **kw: object) -> list[AlertEvent]:
    """Good polls every 15 minutes in [start, end)."""
    events: list[AlertEvent] = []
    at = start
    while at < end:
        events += engine.evaluate(at, snap(at, **kw), None)  # type: ignore[arg-type]
        at += STEP
    return events


def warm(engine: Engine) -> None:
    """A normal day and a half of history, so the inverter rules are warmed up."""
    assert feed(engine, DAY1, NOON - timedelta(hours=4)) == []


def test_catalog_ids_are_the_contract() -> None:
    ids = {r.id for r in RULES}
    assert {"inverter_offline", "inverter_missing", "inverter_underperforming",
            "pvs_unreachable", "data_stale", "pvs_storage_low", "pvs_upload_backlog",
            "pvs_rebooted", "production_low", "grid_out_of_range"} <= ids
    assert BY_ID["pvs_rebooted"].severity == "info"
    assert BY_ID["production_low"].subject == "system"
    assert check_overrides({"inverter_offline": {"open_after_min": 45}}) is None
    assert "no parameter" in (check_overrides({"inverter_offline": {"nope": 1}}) or "")


def test_dead_inverter_opens_once_within_the_hour_then_resolves(store: Store,
                                                                 config: Config) -> None:
    engine = Engine(store, config)
    warm(engine)
    start = NOON - timedelta(hours=3)
    events = feed(engine, start, start + timedelta(hours=2), dead=(SERIALS[2],))
    opens = [e for e in events if e.event == "open"]
    assert [(e.rule, e.subject) for e in opens] == [("inverter_offline", SERIALS[2])]
    assert opens[0].time - start <= timedelta(hours=1)
    assert "produced nothing" in opens[0].message and "Look at that panel" in opens[0].message
    # the night keeps it open, silently; it resolves once it produces again
    events = feed(engine, start + timedelta(hours=2), start + timedelta(hours=20),
                  dead=(SERIALS[2],))
    assert [e.event for e in events] == []
    events = feed(engine, start + timedelta(hours=20), start + timedelta(hours=26))
    assert [e.event for e in events] == ["resolved"]
    rows = store.db.execute("SELECT status, rule, subject FROM alerts").fetchall()
    assert [tuple(r) for r in rows] == [("resolved", "inverter_offline", SERIALS[2])]


def test_reminder_at_the_configured_interval(store: Store, config_dict: dict) -> None:
    config = config_from_dict({**config_dict, "alerts": {"reminder_hours": 2}}, env={})
    engine = Engine(store, config)
    warm(engine)
    events = feed_and_deliver(engine, config, NOON - timedelta(hours=3),
                              NOON + timedelta(hours=2), dead=(SERIALS[0],))
    assert [e.event for e in events] == ["open", "reminder", "reminder"]
    assert events[1].message.startswith("Still open since")


def test_no_reminder_while_the_last_email_waits_in_the_outbox(store: Store,
                                                              config_dict: dict) -> None:
    """A mail server down for hours: the alert's e-mail waits; reminders would only pile
    up behind it. The next one comes reminder_hours after the e-mail went out."""
    config = config_from_dict({**config_dict, "alerts": {"reminder_hours": 2}}, env={})
    engine = Engine(store, config)
    warm(engine)
    start = NOON - timedelta(hours=3)
    events = feed(engine, start, start + timedelta(hours=5), dead=(SERIALS[0],))
    assert [e.event for e in events] == ["open"]  # its e-mail never went out
    sent_at = start + timedelta(hours=5)
    events = feed_and_deliver(engine, config, sent_at, sent_at + timedelta(hours=2, minutes=15),
                              dead=(SERIALS[0],))
    assert [(e.event, e.time) for e in events] == [("reminder", sent_at + timedelta(hours=2))]


def feed_and_deliver(engine: Engine, config: Config, start: datetime, end: datetime,
                     **kw: object) -> list[AlertEvent]:
    """`feed`, with each poll's e-mails delivered at once (no targets: done when flushed)."""
    from solar_monitor.notify import flush_notifications

    events: list[AlertEvent] = []
    for n in range(int((end - start) / STEP)):
        at = start + n * STEP
        events += feed(engine, at, at + STEP, **kw)
        flush_notifications(config, engine.store, at)
    return events


def test_quiet_at_night_dawn_and_in_snow(store: Store, config: Config) -> None:
    engine = Engine(store, config)
    warm(engine)
    night = NOON + timedelta(hours=10)
    assert feed(engine, night, night + timedelta(hours=5), dead=tuple(SERIALS[:3])) == []
    dawn = datetime(2025, 6, 16, 9, 15, tzinfo=UTC)
    assert elevation(dawn) < 15
    assert feed(engine, dawn, dawn + timedelta(minutes=45), dead=(SERIALS[1],)) == []
    # snow: every inverter near zero at midday, the meter at standby draw
    snow = datetime(2025, 6, 16, 14, 0, tzinfo=UTC)
    assert feed(engine, snow, snow + timedelta(hours=5), factor=0.01, meter_kw=-0.015) == []


def test_one_missed_poll_is_not_an_outage(store: Store, config: Config) -> None:
    engine = Engine(store, config)
    feed(engine, DAY1, DAY1 + timedelta(hours=2))
    at = DAY1 + timedelta(hours=2)
    assert engine.evaluate(at, None, "HTTP 503") == []
    assert feed(engine, at + STEP, at + 4 * STEP) == []
    at += 4 * STEP
    events = [e for k in range(4)
              for e in engine.evaluate(at + k * STEP, None, "timed out")]
    assert [(e.event, e.rule) for e in events] == [("open", "pvs_unreachable")]
    assert "timed out" in events[0].message
    assert [e.event for e in feed(engine, at + 4 * STEP, at + 5 * STEP)] == ["resolved"]


def test_missing_inverter_but_not_when_all_vanish(store: Store, config: Config) -> None:
    engine = Engine(store, config)
    warm(engine)
    start = NOON - timedelta(hours=3)
    assert feed(engine, start, start + timedelta(hours=1), absent=tuple(SERIALS)) == []
    events = feed(engine, start + timedelta(hours=1), start + timedelta(hours=2),
                  absent=(SERIALS[5],))
    assert [(e.event, e.rule, e.subject) for e in events] == \
        [("open", "inverter_missing", SERIALS[5])]


def test_survives_a_restart(tmp_path: Path, config: Config) -> None:
    path = tmp_path / "db.sqlite"
    start = NOON - timedelta(hours=3)
    with Store(path) as first:
        engine = Engine(first, config)
        warm(engine)
        feed(engine, start, start + timedelta(minutes=30), dead=(SERIALS[3],))  # 3 bad polls
    with Store(path) as second:  # the next cron run: a new process, a new Store
        engine = Engine(second, config)
        events = feed(engine, start + timedelta(minutes=30), start + timedelta(hours=1),
                      dead=(SERIALS[3],))
        assert [e.event for e in events] == ["open"]  # the streak carried over
    with Store(path) as third:
        engine = Engine(third, config)
        assert engine.evaluate(start, snap(start), None) == []  # an old poll: ignored
        events = feed(engine, start + timedelta(hours=1), start + timedelta(hours=2))
        assert [e.event for e in events] == ["resolved"]
        all_events = events_between(third, None)
        assert [e.event for e in all_events] == ["open", "resolved"]
        assert len({e.alert_id for e in all_events}) == 1


def test_reboot_is_info_and_the_nightly_restart_is_routine(store: Store,
                                                           config: Config) -> None:
    engine = Engine(store, config)
    events: list[AlertEvent] = []
    at = DAY1
    boot = DAY1 - timedelta(days=2)
    while at < DAY1 + timedelta(days=5):
        local_h = (at.hour - 4) % 24
        if local_h == 2 and at.minute == 0:  # nightly restart at 02:00 local
            boot = at - timedelta(minutes=5)
        events += engine.evaluate(at, snap(at, uptime_s=(at - boot).total_seconds()), None)
        at += STEP
    assert [e for e in events if e.event == "open"] == []
    at += timedelta(hours=9)
    boot = at - timedelta(minutes=3)  # midday restart
    events = engine.evaluate(at, snap(at, uptime_s=180.0), None)
    assert [(e.event, e.rule, e.severity) for e in events] == \
        [("open", "pvs_rebooted", "info")]


def test_disabled_rules_and_overrides(store: Store, config_dict: dict) -> None:
    raw = {**config_dict, "alerts": {"disabled_rules": ["pvs_unreachable"],
                                     "rules": {"inverter_offline": {"open_polls": 8,
                                                                    "open_after_min": 105}}}}
    engine = Engine(store, config_from_dict(raw, env={}))
    warm(engine)
    start = NOON - timedelta(hours=3)
    events = feed(engine, start, start + timedelta(hours=2), dead=(SERIALS[1],))
    assert events[0].time - start == timedelta(minutes=105)
    later = [e for k in range(6) for e in engine.evaluate(
        start + timedelta(hours=30, minutes=15 * k), None, "down")]
    assert [e.rule for e in later if e.event == "open"] == []


def _worn(at: datetime, wear_pct: float | None) -> Snapshot:
    """A varserver-style reading whose PVS reports its flash wear."""
    base = snap(at)
    sup = Supervisor(uptime_s=base.supervisor.uptime_s if base.supervisor else None,
                     flash_wear_pct=wear_pct, data_time=at)
    return Snapshot(polled_at=at, api="varserver", source="test", supervisor=sup,
                    meters=base.meters, inverters=base.inverters)


def _feed_wear(engine: Engine, start: datetime, hours: float, wear: float | None
               ) -> list[AlertEvent]:
    events: list[AlertEvent] = []
    for k in range(int(hours * 4)):
        at = start + STEP * k
        events += engine.evaluate(at, _worn(at, wear), None)
    return events


def test_flash_wear_warns_at_80_pct_by_default(store: Store, config: Config) -> None:
    engine = Engine(store, config)
    start = NOON - timedelta(hours=3)
    assert _feed_wear(engine, start - timedelta(hours=2), 2, 70.0) == []  # 0x07
    assert _feed_wear(engine, start - timedelta(hours=4), 2, None) == []  # not reported
    events = _feed_wear(engine, start, 2, 80.0)  # 0x08
    opens = [e for e in events if e.event == "open"]
    assert [(e.rule, e.severity, e.subject) for e in opens] == \
        [("pvs_flash_wear", "warning", "system")]
    assert "80 % of its rated life" in opens[0].message
    assert "replacement" in opens[0].message


def test_flash_wear_threshold_is_configurable(store: Store, config_dict: dict) -> None:
    raw = {**config_dict, "alerts": {"rules": {"pvs_flash_wear": {"max_wear_pct": 90}}}}
    engine = Engine(store, config_from_dict(raw, env={}))
    start = NOON - timedelta(hours=3)
    assert [e.rule for e in _feed_wear(engine, start, 2, 80.0)] == []
    events = _feed_wear(engine, start + timedelta(hours=2), 2, 90.0)
    assert [(e.event, e.rule) for e in events] == [("open", "pvs_flash_wear")]
