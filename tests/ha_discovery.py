"""A checker for Home Assistant MQTT discovery payloads, from HA's documentation.

developers.home-assistant.io "Sensor entity" lists, per device class, the units and state
classes HA accepts; home-assistant.io "MQTT" gives the device discovery schema (`dev`,
`o`, `cmps` with a platform `p` and a `unique_id` each). Only the classes a solar site uses
are listed: an unknown class fails the check, so a new one must be looked up and added.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

ALL_STATE_CLASSES = {"measurement", "total", "total_increasing"}
# device class -> (units HA accepts, state classes HA accepts)
SENSOR_CLASSES: dict[str, tuple[set[str | None], set[str]]] = {
    "power": ({"mW", "W", "kW", "MW", "GW", "TW"}, {"measurement"}),
    "energy": ({"J", "kJ", "MJ", "GJ", "mWh", "Wh", "kWh", "MWh", "GWh", "TWh", "cal", "kcal",
                "Mcal", "Gcal"}, {"total", "total_increasing"}),
    "voltage": ({"µV", "mV", "V", "kV", "MV"}, {"measurement"}),
    "current": ({"mA", "A"}, {"measurement"}),
    "frequency": ({"Hz", "kHz", "MHz", "GHz"}, {"measurement"}),
    "temperature": ({"°C", "°F", "K"}, {"measurement"}),
    "power_factor": ({"%", None}, {"measurement"}),
    "battery": ({"%"}, {"measurement"}),
    "duration": ({"d", "h", "min", "s", "ms", "µs"}, ALL_STATE_CLASSES),
    "data_size": ({"bit", "kbit", "Mbit", "Gbit", "B", "kB", "MB", "GB", "TB", "KiB", "MiB",
                   "GiB", "TiB"}, ALL_STATE_CLASSES),
    "timestamp": ({None}, set()),
}
BINARY_SENSOR_CLASSES = {"problem", "connectivity", "running", "power"}
ENTITY_CATEGORIES = {"diagnostic", "config"}
SHARED = {"state_topic", "availability_topic", "qos"}


def check_component(cmp: Mapping[str, Any], where: str) -> list[str]:
    """Problems with one entity's options (a sensor or a binary sensor)."""
    problems = []
    platform = cmp.get("p", "sensor")
    device_class, unit = cmp.get("device_class"), cmp.get("unit_of_measurement")
    state_class = cmp.get("state_class")
    if not cmp.get("unique_id"):
        problems.append(f"{where}: no unique_id")
    if platform == "sensor":
        if device_class is not None:
            if device_class not in SENSOR_CLASSES:
                problems.append(f"{where}: device_class {device_class} not in the table")
            else:
                units, state_classes = SENSOR_CLASSES[device_class]
                if unit not in units:
                    problems.append(f"{where}: {device_class} in {unit!r}, HA wants {units}")
                if state_class is not None and state_class not in state_classes:
                    problems.append(f"{where}: {device_class} with state_class {state_class}")
        if state_class is not None and state_class not in ALL_STATE_CLASSES:
            problems.append(f"{where}: state_class {state_class}")
    elif platform == "binary_sensor":
        if device_class is not None and device_class not in BINARY_SENSOR_CLASSES:
            problems.append(f"{where}: binary_sensor device_class {device_class}")
        if unit is not None or state_class is not None:
            problems.append(f"{where}: a binary_sensor has no unit or state_class")
    else:
        problems.append(f"{where}: platform {platform}")
    if cmp.get("entity_category") not in (None, *ENTITY_CATEGORIES):
        problems.append(f"{where}: entity_category {cmp.get('entity_category')}")
    if "state_topic" not in cmp:
        problems.append(f"{where}: no state_topic")
    return problems


def check_device_payloads(payloads: Iterable[Mapping[str, Any]]) -> list[str]:
    """Problems with device discovery payloads, unique ids checked across all of them."""
    problems: list[str] = []
    seen: dict[str, str] = {}
    for payload in payloads:
        dev, origin, cmps = payload.get("dev"), payload.get("o"), payload.get("cmps")
        if not isinstance(dev, dict) or not dev.get("ids") or not dev.get("name"):
            problems.append(f"device without ids or name: {dev}")
            continue
        if not isinstance(origin, dict) or not origin.get("name"):
            problems.append(f"{dev['name']}: no origin")
        if not isinstance(cmps, dict) or not cmps:
            problems.append(f"{dev['name']}: no components")
            continue
        for key, cmp in cmps.items():
            where = f"{dev['name']}/{key}"
            if "p" not in cmp:
                problems.append(f"{where}: no platform p")
            problems += check_component({**{k: payload[k] for k in SHARED if k in payload},
                                         **cmp}, where)
            uid = cmp.get("unique_id")
            if uid in seen:
                problems.append(f"{where}: unique_id {uid} also in {seen[uid]}")
            seen[uid] = where
    return problems
