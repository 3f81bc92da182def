"""Footprint of `solar-monitor run` (on an empty store and on a year of history) and of
`replay` over 30, 90 and 365 simulated days, each measured in a fresh child process.

1. Starts the emulator (30 inverters) in its own process, then measures CPU time
   (user + sys) and peak RSS of:
   - the baseline: `python -c "import requests; requests.get(URL)"`;
   - one `solar-monitor run` against the same emulator, on an empty data folder.
   Median of --repeat runs. Targets: run <= 3x baseline CPU, <= 60 MB RSS.
2. Writes a simulated year of archive files (35,040 polls of 30 inverters; cached in
   benchmarks/out/) and, for each of --replay-days, copies its first N days into an empty
   data folder and runs `solar-monitor replay` on it. Targets: >= 500 polls/s; peak RSS
   flat in the history's length: a year <= 150 MiB and <= 1.2x the 90-day peak.
3. `run` --repeat times on the data folder the year's replay left (a year of history in
   the store, loose raw days to compact): the first run after the import, and the median
   and worst of the others.
4. With --exports (alone): the CPU a run's exports add. Runs without exports and runs
   with InfluxDB (a real influxd 1.6 on loopback), the Prometheus textfile and, when the
   MQTT export and mosquitto are installed, MQTT, interleaved, after one warm-up each;
   the difference of the medians. Target: <= 50 ms.

    python benchmarks/bench_run.py [--repeat 5] [--replay-days 30,90,365] [--skip-replay]
    python benchmarks/bench_run.py --exports [--repeat 9]
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
YEAR_DAYS = 365


def child_measure(cmd: list[str], env: dict[str, str] | None = None
                  ) -> tuple[float, float, int, float]:
    """Run `cmd`; (CPU seconds, peak RSS in MiB, exit code, wall seconds) of that child."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, **(env or {})})
    _pid, status, usage = os.wait4(proc.pid, 0)
    return (usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024,
            os.waitstatus_to_exitcode(status), time.perf_counter() - started)


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


def write_config(work: Path, url: str, exports: dict | None = None) -> Path:
    """A config for the emulator at `url`, with its data folder `work/data`."""
    config = work / "config.yaml"
    config.write_text(json.dumps({
        "site": {"latitude": 37.77, "longitude": -122.42, "timezone": "America/Los_Angeles"},
        "pvs": {"url": url}, "data_dir": str(work / "data"),
        "weather": {"enabled": False},  # loopback only: no Open-Meteo
        "exports": exports or {}}))
    config.chmod(0o600)
    return config


