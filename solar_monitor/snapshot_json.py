"""A Snapshot as plain JSON data: what `solar-monitor parse` prints."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from solar_monitor.pvs.models import Snapshot, totals
from solar_monitor.store import iso


def snapshot_to_dict(snapshot: Snapshot) -> dict[str, Any]:
    """Flatten a snapshot: every field, times as ISO-8601 UTC, plus derived `totals`."""
    out = _plain(snapshot)
    out["totals"] = _plain(totals(snapshot))
    return out


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
