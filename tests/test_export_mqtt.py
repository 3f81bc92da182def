"""The MQTT / Home Assistant export against a real mosquitto and the emulator."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from solar_monitor.check import CHECKS, CheckResult
from solar_monitor.config import Config, MqttExport, config_from_dict
from solar_monitor.context import RunContext
from solar_monitor.emulation.emulator import Emulator, default_spec, start_emulator
from solar_monitor.emulation.sim import SimulatedSite
from solar_monitor.exports import mqtt
from solar_monitor.pipeline import RunReport, open_store, run_once
from tests.ha_discovery import check_component, check_device_payloads
from tests.mosquitto_util import (
    mosquitto,
    needs_mosquitto,
    retained,
    self_signed,
    subscriber,
)
from tests.test_cli import run_cli, write_config
from tests.test_pipeline import NOON, Clock

BASE: dict[str, Any] = {
    "site": {"latitude": 42.36, "longitude": -71.06, "timezone": "America/New_York"},
    "pvs": {"url": "http://127.0.0.1:9", "poll_budget_s": 10.0, "request_timeout_s": 5.0},
    "data_dir": "/nonexistent", "weather": {"enabled": False}, "csv": {"enabled": False}}
pytestmark = [needs_mosquitto, pytest.mark.timeout(60)]


def mqtt_section(port: int, **options: object) -> dict[str, object]:
    """An `exports.mqtt` config section for the broker on `port`."""
    return {"host": "127.0.0.1", "port": port, "timeout_s": 5, **options}


def settings(port: int, **options: object) -> MqttExport:
    """The validated section, as `check` hands it to probe()."""
    config = config_from_dict({**BASE, "exports": {"mqtt": mqtt_section(port, **options)}},
                              env={})
    assert config.exports.mqtt is not None
    return config.exports.mqtt


@pytest.fixture
def clock() -> Clock:
    return Clock(NOON)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[int]:
    with mosquitto(tmp_path / "broker") as port:
        yield port


def site(clock: Clock, seed: int = 3, inverters: int = 4) -> Emulator:
    spec = default_spec(NOON, inverter_count=inverters, latitude=42.36, longitude=-71.06,
                        timezone="America/New_York", seed=seed)
    return start_emulator(SimulatedSite(spec), firmware="legacy", clock=clock)


def make_config(tmp_path: Path, url: str, mqtt_options: dict[str, object],
                name: str = "data", **sections: object) -> Config:
    return config_from_dict(make_dict(tmp_path, url, mqtt_options, name, **sections), env={})


def make_dict(tmp_path: Path, url: str, mqtt_options: dict[str, object],
              name: str = "data", **sections: object) -> dict[str, object]:
    return {**BASE, "pvs": {**BASE["pvs"], "url": url}, "data_dir": str(tmp_path / name),
            "exports": {"mqtt": mqtt_options}, **sections}


def run(config: Config, clock: Clock) -> RunReport:
    """One run at the simulated time (the exports stage publishes at its end)."""
    return run_once(config, now=clock.now)


def parsed(report: RunReport) -> dict:
    """What `solar-monitor parse` prints for this run's archived answer."""
    out = subprocess.run([sys.executable, "-m", "solar_monitor", "parse",
                          str(report.archive_file)], capture_output=True, check=True)
    return json.loads(out.stdout)


def payload(received, topic: str) -> dict:
    raw = received.last(topic)
    assert raw is not None, f"nothing on {topic}: {received.topics()}"
    return json.loads(raw)


