"""The MQTT / Home Assistant export against a real mosquitto and the emulator."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import pytest

from solar_monitor import pipeline
from solar_monitor.config import Config, config_from_dict
from solar_monitor.context import Stage
from solar_monitor.emulation.emulator import Emulator, default_spec, start_emulator
from solar_monitor.emulation.sim import SimulatedSite
from solar_monitor.exports import mqtt
from solar_monitor.pipeline import RunReport, open_store, run_once
from tests.ha_discovery import check_device_payloads
from tests.mosquitto_util import (
    mosquitto,
    needs_mosquitto,
    retained,
    self_signed,
    subscriber,
)
from tests.test_pipeline import NOON, Clock

STAGES = list(pipeline.STAGES)
pytestmark = [needs_mosquitto, pytest.mark.timeout(60)]


@dataclass(frozen=True)
class Settings:
    """The fields of config.MqttExport that the exporter reads."""

    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    username: str | None = None
    password: str | None = None
    topic_prefix: str = "solar-monitor"
    discovery_prefix: str | None = "homeassistant"
    discovery: str = "device"
    client_id: str | None = None
    timeout_s: float = 5.0


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


def make_config(tmp_path: Path, url: str, name: str = "data", **sections: object) -> Config:
    return config_from_dict({
        "site": {"latitude": 42.36, "longitude": -71.06, "timezone": "America/New_York"},
        "pvs": {"url": url, "poll_budget_s": 10.0, "request_timeout_s": 5.0},
        "data_dir": str(tmp_path / name), "weather": {"enabled": False},
        "csv": {"enabled": False}, **sections}, env={})


def run(config: Config, settings: Settings, clock: Clock,
        monkeypatch: pytest.MonkeyPatch) -> RunReport:
    """One run with the MQTT stage after the others."""
    stage = Stage("mqtt", lambda ctx: mqtt.export_stage(ctx, settings))  # type: ignore[arg-type]
    monkeypatch.setattr(pipeline, "STAGES", [*STAGES, stage])
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


def test_one_run_feeds_home_assistant(tmp_path: Path, broker: int, clock: Clock,
                                      monkeypatch: pytest.MonkeyPatch):
    settings = Settings(port=broker)
    with site(clock) as emu, subscriber(broker) as live:
        config = make_config(tmp_path, emu.url)
        report = run(config, settings, clock, monkeypatch)
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


def test_failed_poll_publishes_offline(tmp_path: Path, broker: int, clock: Clock,
                                       monkeypatch: pytest.MonkeyPatch):
    settings = Settings(port=broker)
    with site(clock) as emu:
        config = make_config(tmp_path, emu.url)
        assert run(config, settings, clock, monkeypatch).ok
        pvs = _pvs(config)
        emu.faults.fail()
        clock.now += timedelta(minutes=15)
        with subscriber(broker) as live:
            report = run(config, settings, clock, monkeypatch)
    assert not report.ok
    base = f"solar-monitor/{pvs}"
    assert live.last(f"{base}/availability") == b"offline"
    assert live.last(f"{base}/monitor/availability") == b"online"
    assert not [t for t in live.topics() if t.endswith("/state") and "/monitor/" not in t]
    assert len([t for t, _, kept in live.messages  # again, besides the 8 the broker kept
                if t.startswith("homeassistant/device/") and not kept]) == 8
    kept = retained(broker, f"{base}/availability", 1)
    assert kept.messages == [(f"{base}/availability", b"offline", True)]


def test_broker_down_costs_one_warning_within_the_timeout(
        tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture):
    silent = socket.socket()  # accepts TCP, never speaks MQTT: the worst broker
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    settings = Settings(port=silent.getsockname()[1], timeout_s=1.0)
    with site(clock) as emu, silent:
        config = make_config(tmp_path, emu.url)
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="solar_monitor.exports.mqtt"):
            report = run(config, settings, clock, monkeypatch)
        elapsed = time.monotonic() - started
    assert report.ok and report.stage_errors == ()
    warnings = [r.getMessage() for r in caplog.records if r.name.endswith("mqtt")]
    assert len(warnings) == 1 and "sent no MQTT answer within 1 s" in warnings[0]
    assert elapsed < 5


def test_probe_names_the_fix(tmp_path: Path, broker: int):
    ok, message = mqtt.probe(Settings(port=broker))
    assert ok and message == f"127.0.0.1:{broker} accepted the connection"
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    ok, message = mqtt.probe(Settings(port=port, timeout_s=2))
    assert not ok and "refused the connection" in message and "exports.mqtt.host" in message


def test_password_broker(tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch,
                         caplog: pytest.LogCaptureFixture):
    with mosquitto(tmp_path / "broker", users={"solar": "s3cret-pw"}) as port:
        good = Settings(port=port, username="solar", password="s3cret-pw")
        assert mqtt.probe(good) == (True, f"127.0.0.1:{port} accepted the connection "
                                          "as solar")
        bad = replace(good, password="wrong-pw")
        ok, message = mqtt.probe(bad)
        assert not ok and "refused the login" in message
        assert "exports.mqtt.username and password" in message and "wrong-pw" not in message
        with site(clock) as emu:
            config = make_config(tmp_path, emu.url)
            with caplog.at_level(logging.DEBUG):
                run(config, bad, clock, monkeypatch)
            assert "wrong-pw" not in caplog.text and "refused the login" in caplog.text
            clock.now += timedelta(minutes=15)
            run(config, good, clock, monkeypatch)
        kept = retained(port, f"solar-monitor/{_pvs(config)}/availability", 1,
                        login=("solar", "s3cret-pw"))
        assert [p for _, p, _ in kept.messages] == [b"online"]
        assert "s3cret-pw" not in caplog.text


def test_tls_broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    folder = tmp_path / "broker"
    folder.mkdir()
    cert, key = self_signed(folder)
    with mosquitto(folder, tls=(cert, key)) as port:
        settings = Settings(port=port, tls=True, timeout_s=3)
        ok, message = mqtt.probe(settings)  # the system's CAs do not know this broker
        assert not ok and "TLS with 127.0.0.1" in message and "certificate" in message
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # now they do
        assert mqtt.probe(settings) == (True, f"127.0.0.1:{port} accepted the connection "
                                              "over TLS")


def test_two_sites_one_broker(tmp_path: Path, broker: int, clock: Clock,
                              monkeypatch: pytest.MonkeyPatch):
    settings = Settings(port=broker)
    with site(clock, seed=3) as one, site(clock, seed=11) as two, subscriber(broker) as live:
        first, second = make_config(tmp_path, one.url, "a"), make_config(tmp_path, two.url, "b")
        assert run(first, settings, clock, monkeypatch).ok
        assert run(second, settings, clock, monkeypatch).ok
    pvs_a, pvs_b = _pvs(first), _pvs(second)
    assert pvs_a != pvs_b
    for pvs in (pvs_a, pvs_b):
        assert live.last(f"solar-monitor/{pvs}/availability") == b"online"
        assert payload(live, f"solar-monitor/{pvs}/{pvs}/state")["production_w"] > 0
    discovery = retained(broker, "homeassistant/#", 16)
    assert len(discovery.messages) == 16
    assert check_device_payloads(json.loads(p) for _, p, _ in discovery.messages) == []


def test_lifetime_going_backwards_is_withheld(tmp_path: Path, broker: int, clock: Clock,
                                              monkeypatch: pytest.MonkeyPatch):
    settings = Settings(port=broker)
    with site(clock) as emu:
        config = make_config(tmp_path, emu.url)
        with subscriber(broker) as live:
            assert run(config, settings, clock, monkeypatch).ok
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
            assert run(config, settings, clock, monkeypatch).ok
    state = payload(live, f"solar-monitor/{pvs}/{serial}/state")
    assert state["energy_kwh"] is None and state["power_w"] > 0
    with open_store(config) as store:
        assert json.loads(store.get_state(mqtt.ENERGY_KEY))[uid] == first + 100.0


def test_dark_inverter_is_null_never_zero_and_still_discovered(
        tmp_path: Path, broker: int, clock: Clock, monkeypatch: pytest.MonkeyPatch):
    settings = Settings(port=broker)
    with site(clock) as emu:
        config = make_config(tmp_path, emu.url)
        assert run(config, settings, clock, monkeypatch).ok
        pvs = _pvs(config)
        missing = emu.site.inverter_serials[1]
        emu.faults.missing_inverter(missing)
        clock.now += timedelta(minutes=15)
        with subscriber(broker) as live:
            assert run(config, settings, clock, monkeypatch).ok
    state = payload(live, f"solar-monitor/{pvs}/{missing}/state")
    assert state["power_w"] is None and state["energy_kwh"] is None
    assert f"homeassistant/device/solar_monitor_{missing}/config" in live.topics()


def test_open_alerts_are_problem_entities(tmp_path: Path, broker: int, clock: Clock,
                                          monkeypatch: pytest.MonkeyPatch):
    settings = Settings(port=broker)
    with site(clock) as emu:  # rules off: they would judge the alerts written here
        config = make_config(tmp_path, emu.url, alerts={"enabled": False})
        assert run(config, settings, clock, monkeypatch).ok
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
            run(config, settings, clock, monkeypatch)
    base = f"solar-monitor/{pvs}"
    inverter = payload(live, f"{base}/{serial}/problem")
    assert inverter["message"] == f"Inverter {serial} has produced nothing"
    assert [a["rule"] for a in inverter["alerts"]] == ["inverter_offline"]
    assert payload(live, f"{base}/{pvs}/problem")["message"] == "The PVS does not answer"
    assert payload(live, f"{base}/monitor/problem")["message"] == "The Pi runs at 82 °C"
    other = emu.site.inverter_serials[0]
    assert payload(live, f"{base}/{other}/problem") == {"alerts": [], "message": ""}


def test_entity_discovery_for_older_home_assistant(tmp_path: Path, broker: int, clock: Clock,
                                                   monkeypatch: pytest.MonkeyPatch):
    settings = Settings(port=broker, discovery="entity")
    with site(clock, inverters=1) as emu:
        config = make_config(tmp_path, emu.url)
        with subscriber(broker, "homeassistant/#") as live:
            assert run(config, settings, clock, monkeypatch).ok
    serial = emu.site.inverter_serials[0]
    topics = [t for t in live.topics() if f"/solar_monitor_{serial}/" in t]
    assert f"homeassistant/sensor/solar_monitor_{serial}/power_w/config" in topics
    assert f"homeassistant/binary_sensor/solar_monitor_{serial}/problem/config" in topics
    power = payload(live, f"homeassistant/sensor/solar_monitor_{serial}/power_w/config")
    assert power["dev"]["sn"] == serial and power["unit_of_measurement"] == "W"
    assert "p" not in power


def test_no_paho_until_a_broker_is_used():
    code = ("import sys; import solar_monitor.exports.mqtt, solar_monitor.pipeline; "
            "print('paho' in ' '.join(sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
    assert out.stdout.strip() == b"False"


def _pvs(config: Config) -> str:
    with open_store(config) as store:
        return store.devices("PVS")[0]["serial"]

