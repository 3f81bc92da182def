"""MQTT export: each run's poll to a broker, with Home Assistant discovery.

A cron job cannot hear HA's birth message, so discovery and availability are retained;
states are not (HA's docs: a retained state would come back expired after a restart).
Every message is QoS 1 on a clean session, and the run waits for each PUBACK before it
disconnects, all within `timeout_s`: a broker that is down costs one warning, never the
run. paho-mqtt is imported here only, so a run without `exports.mqtt` never loads it.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from solar_monitor.exports import ExportError, note_outcome
from solar_monitor.exports.data import last_success, open_alerts, pvs_serial
from solar_monitor.exports.homeassistant import (
    BATTERY,
    CONSUMPTION_METER,
    INVERTER,
    MONITOR,
    PRODUCTION_METER,
    SITE,
    Alerts,
    Device,
    Topics,
    discovery_messages,
    node_id,
    site_source,
    state_payload,
    to_json,
)
from solar_monitor.logsetup import redact
from solar_monitor.names import inverter_label
from solar_monitor.pvs.parse import BATTERY_DEVICE_TYPES
from solar_monitor.store import from_iso, iso

if TYPE_CHECKING:
    from solar_monitor.config import MqttExport
    from solar_monitor.context import RunContext

log = logging.getLogger(__name__)

ENERGY_KEY = "mqtt_energy_kwh"  # store state: the last lifetime kWh published, per entity
DEFAULT_PERIOD_S = 900  # the cron's 15 minutes, until the store has polls to measure
EXPIRE_PERIODS = 3  # HA marks a value unavailable after this many missed polls
# A device reading older than this when polled is stale: the PVS refreshes a live
# inverter's every few minutes, and keeps a dead one's last reading for days.
STALE_AFTER = timedelta(minutes=45)
ONLINE, OFFLINE = "online", "offline"
NOT_INSTALLED = "paho-mqtt is not installed: pip install 'solar-monitor[mqtt]'"


class MqttError(ExportError):
    """The broker did not take this run's messages; the text says what to check."""


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: str
    retain: bool = False


@dataclass(frozen=True, slots=True)
class Batch:
    """One run's messages and the lifetime kWh to remember once the broker has them."""

    topics: Topics
    messages: list[Message]
    energy: dict[str, float]
    withheld: list[str]


def _device_name(serial: str, labels: Mapping[str, str]) -> str:
    """The owner's name for the inverter, as in alerts and the digest; 'Inverter …45868'
    without one (a bare '…45868' reads oddly in HA's device list)."""
    label = inverter_label(serial, labels)
    return label if serial in labels else f"Inverter {label}"


def export_stage(ctx: RunContext, settings: MqttExport,
                 labels: Mapping[str, str] | None = None) -> None:
    """Publish this run to the broker. Never raises: a failure is logged once per outage
    (exports.note_outcome). `labels` maps an inverter serial to the owner's name for it
    (its device name in HA); by default the config's `inverters:` map, when it has one."""
    if labels is None:
        labels = ctx.config.inverters
    try:
        batch = build_batch(ctx, settings, labels)
        if batch is None:
            log.info("MQTT: no PVS serial known yet; nothing to publish before a good poll")
            return
        publish(settings, batch.messages, client_id=settings.client_id or
                f"solar-monitor-{batch.topics.pvs}",
                will=Message(batch.topics.monitor_availability, OFFLINE, retain=True))
    except MqttError as exc:
        note_outcome(ctx.store, "mqtt", str(exc))
        return
    except ImportError:
        note_outcome(ctx.store, "mqtt", NOT_INSTALLED)
        return
    except Exception as exc:  # noqa: BLE001 - an export never fails the run
        note_outcome(ctx.store, "mqtt", redact(f"{exc.__class__.__name__}: {exc}",
                                               [settings.password or ""]))
        return
    note_outcome(ctx.store, "mqtt", None)
    if batch.withheld:
        log.info("MQTT: lifetime kWh went backwards, withheld: %s", ", ".join(batch.withheld))
    _remember_energy(ctx, batch.energy)


