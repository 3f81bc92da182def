"""Command line: the only place errors become exit codes and one-line messages.

Exit codes:
  0  success (also: another run already holds the lock)
  1  the PVS poll failed (the failure is recorded), or an input file is unusable
  2  usage or config error
  3  storage error: the archive or database could not be written (disk full, permissions)
  4  the poll was stored, but a later stage (CSV, sheet, alerts, ...) failed
  130 interrupted
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import sqlite3
import sys
import traceback
from collections.abc import Callable, Sequence
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datetime import datetime

    from solar_monitor.config import Config
    from solar_monitor.runlog import RunEnd

log = logging.getLogger("solar_monitor")


class Exit(IntEnum):
    OK = 0
    FAILED = 1
    CONFIG = 2
    STORAGE = 3
    STAGE = 4
    INTERRUPTED = 130


Handler = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, Handler] = {}


def command(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        COMMANDS[name] = fn
        return fn
    return register


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                        help="config file (default: $SOLAR_MONITOR_CONFIG, ./config.yaml, "
                             "/etc/solar-monitor/config.yaml)")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="log debug details")
    parser = argparse.ArgumentParser(
        prog="solar-monitor", parents=[common],
        description="Watchdog for SunPower PVS5/PVS6 solar systems.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("run", parents=[common], help="one collection cycle (what cron runs)")

    p = sub.add_parser("parse", parents=[common], help="print one PVS answer file as JSON")
    p.add_argument("file", type=Path, help="a .json or .json.gz PVS answer")

    p = sub.add_parser("replay", parents=[common],
                       help="feed an archive through the pipeline, in time order")
    p.add_argument("archive", type=Path, help="a folder of archived answers")
    p.add_argument("--notify", action="store_true", help="send notifications (default: none)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--events-out", type=Path, metavar="FILE",
                   help="write every alert event of the replay as JSON lines (backtest)")
    p.add_argument("--export", choices=("influxdb",),
                   help="also write every poll of the archive to this configured export "
                        "(backfill: docs/fleet.md)")
    p.add_argument("--weather", type=Path, metavar="FILE",
                   help="hourly weather CSV for the replay (time,cloud_cover in UTC, %%; "
                   "optional snow_depth (m), snowfall (cm), as Open-Meteo exports it)")

    p = sub.add_parser("emulator", parents=[common],
                       help="serve a simulated PVS6 or PVS5 over HTTP (and HTTPS)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--firmware", choices=("legacy", "auth", "varserver"), default="legacy")
    p.add_argument("--model", type=str.upper, choices=("PVS6", "PVS5"), default="PVS6")
    p.add_argument("--tls", action="store_true",
                   help="also serve HTTPS (self-signed certificate made at start)")
    p.add_argument("--tls-port", type=int, default=8443, metavar="N")
    p.add_argument("--livedata-ms", action="store_true",
                   help="send /sys/livedata/time in milliseconds, as some firmware does")
    p.add_argument("--auth", choices=("guest", "strict"), default="guest",
                   help="guest (default, as units in the field likely run): the serial, "
                   "SSID and MAC are readable without a session; strict: nothing is")
    p.add_argument("--ssid", metavar="TEXT",
                   help="the Wi-Fi name in /sys/info/ssid, printed unescaped as the PVS does")
    p.add_argument("--wpa-key", metavar="TEXT",
                   help="the Wi-Fi key in /sys/info/wpa_key, printed unescaped")
    p.add_argument("--hostile-strings", action="store_true",
                   help='an SSID and Wi-Fi key with ", \\, braces, a newline and a '
                   "non-UTF-8 byte (unless --ssid / --wpa-key give them)")
    p.add_argument("--inverters", type=int, default=12)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--fault", action="append", default=[], metavar="SPEC",
                   help="503:MIN, slow:SEC, truncated, html, fail, 403, dead:N, missing:N, "
                        "pvshang:SEC, badsession:500|empty")

    p = sub.add_parser("demo", parents=[common],
                       help="run simulated days through the whole pipeline, no hardware")
    p.add_argument("--out", type=Path, default=Path("demo-data"))
    p.add_argument("--days", type=int, default=3)

    sub.add_parser("check", parents=[common], help="validate the config and probe each part")

    p = sub.add_parser("sheets", parents=[common], help="the Google Sheet: sync")
    sheets_sub = p.add_subparsers(dest="sheets_command", required=True, metavar="ACTION")
    sheets_sub.add_parser("sync", parents=[common],
                          help="send the queued rows to the Google Sheet now")

    p = sub.add_parser("digest", parents=[common],
                       help="build and send a month's e-mail digest (default: last month)")
    p.add_argument("--month", metavar="YYYY-MM", help="the local month (default: last month)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the text version instead of sending")
    p.add_argument("--out", type=Path, metavar="FILE.html", help="also write the HTML here")

    p = sub.add_parser("test-alert", parents=[common],
                       help="send a test message to every notify target, one line each")
    p.add_argument("--tag", action="append", default=[],
                   help="only targets with this tag (repeatable)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `solar-monitor` console script."""
    from solar_monitor.config import ConfigError
    from solar_monitor.logsetup import setup_logging
    from solar_monitor.runlock import AlreadyRunning

    args = build_parser().parse_args(argv)
    setup_logging("DEBUG" if getattr(args, "verbose", False) else "INFO")
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        _complain(f"config error in {exc}")
        return Exit.CONFIG
    except AlreadyRunning as exc:
        log.info("another run is in progress (%s); nothing to do", exc)
        return Exit.OK
    except BrokenPipeError:  # `solar-monitor parse FILE | head`
        sys.stderr.close()
        return Exit.OK
    except KeyboardInterrupt:
        print("solar-monitor: interrupted", file=sys.stderr)
        return Exit.INTERRUPTED
    except (OSError, sqlite3.Error) as exc:
        log.error("storage error: %s", _os_reason(exc))
        return Exit.STORAGE
    except Exception as exc:  # a bug, or a library error nobody translated
        # Python's own traceback would print the message unredacted: log it instead
        log.error("unexpected %s: %s", exc.__class__.__name__, exc)
        log.debug("traceback:\n%s", traceback.format_exc())
        return Exit.FAILED


