"""The Google Sheet sink: the real gspread and google-auth against a fake Sheets API.

The fake (tests/fake_sheets.py) runs on loopback; the service-account key is a fresh RSA
key whose token_uri points at the fake, which checks the JWT signature. Only the transport
to sheets.googleapis.com is redirected (sheets.SESSION_HOOKS).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from solar_monitor.config import config_from_dict
from solar_monitor.daily import DaySummary
from solar_monitor.pipeline import open_store, run_once
from solar_monitor.pvs.client import RawPoll
from solar_monitor.pvs.parse import parse
from solar_monitor.sinks import outbox, sheets
from solar_monitor.sinks.sheets_layout import (
    ALERTS,
    DAILY,
    READINGS,
    daily_cells,
    inverter_header,
    sheet_row_key,
)
from tests.conftest import real, without_clock
from tests.fake_sheets import FakeSheetsAPI

SID = "1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdEFG"
EMAIL = "solar-monitor@solar-test.iam.gserviceaccount.com"
TZ = ZoneInfo("America/New_York")
START = datetime(2026, 6, 9, 16, 0, tzinfo=UTC)  # noon in Boston
STEP = timedelta(minutes=15)
FIXTURE = without_clock(real("dl_cgi_61839_30_inverters").read_bytes())
EPOCH = datetime(1899, 12, 30)


@pytest.fixture(scope="module")
def rsa_key():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return key, pem


@pytest.fixture
def fake(rsa_key, monkeypatch):
    with FakeSheetsAPI() as api:
        api.add_spreadsheet(SID, "Solar at home")
        api.public_keys[EMAIL] = rsa_key[0].public_key()
        monkeypatch.setattr(sheets, "SESSION_HOOKS", [api.mount])
        yield api


@pytest.fixture
def key_file(tmp_path, fake, rsa_key) -> Path:
    path = tmp_path / "google-key.json"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "solar-test", "private_key_id": "k1",
        "private_key": rsa_key[1], "client_email": EMAIL, "client_id": "42",
        "token_uri": f"{fake.url}/token"}))
    return path


@pytest.fixture
def sheet_config(config_dict, key_file):
    def make(**options):
        raw = dict(config_dict, weather={"enabled": False}, google_sheets={
            "spreadsheet": f"https://docs.google.com/spreadsheets/d/{SID}/edit#gid=0",
            "key_file": str(key_file), "timeout_s": 5, "max_wait_s": 0, **options})
        return config_from_dict(raw, env={})
    return make


class StubPvs:
    """A PVS that always answers with the same real DeviceList (30 inverters)."""

    def poll(self) -> RawPoll:
        return RawPoll(body=FIXTURE, api="legacy", build=61839, requested_at=START)


def run(config, at):
    report = run_once(config, now=at, client=StubPvs())
    assert report.ok and not report.stage_errors, report
    return report


def add_polls(config, first: datetime, count: int) -> None:
    """Store and queue `count` polls quickly (as a long run of cron runs would)."""
    with open_store(config) as store:
        for n in range(count):
            at = first + n * STEP
            with store.transaction():
                store.record_snapshot(at, parse(FIXTURE, polled_at=at), None)
            outbox.enqueue_poll(store, at, at)


def data_rows(fake, title):
    return fake.sheet(SID, title).values()[1:]


def utc_keys(fake, title="Readings"):
    index = {h: i for i, h in enumerate(fake.sheet(SID, title).values()[0])}
    return [sheet_row_key(READINGS, index, r) for r in data_rows(fake, title)]


def serial(at: datetime) -> float:
    return (at.replace(tzinfo=None) - EPOCH).total_seconds() / 86400


def test_first_run_creates_worksheets_with_headers_and_typed_rows(fake, sheet_config):
    run(sheet_config(), START)
    assert fake.titles(SID) == ["Sheet1", "Readings", "Daily", "Alerts"]
    readings = fake.sheet(SID, "Readings")
    assert readings.values()[0] == READINGS.headers
    assert fake.sheet(SID, "Daily").values()[0] == DAILY.headers
    assert fake.sheet(SID, "Alerts").values()[0] == ALERTS.headers
    # sized to fit: no unused grid cells counting against the 10-million-cell cap
    assert (readings.rows, readings.cols, readings.frozen) == (2, 12, 1)
    (row,) = data_rows(fake, "Readings")
    local = START.astimezone(TZ)
    assert row[0] == pytest.approx(serial(local), abs=1e-6)  # a date, in local time
    assert row[9] == pytest.approx(serial(START), abs=1e-6)  # the UTC key
    assert all(isinstance(v, int | float) for v in row[1:7])  # numbers are numbers
    assert row[6] == 30  # inverters total


def test_plain_append_costs_three_requests(fake, sheet_config):
    config = sheet_config()
    run(config, START)
    before = len(fake.log)
    run(config, START + STEP)
    assert [op for op, _ in fake.log[before:]] == ["metadata", "batchGet", "append"]
    assert utc_keys(fake) == ["2026-06-09T16:00:00Z", "2026-06-09T16:15:00Z"]


def test_429_then_success_honours_retry_after(fake, sheet_config):
    config = sheet_config(max_wait_s=30)
    add_polls(config, START, 3)
    fake.fail("append", 429, retry_after="7")
    slept: list[float] = []
    with open_store(config) as store:
        report = sheets.flush(store, config.google_sheets, TZ, now=START, sleep=slept.append)
    assert slept == [7.0]
    assert (report.sent, report.still_queued) == (3, 0)
    assert len(utc_keys(fake)) == 3


def test_429_beyond_the_wait_budget_leaves_rows_queued(fake, sheet_config):
    config = sheet_config(max_wait_s=5)
    add_polls(config, START, 2)
    fake.fail("append", 429, retry_after="60")
    with open_store(config) as store, pytest.raises(sheets.RetryLater, match="429"):
        sheets.flush(store, config.google_sheets, TZ, now=START, sleep=pytest.fail)
    with open_store(config) as store:
        assert outbox.pending_count(store) == 2


def test_week_long_500_outage_then_one_flush_without_duplicates(fake, sheet_config, caplog):
    config = sheet_config()
    fake.fail("*", 500, times=10**6)
    caplog.set_level(logging.INFO)
    for n in range(3):  # the run still succeeds; rows stay queued
        run(config, START + n * STEP)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "500" in warnings[0].getMessage()
    assert "Traceback" not in caplog.text
    add_polls(config, START + 3 * STEP, 7 * 96 - 3)  # the rest of the week, still down
    fake.heal()
    before = len(fake.log)
    started = time.monotonic()
    run(config, START + 7 * 96 * STEP)  # Google is back: one run sends everything
    seconds = time.monotonic() - started
    keys = utc_keys(fake)
    assert len(keys) == 7 * 96 + 1 == len(set(keys))
    assert keys == sorted(keys)  # in order
    appends = [detail for op, detail in fake.log[before:] if op == "append"]
    assert sum("Readings" in d for d in appends) == 2  # 500 rows a request
    assert len(fake.log) - before <= 8  # metadata, create, headers, read, 4 appends
    assert [r[0] for r in data_rows(fake, "Daily")] == [
        (date(2026, 6, d) - EPOCH.date()).days for d in range(9, 16)]
    assert seconds < 10
    with open_store(config) as store:
        assert outbox.pending_count(store) == 0


def test_append_whose_answer_was_lost_is_not_sent_again(fake, sheet_config, caplog):
    config = sheet_config()
    fake.lose("append")
    caplog.set_level(logging.INFO)
    run(config, START)  # the row reached the sheet, the answer did not reach us
    with open_store(config) as store:
        assert outbox.pending_count(store) == 1
    run(config, START + STEP)
    assert utc_keys(fake) == ["2026-06-09T16:00:00Z", "2026-06-09T16:15:00Z"]
    assert "already in readings" in caplog.text


def test_lost_answer_then_in_run_retry(fake, sheet_config):
    config = sheet_config(max_wait_s=10)
    add_polls(config, START, 600)  # two batches; the first one's answer is lost
    fake.lose("append")
    with open_store(config) as store:
        report = sheets.flush(store, config.google_sheets, TZ, now=START, sleep=lambda s: None)
    assert (report.sent, report.already_there) == (100, 500)
    keys = utc_keys(fake)
    assert len(keys) == 600 == len(set(keys))


def _summary(day: date, kwh: dict[str, float]) -> DaySummary:
    return DaySummary(day=day, polls=96, polls_ok=96, production_kwh=sum(kwh.values()),
                      consumption_kwh=None, import_kwh=None, export_kwh=None, peak_kw=3.5,
                      peak_at=datetime.combine(day, datetime.min.time(), TZ)
                      + timedelta(hours=13), cloud_cover_pct=None, inverter_kwh=kwh)


def test_new_inverter_adds_a_column_at_the_end(fake, sheet_config):
    config = sheet_config()
    serials = ["E00122045320", "E00122045321", "E00122099999"]
    with open_store(config) as store:
        def seen(serial: str, day: str) -> None:
            store.db.execute("INSERT INTO devices (serial, device_type, first_seen, last_seen)"
                             " VALUES (?, 'Inverter', ?, ?)", (serial, day, day))

        seen(serials[1], "2026-06-09T12:00:01Z")
        seen(serials[0], "2026-06-09T12:00:00Z")
        outbox.enqueue(store, DAILY, daily_cells(_summary(date(2026, 6, 9), {
            serials[0]: 1.5, serials[1]: 1.25}), outbox.inverter_numbers(store)), START)
        sheets.flush(store, config.google_sheets, TZ, now=START)
        seen(serials[2], "2026-06-10T12:00:00Z")  # a replaced micro-inverter
        outbox.enqueue(store, DAILY, daily_cells(_summary(date(2026, 6, 10), {
            serials[0]: 2.0, serials[1]: 2.25, serials[2]: 0.5}),
            outbox.inverter_numbers(store)), START)
        sheets.flush(store, config.google_sheets, TZ, now=START)
    daily = fake.sheet(SID, "Daily")
    header, day1, day2 = daily.values()
    assert header == DAILY.headers + [inverter_header(serials[0]),
                                      inverter_header(serials[1]), "…99999 kWh"]
    assert day1[-2:] == [1.5, 1.25] and len(day1) == len(DAILY.headers) + 2  # unchanged
    assert day2[-3:] == [2.0, 2.25, 0.5]
    assert daily.cols == len(header)
    assert day1[6] == pytest.approx(13 / 24)  # peak time, a time of day


def test_naming_an_inverter_keeps_its_column(fake, sheet_config):
    """An older sheet's 'Inv 1 …45320 kWh' column, then the owner names that panel: its
    kWh stay in the same column (found by the serial's tail), and a new one is named."""
    from tests.fake_sheets import Worksheet

    config = sheet_config()
    old = [*DAILY.headers, "Inv 1 …45320 kWh"]
    tab = Worksheet(8, "Daily", rows=2, cols=len(old), frozen=1)  # as the sender makes it
    for c, header in enumerate(old, start=1):
        tab.cells[(1, c)] = header
    fake.spreadsheets[SID]["sheets"].append(tab)
    labels = {"E00122045320": "south roof, row 2, #3", "E00122045321": "garage, left"}
    with open_store(config) as store:
        for serial in labels:
            store.db.execute("INSERT INTO devices (serial, device_type, first_seen, "
                             "last_seen) VALUES (?, 'Inverter', '2026-06-09', '2026-06-09')",
                             (serial,))
        cells = daily_cells(_summary(date(2026, 6, 9), {"E00122045320": 1.5,
                                                       "E00122045321": 1.25}),
                            outbox.inverter_numbers(store), labels)
        assert [h for h, _ in cells[-2:]] == ["south roof, row 2, #3 (…45320) kWh",
                                              "garage, left (…45321) kWh"]
        outbox.enqueue(store, DAILY, cells, START)
        sheets.flush(store, config.google_sheets, TZ, now=START)
    header, day = fake.sheet(SID, "Daily").values()
    assert header == [*old, "garage, left (…45321) kWh"]
    assert day[-2:] == [1.5, 1.25]


def test_a_readings_tab_from_before_the_snow_columns_gets_them_at_the_end(fake, sheet_config):
    from tests.fake_sheets import Worksheet

    old = READINGS.headers[:-2]  # the tab an earlier version created: 10 columns
    assert READINGS.headers[-2:] == ["Snow depth m", "Snowfall cm"]
    tab = Worksheet(7, "Readings", rows=2, cols=len(old), frozen=1)  # as the sender makes it
    for c, header in enumerate(old, start=1):
        tab.cells[(1, c)] = header
    fake.spreadsheets[SID]["sheets"].append(tab)
    config = sheet_config()
    run(config, START)
    header, row = fake.sheet(SID, "Readings").values()
    assert header == old + ["Snow depth m", "Snowfall cm"]
    assert row[len(old) - 1] == pytest.approx(serial(START), abs=1e-6)  # UTC key in place
    assert len(row) <= len(header)  # no snow data in this poll: the new cells stay empty


@pytest.mark.parametrize(("setup", "expected"), [
    ({"token_error": "invalid_grant"}, "create a new JSON key for " + EMAIL),
    ({"shared": False}, f"click Share and add {EMAIL} as Editor"),
    ({"api_enabled": False}, "apis/library/sheets.googleapis.com?project=solar-test"),
])
def test_auth_failure_is_one_clear_line_and_check_says_how_to_fix(
        fake, sheet_config, rsa_key, caplog, capsys, setup, expected):
    from solar_monitor.check import check_google_sheets

    for name, value in setup.items():
        setattr(fake, name, value)
    config = sheet_config()
    caplog.set_level(logging.INFO)
    run(config, START)  # the run still succeeds
    (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert expected in line and "1 row(s) stay queued" in line
    assert "Traceback" not in caplog.text and "PRIVATE KEY" not in caplog.text
    result = check_google_sheets(config)
    assert result.status == "FAIL" and expected in result.detail


def test_check_passes_creates_the_tabs_and_proves_write_access(fake, sheet_config):
    from solar_monitor.check import check_google_sheets

    result = check_google_sheets(sheet_config())
    assert result.status == "PASS", result.detail
    assert EMAIL in result.detail and "Readings, Daily, Alerts" in result.detail
    assert fake.titles(SID)[1:] == ["Readings", "Daily", "Alerts"]
    assert check_google_sheets(sheet_config()).status == "PASS"  # writes a header cell


def test_missing_key_file_needs_fix(sheet_config, key_file):
    key_file.unlink()
    from solar_monitor.check import check_google_sheets

    result = check_google_sheets(sheet_config())
    assert result.status == "FAIL" and "cannot read the key file" in result.detail


def test_alert_events_are_text_never_formulas_and_queued_once(fake, sheet_config):
    config = sheet_config()
    at = START + timedelta(minutes=3)
    with open_store(config) as store:
        for _ in range(2):
            outbox.enqueue_alert_event(store, at, "open", "inverter_offline", "warning",
                                       "E00122045320", "=HYPERLINK(\"x\") 1/2 offline")
        sheets.flush(store, config.google_sheets, TZ, now=START)
    (row,) = data_rows(fake, "Alerts")
    assert row[1:6] == ["open", "inverter_offline", "warning", "E00122045320",
                        "=HYPERLINK(\"x\") 1/2 offline"]
    assert row[0] == pytest.approx(serial(at.astimezone(TZ)), abs=1e-6)


def test_sheets_sync_command(fake, sheet_config, tmp_path, capsys):
    import yaml

    from solar_monitor.cli import main

    config = sheet_config()
    add_polls(config, START, 3)
    path = tmp_path / "config.yaml"
    raw = {"site": {"latitude": 42.36, "longitude": -71.06, "timezone": "America/New_York"},
           "pvs": {"url": "http://127.0.0.1:9"}, "data_dir": str(config.data_path),
           "weather": {"enabled": False},
           "google_sheets": {"spreadsheet": SID, "key_file": config.google_sheets.key_file}}
    path.write_text(yaml.safe_dump(raw))
    path.chmod(0o600)
    assert main(["sheets", "sync", "--config", str(path)]) == 0
    assert "3 row(s) sent" in capsys.readouterr().out
    assert len(utc_keys(fake)) == 3


def test_fall_back_hour_keys_stay_distinct():
    """01:30 happens twice on the first Sunday of November; the UTC key tells them apart."""
    first = datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
    index = {"Time (UTC)": 0}
    second = first + timedelta(hours=1)
    keys = {sheet_row_key(READINGS, index, [serial(at)]) for at in (first, second)}
    assert keys == {"2026-11-01T05:30:00Z", "2026-11-01T06:30:00Z"}
    assert first.astimezone(TZ).hour == second.astimezone(TZ).hour == 1


# What a plain `run` (no sheet, no mail queued, weather off, no export) must never import:
# each costs a Pi Zero tens to hundreds of milliseconds, 35,040 runs a year. A name with
# a trailing dot: its submodules only (the exports package itself is light, an engine not).
PLAIN_RUN_NEVER_IMPORTS = (
    "apprise", "gspread", "google.auth", "google.oauth2", "cryptography", "paho",
    "solar_monitor.exports.", "solar_monitor.sinks.sheets", "solar_monitor.notify",
    "solar_monitor.weather",
)


def test_a_plain_run_sends_rows_to_the_dry_run_and_imports_nothing_it_does_not_need(
        config_dict, tmp_path):
    """The real command (`main(["run"])`) against the emulator over HTTP, in a fresh
    process, whose sys.modules is then checked."""
    from solar_monitor.emulation.emulator import start_emulator

    code = (
        "import sys\n"
        "from solar_monitor.cli import main\n"
        "code = main(['run', '--config', sys.argv[1]])\n"
        "never = sys.argv[2].split()\n"
        "print(code, *sorted(m for m in sys.modules\n"
        "                    if any(m == n or m.startswith(n.rstrip('.') + '.')\n"
        "                           for n in never)))\n")
    with start_emulator(firmware="legacy") as emu:
        raw = dict(config_dict, weather={"enabled": False}, pvs={"url": emu.url})
        (config_file := tmp_path / "config.yaml").write_text(json.dumps(raw))
        config_file.chmod(0o600)
        out = subprocess.run([sys.executable, "-c", code, str(config_file),
                              " ".join(PLAIN_RUN_NEVER_IMPORTS)], capture_output=True,
                             text=True, cwd=Path(__file__).parent.parent, timeout=60)
    assert out.stdout.split() == ["0"], out.stdout + out.stderr
    with open_store(config_from_dict(raw, env={})) as store:
        assert store.db.execute(
            "SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL").fetchone()[0] == 1


def test_battery_columns_appear_only_for_a_battery_site(fake, sheet_config):
    config = sheet_config()
    run(config, START)  # a site without a battery: no battery columns
    assert fake.sheet(SID, "Readings").values()[0] == READINGS.headers
    ess = json.loads(real("livedata_obj_ess").read_bytes())
    at = START + STEP
    with open_store(config) as store:
        with store.transaction():
            body = json.dumps({**ess, "/sys/info/sw_rev": "2025.06.24.61840"}).encode()
            store.record_snapshot(at, parse(body, polled_at=at), None)
        outbox.enqueue_poll(store, at, at)
        sheets.flush(store, config.google_sheets, TZ, now=at, sleep=pytest.fail)
    header, *rows = fake.sheet(SID, "Readings").values()
    assert header == [*READINGS.headers, "Battery kW (+discharge)", "Battery charge %"]
    assert rows[1][header.index("Battery kW (+discharge)")] == pytest.approx(1.186)
    assert rows[1][header.index("Battery charge %")] == pytest.approx(86.0)
