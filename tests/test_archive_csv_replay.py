"""Archive, CSV repair and replay: nothing lost, nothing duplicated, any order of crashes."""

from __future__ import annotations

import csv
import gzip
import json
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import solar_monitor.store as store_module
from solar_monitor.archive import classify, iter_archive, save_answer, save_error, write_atomic
from solar_monitor.config import config_from_dict
from solar_monitor.emulation.sim import SimulatedSite, SiteSpec
from solar_monitor.pipeline import open_store
from solar_monitor.pvs.parse import parse
from solar_monitor.replay import replay
from solar_monitor.sinks.csv_files import export_csv
from solar_monitor.store import Store

from .conftest import real

NY = ZoneInfo("America/New_York")
START = datetime(2025, 6, 18, 12, 0, tzinfo=UTC)


def write_year_slice(raw: Path, polls: int, step_min: int = 15) -> list[datetime]:
    site = SimulatedSite(SiteSpec(inverter_count=4, epoch=START, latitude=42.36,
                                  longitude=-71.06, timezone="America/New_York"))
    times = [START + timedelta(minutes=step_min * i) for i in range(polls)]
    for t in times:
        save_answer(raw, t, json.dumps(site.device_list(t)).encode())
    return times


def test_archive_names_and_atomic_write(tmp_path: Path):
    raw = tmp_path / "raw"
    at = datetime(2025, 7, 20, 18, 3, 33, 500000, tzinfo=UTC)
    first = save_answer(raw, at, b"{}")
    assert first.path == raw / "2025/07/20/20250720T180333Z.json.gz"
    second = save_error(raw, at, "boom", 503)  # same second: next free second
    assert second.path.name == "20250720T180334Z.error.json"
    assert json.loads(second.path.read_text()) == {"error": "boom", "http_status": 503}
    assert gzip.decompress(first.path.read_bytes()) == b"{}"

    class Boom(Exception):
        pass

    target = tmp_path / "x" / "file.json"
    write_atomic(target, b"old")

    def explode(*_args: object) -> None:
        raise Boom

    real_replace = os.replace
    os.replace = explode  # the crash happens between the temp write and the rename
    try:
        with pytest.raises(Boom):
            write_atomic(target, b"new")
    finally:
        os.replace = real_replace
    assert target.read_bytes() == b"old"
    assert [p.name for p in target.parent.iterdir()] == ["file.json"]  # no temp left


def test_classify_curl_names_as_local_time(tmp_path: Path):
    item = classify(tmp_path / "20250720_140333.json", NY)
    assert item is not None and item.polled_at == datetime(2025, 7, 20, 18, 3, 33, tzinfo=UTC)
    assert classify(tmp_path / "notes.txt", NY) is None
    assert classify(tmp_path / "20250720T180333Z.error.json", NY).failed


def test_csv_torn_line_is_repaired_without_duplicates(tmp_path: Path, config_dict: dict):
    config = config_from_dict(config_dict, env={})
    write_year_slice(config.data_path / "raw", 6)
    replay(config, config.data_path / "raw")
    csv_dir = config.data_path / "csv"
    readings = csv_dir / "readings.csv"
    inverters = csv_dir / "inverters-2025-06.csv"
    full_readings, full_inverters = readings.read_text(), inverters.read_text()
    assert len(full_readings.splitlines()) == 7 and len(full_inverters.splitlines()) == 25

    # a run killed mid-write: a torn last line, and the last poll only half written
    inverters.write_text("".join(full_inverters.splitlines(keepends=True)[:-3]) + "2025-06-")
    readings.write_text(full_readings[:-10])
    with Store(config.data_path / "solar-monitor.db") as store:
        export_csv(store, csv_dir, NY)
        assert readings.read_text() == full_readings
        assert inverters.read_text() == full_inverters
        export_csv(store, csv_dir, NY)  # nothing new: the files stay the same
        assert readings.read_text() == full_readings
        assert inverters.read_text() == full_inverters


def test_replay_is_idempotent_and_imports_foreign_archives(tmp_path: Path, config_dict: dict):
    source = tmp_path / "curl-job"
    source.mkdir()
    # the owner's curl cron job: local-time names, one failed poll saved as an HTML page
    body = real("dl_cgi_61839_30").read_bytes()
    (source / "20250720_140000.json").write_bytes(body)
    (source / "20250720_141500.json").write_bytes(b"<html>503</html>")
    (source / "20250720_143000.json").write_bytes(body)
    (source / "README.txt").write_text("not an answer")
    config = config_from_dict(config_dict, env={})
    first = replay(config, source)
    assert (first.files, first.stored, first.failed, first.skipped) == (3, 2, 1, 0)
    again = replay(config, source)
    assert (again.stored, again.skipped) == (0, 3)
    copied = sorted(p.name for p in (config.data_path / "raw").rglob("*") if p.is_file())
    assert copied == ["20250720T180000Z.json.gz", "20250720T181500Z.json.gz",
                      "20250720T183000Z.json.gz"]
    with open_store(config) as store:
        rows = store.db.execute("SELECT polled_at, ok, error FROM polls ORDER BY polled_at")
        got = [tuple(r) for r in rows]
    assert got[0] == ("2025-07-20T18:00:00Z", 1, None)
    assert got[1][:2] == ("2025-07-20T18:15:00Z", 0) and "HTML page" in got[1][2]


