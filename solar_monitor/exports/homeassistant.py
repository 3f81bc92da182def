"""Home Assistant's view of a site: devices, their entities, discovery and state payloads.

Pure data, no MQTT: `exports/mqtt.py` publishes what this builds. The tables follow HA's
conventions (developers.home-assistant.io, "Sensor entity" and "MQTT discovery"): power in
W with `measurement`, lifetime energy in kWh with `total_increasing` (the Energy dashboard),
the consumption meter's net kWh as `total`, everything but power and energy diagnostic or
disabled, and short entity names (HA prefixes the device name).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from solar_monitor import __version__
from solar_monitor.display import shown_production_kw
from solar_monitor.pvs.models import Snapshot, totals

ORIGIN = {"name": "solar-monitor", "sw": __version__}
MANUFACTURER = "SunPower"
NO_PROBLEM = {"alerts": [], "message": ""}


@dataclass(frozen=True, slots=True)
class Entity:
    """One HA entity of a device: `key` names it in the state JSON and its unique id;
    its value is `attr` of the device's model times `scale` (kW -> W), rounded."""

    key: str
    name: str
    attr: str = ""
    scale: float = 1.0
    digits: int = 2
    device_class: str | None = None
    unit: str | None = None
    state_class: Literal["measurement", "total", "total_increasing"] | None = None
    enabled: bool = True
    diagnostic: bool = False
    icon: str | None = None
    platform: Literal["sensor", "binary_sensor"] = "sensor"

    @property
    def lifetime(self) -> bool:
        """A meter HA must never see go down (it would read a reset)."""
        return self.state_class == "total_increasing"

    def value(self, source: object) -> float | str | None:
        raw = source.get(self.attr) if isinstance(source, Mapping) else getattr(
            source, self.attr, None)
        if isinstance(raw, bool) or raw is None:
            return None
        if isinstance(raw, int | float):
            return round(raw * self.scale, self.digits)
        return raw.isoformat() if isinstance(raw, datetime) else str(raw)


def _power(key: str, name: str, attr: str, **kw: Any) -> Entity:
    return Entity(key, name, attr, 1000.0, 1, "power", "W", "measurement", **kw)


def _energy(key: str, name: str, attr: str, state_class: Any = "total_increasing",
            **kw: Any) -> Entity:
    return Entity(key, name, attr, 1.0, 3, "energy", "kWh", state_class, **kw)


def _diag(key: str, name: str, attr: str, device_class: str | None, unit: str | None,
          scale: float = 1.0, **kw: Any) -> Entity:
    return Entity(key, name, attr, scale, 2, device_class, unit, "measurement",
                  enabled=False, diagnostic=True, **kw)


PROBLEM = Entity("problem", "Problem", platform="binary_sensor", device_class="problem")