def test_one_run_feeds_home_assistant(tmp_path: Path, broker: int, clock: Clock):
    section = mqtt_section(broker)
    with site(clock) as emu, subscriber(broker) as live:
        config = make_config(tmp_path, emu.url, section)
        report = run(config, clock)
    assert report.ok, report.error
    truth = parsed(report)
    pvs = truth["supervisor"]["serial"]
    base = f"solar-monitor/{pvs}"

    # discovery: retained, one per device (PVS, monitor, 2 meters, 4 inverters), valid
    kept = retained(broker, "homeassistant/#", 8)
    assert all(r for _, _, r in kept.messages) and len(kept.messages) == 8
    discovery = [json.loads(p) for _, p, _ in kept.messages]
    assert check_device_payloads(discovery) == []
    by_serial = {d["dev"]["sn"]: d for d in discovery if d["dev"]["name"] != "solar-monitor"}
    assert set(by_serial) == ({pvs} | {m["serial"] for m in truth["meters"]}
                              | {i["serial"] for i in truth["inverters"]})
    inverter = truth["inverters"][0]
    disc = by_serial[inverter["serial"]]
    assert disc["state_topic"] == f"{base}/{inverter['serial']}/state"
    assert disc["availability_topic"] == f"{base}/availability"
    energy = disc["cmps"]["energy_kwh"]
    assert (energy["device_class"], energy["state_class"], energy["unit_of_measurement"]) \
        == ("energy", "total_increasing", "kWh")
    enabled = {k for k, c in disc["cmps"].items() if c.get("enabled_by_default", True)}
    assert enabled == {"power_w", "energy_kwh", "problem"}
    consumption = next(d for d in discovery if d["dev"]["name"] == "Consumption meter")
    assert consumption["cmps"]["energy_net_kwh"]["state_class"] == "total"
    assert disc["cmps"]["problem"]["p"] == "binary_sensor"
    assert disc["cmps"]["problem"]["device_class"] == "problem"

    # availability online (retained), states with the emulator's values
    status = retained(broker, f"{base}/#", 2)
    assert sorted(status.messages) == sorted([(f"{base}/availability", b"online", True),
                                              (f"{base}/monitor/availability", b"online",
                                               True)])
    for inv in truth["inverters"]:
        state = payload(live, f"{base}/{inv['serial']}/state")
        assert state["power_w"] == round(inv["power_kw"] * 1000, 1)
        assert state["energy_kwh"] == round(inv["lifetime_kwh"], 3)
        assert state["heatsink_c"] == inv["heatsink_c"]
    site_state = payload(live, f"{base}/{pvs}/state")
    assert site_state["production_w"] == round(truth["totals"]["production_kw"] * 1000, 1)
    assert site_state["energy_kwh"] == round(truth["totals"]["lifetime_production_kwh"], 3)
    assert site_state["consumption_w"] == round(truth["totals"]["consumption_kw"] * 1000, 1)
    meter = next(m for m in truth["meters"] if m["kind"] == "consumption")
    meter_state = payload(live, f"{base}/{meter['serial']}/state")
    assert meter_state["energy_net_kwh"] == round(meter["lifetime_net_kwh"], 3)
    assert payload(live, f"{base}/{inverter['serial']}/problem") == {"alerts": [],
                                                                     "message": ""}
    states = [(t, r) for t, _, r in live.messages if t.endswith("/state")]
    assert states and not any(r for _, r in states)  # states are never retained


def test_failed_poll_publishes_offline(tmp_path: Path, broker: int, clock: Clock):
    section = mqtt_section(broker)
    with site(clock) as emu:
        config = make_config(tmp_path, emu.url, section)
        assert run(config, clock).ok
        pvs = _pvs(config)
        emu.faults.fail()
        clock.now += timedelta(minutes=15)
        with subscriber(broker) as live:
            report = run(config, clock)
    assert not report.ok
    base = f"solar-monitor/{pvs}"
    assert live.last(f"{base}/availability") == b"offline"
    assert live.last(f"{base}/monitor/availability") == b"online"
    assert not [t for t in live.topics() if t.endswith("/state") and "/monitor/" not in t]
    assert len([t for t, _, kept in live.messages  # again, besides the 8 the broker kept
                if t.startswith("homeassistant/device/") and not kept]) == 8
    kept = retained(broker, f"{base}/availability", 1)
    assert kept.messages == [(f"{base}/availability", b"offline", True)]


