"""What the owner is shown where it differs from what is stored, and how the demo points
at the command it just ran."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from solar_monitor.demo import _command
from solar_monitor.display import shown_production_kw
from solar_monitor.sinks.sheets_layout import readings_cells

NIGHT_POLL = {"polled_at": "2026-06-10T06:00:00Z", "production_kw": -0.015,
              "consumption_kw": 0.41, "net_grid_kw": 0.425, "lifetime_production_kwh": 1234.5,
              "inverters_producing": 0, "inverters_total": 12, "cloud_cover_pct": None,
              "snow_depth_m": None, "snowfall_cm": None}


def test_night_production_is_shown_as_zero_and_stored_as_read() -> None:
    assert shown_production_kw(-0.015) == 0.0
    assert shown_production_kw(2.5) == 2.5 and shown_production_kw(None) is None
    cells = dict(readings_cells(NIGHT_POLL, 0))
    assert cells["Production kW"] == 0.0
    assert cells["Net grid kW (+import)"] == 0.425  # the meters' own values are kept
    assert NIGHT_POLL["production_kw"] == -0.015


def test_the_demo_names_a_command_that_exists() -> None:
    command = _command()
    assert command.endswith("solar-monitor") or command.endswith("-m solar_monitor")
    if command.endswith("solar-monitor"):
        assert Path(command).exists()
        result = subprocess.run([command, "--help"], capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0 and "parse" in result.stdout


def test_home_assistant_shows_night_production_as_zero_and_keeps_the_grid() -> None:
    import dataclasses

    from solar_monitor.exports.homeassistant import site_source
    from solar_monitor.pvs.parse import parse

    from .conftest import real

    snapshot = parse(real("dl_cgi_61839_30_inverters").read_bytes())
    meters = [dataclasses.replace(m, power_kw=-0.015) if m.kind == "production" else m
              for m in snapshot.meters]
    night = dataclasses.replace(snapshot, meters=tuple(meters))
    values = site_source(night)
    assert values["production_kw"] == 0.0
    # consumption is still estimated from the meter's own value (production + net grid)
    assert values["consumption_kw"] == pytest.approx(values["net_grid_kw"] - 0.015, abs=1e-3)
