"""Replay keeps nothing per poll: what a replay of 3N polls peaks at is what N peak at.

Each replay runs in a fresh child process. The measure is tracemalloc's peak of the
Python heap during the replay (exact and the same on a loaded machine: it counts bytes,
not time) and, as a second witness for C allocations (SQLite), the peak RSS (VmHWM). The figures
for a whole year are in benchmarks/bench_run.py and the README; this is the cheap guard.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from solar_monitor.archive import pack_day, save_answer, save_error, scan_archive, write_atomic
from solar_monitor.emulation.sim import SimulatedSite, SiteSpec
from solar_monitor.retention import archive_days

START = datetime(2025, 6, 1, tzinfo=UTC)
DAYS = 3  # replays of day 1, then days 1-3
INVERTERS = 30

CHILD = """
import json, sys, tracemalloc
from pathlib import Path
from solar_monitor.config import config_from_dict
from solar_monitor.replay import replay
work = Path(sys.argv[1])
config = config_from_dict({
    "site": {"latitude": 37.77, "longitude": -122.42, "timezone": "America/Los_Angeles"},
    "pvs": {"url": "http://127.0.0.1:9"}, "data_dir": str(work / "data"),
    "weather": {"enabled": False}}, env={})
def hwm_kib():
    # this process's own peak RSS; ru_maxrss would start at the parent's (pytest's) peak,
    # which the kernel carries over a fork and exec
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
rss_before = hwm_kib()
tracemalloc.start(1)
report = replay(config, work / "data" / "raw")
_now, peak = tracemalloc.get_traced_memory()
tracemalloc.stop()
print(json.dumps({"stored": report.stored, "errors": list(report.stage_errors),
                  "traced_peak": peak, "rss_before_kib": rss_before,
                  "rss_peak_kib": hwm_kib()}))
"""


def _replay_in_child(source: Path, days: int, work: Path) -> dict:
    for folder in sorted(source.glob("[0-9]*/[0-9]*/[0-9]*"))[:days]:
        shutil.copytree(folder, work / "data" / "raw" / folder.relative_to(source))
    # cwd=work: the child imports the installed package (or PYTHONPATH's), not a stray copy
    done = subprocess.run([sys.executable, "-c", CHILD, str(work)], capture_output=True,
                          cwd=work, text=True, timeout=300, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def test_replay_memory_does_not_grow_with_the_history(tmp_path: Path) -> None:
    site = SimulatedSite(SiteSpec(inverter_count=INVERTERS, epoch=START))
    source = tmp_path / "source"
    t = START
    while t < START + timedelta(days=DAYS):
        save_answer(source, t, json.dumps(site.device_list(t)).encode())
        t += timedelta(minutes=15)
    short = _replay_in_child(source, 1, tmp_path / "short")
    long = _replay_in_child(source, DAYS, tmp_path / "long")
    assert (short["stored"], long["stored"]) == (96, 96 * DAYS)
    assert short["errors"] == long["errors"] == []
    # Measured: the replay of 3 days peaks 0.4 MB higher on the heap than that of 1 day
    # (the rules' learned bins still filling) and 2.7 MiB in RSS (SQLite's 2 MiB page
    # cache filling). Before the replay streamed, it was 6.0 MB and 17 MiB: the CSV
    # export at the end held every inverter row, the sheet dry run every queued row.
    grown = long["traced_peak"] - short["traced_peak"]
    assert grown < 1_500_000, f"the heap's peak grew {grown / 1e6:.2f} MB for 2 more days"
    rss_grown = (long["rss_peak_kib"] - long["rss_before_kib"]) - (
        short["rss_peak_kib"] - short["rss_before_kib"])
    assert rss_grown < 8 * 1024, f"peak RSS grew {rss_grown / 1024:.1f} MiB for 2 more days"


def test_the_streamed_scan_keeps_time_order_across_overlapping_sources(tmp_path: Path
                                                                        ) -> None:
    """Day folders, a compacted day, a day both loose and compacted, and a curl job's
    flat folder of local-time names that crosses UTC days: one time-ordered stream, each
    poll once, from a scan that holds one entry per folder or tar, not per file."""
    raw = tmp_path / "raw"
    made: list[datetime] = []
    for hour in range(0, 24 * 4, 3):  # June 1-4, every 3 hours
        at = START + timedelta(hours=hour)
        (save_error(raw, at, "HTTP 503", 503) if hour % 9 == 0
         else save_answer(raw, at, b"{}"))
        made.append(at)
    days = archive_days(raw)
    write_atomic(days[1].folder.parent / "20250602.tar.gz", pack_day(days[1].records()))
    shutil.rmtree(days[1].folder)  # June 2: compacted
    write_atomic(days[2].folder.parent / "20250603.tar.gz", pack_day(days[2].records()[:3]))
    # June 3: compaction killed before it removed the folder (both hold its first polls)
    curl = raw / "curl"  # New York time: 20:10 local on June 2 is 00:10 UTC on June 3
    curl.mkdir()
    for local in ("20250602_201000", "20250601_221000", "20250603_231000"):
        (curl / f"{local}.json").write_bytes(b"{}")
        naive = datetime.strptime(local, "%Y%m%d_%H%M%S")
        made.append(naive.replace(tzinfo=ZoneInfo("America/New_York")).astimezone(UTC))
    scan = scan_archive(raw, ZoneInfo("America/New_York"))
    assert sum(len(g) for g in scan.groups) == 6  # 3 folders, 2 tars, the curl folder
    assert len(scan.groups) < 6  # the curl folder overlaps, so those are read together
    assert [p.polled_at for p in scan] == sorted(made)
    later = scan_archive(raw, ZoneInfo("America/New_York"), since=START + timedelta(days=3))
    assert [p.polled_at for p in later] == sorted(t for t in made
                                                  if t > START + timedelta(days=3))