def test_replay_in_time_order_regardless_of_folder_layout(tmp_path: Path, config_dict: dict):
    config = config_from_dict(config_dict, env={})
    times = write_year_slice(tmp_path / "elsewhere", 8, step_min=180)  # spans two days
    report = replay(config, tmp_path / "elsewhere")
    assert report.stored == 8
    listed = [a.polled_at for a in iter_archive(config.data_path / "raw", UTC)]
    assert listed == times
    lines = (config.data_path / "csv" / "readings.csv").read_text().splitlines()[1:]
    assert [ln.split(",")[0] for ln in lines] == [t.strftime("%Y-%m-%dT%H:%M:%SZ")
                                                  for t in times]


def test_retention_deletes_only_old_days_whose_polls_are_stored(tmp_path: Path,
                                                                config_dict: dict):
    from solar_monitor.retention import upkeep

    config = config_from_dict(config_dict, env={})
    raw = config.data_path / "raw"
    old = write_year_slice(raw, 3, step_min=60)  # 2025-06-18, stored below
    body = real("dl_cgi_61839_30").read_bytes()
    unstored = save_answer(raw, datetime(2025, 6, 17, 9, 0, tzinfo=UTC), body)
    replay(config, raw)
    late = save_answer(raw, datetime(2025, 6, 16, 9, 0, tzinfo=UTC), body)  # not stored
    with Store(config.data_path / "solar-monitor.db") as store:
        # a clock thrown to 2099 cannot empty the archive: 30 newer days must be there
        upkeep(store, raw, datetime(2099, 8, 1, tzinfo=UTC), compact_after_days=None,
               retention_days=30, min_free_mb=None)
        assert (raw / "2025/06/18").exists() and unstored.path.exists()
        recent = [save_answer(raw, datetime(2025, 7, 2, 9, tzinfo=UTC) + timedelta(days=d),
                              body) for d in range(30)]
        upkeep(store, raw, datetime(2025, 8, 1, tzinfo=UTC), compact_after_days=None,
               retention_days=30, min_free_mb=None)
    assert len(old) == 3  # 06-18 and 06-17 were stored: gone
    assert not (raw / "2025/06/18").exists() and not unstored.path.exists()
    assert late.path.exists()  # never delete a poll the database does not have
    assert all(r.path.exists() for r in recent)


def test_csv_from_before_the_battery_columns_gets_them_appended(tmp_path: Path,
                                                                config_dict: dict):
    """A readings.csv written by an older version: its header gains the new columns once,
    its rows are padded, nothing is duplicated, and new rows fill the new cells."""
    config = config_from_dict(config_dict, env={})
    write_year_slice(config.data_path / "raw", 4)
    replay(config, config.data_path / "raw")
    readings = config.data_path / "csv" / "readings.csv"
    full = list(csv.reader(readings.open(newline="")))
    assert {"battery_kw", "battery_soc_pct"} <= set(full[0]) and len(full) == 5
    with readings.open("w", newline="") as handle:  # header + 2 polls, the last 2 columns
        # missing, as in a file from before the latest columns were appended
        csv.writer(handle, lineterminator="\n").writerows(r[:-2] for r in full[:3])
    with Store(config.data_path / "solar-monitor.db") as store:
        export_csv(store, readings.parent, NY)
        after = list(csv.reader(readings.open(newline="")))
        assert after[0] == full[0]
        assert after[1:3] == [r[:-2] + ["", ""] for r in full[1:3]]
        assert after[3:] == full[3:]  # the 2 missing polls, once each, with every column
        export_csv(store, readings.parent, NY)
        assert list(csv.reader(readings.open(newline=""))) == after


