"""Real export servers for the tests, from Debian's packages: influxd 1.6, victoria-metrics,
prometheus-node-exporter and promtool. Each starts on loopback, on a free port, in a
temp folder, and stops with its context; a test that needs an absent binary skips."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.haproxy_util import free_port

INFLUXD = "influxd"
VICTORIA = "victoria-metrics"
NODE_EXPORTER = "prometheus-node-exporter"
PROMTOOL = "promtool"


def need(binary: str) -> str:
    """The binary's path, or skip the test saying which Debian package brings it."""
    path = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin")
    if path is None:
        package = {INFLUXD: "influxdb", PROMTOOL: "prometheus"}.get(binary, binary)
        pytest.skip(f"{binary} is not installed (apt-get install {package}; .ci/run does)")
    return path


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def _start(argv: list[str], url: str, ready: str, log: Path, timeout_s: float = 20) -> Server:
    out = log.open("wb")
    process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL)
    server = Server(url, process, log)
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"{argv[0]} exited: {log.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(url + ready, timeout=1).status_code < 300:
                return server
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"{argv[0]} not ready in {timeout_s} s: {log.read_text()[-2000:]}")


INFLUXD_CONF = """\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{dir}/meta"
  logging-enabled = false
[data]
  dir = "{dir}/data"
  wal-dir = "{dir}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[subscriber]
  enabled = false
[continuous_queries]
  enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{http}"
  auth-enabled = false
  log-enabled = false
[[graphite]]
  enabled = false
[[udp]]
  enabled = false
[[collectd]]
  enabled = false
[[opentsdb]]
  enabled = false
"""


@contextlib.contextmanager
def influxd(folder: Path, port: int | None = None) -> Iterator[Server]:
    """influxd 1.6 on loopback, its data in `folder` (a restart with the same folder and
    port finds its data again)."""
    binary = need(INFLUXD)
    folder.mkdir(parents=True, exist_ok=True)
    http = port or free_port()
    conf = folder / "influxd.conf"
    conf.write_text(INFLUXD_CONF.format(rpc=free_port(), http=http, dir=folder))
    server = _start([binary, "-config", str(conf)], f"http://127.0.0.1:{http}", "/ping",
                    folder / "influxd.log")
    try:
        yield server
    finally:
        server.stop()


def influx_query(server: Server, db: str, q: str) -> list[dict]:
    """The series of an InfluxQL query (v1 /query), as InfluxDB returns them."""
    reply = requests.get(server.url + "/query", params={"db": db, "q": q, "epoch": "s"},
                         timeout=10)
    reply.raise_for_status()
    result = reply.json()["results"][0]
    assert "error" not in result, result
    return result.get("series", [])


def create_database(server: Server, db: str) -> None:
    requests.post(server.url + "/query", params={"q": f"CREATE DATABASE {db}"},
                  timeout=10).raise_for_status()


@contextlib.contextmanager
def victoria_metrics(folder: Path) -> Iterator[Server]:
    """VictoriaMetrics single-node on loopback (InfluxDB line protocol on its HTTP port)."""
    binary = need(VICTORIA)
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = _start([binary, f"-httpListenAddr=127.0.0.1:{port}",
                     f"-storageDataPath={folder / 'vm-data'}", "-loggerLevel=ERROR",
                     "-retentionPeriod=100y",  # the tests write 2026 times, whatever today is
                     "-search.latencyOffset=0s", "-search.disableCache"],
                    f"http://127.0.0.1:{port}", "/health", folder / "vm.log")
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def node_exporter(textfile_dir: Path, log_dir: Path) -> Iterator[Server]:
    """node_exporter with only its textfile collector, reading `textfile_dir`."""
    binary = need(NODE_EXPORTER)
    port = free_port()
    server = _start([binary, f"--web.listen-address=127.0.0.1:{port}",
                     "--collector.disable-defaults", "--collector.textfile",
                     f"--collector.textfile.directory={textfile_dir}"],
                    f"http://127.0.0.1:{port}", "/metrics", log_dir / "node_exporter.log")
    try:
        yield server
    finally:
        server.stop()
