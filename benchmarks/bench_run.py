"""Footprint of one `solar-monitor run`, and replay throughput over a simulated year.

1. Starts the emulator (30 inverters) in its own process, then measures, each in a fresh
   child process, CPU time (user + sys) and peak RSS of:
   - the baseline: `python -c "import requests; requests.get(URL)"`;
   - one `solar-monitor run` against the same emulator.
   Median of --repeat runs. Targets: run <= 3x baseline CPU, <= 60 MB RSS.
2. Writes a simulated year of archive files (35,040 polls of 30 inverters; cached in
   benchmarks/out/) and times `replay` of it into an empty data folder. Target: >= 500/s.

    python benchmarks/bench_run.py [--repeat 5] [--days 365] [--skip-replay]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
INVERTERS = 30


def child_usage(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, int]:
    """Run `cmd`; return (CPU seconds, peak RSS in MB, exit code) of that child alone."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, **(env or {})})
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.stderr.close()  # type: ignore[union-attr]
    return (usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024,
            os.waitstatus_to_exitcode(status))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, seconds: float = 30) -> None:
    import requests

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise SystemExit(f"emulator did not start at {url}")


def bench_run(repeat: int) -> dict[str, float]:
    exe = Path(sys.executable).with_name("solar-monitor")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    emulator = subprocess.Popen([str(exe), "emulator", "--port", str(port), "--inverters",
                                 str(INVERTERS), "--firmware", "legacy"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(url + "/cgi-bin/dl_cgi/supervisor/info")
        work = Path(tempfile.mkdtemp(prefix="bench-run-"))
        config = work / "config.yaml"
        config.write_text(json.dumps({
            "site": {"latitude": 37.77, "longitude": -122.42, "timezone": "America/Los_Angeles"},
            "pvs": {"url": url}, "data_dir": str(work / "data")}))
        config.chmod(0o600)
        device_list = url + "/cgi-bin/dl_cgi?Command=DeviceList"
        baseline = [child_usage([sys.executable, "-c",
                                 f"import requests; requests.get({device_list!r})"])
                    for _ in range(repeat)]
        runs = [child_usage([str(exe), "run", "--config", str(config)]) for _ in range(repeat)]
        if any(code != 0 for *_x, code in runs):
            raise SystemExit("a benchmark run failed")
        shutil.rmtree(work)
    finally:
        emulator.terminate()
        emulator.wait()
    base_cpu = statistics.median(c for c, _r, _e in baseline)
    run_cpu = statistics.median(c for c, _r, _e in runs)
    return {"baseline_cpu_s": base_cpu, "baseline_rss_mb": statistics.median(
        r for _c, r, _e in baseline), "run_cpu_s": run_cpu,
        "run_rss_mb": statistics.median(r for _c, r, _e in runs),
        "cpu_ratio": run_cpu / base_cpu}


def simulated_year(days: int) -> Path:
    """A year of 15-minute DeviceList archive files (generated once, then reused)."""
    from solar_monitor.archive import stamp
    from solar_monitor.emulation.sim import SimulatedSite, SiteSpec

    start = datetime(2025, 1, 1, tzinfo=UTC)
    root = OUT / f"year-{days}d-{INVERTERS}inv" / "raw"
    done = root / ".complete"
    if done.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    site = SimulatedSite(SiteSpec(inverter_count=INVERTERS, epoch=start))
    t = start
    end = start + timedelta(days=days)
    while t < end:
        day = root / f"{t:%Y}" / f"{t:%m}" / f"{t:%d}"
        day.mkdir(parents=True, exist_ok=True)
        body = json.dumps(site.device_list(t)).encode()
        (day / f"{stamp(t)}.json.gz").write_bytes(gzip.compress(body, 6, mtime=0))
        t += timedelta(minutes=15)
    done.write_text("ok\n")
    return root


def bench_replay(days: int) -> dict[str, float]:
    from solar_monitor.config import config_from_dict
    from solar_monitor.replay import replay

    source = simulated_year(days)
    work = Path(tempfile.mkdtemp(prefix="bench-replay-"))
    shutil.copytree(source, work / "raw")  # an archive already in place: no import copy
    config = config_from_dict({
        "site": {"latitude": 37.77, "longitude": -122.42, "timezone": "America/Los_Angeles"},
        "pvs": {"url": "http://127.0.0.1:9"}, "data_dir": str(work)}, env={})
    started, cpu_started = time.perf_counter(), time.process_time()
    report = replay(config, work / "raw")
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    shutil.rmtree(work)
    return {"polls": report.stored, "seconds": seconds, "polls_per_s": report.stored / seconds,
            "cpu_s": cpu, "polls_per_cpu_s": report.stored / cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--skip-replay", action="store_true")
    args = parser.parse_args()
    run = bench_run(args.repeat)
    print(f"baseline (import requests; GET DeviceList): {run['baseline_cpu_s']:.3f} s CPU, "
          f"{run['baseline_rss_mb']:.1f} MB peak RSS")
    print(f"solar-monitor run ({INVERTERS} inverters):        {run['run_cpu_s']:.3f} s CPU, "
          f"{run['run_rss_mb']:.1f} MB peak RSS  ({run['cpu_ratio']:.2f}x baseline CPU)")
    if not args.skip_replay:
        rep = bench_replay(args.days)
        print(f"replay: {rep['polls']:.0f} polls in {rep['seconds']:.1f} s = "
              f"{rep['polls_per_s']:.0f} polls/s (CPU {rep['cpu_s']:.1f} s = "
              f"{rep['polls_per_cpu_s']:.0f} polls per CPU-second)")


if __name__ == "__main__":
    main()