def bench_run(repeat: int, history: Path | None = None) -> dict[str, float]:
    """`run` --repeat times on an empty data folder (with the baseline beside it), or on
    the data folder `history` (then the first run, after the import, is also given)."""
    exe = Path(sys.executable).with_name("solar-monitor")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    emulator = subprocess.Popen([str(exe), "emulator", "--port", str(port), "--inverters",
                                 str(INVERTERS), "--firmware", "legacy"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(url + "/cgi-bin/dl_cgi/supervisor/info")
        work = history or Path(tempfile.mkdtemp(prefix="bench-run-"))
        config = write_config(work, url)
        device_list = url + "/cgi-bin/dl_cgi?Command=DeviceList"
        baseline = [] if history else [
            child_measure([sys.executable, "-c",
                           f"import requests; requests.get({device_list!r})"])
            for _ in range(repeat)]
        runs = [child_measure([str(exe), "run", "--config", str(config)])
                for _ in range(repeat + (history is not None))]
        if any(code != 0 for *_x, code, _w in runs):
            raise SystemExit("a benchmark run failed")
        if history is None:
            shutil.rmtree(work)
    finally:
        emulator.terminate()
        emulator.wait()
    figures: dict[str, float] = {}
    if history is not None:
        first = runs.pop(0)
        figures |= {"first_cpu_s": first[0], "first_rss_mb": first[1], "first_wall_s": first[3],
                    "max_cpu_s": max(c for c, *_x in runs)}
    else:
        figures |= {"baseline_cpu_s": statistics.median(c for c, *_x in baseline),
                    "baseline_rss_mb": statistics.median(r for _c, r, *_x in baseline)}
    figures |= {"run_cpu_s": statistics.median(c for c, *_x in runs),
                "run_rss_mb": statistics.median(r for _c, r, *_x in runs),
                "run_wall_s": statistics.median(w for *_x, w in runs)}
    if "baseline_cpu_s" in figures:
        figures["cpu_ratio"] = figures["run_cpu_s"] / figures["baseline_cpu_s"]
    return figures


def simulated_year(days: int) -> Path:
    """`days` of 15-minute DeviceList archive files ending at today's UTC midnight, so a
    `run` after the import continues the history (generated once a day, then reused)."""
    from solar_monitor.archive import stamp
    from solar_monitor.emulation.sim import SimulatedSite, SiteSpec

    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=days)
    name = f"year-{start:%Y%m%d}-{days}d-{INVERTERS}inv"
    root = OUT / name / "raw"
    done = root / ".complete"
    if done.exists():
        return root
    for stale in OUT.glob("year-*"):  # an earlier day's archive
        if stale.name != name:
            shutil.rmtree(stale)
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


def simulated_year_in_child(days: int) -> Path:
    """simulated_year() in a child process. A child's ru_maxrss starts at its parent's
    peak RSS (the kernel carries it over fork and exec), so this process must stay small
    for the replays and runs it starts to be measured alone."""
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"import bench_run; print(bench_run.simulated_year({days}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    return Path(done.stdout.strip().splitlines()[-1])


def bench_replay(days: int, keep: bool = False) -> tuple[dict[str, float], Path]:
    """`solar-monitor replay` of the year's first `days` days, already in the data folder
    (no import copy), in a child process; returns its figures and the work folder (removed
    unless `keep`)."""
    source = simulated_year_in_child(YEAR_DAYS)
    work = Path(tempfile.mkdtemp(prefix="bench-replay-"))
    raw = work / "data" / "raw"
    for folder in sorted(source.glob("[0-9]*/[0-9]*/[0-9]*"))[:days]:
        shutil.copytree(folder, raw / folder.relative_to(source))
    polls = sum(len(names) for _d, _s, names in os.walk(raw))
    config = write_config(work, "http://127.0.0.1:9")  # replay never polls
    exe = Path(sys.executable).with_name("solar-monitor")
    cpu, rss, code, seconds = child_measure([str(exe), "replay", str(raw), "--quiet",
                                             "--config", str(config)])
    if code != 0:
        raise SystemExit(f"the replay of {days} days failed (exit {code})")
    if not keep:
        shutil.rmtree(work)
    return {"days": days, "polls": polls, "seconds": seconds, "polls_per_s": polls / seconds,
            "cpu_s": cpu, "polls_per_cpu_s": polls / cpu, "rss_mb": rss}, work


def bench_exports(repeat: int) -> dict[str, float]:
    """Median run CPU without and with every export this machine can serve (seconds)."""
    import importlib.util

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.export_servers import create_database, influxd

    exe = Path(sys.executable).with_name("solar-monitor")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    emulator = subprocess.Popen([str(exe), "emulator", "--port", str(port), "--inverters",
                                 str(INVERTERS), "--firmware", "legacy"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    root = Path(tempfile.mkdtemp(prefix="bench-exports-"))
    broker: subprocess.Popen[bytes] | None = None
    try:
        wait_for(url + "/cgi-bin/dl_cgi/supervisor/info")
        with influxd(root / "influxd") as server:
            create_database(server, "solar")
            exports: dict = {
                "influxdb": {"url": server.url, "api": "v1", "database": "solar"},
                "prometheus": {"textfile": str(root / "textfile" / "solar_monitor.prom")}}
            mosquitto = shutil.which("mosquitto", path="/usr/sbin:/usr/bin")
            if mosquitto and importlib.util.find_spec("solar_monitor.exports.mqtt"):
                mqtt_port = free_port()
                (root / "mosquitto.conf").write_text(
                    f"listener {mqtt_port} 127.0.0.1\nallow_anonymous true\n")
                broker = subprocess.Popen([mosquitto, "-c", str(root / "mosquitto.conf")],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                exports["mqtt"] = {"host": "127.0.0.1", "port": mqtt_port}
            (root / "plain").mkdir()
            (root / "exports").mkdir()
            configs = {"plain": write_config(root / "plain", url),
                       "exports": write_config(root / "exports", url, exports)}
            cpu: dict[str, list[float]] = {"plain": [], "exports": []}
            for n in range(repeat + 1):  # the first of each: migrations, a warm-up
                for name, config in configs.items():
                    used, _rss, code, _wall = child_measure([str(exe), "run", "--config",
                                                             str(config)])
                    if code != 0:
                        raise SystemExit(f"a benchmark run ({name}) failed")
                    if n:
                        cpu[name].append(used)
    finally:
        if broker is not None:
            broker.terminate()
            broker.wait()
        emulator.terminate()
        emulator.wait()
        shutil.rmtree(root)
    plain, with_exports = (statistics.median(cpu[k]) for k in ("plain", "exports"))
    return {"plain_cpu_s": plain, "exports_cpu_s": with_exports,
            "added_ms": 1000 * (with_exports - plain), "engines": float(len(exports))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--exports", action="store_true",
                        help="only the CPU the exports add to a run")
    parser.add_argument("--replay-days", default="30,90,365", metavar="N,N,...",
                        help="replays of the simulated year's first N days (N <= 365)")
    parser.add_argument("--skip-replay", action="store_true")
    args = parser.parse_args()
    if args.exports:
        ex = bench_exports(args.repeat)
        print(f"solar-monitor run ({INVERTERS} inverters): {ex['plain_cpu_s']:.3f} s CPU "
              f"without exports, {ex['exports_cpu_s']:.3f} s with {ex['engines']:.0f} "
              f"(median of {args.repeat}): the exports add {ex['added_ms']:.0f} ms")
        return
    run = bench_run(args.repeat)
    print(f"baseline (import requests; GET DeviceList): {run['baseline_cpu_s']:.3f} s CPU, "
          f"{run['baseline_rss_mb']:.1f} MiB peak RSS")
    print(f"solar-monitor run ({INVERTERS} inverters), empty store: {run['run_cpu_s']:.3f} s "
          f"CPU, {run['run_rss_mb']:.1f} MiB peak RSS  ({run['cpu_ratio']:.2f}x baseline CPU)")
    if args.skip_replay:
        return
    days_list = sorted(int(d) for d in args.replay_days.split(","))
    if not all(1 <= d <= YEAR_DAYS for d in days_list):
        raise SystemExit(f"--replay-days: each N must be 1 to {YEAR_DAYS}")
    peaks: dict[int, float] = {}
    history: Path | None = None
    for days in days_list:
        rep, work = bench_replay(days, keep=days == days_list[-1])
        peaks[days] = rep["rss_mb"]
        history = work
        print(f"replay {days:>3} days: {rep['polls']:.0f} polls in {rep['seconds']:.1f} s = "
              f"{rep['polls_per_s']:.0f} polls/s (CPU {rep['cpu_s']:.1f} s = "
              f"{rep['polls_per_cpu_s']:.0f} polls per CPU-second), "
              f"{rep['rss_mb']:.1f} MiB peak RSS")
    if 90 in peaks and YEAR_DAYS in peaks:
        print(f"replay peak RSS, a year / 90 days: {peaks[YEAR_DAYS] / peaks[90]:.2f}x")
    assert history is not None
    try:
        hist = bench_run(args.repeat, history=history)
    finally:
        shutil.rmtree(history)
    print(f"solar-monitor run, {days_list[-1]} days of history: first run after the import "
          f"{hist['first_cpu_s']:.3f} s CPU ({hist['first_wall_s']:.2f} s), "
          f"{hist['first_rss_mb']:.1f} MiB peak RSS; then {hist['run_cpu_s']:.3f} s CPU "
          f"(worst {hist['max_cpu_s']:.3f} s), {hist['run_rss_mb']:.1f} MiB peak RSS")


if __name__ == "__main__":
    main()
