"""Prometheus export: a textfile for node_exporter's textfile collector.

Prometheus's own advice for a per-machine cron job (the pushgateway is for service-level
batch jobs). Written atomically (a scrape never sees half a file), world-readable
(node_exporter runs as another user), with no timestamps, in base units (watts, joules,
volts, amperes, hertz, celsius, seconds, bytes, ratios). Labels are pvs (the PVS serial)
and serial, plus kind / device_type / leg where a device needs one; nothing in a label
changes every poll. A failed poll leaves out the device values (a scrape must not show
stale readings as current) and keeps solar_monitor_last_success_timestamp_seconds, the
one to alert on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from solar_monitor.config import PrometheusExport
from solar_monitor.context import RunContext
from solar_monitor.exports import note_outcome
from solar_monitor.exports.data import last_success, open_alerts, pvs_serial

KW = 1000.0  # kW -> W
KWH = 3.6e6  # kWh -> J
PCT = 0.01  # % -> ratio
KIB = 1024.0  # KiB -> bytes


@dataclass(frozen=True, slots=True)
class Metric:
    """One sample per device: `attr` of the model times `scale`, under `name`."""

    name: str
    help: str
    attr: str
    scale: float = 1.0
    type: Literal["gauge", "counter"] = "gauge"
    labels: dict[str, str] = field(default_factory=dict)


INVERTER = (
    Metric("sunpower_inverter_power_watts", "Inverter AC power.", "power_kw", KW),
    Metric("sunpower_inverter_energy_joules_total", "Inverter lifetime AC energy.",
           "lifetime_kwh", KWH, "counter"),
    Metric("sunpower_inverter_ac_volts", "Inverter AC voltage.", "ac_voltage_v"),
    Metric("sunpower_inverter_ac_amperes", "Inverter AC current.", "ac_current_a"),
    Metric("sunpower_inverter_frequency_hertz", "Inverter AC frequency.", "freq_hz"),
    Metric("sunpower_inverter_heatsink_celsius", "Inverter heatsink temperature.",
           "heatsink_c"),
    Metric("sunpower_inverter_dc_volts", "Panel (DC) voltage.", "dc_voltage_v"),
    Metric("sunpower_inverter_dc_amperes", "Panel (DC) current.", "dc_current_a"),
    Metric("sunpower_inverter_dc_power_watts", "Panel (DC) power.", "dc_power_kw", KW),
)
METER = (
    Metric("sunpower_meter_power_watts", "Meter real power (consumption meter: + import).",
           "power_kw", KW),
    Metric("sunpower_meter_reactive_volt_amperes", "Meter reactive power (var).",
           "reactive_kvar", KW),
    Metric("sunpower_meter_apparent_volt_amperes", "Meter apparent power.", "apparent_kva", KW),
    Metric("sunpower_meter_power_factor_ratio", "Meter power factor.", "power_factor"),
    Metric("sunpower_meter_frequency_hertz", "Grid frequency.", "freq_hz"),
    Metric("sunpower_meter_net_energy_joules", "Meter lifetime net energy (falls while "
           "exporting: a gauge).", "lifetime_net_kwh", KWH),
    Metric("sunpower_meter_positive_energy_joules_total", "Meter lifetime energy, positive "
           "direction.", "lifetime_pos_kwh", KWH, "counter"),
    Metric("sunpower_meter_negative_energy_joules_total", "Meter lifetime energy, negative "
           "direction.", "lifetime_neg_kwh", KWH, "counter"),
    Metric("sunpower_meter_amperes", "Meter current.", "current_a"),
    Metric("sunpower_meter_volts", "Meter voltage.", "voltage_v"),
    *(Metric(f"sunpower_meter_leg_{what}", f"Meter {text} per leg (split phase).",
             f"leg{leg}_{attr}", scale, labels={"leg": str(leg)})
      for what, text, attr, scale in (("volts", "voltage", "v", 1.0),
                                      ("amperes", "current", "a", 1.0),
                                      ("power_watts", "real power", "kw", KW))
      for leg in (1, 2)),
)
SUPERVISOR = (
    Metric("sunpower_supervisor_uptime_seconds", "PVS uptime.", "uptime_s"),
    Metric("sunpower_supervisor_load", "PVS load average (legacy firmware).", "cpu_load"),
    Metric("sunpower_supervisor_cpu_usage_ratio", "PVS CPU usage (new firmware).",
           "cpu_usage_pct", PCT),
    Metric("sunpower_supervisor_memory_used_bytes", "PVS memory used.", "mem_used_kib", KIB),
    Metric("sunpower_supervisor_flash_available_bytes", "PVS flash free.", "flash_avail_kib",
           KIB),
    Metric("sunpower_supervisor_flash_used_ratio", "PVS flash used.", "flash_used_pct", PCT),
    Metric("sunpower_supervisor_flash_wear_ratio", "PVS eMMC rated life used.",
           "flash_wear_pct", PCT),
    Metric("sunpower_supervisor_untransmitted", "PVS readings not yet sent to the cloud.",
           "untransmitted"),
    Metric("sunpower_supervisor_errors", "PVS error count.", "err_count"),
    Metric("sunpower_supervisor_comm_errors", "PVS communication errors.", "comm_err"),
    Metric("sunpower_supervisor_skipped_scans", "PVS skipped device scans.", "skipped_scans"),
    Metric("sunpower_supervisor_scan_seconds", "PVS device scan time.", "scan_time_s"),
)
BATTERY = (
    Metric("sunpower_battery_charge_ratio", "Battery state of charge.", "soc_pct", PCT),
    Metric("sunpower_battery_customer_charge_ratio", "Battery state of charge as the owner "
           "sees it.", "customer_soc_pct", PCT),
    Metric("sunpower_battery_health_ratio", "Battery state of health.", "soh_pct", PCT),
    Metric("sunpower_battery_power_watts", "Battery power (+ discharging, - charging).",
           "power_kw", KW),
    Metric("sunpower_battery_volts", "Battery voltage.", "battery_v"),
)


def _escape(value: str) -> str:
    return str(value).replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n")


def _labels(labels: Iterable[tuple[str, Any]]) -> str:
    return ",".join(f'{k}="{_escape("" if v is None else v)}"' for k, v in labels)


def _number(value: float) -> str:
    return repr(float(value)) if math.isfinite(value) else \
        ("NaN" if math.isnan(value) else "+Inf" if value > 0 else "-Inf")


class Families:
    """Samples grouped by metric name, written with one HELP and TYPE line per family."""

    def __init__(self) -> None:
        self.meta: dict[str, tuple[str, str]] = {}
        self.samples: dict[str, list[str]] = {}

    def declare(self, name: str, help_text: str, kind: str) -> None:
        self.meta.setdefault(name, (help_text, kind))
        self.samples.setdefault(name, [])

    def add(self, name: str, labels: Iterable[tuple[str, Any]], value: float) -> None:
        # rounded: a unit change must not print 1142.5559999999998 for 1.142556 kW
        self.samples[name].append(f"{name}{{{_labels(labels)}}} {_number(round(value, 6))}")

    def text(self) -> str:
        """The exposition text: HELP and TYPE for each family that has samples."""
        out: list[str] = []
        for name, (help_text, kind) in self.meta.items():
            if self.samples[name]:
                out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}",
                        *self.samples[name]]
        return "\n".join(out) + "\n"


def _devices(families: Families, metrics: tuple[Metric, ...], devices: Iterable[Any],
             base: list[tuple[str, Any]], extra: tuple[str, ...] = ()) -> None:
    for m in metrics:
        families.declare(m.name, m.help, m.type)
    for device in devices:
        labels = [*base, ("serial", device.serial), *((e, getattr(device, e)) for e in extra)]
        for m in metrics:
            value = getattr(device, m.attr)
            if value is not None:
                families.add(m.name, [*labels, *m.labels.items()], value * m.scale)


def render(ctx: RunContext) -> str:
    """The textfile for this run: device values of a good poll, and always the run's own
    metrics (last success, open alerts)."""
    pvs = pvs_serial(ctx)
    base = [("pvs", pvs)]
    families = Families()
    snap = ctx.snapshot
    if snap is not None:
        sup = snap.supervisor
        _devices(families, SUPERVISOR, [sup] if sup else [], base)
        _devices(families, METER, snap.meters, base, ("kind",))
        _devices(families, INVERTER, snap.inverters, base)
        _devices(families, BATTERY, snap.batteries, base, ("device_type",))
        families.declare("sunpower_device_info", "A device's identity (value always 1).",
                         "gauge")
        for kind, serial, model, firmware in _identities(snap):
            families.add("sunpower_device_info", [*base, ("serial", serial), ("type", kind),
                                                  ("model", model), ("firmware", firmware)], 1)
    families.declare("solar_monitor_last_success_timestamp_seconds",
                     "When the last good poll of the PVS was taken (Unix time).", "gauge")
    if (last := last_success(ctx.store)) is not None:
        families.add("solar_monitor_last_success_timestamp_seconds", base, last.timestamp())
    families.declare("solar_monitor_last_run_timestamp_seconds",
                     "When solar-monitor last ran, polled or not (Unix time).", "gauge")
    families.add("solar_monitor_last_run_timestamp_seconds", base, ctx.now.timestamp())
    families.declare("solar_monitor_alert_open", "An open solar-monitor alert (value 1).",
                     "gauge")
    for alert in open_alerts(ctx.store):
        families.add("solar_monitor_alert_open", [*base, ("rule", alert.rule),
                                                  ("subject", alert.subject),
                                                  ("severity", alert.severity)], 1)
    return families.text()


def _identities(snap: Any) -> Iterator[tuple[str, str | None, str | None, str | None]]:
    if snap.supervisor is not None:
        yield "PVS", snap.supervisor.serial, snap.supervisor.model, snap.firmware
    for m in snap.meters:
        yield "meter", m.serial, m.model, None
    for i in snap.inverters:
        yield "inverter", i.serial, i.model, i.firmware
    for b in snap.batteries:
        yield b.device_type, b.serial, b.model, None


def export_stage(ctx: RunContext, settings: PrometheusExport) -> None:
    """Rewrite the textfile; a failure is logged once and never raises."""
    from solar_monitor.archive import write_atomic

    path = Path(settings.textfile).expanduser()
    try:
        write_atomic(path, render(ctx).encode(), mode=0o644)
    except OSError as exc:
        note_outcome(ctx.store, "prometheus", f"cannot write {path}: {exc.strerror} "
                     f"({_fix(path)})")
        return
    note_outcome(ctx.store, "prometheus", None)


def _fix(path: Path) -> str:
    return (f"let the solar-monitor user write in {path.parent}; under systemd, also add "
            f"it to the service's ReadWritePaths (docs/fleet.md)")


def probe(settings: PrometheusExport) -> tuple[bool, str]:
    """For `check`: the textfile's folder exists and this user may write in it."""
    import tempfile

    path = Path(settings.textfile).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)  # as the run would
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".check.", suffix=".tmp"):
            pass
    except OSError as exc:
        return False, f"cannot write in {path.parent} ({exc.strerror}): {_fix(path)}"
    return True, (f"{path} can be written; node_exporter reads it with "
                  f"--collector.textfile.directory={path.parent}")
