"""What defines a simulated site: location, roof faces, meters, firmware, faults."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from solar_monitor.emulation.faults import SiteFault

ConsumptionSubtype = Literal["NET_CONSUMPTION_LOADSIDE", "GROSS_CONSUMPTION_LINESIDE"]
SupervisorModel = Literal["PVS6", "PVS5"]


@dataclass(frozen=True)
class RoofFace:
    """A roof plane: compass azimuth of its downslope (180 = south), tilt, panel count."""

    azimuth_deg: float
    tilt_deg: float
    count: int


@dataclass(frozen=True)
class SiteSpec:
    """Everything that defines a simulated site. Angles in degrees, power in kW.

    `roof_faces` must add up to `inverter_count` (empty = all on one south face at
    20°). Lifetime counters start at `epoch` from a seeded value worth
    `years_in_service` of production, and integrate forward (and backward) from there.
    `restart_hour_local` is the PVS's nightly restart hour (None: no nightly restart).

    LocalAPI firmware as fielded (both off by default, the first simulator's varserver):
    `stale_values`: the varserver keeps a silent inverter's last values and msmtEps (at
    night, dead, behind a tripped breaker) instead of showing 0 kW; `dawn_lag_max_s`:
    after the nightly restart each inverter is listed only once it reports again, a
    seeded 0..dawn_lag_max_s after it starts producing (real PVSs: up to ~20 minutes).
    A site without meters: `production_meter=False, consumption_subtype=None`.
    """

    latitude: float = 37.77
    longitude: float = -122.42
    timezone: str = "America/Los_Angeles"
    inverter_count: int = 12
    seed: int = 1
    roof_faces: tuple[RoofFace, ...] = ()
    panel_kw: float = 0.32
    production_meter: bool = True
    consumption_subtype: ConsumptionSubtype | None = "NET_CONSUMPTION_LOADSIDE"
    build: int = 61839
    model: SupervisorModel = "PVS6"
    flash_wear_pct: int = 10  # /sys/pvs/flashwear_type_b, in steps of 10 %
    livedata_time_ms: bool = False  # some firmware sends /sys/livedata/time in ms
    household_kwh_per_day: float = 20.0
    years_in_service: float = 5.0
    restart_hour_local: int | None = 2
    stale_values: bool = False
    dawn_lag_max_s: float = 0.0
    epoch: datetime = datetime(2025, 1, 1, tzinfo=UTC)
    faults: tuple[SiteFault, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.inverter_count < 0:
            raise ValueError("inverter_count must be >= 0")
        if self.roof_faces and sum(f.count for f in self.roof_faces) != self.inverter_count:
            raise ValueError("roof_faces counts must add up to inverter_count")
        if self.epoch.tzinfo is None:
            raise ValueError("epoch must be an aware datetime")
        if self.model not in ("PVS6", "PVS5"):
            raise ValueError(f"model must be PVS6 or PVS5, not {self.model!r}")

    def faces(self) -> tuple[RoofFace, ...]:
        """The roof faces, defaulting to one south face at 20° tilt."""
        return self.roof_faces or (RoofFace(180.0, 20.0, self.inverter_count),)
