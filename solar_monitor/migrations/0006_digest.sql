-- The monthly digest: one row per site-local month once its digest is queued or sent,
-- so `run` sends each month's digest exactly once, however many runs come after.
CREATE TABLE digests (
    month TEXT PRIMARY KEY,           -- 'YYYY-MM', the site's local calendar month
    status TEXT NOT NULL,             -- queued, sent or skipped (no data that month)
    queued_at TEXT,                   -- store time format, UTC
    sent_at TEXT,
    outbox_id INTEGER,                -- the notification outbox row, when queued there
    detail TEXT                       -- why skipped, or the last delivery error
)
