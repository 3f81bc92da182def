"""Exports against real servers (Debian's influxd 1.6, victoria-metrics, node_exporter,
promtool), started on loopback by tests/export_servers.py; the PVS is the emulator."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests

from solar_monitor.archive import save_answer
from solar_monitor.cli import main
from solar_monitor.config import Config, config_from_dict
from solar_monitor.emulation.emulator import default_spec, start_emulator
from solar_monitor.emulation.sim import SimulatedSite, SiteSpec
from solar_monitor.pipeline import open_store, run_once
from solar_monitor.replay import replay
from tests.conftest import REPO
from tests.export_servers import (
    PROMTOOL,
    create_database,
    free_port,
    influx_query,
    influxd,
    need,
    node_exporter,
    victoria_metrics,
)
from tests.test_pipeline import NOON, Clock, fast_client  # noon in New York: everything produces

DB = "solar"


def site(seed: int = 3, inverters: int = 4) -> SimulatedSite:
    return SimulatedSite(default_spec(NOON, inverter_count=inverters, latitude=42.36,
                                      longitude=-71.06, timezone="America/New_York",
                                      seed=seed))


def make_config(config_dict: dict, pvs_url: str, **exports: dict) -> Config:
    config_dict["pvs"].update({"url": pvs_url})
    config_dict["exports"] = exports
    return config_from_dict(config_dict, env={})


def v1(url: str, **more: object) -> dict:
    return {"url": url, "api": "v1", "database": DB, "timeout_s": 3, **more}


def stored(config: Config, sql: str) -> list[tuple]:
    with open_store(config) as store:
        return [tuple(r) for r in store.db.execute(sql)]


# --- InfluxDB ------------------------------------------------------------------------------

def test_one_run_lands_in_influxd_v1(tmp_path: Path, config_dict: dict) -> None:
    clock = Clock(NOON)
    with influxd(tmp_path / "influx") as server, start_emulator(site(), clock=clock) as emu:
        create_database(server, DB)
        config = make_config(config_dict, emu.url, influxdb=v1(server.url))
        report = run_once(config, now=clock.now)
        assert report.ok and not report.stage_errors
        inverters = stored(config, "SELECT serial, power_kw, lifetime_kwh, heatsink_c "
                                   "FROM inverter_readings ORDER BY serial")
        pvs = stored(config, "SELECT serial FROM supervisor_readings")[0][0]
        series = influx_query(server, DB, "SELECT power_kw, lifetime_kwh, heatsink_c, serial, "
                                          "pvs FROM sunpower_inverter ORDER BY time")
        rows = sorted((v[4], v[1], v[2], v[3], v[5]) for v in series[0]["values"])
        assert rows == [(s, p, lk, h, pvs) for s, p, lk, h in inverters]
        assert {v[0] for v in series[0]["values"]} == {int(NOON.timestamp())}
        meters = influx_query(server, DB, "SELECT power_kw FROM sunpower_meter GROUP BY kind")
        assert {m["tags"]["kind"] for m in meters} == {"production", "consumption"}
        sup = influx_query(server, DB, "SELECT uptime_s FROM sunpower_supervisor")
        assert sup[0]["values"][0][1] == stored(config, "SELECT uptime_s FROM "
                                                        "supervisor_readings")[0][0]
        # the outbox holds the sent poll, not a pending one
        assert stored(config, "SELECT count(*) FROM outbox WHERE queue='influxdb' "
                              "AND sent_at IS NULL") == [(0,)]


def test_influxd_down_for_ten_runs_loses_nothing(tmp_path: Path, config_dict: dict,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock(NOON)
    port = free_port()
    with start_emulator(site(), clock=clock) as emu:
        config = make_config(config_dict, emu.url,
                             influxdb=v1(f"http://127.0.0.1:{port}"))
        with caplog.at_level(logging.INFO, logger="solar_monitor.exports"):
            for _ in range(10):  # nobody listens on the port
                started = time.monotonic()
                report = run_once(config, now=clock.now)
                assert report.ok and not report.stage_errors
                assert time.monotonic() - started < 3
                clock.now += timedelta(minutes=15)
        failures = [r for r in caplog.records if "influxdb export failed" in r.getMessage()]
        assert len(failures) == 1 and failures[0].levelno == logging.WARNING  # once
        assert "10 poll(s) queued" in caplog.records[-1].getMessage()
        with influxd(tmp_path / "influx", port=port) as server:
            create_database(server, DB)
            caplog.clear()
            with caplog.at_level(logging.INFO, logger="solar_monitor.exports"):
                assert run_once(config, now=clock.now).ok
            assert any("works again" in r.getMessage() for r in caplog.records)
            series = influx_query(server, DB, "SELECT count(lifetime_kwh) FROM "
                                              "sunpower_inverter GROUP BY time(15m) fill(none)")
            counts = series[0]["values"]
            assert len(counts) == 11 and {c[1] for c in counts} == {4}
            first = int(NOON.timestamp())
            assert [c[0] for c in counts] == [first + 900 * n for n in range(11)]


def test_points_the_server_refuses_do_not_block_the_queue(
        tmp_path: Path, config_dict: dict, caplog: pytest.LogCaptureFixture) -> None:
    """A 400 (here a field type conflict: someone wrote power_kw as an integer) will never
    be accepted: those points are dropped with a warning, and the next polls flow."""
    clock = Clock(NOON)
    with influxd(tmp_path / "influx") as server, start_emulator(site(), clock=clock) as emu:
        create_database(server, DB)
        requests.post(server.url + "/write", params={"db": DB, "precision": "s"},
                      data=f"sunpower_inverter power_kw=1i {int(NOON.timestamp()) - 60}",
                      timeout=5).raise_for_status()
        config = make_config(config_dict, emu.url, influxdb=v1(server.url))
        with caplog.at_level(logging.WARNING):
            assert run_once(config, now=clock.now).ok
        assert any("refused" in r.getMessage() and "field type conflict" in r.getMessage()
                   for r in caplog.records)
        assert stored(config, "SELECT count(*) FROM outbox WHERE queue='influxdb' "
                              "AND sent_at IS NULL") == [(0,)]
        # the supervisor's and meters' points of that poll were written all the same
        assert influx_query(server, DB, "SELECT count(uptime_s) FROM sunpower_supervisor")


def test_the_queue_is_bounded(tmp_path: Path, config_dict: dict,
                              monkeypatch: pytest.MonkeyPatch,
                              caplog: pytest.LogCaptureFixture) -> None:
    """A server gone for longer than MAX_QUEUED polls: the oldest leave the queue (the
    archive keeps them for replay --export), the newest are sent when it is back."""
    from solar_monitor.exports import influxdb

    monkeypatch.setattr(influxdb, "MAX_QUEUED", 2)
    clock = Clock(NOON)
    port = free_port()
    with start_emulator(site(), clock=clock) as emu:
        config = make_config(config_dict, emu.url, influxdb=v1(f"http://127.0.0.1:{port}"))
        for _ in range(3):
            assert run_once(config, now=clock.now).ok
            clock.now += timedelta(minutes=15)
        assert any("--export influxdb" in r.getMessage() for r in caplog.records)
        with influxd(tmp_path / "influx", port=port) as server:
            create_database(server, DB)
            assert run_once(config, now=clock.now).ok
            q = "SELECT count(uptime_s) FROM sunpower_supervisor GROUP BY time(15m) fill(none)"
            times = [v[0] for v in influx_query(server, DB, q)[0]["values"]]
    start = int(NOON.timestamp())
    assert times == [start + 900 * n for n in (1, 2, 3)]  # the first poll dropped


def test_a_hanging_server_costs_only_its_timeout(tmp_path: Path, config_dict: dict) -> None:
    """A server that accepts and never answers: the run ends after timeout_s, not later."""
    with socket.socket() as listener, start_emulator(site(), clock=Clock(NOON)) as emu:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # the kernel accepts connections; nobody ever reads them
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        config = make_config(config_dict, emu.url, influxdb=v1(url, timeout_s=1))
        started = time.monotonic()
        report = run_once(config, now=NOON)
        assert report.ok and not report.stage_errors
        assert time.monotonic() - started < 4


def month_archive(raw: Path, days: int = 30, every: timedelta = timedelta(hours=3)) -> int:
    """A month of DeviceList answers from the simulated site, archived as a run would."""
    sim = SimulatedSite(SiteSpec(epoch=NOON - timedelta(days=days), inverter_count=2,
                                 latitude=42.36, longitude=-71.06,
                                 timezone="America/New_York", seed=5))
    t, count = NOON - timedelta(days=days), 0
    while t < NOON:
        save_answer(raw, t, json.dumps(sim.device_list(t)).encode())
        t += every
        count += 1
    return count


def test_replay_a_month_with_export(tmp_path: Path, config_dict: dict) -> None:
    polls = month_archive(tmp_path / "archive")
    with influxd(tmp_path / "influx") as server:
        create_database(server, DB)
        config = make_config(config_dict, "http://127.0.0.1:9", influxdb=v1(server.url))
        report = replay(config, tmp_path / "archive", export="influxdb")
        assert report.stored == polls and not report.stage_errors
        q = "SELECT count(uptime_s) FROM sunpower_supervisor"
        assert influx_query(server, DB, q)[0]["values"][0][1] == polls
        energy = "SELECT count(lifetime_kwh), sum(lifetime_kwh) FROM sunpower_inverter"
        expect = stored(config, "SELECT count(lifetime_kwh), sum(lifetime_kwh) "
                                "FROM inverter_readings")[0]
        got = influx_query(server, DB, energy)[0]["values"][0][1:]
        assert got[0] == expect[0] and got[1] == pytest.approx(expect[1])
        # again, from the CLI, all already stored: the same points, rewritten, no more
        config_path = tmp_path / "config.json"  # JSON is YAML
        config_path.write_text(json.dumps(config_dict))
        assert main(["replay", str(tmp_path / "archive"), "--export", "influxdb", "--quiet",
                     "--config", str(config_path)]) == 0
        assert influx_query(server, DB, q)[0]["values"][0][1] == polls
        assert influx_query(server, DB, energy)[0]["values"][0][1] == expect[0]
    # the server gone: a clear error and exit 1, never a traceback
    assert main(["replay", str(tmp_path / "archive"), "--export", "influxdb", "--quiet",
                 "--config", str(config_path)]) == 1


def test_victoria_metrics_v2_write(tmp_path: Path, config_dict: dict) -> None:
    clock = Clock(NOON)
    with victoria_metrics(tmp_path / "vm") as server, start_emulator(site(), clock=clock) as emu:
        settings = {"url": server.url, "api": "v2", "org": "home", "bucket": DB,
                    "token": "s3cret-token", "timeout_s": 3}
        config = make_config(config_dict, emu.url, influxdb=settings)
        assert run_once(config, now=clock.now).ok
        requests.get(server.url + "/internal/force_flush", timeout=5)
        reply = requests.get(server.url + "/api/v1/export", timeout=5, params={
            "match[]": "sunpower_inverter_power_kw", "start": "0"})
        got = {(s["metric"]["serial"], s["values"][0], s["timestamps"][0] // 1000)
               for s in map(json.loads, reply.text.splitlines())}
        expect = {(s, p, int(NOON.timestamp())) for s, p in
                  stored(config, "SELECT serial, power_kw FROM inverter_readings")}
        assert got == expect


# --- Prometheus ----------------------------------------------------------------------------

def test_prometheus_textfile_passes_promtool_and_node_exporter(tmp_path: Path,
                                                               config_dict: dict) -> None:
    promtool = need(PROMTOOL)
    textfile = tmp_path / "textfile" / "solar_monitor.prom"
    clock = Clock(NOON)
    with start_emulator(site(), clock=clock) as emu:
        config = make_config(config_dict, emu.url, prometheus={"textfile": str(textfile)})
        assert run_once(config, now=clock.now).ok
    text = textfile.read_text()
    assert textfile.stat().st_mode & 0o777 == 0o644  # node_exporter runs as another user
    lint = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=30)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    inverters = stored(config, "SELECT serial, power_kw, lifetime_kwh FROM inverter_readings")
    pvs = stored(config, "SELECT serial FROM supervisor_readings")[0][0]
    with node_exporter(textfile.parent, tmp_path) as server:
        metrics = requests.get(server.url + "/metrics", timeout=5).text
    assert "node_textfile_scrape_error 0" in metrics
    for serial, power_kw, lifetime_kwh in inverters:
        labels = f'{{pvs="{pvs}",serial="{serial}"}}'
        assert _sample(metrics, "sunpower_inverter_power_watts" + labels) == \
            pytest.approx(power_kw * 1000)
        assert _sample(metrics, "sunpower_inverter_energy_joules_total" + labels) == \
            pytest.approx(lifetime_kwh * 3.6e6)
    assert _sample(metrics, f'solar_monitor_last_success_timestamp_seconds{{pvs="{pvs}"}}') \
        == NOON.timestamp()
    assert "# TYPE sunpower_inverter_energy_joules_total counter" in metrics


def test_prometheus_textfile_after_a_failed_poll(tmp_path: Path, config_dict: dict) -> None:
    """A failed poll: no device values (stale readings are not current), the last success
    kept, the run's time moved on, and the open alerts listed (escaped labels)."""
    promtool = need(PROMTOOL)
    textfile = tmp_path / "solar_monitor.prom"
    clock = Clock(NOON)
    with start_emulator(site(), clock=clock) as emu:
        config = make_config(config_dict, emu.url, prometheus={"textfile": str(textfile)})
        assert run_once(config, now=clock.now).ok
        with open_store(config) as store, store.transaction():
            store.db.execute(
                "INSERT INTO alerts (rule, subject, severity, status, opened_at, message) "
                "VALUES ('inverter_offline', 'E001 \"west\" roof', 'warning', 'open', ?, 'x')",
                (NOON.isoformat(),))
        emu.faults.fail()
        clock.now += timedelta(minutes=15)
        assert not run_once(config, now=clock.now, client=fast_client(config)).ok
    text = textfile.read_text()
    assert "sunpower_inverter_power_watts" not in text
    pvs = stored(config, "SELECT serial FROM supervisor_readings")[0][0]
    assert _sample(text, f'solar_monitor_last_success_timestamp_seconds{{pvs="{pvs}"}}') \
        == NOON.timestamp()
    assert _sample(text, f'solar_monitor_last_run_timestamp_seconds{{pvs="{pvs}"}}') \
        == clock.now.timestamp()
    assert _sample(text, f'solar_monitor_alert_open{{pvs="{pvs}",rule="inverter_offline",'
                         f'subject="E001 \\"west\\" roof",severity="warning"}}') == 1
    lint = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=30)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def _sample(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not served")


# --- the fleet -----------------------------------------------------------------------------

def test_two_sites_into_one_influxd_sum_in_one_query(tmp_path: Path, config_dict: dict) -> None:
    clock = Clock(NOON)
    with influxd(tmp_path / "influx") as server, \
            start_emulator(site(seed=3), clock=clock) as one, \
            start_emulator(site(seed=4, inverters=3), clock=clock) as two:
        create_database(server, DB)
        production = 0.0
        for n, emu in enumerate((one, two)):
            site_dict = json.loads(json.dumps(config_dict))
            site_dict["data_dir"] = str(tmp_path / f"site{n}")
            config = make_config(site_dict, emu.url, influxdb=v1(server.url))
            assert run_once(config, now=clock.now).ok
            production += stored(config, "SELECT sum(power_kw) FROM inverter_readings")[0][0]
        series = influx_query(server, DB, "SELECT sum(power_kw) FROM sunpower_inverter")
        assert series[0]["values"][0][1] == pytest.approx(production)
        sites = influx_query(server, DB, 'SHOW TAG VALUES FROM sunpower_inverter WITH KEY="pvs"')
        assert len(sites[0]["values"]) == 2


# --- cost and laziness ----------------------------------------------------------------------

NO_EXPORTS_CHILD = """
import sys
from datetime import UTC, datetime
from solar_monitor.config import config_from_dict
from solar_monitor.emulation.emulator import start_emulator
from solar_monitor.pipeline import run_once
now = datetime(2026, 6, 10, 16, 0, tzinfo=UTC)
with start_emulator(clock=lambda: now) as emu:
    config = config_from_dict({
        "site": {"latitude": 42.36, "longitude": -71.06, "timezone": "America/New_York"},
        "pvs": {"url": emu.url}, "data_dir": sys.argv[1], "weather": {"enabled": False}},
        env={})
    assert run_once(config, now=now).ok
print(" ".join(m for m in sys.modules if m.startswith(("paho", "solar_monitor.exports."))))
"""


def test_a_run_without_exports_imports_none(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", NO_EXPORTS_CHILD, str(tmp_path / "data")],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_check_probes_each_export(tmp_path: Path, config_dict: dict,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    from solar_monitor.check import CHECKS

    checks = dict(CHECKS)
    with influxd(tmp_path / "influx") as server:
        config = make_config(config_dict, "http://127.0.0.1:9", influxdb=v1(server.url),
                             prometheus={"textfile": str(tmp_path / "a-file" / "s.prom")})
        (tmp_path / "a-file").write_text("")  # not a folder: fails even for root (CI)
        result = checks["exports.influxdb"](config)
        assert result.status == "FAIL" and "CREATE DATABASE solar" in result.detail
        create_database(server, DB)
        assert checks["exports.influxdb"](config).status == "PASS"
    assert checks["exports.influxdb"](config).status == "FAIL"
    assert checks["exports.mqtt"](config).status == "SKIP"
    prom = checks["exports.prometheus"](config)
    assert prom.status == "FAIL" and "ReadWritePaths" in prom.detail
    (tmp_path / "a-file").unlink()
    assert checks["exports.prometheus"](config).status == "PASS"  # the folder made, as a run


def test_the_example_exports_section_is_valid(config_dict: dict) -> None:
    """config.example.yaml's commented exports, uncommented, pass the schema (with the
    v2 keys, commented twice, for a second pass)."""
    env = {"MQTT_PASSWORD": "pw", "INFLUX_TOKEN": "tok"}
    exports = _example_exports()
    config = config_from_dict({**config_dict, "exports": exports}, env=env)
    assert config.exports.mqtt is not None and config.exports.mqtt.password == "pw"
    assert config.exports.influxdb is not None and config.exports.influxdb.database == "solar"
    assert config.exports.prometheus is not None
    assert "pw" in config.secrets()
    exports["influxdb"].update(api="v2", org="home", bucket="solar", token="${INFLUX_TOKEN}")
    v2 = config_from_dict({**config_dict, "exports": exports}, env=env).exports.influxdb
    assert v2 is not None and v2.token == "tok"


def _example_exports() -> dict:
    import yaml

    text = (REPO / "config.example.yaml").read_text()
    block = text[text.index("# exports:"):text.index("\n\n", text.index("# exports:"))]
    return yaml.safe_load("\n".join(line[2:] for line in block.splitlines()))["exports"]


def test_the_fleet_alert_rules_pass_promtool(tmp_path: Path) -> None:
    promtool = need(PROMTOOL)
    text = (REPO / "docs" / "fleet.md").read_text()
    start = text.index("```yaml\ngroups:") + len("```yaml\n")
    rules = tmp_path / "rules.yml"
    rules.write_text(text[start:text.index("```", start)])
    done = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 4 rules found" in done.stdout