def probe(settings: MqttExport) -> tuple[bool, str]:
    """For `check`: connect and disconnect. (passed, what happened or what to fix)."""
    try:
        publish(settings, [], client_id=f"solar-monitor-check-{time.monotonic_ns()}")
    except MqttError as exc:
        return False, str(exc)
    except ImportError:
        return False, NOT_INSTALLED
    login = f" as {settings.username}" if settings.username else ""
    tls = " over TLS" if settings.tls else ""
    return True, f"{settings.host}:{settings.port} accepted the connection{tls}{login}"


# --- what to publish -------------------------------------------------------------------


def build_batch(ctx: RunContext, settings: MqttExport,
                labels: Mapping[str, str]) -> Batch | None:
    """Every message of this run; None while no PVS serial is known (no good poll yet)."""
    pvs = pvs_serial(ctx)
    if pvs is None:
        return None
    topics = Topics(settings.topic_prefix.rstrip("/"), pvs, settings.discovery_prefix)
    expire_s = EXPIRE_PERIODS * poll_period_s(ctx)
    devices, ignored = site_devices(ctx, pvs, labels)
    messages = [Message(t, p, retain=True) for t, p in
                discovery_messages(devices, topics, settings.discovery, expire_s)]
    messages += [Message(t, "", retain=True) for t, _ in  # an empty config removes it
                 discovery_messages(ignored, topics, settings.discovery, expire_s)]
    messages.append(Message(topics.monitor_availability, ONLINE, retain=True))
    messages.append(Message(topics.availability,
                            ONLINE if ctx.snapshot is not None else OFFLINE, retain=True))
    memory = _energy_memory(ctx)
    energy: dict[str, float] = {}
    withheld: list[str] = []
    polled_at = ctx.snapshot.polled_at if ctx.snapshot else None
    alerts = alerts_by_device(ctx, devices)
    for device in devices:
        if ctx.snapshot is not None or device.kind == "monitor":
            stale = _stale(device.source, polled_at)
            state = state_payload(device, stale)
            _guard_energy(device, state, memory, energy, withheld)
            messages.append(Message(topics.state(device), to_json(state)))
        messages.append(Message(topics.problem(device), to_json(alerts.payload(device.node))))
    return Batch(topics, messages, energy, withheld)