def test_broker_down_run_exits_0_within_its_timeout(tmp_path: Path):
    """`solar-monitor run` as cron runs it, against a port that accepts TCP and never
    speaks MQTT (the worst broker): one warning, exit 0, the timeout respected."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    with silent, start_emulator(firmware="legacy") as emu:
        options = {"host": "127.0.0.1", "port": silent.getsockname()[1], "timeout_s": 1}
        path = write_config(tmp_path, make_dict(tmp_path, emu.url, options))
        started = time.monotonic()
        result = run_cli("run", "--config", str(path))
        elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    warnings = [ln for ln in result.stderr.splitlines() if "mqtt export failed" in ln]
    assert len(warnings) == 1, result.stderr
    assert "sent no MQTT answer within 1 s" in warnings[0]
    assert "Traceback" not in result.stderr
    assert elapsed < 10  # the process's start and one poll, plus the 1 s bound


def test_probe_names_the_fix(tmp_path: Path, broker: int):
    ok, message = mqtt.probe(settings(broker))
    assert ok and message == f"127.0.0.1:{broker} accepted the connection"
    config = make_config(tmp_path, "http://127.0.0.1:9", mqtt_section(broker))
    assert dict(CHECKS)["exports.mqtt"](config) == CheckResult(
        "PASS", f"127.0.0.1:{broker} accepted the connection")
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    ok, message = mqtt.probe(settings(port, timeout_s=2))
    assert not ok and "refused the connection" in message and "exports.mqtt.host" in message


def test_password_broker(tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture):
    with mosquitto(tmp_path / "broker", users={"solar": "s3cret-pw"}) as port:
        login = {"username": "solar", "password": "s3cret-pw"}
        good, bad = mqtt_section(port, **login), mqtt_section(port, **{**login,
                                                                       "password": "wrong-pw"})
        assert mqtt.probe(settings(port, **login)) == (
            True, f"127.0.0.1:{port} accepted the connection as solar")
        ok, message = mqtt.probe(settings(port, **{**login, "password": "wrong-pw"}))
        assert not ok and "refused the login" in message
        assert "exports.mqtt.username and password" in message and "wrong-pw" not in message
        with site(clock) as emu, caplog.at_level(logging.DEBUG):
            run(make_config(tmp_path, emu.url, bad), clock)
            assert "wrong-pw" not in caplog.text and "refused the login" in caplog.text
            clock.now += timedelta(minutes=15)
            config = make_config(tmp_path, emu.url, good)
            run(config, clock)
        assert "mqtt export works again" in caplog.text
        kept = retained(port, f"solar-monitor/{_pvs(config)}/availability", 1,
                        login=("solar", "s3cret-pw"))
        assert [p for _, p, _ in kept.messages] == [b"online"]
        assert "s3cret-pw" not in caplog.text


def test_tls_broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    folder = tmp_path / "broker"
    folder.mkdir()
    cert, key = self_signed(folder)
    with mosquitto(folder, tls=(cert, key)) as port:
        tls = settings(port, tls=True, timeout_s=3)
        ok, message = mqtt.probe(tls)  # the system's CAs do not know this broker
        assert not ok and "TLS with 127.0.0.1" in message and "certificate" in message
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # now they do
        assert mqtt.probe(tls) == (True, f"127.0.0.1:{port} accepted the connection over TLS")


def test_two_sites_one_broker(tmp_path: Path, broker: int, clock: Clock):
    section = mqtt_section(broker)
    with site(clock, seed=3) as one, site(clock, seed=11) as two, subscriber(broker) as live:
        first, second = (make_config(tmp_path, one.url, section, "a"),
                         make_config(tmp_path, two.url, section, "b"))
        assert run(first, clock).ok
        assert run(second, clock).ok
    pvs_a, pvs_b = _pvs(first), _pvs(second)
    assert pvs_a != pvs_b
    for pvs in (pvs_a, pvs_b):
        assert live.last(f"solar-monitor/{pvs}/availability") == b"online"
        assert payload(live, f"solar-monitor/{pvs}/{pvs}/state")["production_w"] > 0
    discovery = retained(broker, "homeassistant/#", 16)
    assert len(discovery.messages) == 16
    assert check_device_payloads(json.loads(p) for _, p, _ in discovery.messages) == []


def test_lifetime_going_backwards_is_withheld(tmp_path: Path, broker: int, clock: Clock):
    section = mqtt_section(broker)
    with site(clock) as emu:
        config = make_config(tmp_path, emu.url, section)
        with subscriber(broker) as live:
            assert run(config, clock).ok
        pvs = _pvs(config)
        with open_store(config) as store:
            memory = json.loads(store.get_state(mqtt.ENERGY_KEY) or "{}")
            serial = store.devices("Inverter")[0]["serial"]
            uid = f"solar_monitor_{serial}_energy_kwh"
            first = payload(live, f"solar-monitor/{pvs}/{serial}/state")["energy_kwh"]
            assert memory[uid] == first
            memory[uid] = first + 100.0  # as if a larger value had been published before
            with store.transaction():
                store.set_state(mqtt.ENERGY_KEY, json.dumps(memory))
        clock.now += timedelta(minutes=15)
        with subscriber(broker) as live:
            assert run(config, clock).ok
    state = payload(live, f"solar-monitor/{pvs}/{serial}/state")
    assert state["energy_kwh"] is None and state["power_w"] > 0
    with open_store(config) as store:
        assert json.loads(store.get_state(mqtt.ENERGY_KEY))[uid] == first + 100.0


def test_dark_inverter_is_null_never_zero_and_still_discovered(
        tmp_path: Path, broker: int, clock: Clock):
    """A missing inverter, and a dead one whose last reading the PVS keeps repeating (its
    DATATIME hours old, its power 0): both null, both still discovered."""
    section = mqtt_section(broker)
    with site(clock) as emu:
        config = make_config(tmp_path, emu.url, section)
        assert run(config, clock).ok
        pvs = _pvs(config)
        missing, dead, alive = emu.site.inverter_serials[1:4]
        emu.faults.missing_inverter(missing)
        emu.faults.dead_inverter(dead)
        clock.now += timedelta(hours=2)
        with subscriber(broker) as live:
            report = run(config, clock)
    assert report.ok
    truth = {i["serial"]: i for i in parsed(report)["inverters"]}
    assert missing not in truth and truth[dead]["power_kw"] == 0.0  # what the PVS says
    for serial in (missing, dead):
        state = payload(live, f"solar-monitor/{pvs}/{serial}/state")
        assert state["power_w"] is None and state["energy_kwh"] is None, serial
        assert f"homeassistant/device/solar_monitor_{serial}/config" in live.topics()
    assert payload(live, f"solar-monitor/{pvs}/{alive}/state")["power_w"] > 0


def test_open_alerts_are_problem_entities(tmp_path: Path, broker: int, clock: Clock):
    section = mqtt_section(broker)
    with site(clock) as emu:  # rules off: they would judge the alerts written here
        config = make_config(tmp_path, emu.url, section, alerts={"enabled": False})
        assert run(config, clock).ok
        pvs = _pvs(config)
        serial = emu.site.inverter_serials[2]
        with open_store(config) as store, store.transaction():
            for rule, subject, message in [
                    ("inverter_offline", serial, f"Inverter {serial} has produced nothing"),
                    ("pvs_unreachable", "system", "The PVS does not answer"),
                    ("pi_hot", "system", "The Pi runs at 82 °C")]:
                store.db.execute(
                    "INSERT INTO alerts (rule, subject, severity, status, opened_at, message) "
                    "VALUES (?, ?, 'warning', 'open', '2026-06-10T15:00:00Z', ?)",
                    (rule, subject, message))
        clock.now += timedelta(minutes=15)
        with subscriber(broker) as live:
            run(config, clock)
    base = f"solar-monitor/{pvs}"
    inverter = payload(live, f"{base}/{serial}/problem")
    assert inverter["message"] == f"Inverter {serial} has produced nothing"
    assert [a["rule"] for a in inverter["alerts"]] == ["inverter_offline"]
    assert payload(live, f"{base}/{pvs}/problem")["message"] == "The PVS does not answer"
    assert payload(live, f"{base}/monitor/problem")["message"] == "The Pi runs at 82 °C"
    other = emu.site.inverter_serials[0]
    assert payload(live, f"{base}/{other}/problem") == {"alerts": [], "message": ""}


def test_entity_discovery_for_older_home_assistant(tmp_path: Path, broker: int, clock: Clock):
    section = mqtt_section(broker, discovery="entity")
    with site(clock, inverters=1) as emu:
        config = make_config(tmp_path, emu.url, section)
        with subscriber(broker, "homeassistant/#") as live:
            assert run(config, clock).ok
    serial = emu.site.inverter_serials[0]
    topics = [t for t in live.topics() if f"/solar_monitor_{serial}/" in t]
    assert f"homeassistant/sensor/solar_monitor_{serial}/power_w/config" in topics
    assert f"homeassistant/binary_sensor/solar_monitor_{serial}/problem/config" in topics
    power = payload(live, f"homeassistant/sensor/solar_monitor_{serial}/power_w/config")
    assert power["dev"]["sn"] == serial and power["unit_of_measurement"] == "W"
    assert "p" not in power
    problems, uids = [], set()
    for topic, raw, _ in live.messages:
        entity = json.loads(raw)
        problems += check_component({**entity, "p": topic.split("/")[1]}, topic)
        uids.add(entity["unique_id"])
    assert problems == [] and len(uids) == len(live.messages)


def test_without_discovery_the_states_still_flow(tmp_path: Path, broker: int, clock: Clock):
    """discovery_prefix: null, for Telegraf or Node-RED: no discovery, the same states."""
    with site(clock, inverters=1) as emu, subscriber(broker) as live:
        config = make_config(tmp_path, emu.url, mqtt_section(broker, discovery_prefix=None))
        assert run(config, clock).ok
    assert not [t for t in live.topics() if t.startswith("homeassistant/")]
    serial = emu.site.inverter_serials[0]
    assert payload(live, f"solar-monitor/{_pvs(config)}/{serial}/state")["power_w"] > 0


def test_the_discovery_checker_catches_what_ha_rejects():
    """The checker is no rubber stamp: each mistake HA's docs rule out is reported."""
    good = {"p": "sensor", "unique_id": "a", "state_topic": "t", "device_class": "energy",
            "unit_of_measurement": "kWh", "state_class": "total_increasing"}
    assert check_component(good, "ok") == []
    for bad, expected in [
            ({"unit_of_measurement": "W"}, "energy in 'W'"),
            ({"state_class": "measurement"}, "energy with state_class measurement"),
            ({"device_class": "energy_meter"}, "not in the table"),
            ({"unique_id": ""}, "no unique_id"),
            ({"p": "binary_sensor", "device_class": "problem"}, "no unit or state_class"),
            ({"entity_category": "primary"}, "entity_category primary")]:
        problems = check_component({**good, **bad}, "x")
        assert any(expected in p for p in problems), (bad, problems)
    device = {"dev": {"ids": ["d"], "name": "D"}, "o": {"name": "o"}, "state_topic": "t",
              "cmps": {"e": good}}
    assert check_device_payloads([device]) == []
    assert any("also in" in p for p in check_device_payloads([device, device]))
    assert any("no origin" in p for p in check_device_payloads([{**device, "o": {}}]))


