"""InfluxDB export: each poll as line protocol, through requests (no client library).

Measurements sunpower_inverter, sunpower_meter (tag kind), sunpower_supervisor and
sunpower_battery (tag device_type); tags pvs (the PVS serial) and serial; numeric fields
named as the store's columns (power_kw, lifetime_kwh, ...), always floats (a field that
is an integer in one point and a float in the next is a type conflict); the poll's time
in seconds. Every poll is queued in the outbox (queue 'influxdb') and sent oldest first,
so an outage loses nothing; a point written twice is the same point (same series, same
time), so a resend is harmless. v1: POST /write?db=&precision=s with basic auth; v2
(InfluxDB 2.x, VictoriaMetrics): POST /api/v2/write?org=&bucket=&precision=s with
`Authorization: Token`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from solar_monitor import outbox
from solar_monitor.config import InfluxdbExport
from solar_monitor.context import RunContext
from solar_monitor.exports import ExportError, note_outcome
from solar_monitor.exports.data import pvs_serial
from solar_monitor.pvs.models import Snapshot
from solar_monitor.store import (
    _BATTERY_COLS,
    _INVERTER_COLS,
    _METER_COLS,
    _SUPERVISOR_COLS,
    iso,
)

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

QUEUE = "influxdb"
POLLS_PER_WRITE = 200  # queued polls per request: ~30 lines each, well under any body limit
LINES_PER_WRITE = 5000  # a backfill's batch (InfluxDB's advice: 5,000 lines a write)
# Polls kept queued while the server is away: 90 days of 15-minute polls (~70 MB for 30
# inverters). Older ones are dropped from the queue, not from the archive: replay
# --export sends them once the server is back.
MAX_QUEUED = 90 * 96
_TEXT = {"serial", "kind", "subtype", "state", "data_time", "device_type", "model", "op_mode"}


def _numeric(columns: Sequence[str]) -> tuple[str, ...]:
    """The store's numeric columns of a reading table: the fields, named as in the store."""
    return tuple(c for c in columns if c not in _TEXT)


@dataclass(frozen=True, slots=True)
class Measurement:
    name: str
    fields: tuple[str, ...]
    tags: tuple[str, ...] = ()  # device attributes that are tags beside pvs and serial


INVERTER = Measurement("sunpower_inverter", _numeric(_INVERTER_COLS))
METER = Measurement("sunpower_meter", _numeric(_METER_COLS), ("kind",))
SUPERVISOR = Measurement("sunpower_supervisor", _numeric(_SUPERVISOR_COLS))
BATTERY = Measurement("sunpower_battery", _numeric(_BATTERY_COLS), ("device_type",))


class InfluxError(ExportError):
    """The server did not take the points; they stay queued. The message says why."""


class Refused(InfluxError):
    """The server will never take these points (400: bad line, type conflict)."""


# --- line protocol ------------------------------------------------------------------------

def _tag(value: str) -> str:
    """A tag value escaped for line protocol (no newline: it would end the line)."""
    text = " ".join(str(value).split())
    return text.replace("\\", "\\\\").replace(",", r"\,").replace("=", r"\=").replace(" ", r"\ ")


def _line(m: Measurement, device: Any, pvs: str | None, stamp: int) -> str | None:
    tags = [("pvs", pvs), ("serial", getattr(device, "serial", None))]
    tags += [(t, getattr(device, t, None)) for t in m.tags]
    fields = []
    for name in m.fields:
        value = getattr(device, name, None)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            fields.append(f"{name}={float(value)!r}")
    if not fields:
        return None  # a dark inverter with no value: no point (line protocol needs a field)
    head = ",".join([m.name, *(f"{k}={_tag(v)}" for k, v in sorted(tags) if v)])
    return f"{head} {','.join(fields)} {stamp}"


def lines(snapshot: Snapshot, pvs: str | None, at: datetime) -> list[str]:
    """The poll as line protocol, one line per device, stamped `at` (seconds)."""
    stamp = int(at.timestamp())
    groups: list[tuple[Measurement, Iterable[Any]]] = [
        (SUPERVISOR, [snapshot.supervisor] if snapshot.supervisor else []),
        (METER, snapshot.meters), (INVERTER, snapshot.inverters),
        (BATTERY, snapshot.batteries)]
    out = [_line(m, device, pvs, stamp) for m, devices in groups for device in devices]
    return [line for line in out if line]


# --- writing ------------------------------------------------------------------------------

class Writer:
    """POSTs line protocol to one server, each request bounded by `deadline` (monotonic)."""

    def __init__(self, settings: InfluxdbExport) -> None:
        import requests  # only a run that exports pays for it

        self.settings = settings
        self.session = requests.Session()
        base = settings.url.rstrip("/")
        if settings.api == "v1":
            self.url = f"{base}/write"
            self.params = {"db": settings.database, "precision": "s"}
            if settings.username:
                self.session.auth = (settings.username, settings.password or "")
        else:
            self.url = f"{base}/api/v2/write"
            self.params = {"org": settings.org, "bucket": settings.bucket, "precision": "s"}
            if settings.token:
                self.session.headers["Authorization"] = f"Token {settings.token}"

    def write(self, body: str, deadline: float) -> None:
        """Send one batch. Raises Refused (400: never retried) or InfluxError."""
        import requests

        left = deadline - time.monotonic()
        if left <= 0:
            raise InfluxError(f"no time left of timeout_s {self.settings.timeout_s:g}")
        try:
            reply = self.session.post(self.url, params=self.params, data=body.encode(),
                                      timeout=(min(left, 5.0), left))
        except requests.Timeout:
            raise InfluxError(f"{self.settings.url} did not answer within "
                              f"{self.settings.timeout_s:g} s") from None
        except requests.RequestException as exc:
            raise InfluxError(f"cannot reach {self.settings.url} "
                              f"({exc.__class__.__name__}); is the server up?") from None
        if reply.status_code < 300:
            return
        raise _error(self.settings, reply)

    def close(self) -> None:
        self.session.close()


