-- Google Sheets outbox: rows wait here, in order, until the sheet has them.
-- cells_json holds [[header, value], ...] with times as UTC text; they are rendered for
-- the sheet (local time, USER_ENTERED) when sent. Sent rows are kept a month, then pruned.
CREATE TABLE sheet_outbox (
    id INTEGER PRIMARY KEY,
    layout TEXT NOT NULL,
    row_key TEXT NOT NULL,
    cells_json TEXT NOT NULL,
    queued_at TEXT NOT NULL,
    sent_at TEXT,
    UNIQUE (layout, row_key)
);
CREATE INDEX sheet_outbox_unsent ON sheet_outbox(sent_at, id);
