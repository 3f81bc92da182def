"""Weather: a fake Open-Meteo over real HTTP on loopback, the hourly cache, failures, replay CSV."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from solar_monitor.archive import save_answer
from solar_monitor.cli import main
from solar_monitor.config import Config, config_from_dict
from solar_monitor.emulation.emulator import start_emulator
from solar_monitor.emulation.sim import SimulatedSite, SiteSpec
from solar_monitor.pipeline import RunReport, open_store, run_once
from solar_monitor.replay import replay
from solar_monitor.weather import CsvWeather, WeatherError, parse_open_meteo

NOW = datetime(2025, 6, 21, 18, 7, tzinfo=UTC)  # 14:07 in Boston: daylight


def open_meteo_payload(day: datetime) -> dict:
    """The shape Open-Meteo answers for current+hourly, timezone=UTC (values made up:
    cloud cover = the hour of day, radiation = 10 x hour, snow depth = hour / 100 m,
    snowfall = hour / 10 cm; snow is hourly only, as Open-Meteo gives it)."""
    start = day.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    times = [start + timedelta(hours=h) for h in range(72)]
    return {
        "latitude": 42.36, "longitude": -71.06, "generationtime_ms": 0.05,
        "utc_offset_seconds": 0, "timezone": "GMT", "timezone_abbreviation": "GMT",
        "elevation": 14.0,
        "current_units": {"time": "iso8601", "interval": "seconds", "cloud_cover": "%",
                          "shortwave_radiation": "W/m²"},
        "current": {"time": "2025-06-21T18:00", "interval": 900, "cloud_cover": 55,
                    "shortwave_radiation": 612.0},
        "hourly_units": {"time": "iso8601", "cloud_cover": "%", "shortwave_radiation": "W/m²",
                         "snow_depth": "m", "snowfall": "cm"},
        "hourly": {"time": [t.strftime("%Y-%m-%dT%H:%M") for t in times],
                   "cloud_cover": [t.hour if t.hour != 3 else None for t in times],
                   "shortwave_radiation": [10.0 * t.hour for t in times],
                   "snow_depth": [t.hour / 100 for t in times],
                   "snowfall": [t.hour / 10 for t in times]},
    }


class FakeOpenMeteo:
    """Serves /v1/forecast on 127.0.0.1; `mode` is ok | error | slow | garbage."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.requests: list[dict[str, list[str]]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                fake.requests.append(parse_qs(urlsplit(self.path).query))
                if fake.mode == "slow":
                    time.sleep(2.5)
                status, body = {
                    "ok": (200, json.dumps(open_meteo_payload(NOW)).encode()),
                    "slow": (200, b"{}"),
                    "error": (400, b'{"error": true, "reason": "Latitude must be in range"}'),
                    "garbage": (200, b"<html>busy</html>"),
                }[fake.mode]
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the client gave up (timeout test)
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1/forecast"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def meteo() -> Iterator[FakeOpenMeteo]:
    fake = FakeOpenMeteo()
    yield fake
    fake.close()


PVS_CLOCK = [NOW]  # the emulated PVS's clock follows the runs' simulated time


@pytest.fixture
def emulator() -> Iterator[str]:
    site = SimulatedSite(SiteSpec(epoch=NOW.replace(hour=0, minute=0)))
    with start_emulator(site, firmware="legacy", clock=lambda: PVS_CLOCK[0]) as emu:
        yield emu.url


def run_at(config: Config, at: datetime) -> RunReport:
    """One run at simulated time `at`, the PVS's clock agreeing."""
    PVS_CLOCK[0] = at
    return run_once(config, now=at)


def make_config(config_dict: dict, pvs_url: str, meteo_url: str, **weather: object) -> Config:
    raw = {**config_dict, "pvs": {**config_dict["pvs"], "url": pvs_url},
           "weather": {"url": meteo_url, "timeout_s": 1, **weather}}
    return config_from_dict(raw, env={})


def stored(config: Config) -> list[tuple[str, float | None, float | None]]:
    with open_store(config) as store:
        return [(r["polled_at"], r["cloud_cover_pct"], r["shortwave_w_m2"])
                for r in store.polls_from(None)]


# --- parsing -------------------------------------------------------------------------------

def test_parse_keeps_hourly_and_current_values_in_utc() -> None:
    samples = parse_open_meteo(open_meteo_payload(NOW))
    assert len(samples) == 73
    first, *_, current = samples
    assert first.at == datetime(2025, 6, 20, 0, 0, tzinfo=UTC)
    assert current.at == datetime(2025, 6, 21, 18, 0, tzinfo=UTC)
    assert (current.cloud_cover_pct, current.shortwave_w_m2) == (55.0, 612.0)
    assert samples[3].cloud_cover_pct is None  # a null in the series stays empty
    assert (first.snow_depth_m, samples[5].snow_depth_m, samples[5].snowfall_cm) == \
        (0.0, 0.05, 0.5)
    # the 15-minute current value has no snow of its own: it takes its hour's
    assert (current.snow_depth_m, current.snowfall_cm) == (0.18, 1.8)


