"""The alert engine: rule verdicts per poll -> alerts that open, remind and resolve.

One notification per transition, never one per poll: an alert opens after a rule's
`open_polls` consecutive bad verdicts spanning `open_after_min`, gets a reminder every
`alerts.reminder_hours` while open (not for info alerts; counted from the delivery of its
previous e-mail, so reminders never pile up behind one stuck in the outbox while the mail
server is down), and resolves after
`clear_polls` good verdicts spanning `clear_after_min`. A verdict of None (night, a
failed poll, clouds) neither advances nor resets a streak.

Alerts and events are rows in SQLite, written in one transaction with the engine's
memory, so a restart (the next cron run) continues exactly where the last one stopped.
During a replay the engine stays in memory and saves its memory every
`REPLAY_SAVE_EVERY` polls and at the end (alerts and events are still written at once).
"""

from __future__ import annotations

import json
import logging
import weakref
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from solar_monitor.config import Config, SnowConfig
from solar_monitor.names import inverter_label
from solar_monitor.pi_health import PiHealth
from solar_monitor.pvs.models import Snapshot, totals
from solar_monitor.rules.catalog import BY_ID, RULES, SYSTEM, PollView, Rule, params_for
from solar_monitor.rules.learn import (
    CLEAR_FRACTION,
    LEARN_MIN_ELEVATION_DEG,
    LEARN_MIN_MEDIAN_KW,
    NEW_INVERTER_KEEP_S,
    WARMUP_S,
    Memory,
    Streak,
)
from solar_monitor.store import Store, from_iso, iso
from solar_monitor.sun import sun_position_deg

log = logging.getLogger(__name__)

