"""Footprint of `solar-monitor run` and speed of `replay`, each measured in fresh child
processes on loopback (issue 21: a run costs little more than the poll, a year imports in
a minute).

1. Starts the emulator (--inverters, default 20: the issue's site) in its own process.
   `run` is measured turn about with the bare script, `requests.get` of DeviceList and
   writing the answer to a file, in the same process tree: CPU (user + sys, not wall) and
   peak RSS of each child, median of --repeat pairs, first on an empty data folder.
2. Writes a simulated year of archive files (35,040 polls; cached in benchmarks/out/) and
   imports it with `replay` from outside the data folder (copying each file in), then
   replays its first 30, 90 and 365 days already in a data folder (`--replay-days`).
   Polls per second of wall time, and of CPU. Targets: an import >= 500 polls/s; peak
   RSS flat in the history's length: a year <= 150 MiB and <= 1.2x the 90-day peak.
3. `run` with the imported year in the store: the first run after the import (it
   compacts the oldest loose day), then, with the backlog compacted as the next ~4 days
   of runs would, --repeat pairs with the bare script. Targets: <= 2x the bare script's
   CPU, <= 40 MiB.
4. With --exports (alone): the CPU a run's exports add. Runs without exports and runs
   with InfluxDB (a real influxd 1.6 on loopback), the Prometheus textfile and, when the
   MQTT export and mosquitto are installed, MQTT, interleaved, after one warm-up each;
   the difference of the medians. Target: <= 50 ms.

The package's bytecode is compiled first, as pip does when it installs it on a Pi:
with PYTHONDONTWRITEBYTECODE set (the systemd unit sets it) an editable checkout would
otherwise compile every module on every run, and that is not what a Pi pays.

    python benchmarks/bench_run.py [--repeat 5] [--inverters 20] [--replay-days 30,90,365]
                                   [--skip-replay]
    python benchmarks/bench_run.py --exports [--repeat 9]
"""

from __future__ import annotations

import argparse
import compileall
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
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
EXE = Path(sys.executable).with_name("solar-monitor")
INVERTERS = 20  # the site; --inverters changes it
YEAR_DAYS = 365
BARE = """import sys
import requests
answer = requests.get(sys.argv[1], timeout=150)
with open(sys.argv[2], "wb") as out:
    out.write(answer.content)
"""  # the bare script a run is weighed against: the poll and nothing else


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


