"""How a figure is shown to the owner, where that differs from how it is stored.

At night the production meter reads a little below zero (about -0.015 kW at a
12-inverter site): the microinverters and the PVS draw a few watts of standby power
through the production circuit, and a meter's small offset does the rest. An owner reads
"production" as what the panels make, which is never negative, so what is shown (the
sheet's Production kW, Home Assistant's Production, the run's summary line) is clamped
at 0. What is stored (the raw
archive, SQLite, the CSV files) keeps the meter's value: consumption is estimated from
it (production + net grid), and an analysis may want the standby draw.
"""

from __future__ import annotations


def shown_production_kw(kw: float | None) -> float | None:
    """Production as shown to the owner, kW: the meter's value, clamped at 0."""
    return None if kw is None else max(0.0, kw)