EventKind = Literal["open", "reminder", "resolved"]
REPLAY_SAVE_EVERY = 96  # a day of 15-minute polls
_FLAG_RULES = frozenset({"inverter_offline", "inverter_missing"})
# bad polls count only over consecutive daylight polls: at night their streaks restart
# (a dropout at dusk and another the next morning are not one outage)
_DAYLIGHT_RULES = _FLAG_RULES | {"inverters_silent"}
_LEVEL = {"critical": "failure", "warning": "warning", "info": "info"}
_LEARN_MAX_CLOUD_PCT = 50.0
SNOW_BACK_SHARE = 0.5  # an inverter making half the median again has shed its snow
INVERTER_WARMUP_S = 86400
_INVERTERS_MOVE_DEG = 5.0  # above this sun elevation every working inverter reports


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One transition of one alert; what `--events-out` writes and e-mails say."""

    time: datetime
    event: EventKind
    rule: str
    severity: str
    subject: str
    message: str
    alert_id: int | None = None

    def to_json(self) -> dict[str, str]:
        return {"time": iso(self.time) or "", "event": self.event, "rule": self.rule,
                "severity": self.severity, "subject": self.subject, "message": self.message}


@dataclass
class OpenAlert:
    id: int
    severity: str
    opened_at: float
    last_notified_at: float
    message: str


@dataclass(frozen=True, slots=True)
class AlertSettings:
    """The `alerts` config section, with defaults when the config has none."""

    enabled: bool = True
    reminder_hours: float = 24.0
    tags: tuple[str, ...] = ("alerts",)
    disabled_rules: frozenset[str] = frozenset()
    ignore_inverters: frozenset[str] = frozenset()
    overrides: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    snow: SnowConfig = field(default_factory=SnowConfig)

    @classmethod
    def from_config(cls, config: Config) -> AlertSettings:
        section = getattr(config, "alerts", None)
        if section is None:
            return cls()
        return cls(enabled=section.enabled, reminder_hours=section.reminder_hours,
                   tags=tuple(section.tags), disabled_rules=frozenset(section.disabled_rules),
                   ignore_inverters=frozenset(section.ignore_inverters),
                   overrides=dict(section.rules), snow=section.snow)


class _Details(dict[str, Any]):
    """Message fields; a field a verdict did not provide shows as '?', never a KeyError."""

    def __missing__(self, key: str) -> str:
        return "?"


def _fmt(template: str, details: Mapping[str, Any]) -> str:
    try:
        return template.format_map(_Details(details))
    except (ValueError, TypeError):  # a '?' where a number format was expected
        safe = {k: v for k, v in details.items() if isinstance(v, str)}
        return template.split("{")[0] + " " + ", ".join(f"{k} {v}" for k, v in safe.items())


class Engine:
    """Rules and alert state of one store. Not thread-safe; one per Store."""

    def __init__(self, store: Store, config: Config, *, replay: bool = False) -> None:
        # A proxy: the engine is the value of _ENGINES' weak key `store`; a strong
        # reference would keep every run's store and engine alive for good.
        self.store: Store = weakref.proxy(store)
        self.config = config
        self.settings = AlertSettings.from_config(config)
        self.rules: list[Rule] = [r for r in RULES if r.id not in self.settings.disabled_rules]
        self.params = {r.id: params_for(r, self.settings.overrides) for r in RULES}
        self.tz = config.tz
        self.replay = replay
        self.memory = self._load_memory()
        self.open: dict[tuple[str, str], OpenAlert] = self._load_open()
        self._unsaved = 0

    # ------------------------------------------------------------------ loading, saving

    def _load_memory(self) -> Memory:
        rows = {r[0]: json.loads(r[1]) for r in self.store.db.execute(
            "SELECT name, value_json FROM alert_memory")}
        return Memory.from_json(rows.get("rolling"), rows.get("learned"))

    def _load_open(self) -> dict[tuple[str, str], OpenAlert]:
        rows = self.store.db.execute(
            "SELECT id, rule, subject, severity, opened_at, last_notified_at, message "
            "FROM alerts WHERE status='open'")
        return {(r[1], r[2]): OpenAlert(r[0], r[3], _ts(r[4]), _ts(r[5] or r[4]), r[6])
                for r in rows}

    def _save(self, at: datetime) -> None:
        """Write the memory; call inside a transaction."""
        mem = self.memory
        rows = [("rolling", mem.rolling_json())]
        if mem.learned_dirty:
            rows.append(("learned", mem.learned_json()))
            mem.learned_dirty = False
        self.store.db.executemany(
            "INSERT OR REPLACE INTO alert_memory (name, value_json, updated_at) "
            "VALUES (?, ?, ?)",
            [(name, json.dumps(value, separators=(",", ":")), iso(at)) for name, value in rows])
        self._unsaved = 0

    def flush(self) -> None:
        """Save what a replay kept in memory only."""
        if self._unsaved and self.memory.last_ts is not None:
            with self.store.transaction():
                self._save(_dt(self.memory.last_ts))

    def cloud_cover_pct(self, at: datetime) -> float | None:
        """The weather enricher's cloud cover stored with this poll, if any."""
        return self.weather(at)[0]

    def weather(self, at: datetime) -> tuple[float | None, float | None, float | None]:
        """The weather stored with this poll: cloud cover (%), snow depth (m), the past
        hour's snowfall (cm); None where unknown."""
        row = self.store.db.execute(
            "SELECT cloud_cover_pct, snow_depth_m, snowfall_cm FROM polls WHERE polled_at=?",
            (iso(at),)).fetchone()
        return (None, None, None) if row is None else (row[0], row[1], row[2])

    # ------------------------------------------------------------------ one poll

    def evaluate(self, at: datetime, snapshot: Snapshot | None, error: str | None,
                 cloud_cover_pct: float | None = None, *, notify: bool = True,
                 snow_depth_m: float | None = None, snowfall_cm: float | None = None,
                 pi: PiHealth | None = None) -> list[AlertEvent]:
        """Judge one poll (in time order; an older or repeated poll is ignored) and record
        the transitions it causes. Snow depth (m) and the past hour's snowfall (cm) come
        from the weather; None (unknown) is no snow. `pi` is this run's reading of the Pi
        itself. Raises sqlite3.Error when the store cannot be written."""
        ts = at.timestamp()
        mem = self.memory
        if mem.last_ts is not None and ts <= mem.last_ts:
            return []
        view = self._view(at, ts, snapshot, error, cloud_cover_pct)
        view.pi = pi
        self._snow(view, snow_depth_m, snowfall_cm)
        pending: list[tuple[EventKind, Rule, str, str, float]] = []
        for rule in self.rules:
            params = self.params[rule.id]
            if rule.id in _DAYLIGHT_RULES and view.elevation_deg < params["min_elevation_deg"]:
                self._restart_streaks(rule.id)
            for subject, bad, details in rule.check(view, params):
                kind = self._step(rule, params, subject, bad, ts, details)
                if kind is not None:
                    pending.append((kind, rule, subject, self._message(rule, subject, details),
                                    ts))
        for (rule_id, subject), alert in self.open.items():
            if (alert.severity != "info" and rule_id in BY_ID
                    and ts - alert.last_notified_at >= self.settings.reminder_hours * 3600
                    and not any(p[1].id == rule_id and p[2] == subject for p in pending)
                    and not (notify and self._unread(BY_ID[rule_id], subject, ts))):
                pending.append(("reminder", BY_ID[rule_id], subject, alert.message, ts))
        self._learn(view)
        mem.last_ts = ts
        self._unsaved += 1
        events: list[AlertEvent] = []
        if pending or not self.replay or self._unsaved >= REPLAY_SAVE_EVERY:
            with self.store.transaction():
                events = [self._record(at, *p, notify=notify) for p in pending]
                self._save(at)
        return events

    def _unread(self, rule: Rule, subject: str, ts: float) -> bool:
        """Whether the alert's last e-mail still waits in the outbox, or went out less than
        `reminder_hours` ago (it waited): a reminder now would land right behind it."""
        row = self.store.db.execute(
            "SELECT sent_at, gave_up_at FROM notifications WHERE title IN (?, ?) "
            "ORDER BY id DESC LIMIT 1",
            (self._title("open", rule, subject), self._title("reminder", rule, subject))
        ).fetchone()
        if row is None or row["gave_up_at"] is not None:
            return False  # never queued (no notify), or abandoned: remind again
        if row["sent_at"] is None:
            return True
        return ts - _ts(row["sent_at"]) < self.settings.reminder_hours * 3600

    def _view(self, at: datetime, ts: float, snapshot: Snapshot | None, error: str | None,
              cloud: float | None) -> PollView:
        """Derive the facts of one poll and update the rolling memory with them."""
        mem = self.memory
        if mem.first_ts is None:
            mem.first_ts = ts
        local = at.astimezone(self.tz)
        day_scores: dict[str, tuple[int, int, int, float]] = {}
        if mem.day != local.date().isoformat():
            if mem.day is not None:
                day_scores = {s: (int(v[0]), int(v[1]), int(v[2]), v[3])
                              for s, v in mem.day_scores.items()}
            mem.day, mem.day_scores, mem.flagged_today = local.date().isoformat(), {}, set()
        site = self.config.site
        el, az = sun_position_deg(site.latitude, site.longitude, at)
        inverters = {i.serial: i for i in snapshot.inverters} if snapshot else {}
        max_age_s = self.params["inverter_offline"]["max_age_min"] * 60
        silent = frozenset(s for s, i in inverters.items()
                           if i.age_s is not None and i.age_s > max_age_s)
        live = {s: 0.0 if s in silent else (i.power_kw or 0.0) for s, i in inverters.items()}
        median = _median(list(live.values()))
        production = totals(snapshot).production_kw if snapshot else None
        meter = snapshot.meter("production") if snapshot else None
        meter_kw = (meter.power_kw if meter is not None and not (
            meter.age_s is not None and meter.age_s > max_age_s) else None)
        unchanged = None
        reports_lost = False
        if snapshot is not None:
            fp = _fingerprint(snapshot, el)
            unchanged = None if mem.fingerprint is None or fp is None else fp == mem.fingerprint
            mem.fingerprint = fp
            gone = {s for s in mem.known_inverters if s in silent or s not in inverters}
            if el >= LEARN_MIN_ELEVATION_DEG and len(gone) < len(mem.known_inverters):
                mem.observe_gaps(ts, gone, set(inverters) - silent)
            reports_lost = self._reports_lost(gone, silent, live, meter_kw, el)
            self._observe_devices(snapshot, ts, local)
        for serial, first in list(mem.new_inverters.items()):
            if ts - first > NEW_INVERTER_KEEP_S:
                del mem.new_inverters[serial]
        change = mem.firmware_change
        return PollView(
            ts=ts, ok=snapshot is not None, error=error, snapshot=snapshot,
            elevation_deg=el, azimuth_deg=az, cloud_cover_pct=cloud, inverters=inverters,
            median_inverter_kw=median, production_kw=production,
            expected_kw=mem.expected_kw(el, az, ts) if el > 0 else None,
            unchanged=unchanged, known_inverters=mem.known_inverters,
            known_meters=mem.known_meters, new_inverters=mem.new_inverters,
            rebooted_at=mem.rebooted_at,
            firmware_change=(change[0], change[1], change[2]) if change else None,
            day_scores=day_scores, ignored=self.settings.ignore_inverters,
            inverters_warm=mem.first_ts is not None and ts - mem.first_ts >= INVERTER_WARMUP_S,
            active=self._active, dark=lambda serial: mem.dark(serial, ts),
            flapping=frozenset(mem.came_back),
            silent=silent, meter_kw=meter_kw, reports_lost=reports_lost)

    def _reports_lost(self, gone: set[str], silent: frozenset[str],
                      live: Mapping[str, float], meter_kw: float | None, el: float) -> bool:
        """Whether the production meter counts the power of every `gone` (silent or
        absent) inverter, all but half a median inverter's: they produce, only their
        reports are lost. Learns the meter's gain over the inverters' sum while every
        inverter reports."""
        mem = self.memory
        # an inverter already called offline or missing counts as making nothing
        gap = sum(1 for s in gone if ("inverter_offline", s) not in self.open
                  and ("inverter_missing", s) not in self.open)
        if meter_kw is None or el < LEARN_MIN_ELEVATION_DEG:
            return False
        reporting = [kw for s, kw in live.items() if s not in silent]
        total = sum(reporting)
        if not gap:
            if total >= LEARN_MIN_MEDIAN_KW * max(1, len(reporting)):
                mem.learn_meter_gain(meter_kw, total)
            return False
        med = _median(reporting)
        if not med or med < LEARN_MIN_MEDIAN_KW:
            return False
        return meter_kw / (mem.meter_gain or 1.0) - total >= (gap - 0.5) * med

    def _snow(self, v: PollView, depth_m: float | None, snowfall_cm: float | None) -> None:
        """Set the view's snow facts: whether the weather has snow at the site now (snow on
        the ground, or a snowfall in the last `after_snowfall_h`), and which inverters'
        darkness is put down to it (all of them then; afterwards, those of a row of
        panels that went dark together under it and are still shedding it)."""
        snow, mem = self.settings.snow, self.memory
        if not snow.enabled:
            return
        if snowfall_cm is not None and snowfall_cm >= snow.min_snowfall_cm:
            mem.snowfall_ts = v.ts
        weather_snow = (depth_m is not None and depth_m >= snow.min_depth_m) or (
            mem.snowfall_ts is not None and v.ts - mem.snowfall_ts < snow.after_snowfall_h * 3600)
        if not weather_snow and not mem.snow_dark:
            return  # no snow, and no panel left dark under the last one (the common case)
        dark: set[str] = set()
        back: set[str] = set()
        p = self.params["inverter_offline"]
        if v.ok and v.elevation_deg >= p["min_elevation_deg"]:
            med = v.median_inverter_kw or 0.0
            for serial, inv in v.inverters.items():
                kw = v.live_kw(serial)
                if (inv.producing and serial not in v.silent and med >= p["min_peer_kw"]
                        and kw >= SNOW_BACK_SHARE * med):
                    back.add(serial)
                elif (kw < p["peer_fraction"] * med or med < p["min_peer_kw"]) \
                        and not v.dark(serial):
                    dark.add(serial)
            if v.inverters:  # a PVS restart lists none: not every inverter went dark
                dark |= {s for s in v.known_inverters if s not in v.inverters}
        if not mem.observe_snow(v.ts, weather_snow, snow.shed_max_h * 3600, dark, back):
            return
        v.snowy = weather_snow
        v.snow = (lambda serial: True) if weather_snow else mem.snow_shedding

    def _observe_devices(self, snapshot: Snapshot, ts: float, local: datetime) -> None:
        mem = self.memory
        warm = mem.first_ts is not None and ts - mem.first_ts >= WARMUP_S
        for inv in snapshot.inverters:
            if inv.serial not in mem.known_inverters and warm and mem.known_inverters:
                mem.new_inverters[inv.serial] = ts
            mem.known_inverters[inv.serial] = ts
        for meter in snapshot.meters:
            mem.known_meters[meter.serial] = ts
        sup = snapshot.supervisor
        if sup is not None:
            seconds = local.hour * 3600 + local.minute * 60 + local.second
            mem.observe_boot(ts, sup.uptime_s, seconds)
        firmware = str(snapshot.build) if snapshot.build else snapshot.firmware
        if firmware:
            if mem.firmware and firmware != mem.firmware:
                mem.firmware_change = [ts, mem.firmware, firmware]
            mem.firmware = firmware

    def _active(self, rule: str, subject: str) -> bool:
        """Whether (rule, subject) is open or on a bad streak: lets one rule defer to
        another, so one fault gives one alert."""
        if (rule, subject) in self.open:
            return True
        streak = self.memory.streaks.get((rule, subject))
        return streak is not None and streak.bad_n > 0

    def _restart_streaks(self, rule_id: str) -> None:
        """Forget the bad polls of `rule_id`'s streaks (its open alerts stay open)."""
        streaks = self.memory.streaks
        for key in [k for k, st in streaks.items() if k[0] == rule_id and st.bad_n]:
            if key in self.open:
                streaks[key].bad_n = 0
            else:
                del streaks[key]

    def _step(self, rule: Rule, p: Mapping[str, float], subject: str, bad: bool | None,
              ts: float, details: Mapping[str, Any]) -> EventKind | None:
        """Advance one (rule, subject) streak; the transition it causes, if any.

        Two kinds of bad verdict open on their own terms (issue 19): `stopped` (an
        inverter silent since that time, its last values claiming power) counts from
        when it stopped, after `stopped_open_polls` polls spanning `stopped_open_min`
        since then; `reports_lost` (the meter still counts its power) waits for
        `lost_open_polls` spanning `lost_open_min`, longer than a dropout lasts, and
        `flap_open_polls` spanning `flap_open_min` when it came back from another gap in
        the last day (flapping: two dropouts may follow each other)."""
        if bad is None:
            return None
        key = (rule.id, subject)
        streaks = self.memory.streaks
        is_open = key in self.open
        st = streaks.get(key)
        if st is None:
            if not bad and not is_open:
                return None
            st = streaks[key] = Streak()
        if bad:
            stopped = details.get("stopped")
            if st.bad_n == 0:
                st.bad_since = min(ts, stopped) if isinstance(stopped, float) else ts
            st.bad_n += 1
            st.good_n = 0
            if rule.id in _FLAG_RULES:
                self.memory.flagged_today.add(subject)
            polls, minutes = p["open_polls"], p["open_after_min"]
            if details.get("reports_lost") and details.get("flapping"):
                polls, minutes = p["flap_open_polls"], p["flap_open_min"]
            elif details.get("reports_lost"):
                polls, minutes = p["lost_open_polls"], p["lost_open_min"]
            elif isinstance(stopped, float):
                polls, minutes = p["stopped_open_polls"], p["stopped_open_min"]
            if not is_open and st.bad_n >= polls and ts - st.bad_since >= minutes * 60:
                return "open"
            return None
        if st.good_n == 0:
            st.good_since = ts
        st.good_n += 1
        st.bad_n = 0
        if not is_open:
            del streaks[key]
            return None
        if st.good_n >= p["clear_polls"] and ts - st.good_since >= p["clear_after_min"] * 60:
            del streaks[key]
            return "resolved"
        return None

    def _message(self, rule: Rule, subject: str, details: Mapping[str, Any]) -> str:
        streak = self.memory.streaks.get((rule.id, subject))
        since = streak.bad_since if streak and streak.bad_n else None
        values = {**details, "subject": self._label(rule, subject), "serial": subject,
                  "since": self._local(since) if since else "now"}
        if isinstance(details.get("at"), float):
            values["since"] = self._local(details["at"])
        return f"{_fmt(rule.message, values)} {_fmt(rule.advice, values)}"

    def _local(self, ts: float) -> str:
        return _dt(ts).astimezone(self.tz).strftime("%Y-%m-%d %H:%M %Z")

    def _record(self, at: datetime, kind: EventKind, rule: Rule, subject: str, message: str,
                ts: float, *, notify: bool) -> AlertEvent:
        """Write one transition (alerts row, event row, outbox); call inside a transaction."""
        db = self.store.db
        key = (rule.id, subject)
        severity = rule.severity
        when = iso(at)
        if kind == "open":
            streak = self.memory.streaks.get(key)
            first = iso(_dt(streak.bad_since)) if streak and streak.bad_n else when
            cur = db.execute(
                "INSERT INTO alerts (rule, subject, severity, status, opened_at, first_bad_at, "
                "last_notified_at, message) VALUES (?, ?, ?, 'open', ?, ?, ?, ?)",
                (rule.id, subject, severity, when, first, when, message))
            assert cur.lastrowid is not None
            self.open[key] = OpenAlert(cur.lastrowid, severity, ts, ts, message)
            alert_id = cur.lastrowid
        else:
            alert = self.open[key]
            alert_id = alert.id
            severity = alert.severity
            if kind == "reminder":
                alert.last_notified_at = ts
                message = f"Still open since {self._local(alert.opened_at)}: {alert.message}"
                db.execute("UPDATE alerts SET last_notified_at=?, reminders=reminders+1 "
                           "WHERE id=?", (when, alert_id))
            else:
                message = (f"Resolved: {rule.title} ({self._name(rule, subject)}), open "
                           f"since {self._local(alert.opened_at)}, is back to normal.")
                db.execute("UPDATE alerts SET status='resolved', resolved_at=? WHERE id=?",
                           (when, alert_id))
                del self.open[key]
        event = AlertEvent(at, kind, rule.id, severity, subject, message, alert_id)
        db.execute(
            "INSERT INTO alert_events (time, event, rule, severity, subject, message, alert_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (when, kind, rule.id, severity, subject, message, alert_id))
        if notify and (kind == "open" or severity != "info"):
            self._queue(event, rule)
        self._to_sheet(event)
        return event

    def _queue(self, event: AlertEvent, rule: Rule) -> None:
        """Queue the e-mail in notify.py's outbox, in the caller's transaction."""
        try:
            from solar_monitor.notify import queue_notification
        except ImportError:  # pragma: no cover - notify.py ships with the package
            log.warning("notify module unavailable; alert %s not queued", event.rule)
            return
        level = "success" if event.event == "resolved" else _LEVEL[event.severity]
        queue_notification(self.store, title=self._title(event.event, rule, event.subject),
                           body=event.message,
                           tags=self.settings.tags, level=level,  # type: ignore[arg-type]
                           now=event.time)

    def _title(self, kind: EventKind, rule: Rule, subject: str) -> str:
        """The e-mail subject of one transition; it also finds the alert's e-mails."""
        prefix = {"open": "", "reminder": "Reminder: ", "resolved": "Resolved: "}[kind]
        return f"{self.config.site.name}: {prefix}{rule.title} ({self._name(rule, subject)})"

    def _label(self, rule: Rule, subject: str) -> str:
        """What the owner calls the subject: an inverter by names.inverter_label."""
        if rule.subject == "inverter" and subject != SYSTEM:
            return inverter_label(subject, self.config.inverters)
        return subject

    def _name(self, rule: Rule, subject: str) -> str:
        """'system', or the kind and label ('inverter south roof, row 2, #3 (…45868)')."""
        return "system" if subject == SYSTEM else f"{rule.subject} {self._label(rule, subject)}"

    def _to_sheet(self, event: AlertEvent) -> None:
        """Hand the event to the Google Sheet sink's outbox, when that sink exists."""
        try:
            from solar_monitor.sinks.outbox import enqueue_alert_event
        except ImportError:
            return
        enqueue_alert_event(self.store, event.time, event.event, event.rule, event.severity,
                            event.subject, event.message)

    def _learn(self, v: PollView) -> None:
        """Update the envelope and the inverters' ratios from this poll (after judging it,
        so a poll is never compared with itself)."""
        mem = self.memory
        if not v.ok or v.production_kw is None or v.elevation_deg < 5.0 or v.unchanged:
            return  # frozen data would teach the night's or the morning's values
        clear = (v.expected_kw is not None and v.production_kw >= CLEAR_FRACTION * v.expected_kw
                 and (v.cloud_cover_pct is None or v.cloud_cover_pct < _LEARN_MAX_CLOUD_PCT))
        mem.learn_envelope(v.elevation_deg, v.azimuth_deg, v.ts, v.production_kw)
        for serial, inv in v.inverters.items():
            if inv.power_kw and serial not in v.silent:
                mem.learn_own(serial, v.ts, inv.power_kw)
        med = v.median_inverter_kw
        if v.snowy or mem.snow_dark:
            return  # a panel under snow would teach (and score) a weak ratio
        if (not clear or med is None or med < LEARN_MIN_MEDIAN_KW
                or v.elevation_deg < LEARN_MIN_ELEVATION_DEG or len(v.inverters) < 3):
            return
        p = self.params["inverter_underperforming"]
        for serial in v.inverters:
            # never learn or judge a dead, missing or normally dark (shaded) inverter
            if (serial in mem.flagged_today or serial in v.ignored or v.dark(serial)
                    or serial in v.silent
                    or ("inverter_offline", serial) in self.open
                    or ("inverter_missing", serial) in self.open):
                continue
            mem.score_and_learn(serial, v.ts, v.live_kw(serial) / med,
                                p["weak_ratio"], p["ok_ratio"])


# --------------------------------------------------------------------------- helpers

_ENGINES: weakref.WeakKeyDictionary[Store, Engine] = weakref.WeakKeyDictionary()


def engine_for(store: Store, config: Config, *, replay: bool = False) -> Engine:
    """The engine of this store: kept for the store's lifetime, so a replay does not
    reload its memory for every poll."""
    engine = _ENGINES.get(store)
    if engine is None or engine.config is not config:
        if engine is not None:
            engine.flush()
        engine = _ENGINES[store] = Engine(store, config, replay=replay)
    engine.replay = replay
    return engine


def cached_engine(store: Store) -> Engine | None:
    return _ENGINES.get(store)


def events_between(store: Store, start: datetime | None, end: datetime | None = None
                   ) -> list[AlertEvent]:
    """Alert events in [start, end], oldest first (for --events-out, the demo, tests)."""
    rows = store.db.execute(
        "SELECT time, event, rule, severity, subject, message, alert_id FROM alert_events "
        "WHERE time >= ? AND time <= ? ORDER BY time, id",
        (iso(start) or "", iso(end) or "9999"))
    return [AlertEvent(_dt(_ts(r[0])), r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows]


def write_events(path: Path, events: Iterable[AlertEvent]) -> int:
    """Write events as JSON lines; returns how many. Raises OSError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for event in events:
            out.write(json.dumps(event.to_json(), ensure_ascii=False) + "\n")
            count += 1
    return count


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    values.sort()
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def _fingerprint(snap: Snapshot, elevation_deg: float) -> int | None:
    """A checksum of the devices' own readings and measurement times, to spot an answer
    frozen in time; never the PVS's clock (CURTIME, livedata `time`), which a hung PVS
    keeps moving (issue 19). Inverters rest at night, so then only meters count. A site
    without meters adds the supervisor's own uptime and data time: its inverters all
    fall silent behind a tripped breaker too, while the PVS lives on. None when nothing
    that should move was read (no meter, no supervisor, at night)."""
    parts: list[Any] = [(m.serial, iso(m.data_time), m.lifetime_net_kwh, m.power_kw)
                        for m in snap.meters]
    if elevation_deg >= _INVERTERS_MOVE_DEG:
        parts += [(i.serial, iso(i.data_time), i.lifetime_kwh, i.power_kw)
                  for i in snap.inverters]
    sup = snap.supervisor
    if not snap.meters and sup is not None and (sup.uptime_s or sup.data_time):
        parts.append((sup.uptime_s, iso(sup.data_time)))
    return zlib.crc32(repr(parts).encode()) if parts else None


def _ts(text: str | None) -> float:
    at = from_iso(text)
    return at.timestamp() if at else 0.0


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)
