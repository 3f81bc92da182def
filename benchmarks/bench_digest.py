"""How long the monthly digest takes for a month of 30 inverters polled every 15 minutes.

Run: .venv/bin/python benchmarks/bench_digest.py [--inverters N] [--keep DB]
Simulates June 2026 (2,880 polls) into a temporary store (about 10 s), then times
`build_digest_data` and the three renderings. The issue's target is under 1 s.
Prints seconds; nothing is asserted (machines differ).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from solar_monitor.digest import build_digest_data, daily_csv, render_html, render_text
from solar_monitor.emulation.sim import SimulatedSite, SiteSpec, WeakInverter
from solar_monitor.pvs.parse import parse
from solar_monitor.store import Store

TZ = "America/New_York"
START = datetime(2026, 6, 1, 4, tzinfo=UTC)  # local midnight
END = datetime(2026, 7, 1, 4, tzinfo=UTC)


def simulate(db: Path, inverters: int) -> int:
    """Store a simulated June of 15-minute polls; returns the number of polls."""
    site = SimulatedSite(SiteSpec(
        latitude=42.36, longitude=-71.06, timezone=TZ, inverter_count=inverters, seed=5,
        epoch=datetime(2026, 5, 25, tzinfo=UTC), faults=(WeakInverter(inverter=3),)))
    count = 0
    with Store(db) as store, store.transaction():
        t = START
        while t < END:
            snap = parse(json.dumps(site.device_list(t)).encode(), polled_at=t)
            store.record_snapshot(t, snap, None)
            t += timedelta(minutes=15)
            count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--inverters", type=int, default=30)
    parser.add_argument("--keep", type=Path, help="keep the simulated store here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.keep or Path(tmp) / "bench.db"
        began = time.perf_counter()
        polls = simulate(db, args.inverters)
        print(f"simulated {polls} polls x {args.inverters} inverters in "
              f"{time.perf_counter() - began:.1f} s")
        builds, renders = [], []
        with Store(db) as store:
            for _ in range(5):
                t0 = time.perf_counter()
                data = build_digest_data(store, ZoneInfo(TZ), date(2026, 6, 1),
                                         now=END + timedelta(hours=8))
                t1 = time.perf_counter()
                render_html(data), render_text(data), daily_csv(data)
                builds.append(t1 - t0)
                renders.append(time.perf_counter() - t1)
        print(f"digest of June 2026: build {statistics.median(builds):.3f} s, render "
              f"{statistics.median(renders) * 1000:.1f} ms (median of 5; target < 1 s); "
              f"{data.production_kwh:.1f} kWh, weakest {data.inverters[0].serial} "
              f"at {data.inverters[0].share_of_median_pct}% of the median")


if __name__ == "__main__":
    main()
