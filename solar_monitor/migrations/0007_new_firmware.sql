-- New-firmware values (issue 11): the gateway's CPU percentage and the eMMC's flash wear
-- per poll, the site's battery power and charge, and one row per SunVault device.
ALTER TABLE supervisor_readings ADD COLUMN cpu_usage_pct REAL;
ALTER TABLE supervisor_readings ADD COLUMN flash_wear_pct REAL;
-- Until now a varserver poll stored /sys/info/cpu_usage (a %) as cpu_load (the legacy
-- load average): move it where it belongs.
UPDATE supervisor_readings SET cpu_usage_pct = cpu_load, cpu_load = NULL
    WHERE poll_id IN (SELECT id FROM polls WHERE api = 'varserver');
ALTER TABLE polls ADD COLUMN battery_kw REAL;        -- + discharging, - charging
ALTER TABLE polls ADD COLUMN battery_soc_pct REAL;
CREATE TABLE battery_readings (
    poll_id INTEGER NOT NULL REFERENCES polls(id) ON DELETE CASCADE,
    device_type TEXT NOT NULL, serial TEXT, model TEXT, state TEXT, op_mode TEXT,
    data_time TEXT, soc_pct REAL, customer_soc_pct REAL, soh_pct REAL, power_kw REAL,
    battery_v REAL, extra_json TEXT
);
CREATE INDEX battery_readings_poll ON battery_readings (poll_id);
