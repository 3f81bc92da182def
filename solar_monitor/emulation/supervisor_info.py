"""The `/cgi-bin/dl_cgi/supervisor/info` answer (every firmware)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from solar_monitor.emulation.readings import firmware_names

if TYPE_CHECKING:
    from solar_monitor.emulation.site import SimulatedSite


def _render_supervisor_info(site: SimulatedSite, build: int) -> dict[str, object]:
    sup: dict[str, object] = {
        "SWVER": firmware_names(build)[0],
        "SERIAL": site.supervisor_serial,
        "MODEL": site.spec.model,
    }
    if site.spec.model == "PVS6":  # a PVS5 has no BUILD: its build is only in SWVER
        sup["BUILD"] = build
    return {
        "result": "succeed",
        "supervisor": {
            **sup,
            "FWVER": "1.0.0",
            "SCVER": 1630652920,
            "EASICVER": 131329,
            "SCBUILD": 1188,
            "WNSERIAL": 16,
            "WNMODEL": 400,
            "WNVER": 3000,
        },
    }
