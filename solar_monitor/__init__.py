"""solar-monitor: a watchdog for SunPower PVS5/PVS6 solar systems."""

__version__ = "0.1.0"