def load(args: argparse.Namespace) -> Any:
    """Load the config named by --config / $SOLAR_MONITOR_CONFIG, set up logging, warn on
    loose file permissions."""
    from solar_monitor.config import load_config, permission_warning, resolve_path
    from solar_monitor.logsetup import add_secrets, setup_logging

    path = resolve_path(getattr(args, "config", None))
    config = load_config(path)
    level = "DEBUG" if getattr(args, "verbose", False) else config.logging.level
    setup_logging(level, config.logging.file)
    add_secrets(config.secrets())
    if warning := permission_warning(path):
        log.warning(warning)
    return config


@command("run")
def cmd_run(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from solar_monitor.runlock import AlreadyRunning
    from solar_monitor.runlog import RunEnd, finish_run

    config = load(args)
    started = datetime.now(UTC)
    try:
        code, end = _run(config, started)
    except AlreadyRunning:
        # No ping: the run holding the lock pings when it ends. A run stuck forever must
        # let the heartbeat go silent, not be covered by the runs it keeps out.
        raise
    except Exception as exc:  # the run failed early: the heartbeat says so, then main()
        storage = isinstance(exc, OSError | sqlite3.Error)
        reason = (f"storage error: {_os_reason(exc)}" if storage
                  else f"unexpected {exc.__class__.__name__}: {exc}")
        finish_run(config, RunEnd(started, "storage_failed" if storage else "error",
                                  Exit.STORAGE if storage else Exit.FAILED, reason,
                                  error=exc))
        raise
    finish_run(config, end)
    return code


def _run(config: Config, started: datetime) -> tuple[int, RunEnd]:
    """One run: its exit code and how it ended (for the heartbeat and the runs table)."""
    from solar_monitor.pipeline import run_once
    from solar_monitor.runlog import RunEnd

    try:
        report = run_once(config)
    except (OSError, sqlite3.Error) as exc:
        from solar_monitor.retention import free_mb

        if not _disk_full(exc) and free_mb(config.data_path) < 1:
            # SQLite says "disk I/O error" when the WAL cannot grow on a full disk
            raise OSError(errno.ENOSPC, "No space left on device", str(config.data_path)
                          ) from exc
        raise
    if not report.ok:
        if config.logging.file:  # else the log is stderr, where _complain says it
            log.error("poll failed: %s", report.error)
        _complain(f"poll failed: {report.error}")
        return Exit.FAILED, RunEnd(started, "poll_failed", Exit.FAILED,
                                   f"poll failed: {report.error}", pi=report.pi)
    t = report.totals
    assert t is not None
    from solar_monitor.display import shown_production_kw

    summary = (f"poll stored: {_kw(shown_production_kw(t.production_kw))} kW production, "
               f"{t.inverters_producing}/{t.inverters_total} inverters producing")
    log.info(summary)
    if report.stage_errors:
        _complain(f"poll stored, but {report.stage_errors[0]}")
        return Exit.STAGE, RunEnd(started, "stage_failed", Exit.STAGE,
                                  f"poll stored, but {report.stage_errors[0]}", pi=report.pi)
    return Exit.OK, RunEnd(started, "ok", Exit.OK, summary=summary, pi=report.pi)


@command("parse")
def cmd_parse(args: argparse.Namespace) -> int:
    from solar_monitor.pvs.errors import ParseError
    from solar_monitor.snapshot_json import snapshot_to_dict

    try:
        data = args.file.read_bytes()
    except OSError as exc:
        print(f"solar-monitor: cannot read {args.file}: {_os_reason(exc)}", file=sys.stderr)
        return Exit.FAILED
    from solar_monitor.archive import classify
    from solar_monitor.pvs.parse import parse

    archived = classify(args.file, _local_tz())
    try:
        snapshot = parse(data, polled_at=archived.polled_at if archived else None)
    except ParseError as exc:
        print(f"solar-monitor: {args.file}: {exc}", file=sys.stderr)
        return Exit.FAILED
    json.dump(snapshot_to_dict(snapshot), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return Exit.OK


@command("replay")
def cmd_replay(args: argparse.Namespace) -> int:
    from solar_monitor.replay import replay

    config = load(args)
    if not args.archive.is_dir():
        print(f"solar-monitor: {args.archive} is not a folder", file=sys.stderr)
        return Exit.FAILED
    from solar_monitor.exports import ExportError
    from solar_monitor.weather import WeatherError

    try:
        report = replay(config, args.archive, notify=args.notify, events_out=args.events_out,
                        progress=None if args.quiet else _progress, weather=args.weather,
                        export=args.export)
    except WeatherError as exc:
        print(f"solar-monitor: --weather: {exc}", file=sys.stderr)
        return Exit.FAILED
    except ExportError as exc:
        _complain(f"--export {args.export}: {exc}")
        return Exit.FAILED
    exported = f", {report.exported} point(s) written to {args.export}" if args.export else ""
    print(f"replayed {report.files} file(s): {report.stored} stored, "
          f"{report.failed} failed poll(s), {report.skipped} already stored"
          f"{exported} in {report.seconds:.1f} s")
    return Exit.STAGE if report.stage_errors else Exit.OK


@command("emulator")
def cmd_emulator(args: argparse.Namespace) -> int:
    from solar_monitor.emulation.emulator import serve

    try:
        serve(args.host, args.port, args.firmware, args.inverters, args.seed, args.fault,
              model=args.model, tls=args.tls, tls_port=args.tls_port,
              livedata_ms=args.livedata_ms, auth=args.auth, ssid=args.ssid,
              wpa_key=args.wpa_key, hostile_strings=args.hostile_strings)
    except ValueError as exc:
        print(f"solar-monitor emulator: {exc}", file=sys.stderr)
        return Exit.CONFIG
    return Exit.OK


@command("demo")
def cmd_demo(args: argparse.Namespace) -> int:
    from solar_monitor.demo import run_demo

    return run_demo(args.out, days=args.days)


@command("sheets")
def cmd_sheets(args: argparse.Namespace) -> int:
    from solar_monitor.pipeline import LOCK_NAME, open_store
    from solar_monitor.runlock import run_lock
    from solar_monitor.sinks.sheets import SheetsError, flush

    config = load(args)
    if config.google_sheets is None:
        print("solar-monitor: no google_sheets section in the config "
              "(see docs/google-sheets.md)", file=sys.stderr)
        return Exit.CONFIG
    from datetime import UTC, datetime

    # The run lock: a cron run flushing at the same time could append a row twice.
    with run_lock(config.data_path / LOCK_NAME), open_store(config) as store:
        try:
            report = flush(store, config.google_sheets, config.tz, now=datetime.now(UTC))
        except SheetsError as exc:
            _complain(f"Google Sheet not updated: {exc}")
            return Exit.FAILED
    print(f"{report.sent} row(s) sent, {report.already_there} already in the sheet, "
          f"{report.still_queued} still queued")
    return Exit.OK


@command("check")
def cmd_check(args: argparse.Namespace) -> int:
    from solar_monitor.check import run_checks

    config = load(args)
    return Exit.OK if run_checks(config) else Exit.FAILED


@command("digest")
def cmd_digest(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from solar_monitor.digest.data import parse_month, previous_month
    from solar_monitor.digest.render import render_html, render_text
    from solar_monitor.digest.send import build_for, send_now
    from solar_monitor.pipeline import open_store

    config = load(args)
    now = datetime.now(UTC)
    try:
        month = parse_month(args.month) if args.month else previous_month(now, config.tz)
    except ValueError as exc:
        print(f"solar-monitor: --month: {exc}", file=sys.stderr)
        return Exit.CONFIG
    with open_store(config) as store:
        data = build_for(config, store, month, now)
        if args.out:
            args.out.write_text(render_html(data), encoding="utf-8")
            print(f"digest for {data.label} written to {args.out}")
        if args.dry_run:
            sys.stdout.write(render_text(data))
            print(f"(dry run: the {data.label} digest was not sent)")
            return Exit.OK
        result = send_now(config, store, data, now)
    if not result.ok:
        _complain(f"digest not sent: {result.error}")
        return Exit.FAILED
    print(f"digest for {data.label} sent to {len(result.targets)} target(s)")
    return Exit.OK


@command("test-alert")
def cmd_test_alert(args: argparse.Namespace) -> int:
    from solar_monitor.notify import test_targets

    config = load(args)
    results = test_targets(config, args.tag)
    if not results:
        tags = " or ".join(args.tag or [])
        print("solar-monitor: no notify target" + (f" with tag {tags}" if tags else "")
              + "; add one under notify.targets (see docs/notifications.md)", file=sys.stderr)
        return Exit.CONFIG
    for r in results:
        print(f"PASS {r.target}: sent" if r.ok else f"FAIL {r.target}: {r.error}")
    return Exit.OK if all(r.ok for r in results) else Exit.FAILED


def _complain(message: str) -> None:
    """One error line on stderr, with every registered secret redacted: error texts come
    from libraries and the PVS, and this line lands in cron mail and the journal."""
    from solar_monitor.logsetup import scrub

    print(f"solar-monitor: {scrub(message)}", file=sys.stderr)


def _progress(done: int, fraction: float) -> None:
    print(f"replay: {done} files ({int(100 * fraction)}% of the archive's time span)",
          file=sys.stderr)


def _disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return "disk is full" in str(exc)  # sqlite3.OperationalError: database or disk is full


def _kw(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}"


def _os_reason(exc: BaseException) -> str:
    if _disk_full(exc):
        where = getattr(exc, "filename", None) or "the data folder"
        return (f"disk full ({where}). Nothing already stored is lost or damaged: free "
                "some space and the next run stores this poll's answer if it was "
                "archived, and catches up on everything else (see archive.min_free_mb "
                "and archive.retention_days)")
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return str(exc) or exc.__class__.__name__


def _local_tz() -> Any:
    from datetime import datetime

    return datetime.now().astimezone().tzinfo


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
