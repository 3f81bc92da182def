-- Weather samples (Open-Meteo hourly values and its 15-minute "current" value), UTC.
-- A poll takes the nearest sample, so a run never waits for the network twice in an hour.
CREATE TABLE weather (
    at TEXT PRIMARY KEY,
    cloud_cover_pct REAL,
    shortwave_w_m2 REAL,
    fetched_at TEXT NOT NULL
);
-- Global horizontal irradiance (W/m2) near the poll: a better "should it produce?" signal
ALTER TABLE polls ADD COLUMN shortwave_w_m2 REAL;
