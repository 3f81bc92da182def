"""The PVS device library: HTTP client, parser and models (the simulator
and emulator built on it live in `solar_monitor.emulation`).

Nothing in here reads the config file or writes rows: it takes plain arguments and
returns models, so any archived answer can be parsed again or used as a test.
"""
