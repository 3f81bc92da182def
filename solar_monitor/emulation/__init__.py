"""Tools built on the device library: a simulated site and an emulated PVS over HTTP.

`pvs/` is only client, parser and models; nothing here is imported by a real run.
"""
