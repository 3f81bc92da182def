-- Snow (issue 15): depth on the ground (m) and the past hour's snowfall (cm), from
-- Open-Meteo's hourly data, so the rules tell a snow-covered panel from a dead one.
ALTER TABLE weather ADD COLUMN snow_depth_m REAL;
ALTER TABLE weather ADD COLUMN snowfall_cm REAL;
ALTER TABLE polls ADD COLUMN snow_depth_m REAL;
ALTER TABLE polls ADD COLUMN snowfall_cm REAL;
