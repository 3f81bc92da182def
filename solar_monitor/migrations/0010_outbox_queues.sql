-- One outbox for every sink (issue 20): the sheet's rows and the exports' points wait in
-- the same table, each sink in its own named queue ('readings', 'daily', 'alerts' for the
-- sheet; 'influxdb' for InfluxDB), sent in id order, keyed so that queueing twice is a
-- no-op. payload is the sink's own text (the sheet's cells JSON, InfluxDB line protocol).
ALTER TABLE sheet_outbox RENAME TO outbox;
ALTER TABLE outbox RENAME COLUMN layout TO queue;
ALTER TABLE outbox RENAME COLUMN row_key TO item_key;
ALTER TABLE outbox RENAME COLUMN cells_json TO payload;
DROP INDEX sheet_outbox_unsent;
CREATE INDEX outbox_unsent ON outbox(queue, sent_at, id);