INVERTER: tuple[Entity, ...] = (
    _power("power_w", "Power", "power_kw"),
    _energy("energy_kwh", "Energy", "lifetime_kwh"),
    _diag("ac_voltage_v", "AC voltage", "ac_voltage_v", "voltage", "V"),
    _diag("ac_current_a", "AC current", "ac_current_a", "current", "A"),
    _diag("frequency_hz", "Frequency", "freq_hz", "frequency", "Hz"),
    _diag("heatsink_c", "Heatsink", "heatsink_c", "temperature", "°C"),
    _diag("dc_voltage_v", "DC voltage", "dc_voltage_v", "voltage", "V"),
    _diag("dc_current_a", "DC current", "dc_current_a", "current", "A"),
    _diag("dc_power_w", "DC power", "dc_power_kw", "power", "W", scale=1000.0),
    Entity("state", "State", "state", enabled=False, diagnostic=True),
    PROBLEM,
)
_METER_DIAG: tuple[Entity, ...] = (
    _diag("voltage_v", "Voltage", "voltage_v", "voltage", "V"),
    _diag("current_a", "Current", "current_a", "current", "A"),
    _diag("frequency_hz", "Frequency", "freq_hz", "frequency", "Hz"),
    _diag("power_factor", "Power factor", "power_factor", "power_factor", None),
    PROBLEM,
)
PRODUCTION_METER: tuple[Entity, ...] = (
    _power("power_w", "Power", "power_kw"),
    _energy("energy_kwh", "Energy", "lifetime_net_kwh"),
    *_METER_DIAG,
)
# Which of the + and - counters is import is disputed between sources (docs/pvs-api.md):
# named by sign, and the owner checks them against the power's sign (docs/home-assistant.md).
CONSUMPTION_METER: tuple[Entity, ...] = (
    _power("power_w", "Power", "power_kw"),
    _energy("energy_net_kwh", "Net energy", "lifetime_net_kwh", state_class="total"),
    _energy("energy_pos_kwh", "Energy +", "lifetime_pos_kwh"),
    _energy("energy_neg_kwh", "Energy -", "lifetime_neg_kwh"),
    *_METER_DIAG,
)
SITE: tuple[Entity, ...] = (
    _power("production_w", "Production", "production_kw"),
    _power("consumption_w", "Consumption", "consumption_kw"),
    _power("grid_w", "Grid", "net_grid_kw"),
    _energy("energy_kwh", "Energy", "lifetime_production_kwh"),
    Entity("producing", "Producing", "inverters_producing", state_class="measurement",
           icon="mdi:solar-panel", diagnostic=True),
    _diag("uptime_s", "Uptime", "uptime_s", "duration", "s"),
    _diag("memory_kib", "Memory used", "mem_used_kib", "data_size", "KiB"),
    _diag("flash_used_pct", "Flash used", "flash_used_pct", None, "%"),
    _diag("comm_errors", "Comm errors", "comm_err", None, None),
    Entity("firmware", "Firmware", "firmware", enabled=False, diagnostic=True),
    PROBLEM,
)
BATTERY: tuple[Entity, ...] = (
    _power("battery_w", "Battery", "battery_kw"),
    Entity("battery_soc_pct", "Battery level", "battery_soc_pct", 1.0, 1, "battery", "%",
           "measurement"),
)
MONITOR: tuple[Entity, ...] = (
    Entity("last_poll", "Last poll", "last_poll", device_class="timestamp", diagnostic=True),
    PROBLEM,
)


@dataclass(frozen=True, slots=True)
class Device:
    """One HA device: the PVS (the site's totals), an inverter, a meter, or the monitor
    (the Pi running solar-monitor). `source` holds this poll's values; None when the
    device did not report (values are then null, never 0)."""

    kind: Literal["pvs", "inverter", "meter", "monitor"]
    serial: str
    name: str
    entities: tuple[Entity, ...]
    model: str | None = None
    firmware: str | None = None
    source: object | None = None
    via: str | None = None  # the serial of the PVS it reports through
    node: str = ""  # the id in its discovery topic

    def __post_init__(self) -> None:
        if not self.node:
            object.__setattr__(self, "node", node_id(self.serial))


@dataclass(frozen=True, slots=True)
class Topics:
    """Where one site publishes: `<topic_prefix>/<pvs serial>/...` (many sites, one broker)."""

    prefix: str
    pvs: str
    discovery_prefix: str | None = None

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.pvs}"

    @property
    def availability(self) -> str:
        """online/offline: whether this run read the PVS."""
        return f"{self.base}/availability"

    @property
    def monitor_availability(self) -> str:
        """online while solar-monitor runs; the last will sets offline if a run dies."""
        return f"{self.base}/monitor/availability"

    def state(self, device: Device) -> str:
        return f"{self.base}/{_segment(device)}/state"

    def problem(self, device: Device) -> str:
        return f"{self.base}/{_segment(device)}/problem"

    def device_config(self, device: Device) -> str:
        return f"{self.discovery_prefix}/device/{device.node}/config"

    def entity_config(self, device: Device, entity: Entity) -> str:
        return f"{self.discovery_prefix}/{entity.platform}/{device.node}/{entity.key}/config"


def _segment(device: Device) -> str:
    return "monitor" if device.kind == "monitor" else device.serial


def node_id(serial: str) -> str:
    """An id HA accepts in a discovery topic and as a unique id ([a-zA-Z0-9_-])."""
    return "solar_monitor_" + re.sub(r"[^A-Za-z0-9_-]", "_", serial)


def device_block(device: Device) -> dict[str, Any]:
    dev: dict[str, Any] = {"ids": [device.node], "name": device.name, "mf": MANUFACTURER,
                           "sn": device.serial}
    if device.kind == "monitor":
        dev.update(mf="solar-monitor", mdl="solar-monitor", sw=__version__)
    if device.model:
        dev["mdl"] = device.model
    if device.firmware:
        dev["sw"] = device.firmware
    if device.via:
        dev["via_device"] = node_id(device.via)
    return dev


