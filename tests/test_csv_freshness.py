"""The inverter CSV never shows a stale value as live (issue 19): the varserver keeps a
dead inverter's last power; the row says `stale`, leaves its measured values empty and
gives the inverter's own measurement time and age."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from solar_monitor.pvs.models import Inverter, Meter, Snapshot
from solar_monitor.sinks.csv_files import export_csv
from solar_monitor.store import Store

AT = datetime(2025, 6, 15, 16, 0, tzinfo=UTC)


def test_stale_rows_are_marked_and_empty(tmp_path: Path) -> None:
    old = AT - timedelta(hours=20)
    snap = Snapshot(AT, "varserver", "test", inverters=(
        Inverter("E001", state="working", power_kw=0.21, lifetime_kwh=100.0,
                 data_time=AT - timedelta(seconds=40), age_s=40.0),
        Inverter("E002", state="error", power_kw=0.25, lifetime_kwh=90.0, ac_voltage_v=241.0,
                 data_time=old, age_s=20 * 3600.0)),
        meters=(Meter("PVS6M1p", "production", power_kw=0.21, data_time=AT, age_s=5.0),))
    with Store(tmp_path / "db.sqlite") as store:
        with store.transaction():
            store.record_snapshot(AT, snap, None)
        assert store.db.execute("SELECT production_kw, inverters_producing FROM polls"
                                ).fetchone()[:] == (0.21, 1)
        export_csv(store, tmp_path / "csv", ZoneInfo("America/New_York"))
    with (tmp_path / "csv" / "inverters-2025-06.csv").open(newline="") as handle:
        rows = {r["serial"]: r for r in csv.DictReader(handle)}
    live, stale = rows["E001"], rows["E002"]
    assert (live["state"], live["power_kw"], live["age_s"]) == ("working", "0.21", "40")
    assert (stale["state"], stale["power_kw"], stale["ac_voltage_v"]) == ("stale", "", "")
    assert stale["lifetime_kwh"] == "90.0"  # a counter's last value stays true
    assert (stale["measured_utc"], stale["age_s"]) == ("2025-06-14T20:00:00Z", "72000")
