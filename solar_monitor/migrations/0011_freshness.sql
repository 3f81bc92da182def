-- Freshness per value (issue 19): each inverter's and meter's age at the poll, in seconds
-- from its own measurement time (`data_time`: DATATIME, or varserver msmtEps). A value
-- older than models.STALE_AFTER_S is not current power (new firmware keeps a silent
-- inverter's last values for days). NULL: unknown (rows stored before this migration).
ALTER TABLE inverter_readings ADD COLUMN age_s REAL;
ALTER TABLE meter_readings ADD COLUMN age_s REAL;
