-- The collection cycle: polls, readings per device, devices seen, key/value state.
CREATE TABLE polls (
    id INTEGER PRIMARY KEY,
    polled_at TEXT NOT NULL UNIQUE,
    ok INTEGER NOT NULL,
    error TEXT,
    http_status INTEGER,
    api TEXT,
    firmware TEXT,
    build INTEGER,
    pvs_time TEXT,
    archive_file TEXT,
    production_kw REAL,
    consumption_kw REAL,
    net_grid_kw REAL,
    lifetime_production_kwh REAL,
    inverters_total INTEGER,
    inverters_producing INTEGER,
    cloud_cover_pct REAL,
    sun_elevation_deg REAL
);
CREATE TABLE supervisor_readings (
    poll_id INTEGER PRIMARY KEY REFERENCES polls(id) ON DELETE CASCADE,
    serial TEXT, state TEXT, data_time TEXT,
    uptime_s REAL, cpu_load REAL, mem_used_kib REAL, flash_avail_kib REAL,
    flash_used_pct REAL, untransmitted REAL, err_count REAL, comm_err REAL,
    skipped_scans REAL, scan_time_s REAL
);
CREATE TABLE meter_readings (
    poll_id INTEGER NOT NULL REFERENCES polls(id) ON DELETE CASCADE,
    serial TEXT NOT NULL, kind TEXT, subtype TEXT, state TEXT, data_time TEXT,
    power_kw REAL, reactive_kvar REAL, apparent_kva REAL, power_factor REAL,
    freq_hz REAL, lifetime_net_kwh REAL, lifetime_pos_kwh REAL, lifetime_neg_kwh REAL,
    current_a REAL, voltage_v REAL, leg1_v REAL, leg2_v REAL, leg1_a REAL, leg2_a REAL,
    leg1_kw REAL, leg2_kw REAL, extra_json TEXT,
    PRIMARY KEY (poll_id, serial)
) WITHOUT ROWID;
CREATE TABLE inverter_readings (
    poll_id INTEGER NOT NULL REFERENCES polls(id) ON DELETE CASCADE,
    serial TEXT NOT NULL, state TEXT, data_time TEXT,
    power_kw REAL, lifetime_kwh REAL, ac_voltage_v REAL, ac_current_a REAL,
    freq_hz REAL, heatsink_c REAL, dc_voltage_v REAL, dc_current_a REAL,
    dc_power_kw REAL, extra_json TEXT,
    PRIMARY KEY (poll_id, serial)
) WITHOUT ROWID;
CREATE TABLE other_readings (
    poll_id INTEGER NOT NULL REFERENCES polls(id) ON DELETE CASCADE,
    device_type TEXT NOT NULL, serial TEXT, state TEXT, fields_json TEXT
);
CREATE TABLE devices (
    serial TEXT PRIMARY KEY,
    device_type TEXT NOT NULL,
    model TEXT,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    last_state TEXT,
    info_json TEXT
);
CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT);