def poll_period_s(ctx: RunContext) -> int:
    """The site's poll period: the median gap of the last polls, rounded to 5 minutes (a
    steady value: a changed discovery payload makes HA reload the device)."""
    rows = ctx.store.db.execute(
        "SELECT polled_at FROM polls ORDER BY polled_at DESC LIMIT 9").fetchall()
    times = [t for t in (from_iso(r[0]) for r in rows) if t is not None]
    gaps = [(a - b).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    if not gaps:
        return DEFAULT_PERIOD_S
    return max(300, round(statistics.median(gaps) / 300) * 300)


def site_devices(ctx: RunContext, pvs: str,
                 labels: Mapping[str, str]) -> tuple[list[Device], list[Device]]:
    """(devices to publish, replaced inverters to remove). Every inverter the store knows
    is published, reporting now or not: one dark at setup still gets its entities."""
    store, snap = ctx.store, ctx.snapshot
    inverters = {i.serial: i for i in snap.inverters} if snap else {}
    meters = {m.serial: m for m in snap.meters} if snap else {}
    info = {r["serial"]: r for r in store.devices()}
    firmware = store.db.execute(
        "SELECT firmware FROM polls WHERE ok=1 ORDER BY polled_at DESC LIMIT 1").fetchone()
    battery = any(r["device_type"].lower() in BATTERY_DEVICE_TYPES | {"ess"}
                  for r in info.values())
    pvs_row = info.get(pvs)
    devices = [Device("pvs", pvs, f"PVS {pvs}", SITE + (BATTERY if battery else ()),
                      model=pvs_row["model"] if pvs_row else None,
                      firmware=firmware[0] if firmware else None,
                      source=site_source(snap) if snap else None),
               Device("monitor", pvs, "solar-monitor", MONITOR, via=pvs,
                      node=node_id(pvs) + "_monitor",
                      source={"last_poll": last_success(ctx.store)})]
    for row in store.devices("Power Meter"):
        serial = row["serial"]
        kind = meters[serial].kind if serial in meters else _meter_kind(ctx, serial)
        entities = CONSUMPTION_METER if kind == "consumption" else PRODUCTION_METER
        name = "Consumption meter" if kind == "consumption" else "Production meter"
        devices.append(Device("meter", serial, name, entities, model=row["model"], via=pvs,
                              source=meters.get(serial)))
    ignored = set(ctx.config.alerts.ignore_inverters)
    removed: list[Device] = []
    for row in store.devices("Inverter"):
        serial = row["serial"]
        device = Device("inverter", serial, _device_name(serial, labels),
                        INVERTER, model=row["model"], via=pvs,
                        firmware=_json_field(row["info_json"], "SWVER"),
                        source=inverters.get(serial))
        (removed if serial in ignored else devices).append(device)
    return devices, removed


def alerts_by_device(ctx: RunContext, devices: list[Device]) -> Alerts:
    """Open alerts by device node: an inverter's or meter's on it, the Pi's (pi_* rules)
    on the monitor, the rest (the system, a subject no longer known) on the PVS."""
    by_kind = {d.kind: d.node for d in devices if d.kind in ("pvs", "monitor")}
    nodes = {d.serial: d.node for d in devices if d.kind in ("inverter", "meter")}
    alerts = Alerts()
    for a in open_alerts(ctx.store):
        owner = by_kind["monitor"] if a.rule.startswith("pi_") else nodes.get(
            a.subject, by_kind["pvs"])
        alerts.add(owner, a.rule, a.severity, iso(a.opened_at) or "", a.message)
    return alerts


def _meter_kind(ctx: RunContext, serial: str) -> str | None:
    row = ctx.store.db.execute("SELECT kind FROM meter_readings WHERE serial=? "
                               "ORDER BY poll_id DESC LIMIT 1", (serial,)).fetchone()
    return row[0] if row else None


def _json_field(text: str | None, key: str) -> str | None:
    try:
        value = json.loads(text or "{}").get(key)
    except (ValueError, AttributeError):
        return None
    return str(value) if value not in (None, "") else None


def _stale(source: object, polled_at: datetime | None) -> bool:
    """A reading the device took long before this poll (a dead inverter's last values):
    published as null, never as the old value."""
    data_time = getattr(source, "data_time", None)
    return (isinstance(data_time, datetime) and polled_at is not None
            and polled_at - data_time > STALE_AFTER)


def _energy_memory(ctx: RunContext) -> dict[str, float]:
    try:
        memory = json.loads(ctx.store.get_state(ENERGY_KEY) or "{}")
    except ValueError:
        return {}
    return memory if isinstance(memory, dict) else {}


def _guard_energy(device: Device, state: dict[str, Any], memory: Mapping[str, float],
                  energy: dict[str, float], withheld: list[str]) -> None:
    """Null a lifetime kWh below the last one published: HA would read a meter reset and
    count the whole lifetime again. Collects the values to remember in `energy`."""
    for entity in device.entities:
        value = state.get(entity.key)
        if not entity.lifetime or not isinstance(value, float | int):
            continue
        uid = f"{device.node}_{entity.key}"
        last = memory.get(uid)
        if isinstance(last, float | int) and value < last:
            state[entity.key] = None
            withheld.append(f"{device.serial} {entity.key} {value:g} < {last:g}")
        else:
            energy[uid] = value


def _remember_energy(ctx: RunContext, energy: Mapping[str, float]) -> None:
    if energy:
        memory = {**_energy_memory(ctx), **energy}
        with ctx.store.transaction():
            ctx.store.set_state(ENERGY_KEY, json.dumps(memory, sort_keys=True))


# --- the broker ------------------------------------------------------------------------


def publish(settings: MqttExport, messages: list[Message], *, client_id: str,
            will: Message | None = None) -> None:
    """Connect, send each message with QoS 1, wait for every PUBACK, disconnect; all
    within settings.timeout_s. Raises MqttError (what failed and what to check)."""
    deadline = time.monotonic() + settings.timeout_s
    with _session(settings, client_id, will, deadline) as client:
        acked: set[int] = set()
        client.on_publish = lambda _c, _u, mid, _rc, _p: acked.add(mid)
        pending: set[int] = set()
        for message in messages:
            info = client.publish(message.topic, message.payload, qos=1, retain=message.retain)
            if info.rc:
                raise MqttError(f"publishing to {message.topic} failed (paho error {info.rc})")
            pending.add(info.mid)
        _loop_until(client, lambda: pending <= acked, deadline, lambda: (
            f"{settings.host}:{settings.port} acknowledged {len(pending & acked)} of "
            f"{len(pending)} messages within {settings.timeout_s:g} s"))


@contextmanager
def _session(settings: MqttExport, client_id: str, will: Message | None,
             deadline: float) -> Iterator[Any]:
    """A connected client (CONNACK received), disconnected cleanly on the way out."""
    import ssl

    from paho.mqtt import client as mqtt

    where = f"{settings.host}:{settings.port}"
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         clean_session=True, protocol=mqtt.MQTTv311)
    if settings.username:
        client.username_pw_set(settings.username, settings.password)
    if settings.tls:
        client.tls_set()  # the system's CAs, hostname checked
    if will is not None:
        client.will_set(will.topic, will.payload, qos=1, retain=will.retain)
    connack: list[Any] = []
    client.on_connect = lambda _c, _u, _f, reason, _p: connack.append(reason)
    client.connect_timeout = max(0.1, deadline - time.monotonic())
    try:
        client.connect(settings.host, settings.port, keepalive=60)
    except ssl.SSLError as exc:
        raise MqttError(f"TLS with {where} failed ({exc.reason or exc}): check exports.mqtt"
                        ".tls, the port (8883 for TLS) and the broker's certificate") from None
    except TimeoutError:
        raise MqttError(f"no answer from {where} within {settings.timeout_s:g} s: check "
                        "exports.mqtt.host and port, and the firewall") from None
    except ConnectionRefusedError:
        raise MqttError(f"{where} refused the connection: is the broker running there? "
                        "(exports.mqtt.host and port)") from None
    except OSError as exc:
        raise MqttError(f"cannot reach {where} ({exc.strerror or exc}): check "
                        "exports.mqtt.host and port") from None
    try:
        _loop_until(client, lambda: bool(connack), deadline, lambda: (
            f"{where} sent no MQTT answer within {settings.timeout_s:g} s: is it an MQTT "
            f"broker{', without TLS' if not settings.tls else ''}? (exports.mqtt.port, tls)"))
        if connack[0].is_failure:
            raise MqttError(f"{where} refused the login ({connack[0]}): check "
                            "exports.mqtt.username and password")
        yield client
        client.disconnect()  # clean: the broker drops the last will
        _loop_until(client, lambda: not client.is_connected(), time.monotonic() + 1.0,
                    lambda: "", quiet=True)
    finally:
        sock = client.socket()
        if sock is not None:
            sock.close()


def _loop_until(client: Any, done: Callable[[], bool], deadline: float,
                failure: Callable[[], str], *, quiet: bool = False) -> None:
    """Run the client's network loop in this thread until `done()` or the deadline."""
    while not done():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            if quiet:
                return
            raise MqttError(failure())
        rc = client.loop(timeout=min(remaining, 0.2))
        if rc and not done():
            if quiet:
                return
            raise MqttError(f"{failure()} (the connection closed: {rc.name})")