def component(device: Device, entity: Entity, topics: Topics,
              expire_after_s: int) -> dict[str, Any]:
    """One entity's discovery options (without the shared device, origin and topics)."""
    cmp: dict[str, Any] = {"p": entity.platform, "name": entity.name,
                           "unique_id": f"{device.node}_{entity.key}"}
    for option, value in (("device_class", entity.device_class),
                          ("unit_of_measurement", entity.unit),
                          ("state_class", entity.state_class), ("icon", entity.icon)):
        if value is not None:
            cmp[option] = value
    if entity.diagnostic:
        cmp["entity_category"] = "diagnostic"
    if not entity.enabled:
        cmp["enabled_by_default"] = False
    if entity is PROBLEM:  # a verdict of the monitor: available even when the PVS is not
        problem = topics.problem(device)
        cmp.update(state_topic=problem, json_attributes_topic=problem,
                   availability_topic=topics.monitor_availability,
                   value_template="{{ 'ON' if value_json.alerts else 'OFF' }}")
    else:
        cmp["value_template"] = "{{ value_json." + entity.key + " }}"  # null -> unknown
    if entity.key != "last_poll":
        cmp["expire_after"] = expire_after_s
    return cmp


def _shared(device: Device, topics: Topics) -> dict[str, Any]:
    monitor = device.kind == "monitor"
    return {"state_topic": topics.state(device), "qos": 1,
            "availability_topic": (topics.monitor_availability if monitor
                                   else topics.availability)}


def device_discovery(device: Device, topics: Topics, expire_after_s: int) -> dict[str, Any]:
    """HA >= 2024.11 device discovery: one payload with every component of the device."""
    return {"dev": device_block(device), "o": ORIGIN,
            "cmps": {e.key: component(device, e, topics, expire_after_s)
                     for e in device.entities},
            **_shared(device, topics)}


def entity_discovery(device: Device, topics: Topics,
                     expire_after_s: int) -> Iterable[tuple[str, dict[str, Any]]]:
    """Per-entity discovery for older HA: (topic, payload) per entity."""
    for entity in device.entities:
        payload = {**_shared(device, topics),
                   **component(device, entity, topics, expire_after_s),
                   "dev": device_block(device), "o": ORIGIN}
        payload.pop("p")
        yield topics.entity_config(device, entity), payload


def discovery_messages(devices: Iterable[Device], topics: Topics, mode: str,
                       expire_after_s: int) -> list[tuple[str, str]]:
    """(topic, JSON) of every retained discovery message; none without a discovery prefix."""
    if topics.discovery_prefix is None:
        return []
    out: list[tuple[str, str]] = []
    for device in devices:
        if mode == "entity":
            out += [(t, to_json(p)) for t, p in entity_discovery(device, topics, expire_after_s)]
        else:
            out.append((topics.device_config(device),
                        to_json(device_discovery(device, topics, expire_after_s))))
    return out


def state_payload(device: Device, stale: bool = False) -> dict[str, Any]:
    """The device's state JSON: every entity's key, null when unknown or stale."""
    source = None if stale else device.source
    return {e.key: None if source is None else e.value(source)
            for e in device.entities if e is not PROBLEM}


def site_source(snapshot: Snapshot) -> dict[str, Any]:
    """The PVS device's values: the site totals and the supervisor's health."""
    values: dict[str, Any] = dataclasses.asdict(totals(snapshot))
    # HA shows Production to the owner: a night's standby draw is 0 W, as in the sheet
    values["production_kw"] = shown_production_kw(values["production_kw"])
    sup = snapshot.supervisor
    if sup is not None:
        values.update({f: getattr(sup, f) for f in ("uptime_s", "mem_used_kib",
                                                    "flash_used_pct", "comm_err")})
    values["firmware"] = snapshot.firmware
    return values


@dataclass
class Alerts:
    """Open alerts by the node of the device they belong to: its problem payload, whose
    keys HA shows as the binary sensor's attributes."""

    by_node: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    def add(self, node: str, rule: str, severity: str, since: str, message: str) -> None:
        self.by_node.setdefault(node, []).append(
            {"rule": rule, "severity": severity, "since": since, "message": message})

    def payload(self, node: str) -> dict[str, Any]:
        alerts = self.by_node.get(node, [])
        if not alerts:
            return NO_PROBLEM
        return {"alerts": alerts, "message": "; ".join(a["message"] for a in alerts)}


def to_json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
