-- The notification outbox: a message waits here until every target it is meant for
-- accepted it, so a failed send is retried on the next run.
CREATE TABLE notifications (
    id INTEGER PRIMARY KEY,
    created_at TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    body_format TEXT NOT NULL DEFAULT 'text',
    text_alternative TEXT,
    level TEXT NOT NULL DEFAULT 'info',
    tags_json TEXT NOT NULL DEFAULT '[]',
    attachments_json TEXT NOT NULL DEFAULT '[]',
    delivered_json TEXT NOT NULL DEFAULT '[]',
    attempts INTEGER NOT NULL DEFAULT 0,
    last_attempt_at TEXT,
    last_error TEXT,
    sent_at TEXT,
    gave_up_at TEXT
);
CREATE INDEX notifications_pending ON notifications(id)
    WHERE sent_at IS NULL AND gave_up_at IS NULL;
