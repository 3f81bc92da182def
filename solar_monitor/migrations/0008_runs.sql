-- One row per `run` (not replay, demo or check), written at its very end in its own
-- transaction: how it ended, whether the heartbeat ping got through, and the Pi's own
-- health readings. A run whose card refused every write leaves no row (the digest counts
-- it as missed); its heartbeat /fail ping has already left the Pi.
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    started_at TEXT NOT NULL,         -- store time format, UTC
    finished_at TEXT NOT NULL,
    outcome TEXT NOT NULL,            -- ok, poll_failed, stage_failed, storage_failed, error
    exit_code INTEGER NOT NULL,
    reason TEXT,                      -- the one-line failure (redacted), NULL when ok
    heartbeat TEXT,                   -- NULL: no heartbeat configured; 'ok'; 'failed: ...'
    throttled INTEGER,                -- the firmware's get_throttled bits (NULL: not a Pi)
    cpu_temp_c REAL,
    storage_problem TEXT              -- why the data folder could not be written, if so
);
CREATE INDEX runs_started_at ON runs (started_at);