def test_an_answer_without_snow_leaves_it_empty() -> None:
    payload = open_meteo_payload(NOW)
    del payload["hourly"]["snow_depth"], payload["hourly"]["snowfall"]
    samples = parse_open_meteo(payload)
    assert {(s.snow_depth_m, s.snowfall_cm) for s in samples} == {(None, None)}


@pytest.mark.parametrize("payload", [None, {}, {"hourly": {"time": "x"}},
                                     {"hourly": {"time": ["2025-06-21T00:00"],
                                                 "cloud_cover": [1, 2]}},
                                     {"hourly": {"time": ["yesterday"], "cloud_cover": [1]}}])
def test_parse_rejects_unusable_answers(payload: object) -> None:
    with pytest.raises(WeatherError):
        parse_open_meteo(payload)


# --- live runs -----------------------------------------------------------------------------

def test_a_run_stores_cloud_cover_and_two_runs_in_an_hour_make_one_request(
        meteo: FakeOpenMeteo, emulator: str, config_dict: dict) -> None:
    config = make_config(config_dict, emulator, meteo.url)
    assert run_at(config, NOW).ok
    assert run_at(config, NOW + timedelta(minutes=15)).ok
    assert len(meteo.requests) == 1
    query = meteo.requests[0]
    assert query["latitude"] == ["42.36"] and query["timezone"] == ["UTC"]
    assert query["current"] == ["cloud_cover,shortwave_radiation"]
    assert query["hourly"] == ["cloud_cover,shortwave_radiation,snow_depth,snowfall"]
    # 18:07 takes the current value (18:00); 18:22 also, the nearest sample within 45 min
    assert stored(config) == [("2025-06-21T18:07:00Z", 55.0, 612.0),
                              ("2025-06-21T18:22:00Z", 55.0, 612.0)]
    assert run_at(config, NOW + timedelta(minutes=61)).ok
    assert len(meteo.requests) == 2
    assert stored(config)[-1] == ("2025-06-21T19:08:00Z", 19.0, 190.0)


@pytest.mark.parametrize("mode", ["error", "garbage", "slow"])
def test_a_weather_failure_leaves_cloud_cover_empty_and_the_run_succeeds(
        mode: str, meteo: FakeOpenMeteo, emulator: str, config_dict: dict,
        caplog: pytest.LogCaptureFixture) -> None:
    meteo.mode = mode
    config = make_config(config_dict, emulator, meteo.url)
    started = time.monotonic()
    report = run_at(config, NOW)
    assert report.ok and report.stage_errors == ()
    assert time.monotonic() - started < 2.4  # one attempt, bounded by timeout_s=1
    assert stored(config) == [("2025-06-21T18:07:00Z", None, None)]
    warnings = [r.getMessage() for r in caplog.records if r.name == "solar_monitor.weather"]
    assert len(warnings) == 1 and "cloud cover left empty" in warnings[0]
    if mode == "error":
        assert "HTTP 400: Latitude must be in range" in warnings[0]
    # the next run within 10 minutes does not try again; the one after does
    meteo.mode = "ok"
    run_at(config, NOW + timedelta(minutes=5))
    assert len(meteo.requests) == 1
    run_at(config, NOW + timedelta(minutes=15))
    assert len(meteo.requests) == 2
    assert stored(config)[-1] == ("2025-06-21T18:22:00Z", 55.0, 612.0)


def test_weather_can_be_switched_off(meteo: FakeOpenMeteo, emulator: str,
                                     config_dict: dict) -> None:
    config = make_config(config_dict, emulator, meteo.url, enabled=False)
    assert run_at(config, NOW).ok
    assert meteo.requests == [] and stored(config) == [("2025-06-21T18:07:00Z", None, None)]


# --- replay --------------------------------------------------------------------------------

def test_csv_provider_takes_the_nearest_hour_within_45_minutes(tmp_path: Path) -> None:
    path = tmp_path / "weather.csv"
    path.write_text("time,cloud_cover\n2025-06-21T17:00,20\n2025-06-21T18:00Z,80\n"
                    "2025-06-21T19:00:00+00:00,\n", encoding="utf-8")
    weather = CsvWeather.load(path)
    assert weather.at(NOW).cloud_cover_pct == 80.0  # type: ignore[union-attr]
    assert weather.at(NOW - timedelta(minutes=40)).cloud_cover_pct == 20.0  # type: ignore
    assert weather.at(NOW + timedelta(minutes=53)).cloud_cover_pct is None  # type: ignore
    assert weather.at(NOW + timedelta(hours=3)) is None