def _error(settings: InfluxdbExport, reply: requests.Response) -> InfluxError:
    """The server's refusal as an error that says what to do next."""
    text = " ".join(reply.text[:300].split())
    where = f"{settings.url} answered {reply.status_code}: {text}"
    if reply.status_code in (401, 403):
        what = "username/password" if settings.api == "v1" else "token"
        return InfluxError(f"{where}: check exports.influxdb {what} (write access)")
    if reply.status_code == 404:
        if settings.api == "v1":
            return InfluxError(f"{where}: create the database: influx -execute "
                               f"'CREATE DATABASE {settings.database}'")
        return InfluxError(f"{where}: check exports.influxdb org and bucket")
    if reply.status_code == 400:
        return Refused(where)
    return InfluxError(where)


def _batches(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


# --- the stages ---------------------------------------------------------------------------

def queue_poll(ctx: RunContext, settings: InfluxdbExport) -> None:
    """Each-poll stage: queue this poll's points, keyed by its time (once per poll)."""
    if ctx.snapshot is None or ctx.poll is None:
        return
    body = "\n".join(lines(ctx.snapshot, pvs_serial(ctx), ctx.poll.polled_at))
    if body:
        with outbox.atomic(ctx.store):
            outbox.put(ctx.store, QUEUE, iso(ctx.poll.polled_at) or "", body, ctx.now)


def export_stage(ctx: RunContext, settings: InfluxdbExport) -> None:
    """Send the queued polls oldest first, within timeout_s; never raises."""
    store = ctx.store
    deadline = time.monotonic() + settings.timeout_s
    writer = Writer(settings)
    error: str | None = None
    sent = 0
    try:
        while time.monotonic() < deadline and (
                items := outbox.pending(store, (QUEUE,), POLLS_PER_WRITE)):
            try:
                writer.write("\n".join(i.payload for i in items), deadline)
            except Refused as exc:  # resending cannot help: drop them, say so once
                log.warning("InfluxDB refused %d queued poll(s), dropped: %s", len(items), exc)
            except InfluxError as exc:
                error = str(exc)
                break
            outbox.mark_sent(store, [i.id for i in items], ctx.now)
            sent += len(items)
    finally:
        writer.close()
    if dropped := outbox.trim(store, QUEUE, MAX_QUEUED):
        log.warning("InfluxDB: %d queued poll(s) older than the last %d dropped from the "
                    "queue; the archive keeps them: send them with solar-monitor replay "
                    "<data_dir>/raw --export influxdb", dropped, MAX_QUEUED)
    left = outbox.pending_count(store, (QUEUE,))
    outbox.prune(store, (QUEUE,), ctx.now)
    note_outcome(store, "influxdb", error, f"{left} poll(s) queued, {sent} sent")
    if left and not error:  # a long backlog: timeout_s's worth now, the rest next run
        log.info("InfluxDB: %d queued poll(s) sent, %d left for the next run", sent, left)


class Backfill:
    """`replay --export influxdb`: the archive's polls straight to the server, in batches
    of LINES_PER_WRITE lines (memory stays flat). Raises InfluxError from add/close."""

    def __init__(self, settings: InfluxdbExport) -> None:
        self.writer = Writer(settings)
        self.timeout_s = settings.timeout_s
        self.batch: list[str] = []
        self.points = 0

    def add(self, snapshot: Snapshot, pvs: str | None, at: datetime) -> None:
        self.batch += lines(snapshot, pvs, at)
        if len(self.batch) >= LINES_PER_WRITE:
            self._send()

    def _send(self) -> None:
        if self.batch:
            try:
                self.writer.write("\n".join(self.batch), time.monotonic() + self.timeout_s)
            except InfluxError as exc:
                raise exc.__class__(f"{exc}; {self.points} point(s) were written: run the "
                                    "same command again to finish (a point written twice "
                                    "is the same point)") from None
            self.points += len(self.batch)
            self.batch = []

    def close(self) -> int:
        """Send the rest; returns how many points were written."""
        try:
            self._send()
        finally:
            self.writer.close()
        return self.points


def probe(settings: InfluxdbExport) -> tuple[bool, str]:
    """For `check`: an empty write proves the address, the credentials and the database."""
    writer = Writer(settings)
    target = (f"database {settings.database}" if settings.api == "v1"
              else f"org {settings.org}, bucket {settings.bucket}")
    try:
        writer.write("", time.monotonic() + settings.timeout_s)
    except Refused:
        pass  # the server read the request and had nothing to write: reachable, authorised
    except InfluxError as exc:
        return False, str(exc)
    finally:
        writer.close()
    return True, f"{settings.url} ({settings.api}) accepts writes to {target}"
