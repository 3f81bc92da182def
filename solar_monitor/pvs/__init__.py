"""The PVS device library: HTTP client, parser, models and emulator.

Nothing in here reads the config file or writes rows: it takes plain arguments and
returns models, so any archived answer can be parsed again or used as a test.
"""