@contextmanager
def emulator_url() -> Iterator[str]:
    """A legacy-firmware emulator of INVERTERS inverters in its own process; its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    emulator = subprocess.Popen([str(EXE), "emulator", "--port", str(port), "--inverters",
                                 str(INVERTERS), "--firmware", "legacy"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(url + "/cgi-bin/dl_cgi/supervisor/info")
        yield url
    finally:
        emulator.terminate()
        emulator.wait()


def bench_run(repeat: int, history: Path | None = None) -> dict[str, float]:
    """`run` --repeat times, each turn paired with the bare script, on an empty data
    folder or on the data folder `history` (then the first run, after the import, is
    given apart)."""
    with emulator_url() as url:
        work = history or Path(tempfile.mkdtemp(prefix="bench-run-"))
        config = write_config(work, url)
        bare = [sys.executable, "-c", BARE, url + "/cgi-bin/dl_cgi?Command=DeviceList",
                str(work / "bare-answer.json")]
        run = [str(EXE), "run", "--config", str(config)]
        first = child_measure(run) if history is not None else None
        if history is not None:
            compact_backlog(config)
        baseline, runs = [], []
        for _ in range(repeat):  # turn about: a busy moment weighs on both alike
            baseline.append(child_measure(bare))
            runs.append(child_measure(run))
        if any(code != 0 for *_x, code, _w in [*runs, *baseline, *([first] if first else [])]):
            raise SystemExit("a benchmark run failed")
        if history is None:
            shutil.rmtree(work)
    figures: dict[str, float] = {}
    if first is not None:
        figures |= {"first_cpu_s": first[0], "first_rss_mb": first[1], "first_wall_s": first[3]}
    figures |= {"baseline_cpu_s": statistics.median(c for c, *_x in baseline),
                "baseline_rss_mb": statistics.median(r for _c, r, *_x in baseline),
                "run_cpu_s": statistics.median(c for c, *_x in runs),
                "max_cpu_s": max(c for c, *_x in runs),
                "run_rss_mb": statistics.median(r for _c, r, *_x in runs),
                "run_wall_s": statistics.median(w for *_x, w in runs)}
    figures["cpu_ratio"] = figures["run_cpu_s"] / figures["baseline_cpu_s"]
    return figures


def compact_backlog(config: Path) -> None:
    """Compact every loose day a run would compact, in a child process: the steady state
    a year's import reaches after ~4 days of runs (each run compacts one day, 0.1-0.3 s),
    and that the 35,040 runs of a year see."""
    code = ("import sys\n"
            "from datetime import UTC, datetime, timedelta\n"
            "from pathlib import Path\n"
            "from solar_monitor.config import load_config\n"
            "from solar_monitor.retention import archive_days, compact\n"
            "config = load_config(Path(sys.argv[1]))\n"
            "days = timedelta(days=config.archive.compact_after_days or 0)\n"
            "for day in archive_days(config.data_path / 'raw'):\n"
            "    if days and day.folder and day.day < datetime.now(UTC).date() - days:\n"
            "        compact(day)\n")
    subprocess.run([sys.executable, "-c", code, str(config)], check=True)


def simulated_year(days: int, inverters: int = INVERTERS) -> Path:
    """`days` of 15-minute DeviceList archive files ending at today's UTC midnight, so a
    `run` after the import continues the history (generated once a day, then reused)."""
    from solar_monitor.archive import stamp
    from solar_monitor.emulation.sim import SimulatedSite, SiteSpec

    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=days)
    name = f"year-{start:%Y%m%d}-{days}d-{inverters}inv"
    root = OUT / name / "raw"
    done = root / ".complete"
    if done.exists():
        return root
    for stale in OUT.glob("year-*"):  # an earlier day's archive, or another site's
        if stale.name != name:
            shutil.rmtree(stale)
    shutil.rmtree(root, ignore_errors=True)
    site = SimulatedSite(SiteSpec(inverter_count=inverters, epoch=start))
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
            f"import bench_run; print(bench_run.simulated_year({days}, {INVERTERS}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    return Path(done.stdout.strip().splitlines()[-1])


def bench_replay(days: int, keep: bool = False, copy: bool = False
                 ) -> tuple[dict[str, float], Path]:
    """`solar-monitor replay` of the year's first `days` days in a child process: already
    in the data folder, or with `copy` imported from outside it (each file copied in).
    Returns its figures and the work folder (removed unless `keep`)."""
    source = simulated_year_in_child(YEAR_DAYS)
    work = Path(tempfile.mkdtemp(prefix="bench-replay-"))
    raw = work / "data" / "raw"
    if copy and days == YEAR_DAYS:
        archive = source
    else:
        archive = work / "import" if copy else raw
        for folder in sorted(source.glob("[0-9]*/[0-9]*/[0-9]*"))[:days]:
            shutil.copytree(folder, archive / folder.relative_to(source))
    polls = sum(len([n for n in names if not n.startswith(".")])
                for _d, _s, names in os.walk(archive))
    config = write_config(work, "http://127.0.0.1:9")  # replay never polls
    cpu, rss, code, seconds = child_measure([str(EXE), "replay", str(archive), "--quiet",
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

    root = Path(tempfile.mkdtemp(prefix="bench-exports-"))
    broker: subprocess.Popen[bytes] | None = None
    try:
        with emulator_url() as url, influxd(root / "influxd") as server:
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
                    used, _rss, code, _wall = child_measure([str(EXE), "run", "--config",
                                                             str(config)])
                    if code != 0:
                        raise SystemExit(f"a benchmark run ({name}) failed")
                    if n:
                        cpu[name].append(used)
    finally:
        if broker is not None:
            broker.terminate()
            broker.wait()
        shutil.rmtree(root)
    plain, with_exports = (statistics.median(cpu[k]) for k in ("plain", "exports"))
    return {"plain_cpu_s": plain, "exports_cpu_s": with_exports,
            "added_ms": 1000 * (with_exports - plain), "engines": float(len(exports))}


def _replay_line(label: str, rep: dict[str, float]) -> str:
    return (f"{label}: {rep['polls']:.0f} polls in {rep['seconds']:.1f} s = "
            f"{rep['polls_per_s']:.0f} polls/s (CPU {rep['cpu_s']:.1f} s = "
            f"{rep['polls_per_cpu_s']:.0f} polls per CPU-second), "
            f"{rep['rss_mb']:.1f} MiB peak RSS")


def _run_line(label: str, run: dict[str, float]) -> str:
    return (f"{label}: {run['run_cpu_s']:.3f} s CPU (worst {run['max_cpu_s']:.3f} s), "
            f"{run['run_rss_mb']:.1f} MiB peak RSS; bare script {run['baseline_cpu_s']:.3f} s "
            f"CPU, {run['baseline_rss_mb']:.1f} MiB: **{run['cpu_ratio']:.2f}x** the bare CPU")


def main() -> None:
    global INVERTERS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--exports", action="store_true",
                        help="only the CPU the exports add to a run")
    parser.add_argument("--inverters", type=int, default=INVERTERS)
    parser.add_argument("--replay-days", default="30,90,365", metavar="N,N,...",
                        help="replays in place of the simulated year's first N days (N <= 365)")
    parser.add_argument("--skip-replay", action="store_true")
    args = parser.parse_args()
    INVERTERS = args.inverters
    package = Path(__file__).resolve().parent.parent / "solar_monitor"
    compileall.compile_dir(package, quiet=1)  # what pip does on a Pi
    if args.exports:
        ex = bench_exports(args.repeat)
        print(f"solar-monitor run ({INVERTERS} inverters): {ex['plain_cpu_s']:.3f} s CPU "
              f"without exports, {ex['exports_cpu_s']:.3f} s with {ex['engines']:.0f} "
              f"(median of {args.repeat}): the exports add {ex['added_ms']:.0f} ms")
        return
    run = bench_run(args.repeat)
    print(_run_line(f"run ({INVERTERS} inverters), empty store", run))
    if args.skip_replay:
        return
    days_list = sorted(int(d) for d in args.replay_days.split(","))
    if not all(1 <= d <= YEAR_DAYS for d in days_list):
        raise SystemExit(f"--replay-days: each N must be 1 to {YEAR_DAYS}")
    imported, history = bench_replay(YEAR_DAYS, keep=True, copy=True)
    print(_replay_line(f"import of a year from outside the data folder ({INVERTERS} inverters)",
                       imported))
    peaks: dict[int, float] = {}
    for days in days_list:
        rep, _work = bench_replay(days)
        peaks[days] = rep["rss_mb"]
        print(_replay_line(f"replay in place, {days:>3} days", rep))
    if 90 in peaks and YEAR_DAYS in peaks:
        print(f"replay peak RSS, a year / 90 days: {peaks[YEAR_DAYS] / peaks[90]:.2f}x")
    try:
        hist = bench_run(args.repeat, history=history)
    finally:
        shutil.rmtree(history)
    print(f"first run after the import: {hist['first_cpu_s']:.3f} s CPU "
          f"({hist['first_wall_s']:.2f} s), {hist['first_rss_mb']:.1f} MiB peak RSS")
    print(_run_line("run with a year in the store", hist))


if __name__ == "__main__":
    main()
