"""A pure, deterministic simulated PVS site: sun, clouds, panels, a household, faults.

No I/O and no wall clock: every answer is a function of (spec, faults, t). The same seed
gives the same payloads, so tests and benchmarks know the truth behind each answer
(`cloud_cover_pct`, `inverter_power_kw`, the declared faults).

This module is the simulator's front door; the parts live one concern per module:
- `spec`: `SiteSpec`, `RoofFace`: what defines a site;
- `faults`: the declarative faults (frozen dataclasses with a time window);
- `sky`: seeded noise, clouds, air temperature, panel power per roof face, household load;
- `site`: `SimulatedSite`, energy integration and the site's state with faults applied;
- `readings`: what the devices measure, number and time spellings, firmware names;
- one module per answer format: `devicelist` (legacy DeviceList), `supervisor_info`,
  `varserver` (LocalAPI `/vars`, what a PVS6 on build 61846 prints).
"""

from __future__ import annotations

from solar_monitor.emulation.faults import (
    CommDropout,
    DataStale,
    DeadInverter,
    DropoutMode,
    FirmwareChange,
    FlappingInverter,
    FlashLow,
    FlashWorn,
    GridOutOfRange,
    InverterRef,
    MissingInverter,
    PowerLineDropouts,
    ProductionTripped,
    PvsReboot,
    ShadedInverters,
    SiteFault,
    SnowCover,
    StaleInverter,
    UploadBacklog,
    WeakInverter,
)
from solar_monitor.emulation.readings import FIRMWARE_NAMES, firmware_names, iso_utc, pvs_time
from solar_monitor.emulation.site import STEP_S, InverterState, SimulatedSite, SiteState
from solar_monitor.emulation.spec import ConsumptionSubtype, RoofFace, SiteSpec, SupervisorModel
from solar_monitor.emulation.varserver import public_variables

__all__ = [
    "FIRMWARE_NAMES",
    "STEP_S",
    "CommDropout",
    "ConsumptionSubtype",
    "DataStale",
    "DeadInverter",
    "DropoutMode",
    "FirmwareChange",
    "FlappingInverter",
    "FlashLow",
    "FlashWorn",
    "GridOutOfRange",
    "InverterRef",
    "InverterState",
    "MissingInverter",
    "PowerLineDropouts",
    "ProductionTripped",
    "PvsReboot",
    "RoofFace",
    "ShadedInverters",
    "SimulatedSite",
    "SiteFault",
    "SiteSpec",
    "SiteState",
    "SnowCover",
    "StaleInverter",
    "SupervisorModel",
    "UploadBacklog",
    "WeakInverter",
    "firmware_names",
    "iso_utc",
    "public_variables",
    "pvs_time",
]