def test_no_paho_until_a_broker_is_used():
    code = ("import sys; import solar_monitor.exports.mqtt, solar_monitor.pipeline; "
            "print('paho' in ' '.join(sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
    assert out.stdout.strip() == b"False"


def _pvs(config: Config) -> str:
    with open_store(config) as store:
        return store.devices("PVS")[0]["serial"]



def test_owner_names_inverters(tmp_path: Path, broker: int, clock: Clock):
    """The `labels` lookup (config `inverters:`) names an inverter's HA device."""
    with site(clock, inverters=2) as emu:
        config = make_config(tmp_path, emu.url, mqtt_section(broker))
        assert run(config, clock).ok
    named, other = emu.site.inverter_serials
    assert config.exports.mqtt is not None
    with open_store(config) as store:
        ctx = RunContext(config=config, store=store, now=clock.now)
        mqtt.export_stage(ctx, config.exports.mqtt, labels={named: "South roof, row 2"})
    kept = retained(broker, "homeassistant/#", 6)
    names = {d["dev"]["sn"]: d["dev"]["name"]
             for d in (json.loads(p) for _, p, _ in kept.messages)}
    assert names[named] == f"South roof, row 2 (…{named[-5:]})"
    assert names[other] == f"Inverter …{other[-5:]}"
