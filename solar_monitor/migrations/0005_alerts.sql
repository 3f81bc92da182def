-- Alerts (issue 4): one row per alert, one row per notification-worthy transition.
-- Times are 'YYYY-MM-DDTHH:MM:SSZ' UTC text, like every other table. The monthly digest
-- reads `alerts` and `alert_events`; `alert_memory` is the rules engine's private state.
--
-- alerts: an alert is one (rule, subject) problem from the poll where it opened to the poll
-- where it cleared. At most one open alert per (rule, subject).
--   rule              stable rule id (see solar_monitor/rules/catalog.py), e.g. inverter_offline
--   subject           an inverter or meter serial, or 'system'
--   severity          info | warning | critical
--   status            open | resolved
--   opened_at         poll time at which it opened (after the rule's hysteresis)
--   first_bad_at      poll time of the first bad reading of the streak that opened it
--   resolved_at       poll time at which it cleared (NULL while open)
--   last_notified_at  time of the last open/reminder event (reminder clock)
--   reminders         how many reminders were sent
--   message           what is wrong and what to check, as of the opening
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY,
    rule TEXT NOT NULL,
    subject TEXT NOT NULL,
    severity TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    status TEXT NOT NULL CHECK (status IN ('open', 'resolved')),
    opened_at TEXT NOT NULL,
    first_bad_at TEXT,
    resolved_at TEXT,
    last_notified_at TEXT,
    reminders INTEGER NOT NULL DEFAULT 0,
    message TEXT NOT NULL
);
CREATE UNIQUE INDEX alerts_one_open ON alerts(rule, subject) WHERE status = 'open';
CREATE INDEX alerts_opened ON alerts(opened_at);
-- alert_events: exactly one row per transition (open, reminder, resolved), never per poll.
-- The same rows are what `replay --events-out` writes as JSON lines.
CREATE TABLE alert_events (
    id INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    event TEXT NOT NULL CHECK (event IN ('open', 'reminder', 'resolved')),
    rule TEXT NOT NULL,
    severity TEXT NOT NULL,
    subject TEXT NOT NULL,
    message TEXT NOT NULL,
    alert_id INTEGER NOT NULL REFERENCES alerts(id)
);
CREATE INDEX alert_events_time ON alert_events(time);
-- alert_memory: the engine's rolling state ('rolling': streaks, last values) and what it
-- learned ('learned': clear-sky envelope, each inverter's ratio to its peers), as JSON.
CREATE TABLE alert_memory (
    name TEXT PRIMARY KEY,
    value_json TEXT NOT NULL,
    updated_at TEXT NOT NULL
)