def test_snow_is_stored_with_each_poll_and_written_to_the_csv(
        meteo: FakeOpenMeteo, emulator: str, config_dict: dict,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from solar_monitor.sinks import csv_files

    config = make_config(config_dict, emulator, meteo.url)
    csv_path = config.data_path / "csv" / "readings.csv"
    columns = csv_files.READINGS_COLUMNS
    # two runs of a version from before the snow columns: a 14-column readings.csv
    monkeypatch.setattr(csv_files, "READINGS_COLUMNS", columns[:-2])
    for minutes in (0, 15):
        assert run_at(config, NOW + timedelta(minutes=minutes)).ok
    old = csv_path.read_text(encoding="utf-8").splitlines()
    monkeypatch.setattr(csv_files, "READINGS_COLUMNS", columns)
    assert run_at(config, NOW + timedelta(minutes=30)).ok
    with open_store(config) as store:
        assert [(p["snow_depth_m"], p["snowfall_cm"]) for p in store.polls_from(None)] == \
            [(0.18, 1.8), (0.18, 1.8), (0.19, 1.9)]  # 18:37 is nearest to 19:00
    lines = csv_path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == old[0] + ",snow_depth_m,snowfall_cm"  # widened once, in place
    assert lines[1] == old[1] + ",,"  # an earlier row keeps its cells, padded to the width
    # the file's last poll is rewritten by the watermark repair, then the new poll
    assert [line[:20] for line in lines[2:]] == ["2025-06-21T18:22:00Z", "2025-06-21T18:37:00Z"]
    assert lines[2].endswith(",0.18,1.8") and lines[3].endswith(",0.19,1.9")


def test_the_emulators_open_meteo_answers_the_simulated_snow() -> None:
    import requests

    from solar_monitor.emulation.emulator import WEATHER_PATH
    from solar_monitor.emulation.sim import SnowCover

    start = NOW - timedelta(hours=20)
    snow = SnowCover(start=start, end=start + timedelta(days=2), depth_m=0.2, snowfall_h=4)
    site = SimulatedSite(SiteSpec(epoch=NOW.replace(hour=0, minute=0), faults=(snow,)))
    with start_emulator(site, clock=lambda: NOW) as emu:
        answer = requests.get(f"{emu.url}{WEATHER_PATH}", timeout=10).json()
    samples = {s.at: s for s in parse_open_meteo(answer)}
    hour = start.replace(minute=0)
    assert samples[hour - timedelta(hours=1)].snow_depth_m == 0.0
    assert samples[hour + timedelta(hours=2)].snowfall_cm == pytest.approx(5.0, abs=0.5)
    assert samples[hour + timedelta(hours=6)].snow_depth_m == pytest.approx(0.2, abs=0.015)
    assert samples[hour + timedelta(hours=6)].snowfall_cm == 0.0
    assert samples[hour + timedelta(hours=26)].snow_depth_m == pytest.approx(0.1, abs=0.01)
    assert samples[hour + timedelta(hours=49)].snow_depth_m == 0.0  # melted at `end`


def test_csv_provider_reads_an_open_meteo_download(tmp_path: Path) -> None:
    path = tmp_path / "open-meteo.csv"
    path.write_text("latitude,longitude,elevation,utc_offset_seconds,timezone\n"
                    "42.36,-71.06,14.0,0,GMT\n\n"
                    "time,cloud_cover (%),shortwave_radiation (W/m²)\n"
                    "2025-06-21T18:00,35,700.5\n", encoding="utf-8")
    sample = CsvWeather.load(path).at(NOW)
    assert sample is not None and (sample.cloud_cover_pct, sample.shortwave_w_m2) == (35, 700.5)
    assert (sample.snow_depth_m, sample.snowfall_cm) == (None, None)  # no snow columns


def test_csv_provider_reads_snow_as_open_meteo_exports_it(tmp_path: Path) -> None:
    path = tmp_path / "open-meteo.csv"
    path.write_text("latitude,longitude,elevation,utc_offset_seconds,timezone,"
                    "timezone_abbreviation\n42.36,-71.06,14.0,0,GMT,GMT\n\n"
                    "time,cloud_cover (%),snow_depth (m),snowfall (cm)\n"
                    "2025-01-21T17:00,100,0.12,1.40\n2025-01-21T18:00,90,0.00,\n",
                    encoding="utf-8")
    weather = CsvWeather.load(path)
    first = weather.at(datetime(2025, 1, 21, 17, 10, tzinfo=UTC))
    assert first is not None and (first.cloud_cover_pct, first.snow_depth_m,
                                  first.snowfall_cm) == (100, 0.12, 1.4)
    second = weather.at(datetime(2025, 1, 21, 18, 0, tzinfo=UTC))
    assert second is not None and (second.snow_depth_m, second.snowfall_cm) == (0.0, None)


def test_csv_snow_in_other_units_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "w.csv"
    path.write_text("time,cloud_cover (%),snow_depth (cm)\n2025-01-21T17:00,100,12\n",
                    encoding="utf-8")
    with pytest.raises(WeatherError, match=r"'snow_depth \(cm\)' must be in m"):
        CsvWeather.load(path)


@pytest.mark.parametrize("text, problem", [
    ("when,clouds\n", "no header line starting with 'time'"),
    ("time,rain\n", "no cloud_cover column"),
    ("time,cloud_cover\n2025-06-21T18:00,lots\n", "line 2"),
    ("time,cloud_cover\nnoon,5\n", "line 2"),
])
def test_a_bad_csv_names_the_problem(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "w.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(WeatherError, match=problem):
        CsvWeather.load(path)


def archive_two_polls(emulator: str, folder: Path) -> None:
    import requests

    body = requests.get(f"{emulator}/cgi-bin/dl_cgi?Command=DeviceList", timeout=10).content
    for minutes in (0, 15):
        save_answer(folder, NOW + timedelta(minutes=minutes), body)


def test_replay_uses_the_csv_and_never_the_network(
        meteo: FakeOpenMeteo, emulator: str, config_dict: dict, tmp_path: Path) -> None:
    source = tmp_path / "old-archive"
    archive_two_polls(emulator, source)
    csv = tmp_path / "weather.csv"
    csv.write_text("time,cloud_cover,shortwave_radiation\n2025-06-21T18:00,90,120\n",
                   encoding="utf-8")
    config = make_config(config_dict, emulator, meteo.url)
    report = replay(config, source, weather=csv)
    assert report.stored == 2
    assert stored(config) == [("2025-06-21T18:07:00Z", 90.0, 120.0),
                              ("2025-06-21T18:22:00Z", 90.0, 120.0)]
    other = make_config({**config_dict, "data_dir": str(tmp_path / "other")}, emulator,
                        meteo.url)
    assert replay(other, source).stored == 2
    assert [c for _, c, _ in stored(other)] == [None, None]
    assert meteo.requests == []


def test_replay_weather_flag(meteo: FakeOpenMeteo, emulator: str, config_dict: dict,
                             tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "old-archive"
    archive_two_polls(emulator, source)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**config_dict, "weather": {"url": meteo.url}}),
                    encoding="utf-8")
    path.chmod(0o600)
    bad = tmp_path / "bad.csv"
    bad.write_text("nothing here\n", encoding="utf-8")
    argv = ["replay", str(source), "--quiet", "--config", str(path), "--weather"]
    assert main([*argv, str(bad)]) == 1
    assert "--weather" in capsys.readouterr().err
    good = tmp_path / "good.csv"
    good.write_text("time,cloud_cover\n2025-06-21T18:00,12\n", encoding="utf-8")
    assert main([*argv, str(good)]) == 0
    assert "2 stored" in capsys.readouterr().out
    config = config_from_dict(yaml.safe_load(path.read_text()), env={})
    assert [c for _, c, _ in stored(config)] == [12.0, 12.0]
    assert meteo.requests == []


def test_check_probe_reports_the_current_cloud_cover(meteo: FakeOpenMeteo,
                                                     config_dict: dict) -> None:
    from solar_monitor.weather import check_weather

    config = make_config(config_dict, "http://127.0.0.1:9", meteo.url)
    ok, detail = check_weather(config, now=NOW)
    assert ok is True and "55% cloud cover, 612 W/m2" in detail
    meteo.mode = "error"
    ok, detail = check_weather(config, now=NOW)
    assert ok is False and "HTTP 400" in detail
    off = make_config(config_dict, "http://127.0.0.1:9", meteo.url, enabled=False)
    assert check_weather(off)[0] is None


def test_check_warns_but_does_not_fail_when_the_weather_service_is_down(
        meteo: FakeOpenMeteo, config_dict: dict) -> None:
    """`check` is what the installer waits for before it starts the runs: an Open-Meteo
    outage must not keep the watchdog off."""
    from solar_monitor.check import check_weather

    config = make_config(config_dict, "http://127.0.0.1:9", meteo.url)
    meteo.mode = "error"
    result = check_weather(config)
    assert result.status == "WARN" and "cloud cover and snow stay empty" in result.detail