def test_migration_0007_moves_varserver_cpu_percent_out_of_the_load_average(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Before 0007 a varserver poll stored /sys/info/cpu_usage (a %) as cpu_load."""
    older = tmp_path / "migrations"
    older.mkdir()
    for sql in sorted(store_module.MIGRATIONS_DIR.glob("000[1-6]_*.sql")):
        shutil.copy(sql, older / sql.name)
    db = tmp_path / "db.sqlite"
    monkeypatch.setattr(store_module, "MIGRATIONS_DIR", older)
    with Store(db) as s:
        for i, (api, load) in enumerate((("legacy", 0.46), ("varserver", 37.0))):
            s.db.execute("INSERT INTO polls (id, polled_at, ok, api) VALUES (?, ?, 1, ?)",
                         (i + 1, f"2025-06-2{i}T12:00:00Z", api))
            s.db.execute("INSERT INTO supervisor_readings (poll_id, cpu_load) VALUES (?, ?)",
                         (i + 1, load))
    monkeypatch.undo()
    with Store(db) as s:
        rows = s.db.execute("SELECT poll_id, cpu_load, cpu_usage_pct FROM "
                            "supervisor_readings ORDER BY poll_id").fetchall()
        assert [tuple(r) for r in rows] == [(1, 0.46, None), (2, None, 37.0)]


def test_store_keeps_batteries_flash_wear_and_cpu_percent(tmp_path: Path):
    doc = json.loads(real("livedata_obj_ess").read_bytes()) | {
        "/sys/info/sw_rev": "2025.06.24.61840", "/sys/info/cpu_usage": "12",
        "/sys/pvs/flashwear_type_b": "0x03", "/sys/devices/ess/0/sn": "ESS1",
        "/sys/devices/ess/0/socVal": "0.860000", "/sys/devices/ess/0/sohVal": "97",
        "/sys/devices/ess/0/p3phsumKw": "1.186000", "/sys/devices/ess/0/opMode": "BACKUP",
        "/sys/devices/ess/0/tInvtrDegc": "31.5"}
    at = datetime(2025, 6, 28, 4, 0, tzinfo=UTC)
    with Store(tmp_path / "db.sqlite") as s, s.transaction():
        poll_id = s.record_snapshot(at, parse(json.dumps(doc).encode(), polled_at=at), None)
        poll = s.db.execute("SELECT battery_kw, battery_soc_pct, consumption_kw FROM polls "
                            "WHERE id=?", (poll_id,)).fetchone()
        assert tuple(poll) == (1.186, 86.0, 1.876316)
        sup = s.db.execute("SELECT cpu_load, cpu_usage_pct, flash_wear_pct FROM "
                           "supervisor_readings WHERE poll_id=?", (poll_id,)).fetchone()
        assert tuple(sup) == (None, 12.0, 30.0)
        bat = s.db.execute("SELECT device_type, serial, op_mode, soc_pct, soh_pct, power_kw, "
                           "extra_json FROM battery_readings WHERE poll_id=?",
                           (poll_id,)).fetchone()
        assert tuple(bat)[:6] == ("ess", "ESS1", "BACKUP", 86.0, 97.0, 1.186)
        assert json.loads(bat["extra_json"]) == {"tInvtrDegc": "31.5"}
        seen = s.db.execute("SELECT device_type, last_state FROM devices WHERE serial='ESS1'")
        assert tuple(seen.fetchone()) == ("ess", "BACKUP")


def test_pvs_text_reaches_the_csv_as_plain_text(tmp_path: Path, config_dict: dict):
    """A serial `=HYPERLINK(...)`, a firmware `@SUM(...)` with NUL, ESC, CR/LF and a
    right-to-left override: the CSV cells are text Excel never runs, with no control
    character; a negative number (-0.015 kW at night) stays a number."""
    config = config_from_dict(config_dict, env={})
    doc = json.loads(real("dl_cgi_61839_30").read_bytes())
    hostile_serial = '=HYPERLINK("http://evil.example/x","click")\x00'
    for device in doc["devices"]:
        if device["DEVICE_TYPE"] == "PVS":
            device["SWVER"] = "@SUM(1+1)\x1b[2J\r\nBuild 61839\u202etxt.exe"
        if device.get("SERIAL") == "EFAKE001":
            device["SERIAL"] = hostile_serial
            device["STATE"] = "-working\t"
        if device.get("TYPE") == "PVS5-METER-P":
            device["p_3phsum_kw"] = "-0.015"
    raw = config.data_path / "raw"
    save_answer(raw, datetime(2025, 6, 18, 4, 0, tzinfo=UTC), json.dumps(doc).encode())
    assert replay(config, raw).stored == 1
    csv_dir = config.data_path / "csv"
    [readings] = list(csv.DictReader((csv_dir / "readings.csv").open(newline="")))
    assert readings["firmware"] == "'@SUM(1+1)[2JBuild 61839txt.exe"
    assert readings["production_kw"] == "-0.015"
    [inverters] = csv_dir.glob("inverters-*.csv")
    rows = {r["serial"]: r for r in csv.DictReader(inverters.open(newline=""))}
    hostile = rows["'" + '=HYPERLINK("http://evil.example/x","click")']
    assert hostile["state"] == "'-working"
    text = (csv_dir / "readings.csv").read_text() + inverters.read_text()
    assert not any(ch in text for ch in "\x00\x1b\r\u202e")
