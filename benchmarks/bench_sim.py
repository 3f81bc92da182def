"""How long the simulator takes to produce a year of 15-minute polls (35,040 DeviceLists).

Run: .venv/bin/python benchmarks/bench_sim.py [--varserver]
Prints seconds; nothing is asserted (machines differ).
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta

from solar_monitor.emulation.sim import SimulatedSite, SiteSpec


def main() -> None:
    varserver = "--varserver" in sys.argv
    site = SimulatedSite(SiteSpec(epoch=datetime(2025, 1, 1, tzinfo=UTC)))
    start = datetime(2025, 1, 1, tzinfo=UTC)
    polls = 365 * 96
    began = time.perf_counter()
    for i in range(polls):
        t = start + timedelta(minutes=15 * i)
        if varserver:
            site.vars(t)
        else:
            site.device_list(t)
    elapsed = time.perf_counter() - began
    kind = "varserver vars()" if varserver else "DeviceLists"
    print(
        f"{polls} {kind} for a simulated year: {elapsed:.1f} s "
        f"({elapsed / polls * 1e3:.2f} ms each)"
    )


if __name__ == "__main__":
    main()
