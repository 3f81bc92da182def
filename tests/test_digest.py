"""The monthly digest: figures match the store, honest about gaps, sent exactly once
through the outbox to a real SMTP server, and the HTML renders in headless Chromium."""

from __future__ import annotations

import csv
import io
import json
import shutil
import sqlite3
import struct
import subprocess
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from solar_monitor.cli import main
from solar_monitor.config import Config, config_from_dict
from solar_monitor.context import RunContext
from solar_monitor.daily import summarize_days
from solar_monitor.digest import build_digest_data, daily_csv, render_html, render_text
from solar_monitor.digest.data import DigestData, parse_month
from solar_monitor.digest.render import BAR, BAR_BEST, WEAK, attention
from solar_monitor.digest.send import record
from solar_monitor.emulation.sim import MissingInverter, SimulatedSite, SiteSpec, WeakInverter
from solar_monitor.pipeline import DB_NAME, STAGES, run_stages
from solar_monitor.pvs.parse import parse
from solar_monitor.store import Store, iso
from tests.conftest import real
from tests.test_notify import Inbox, free_port

TZ = ZoneInfo("America/New_York")
JUNE = date(2026, 6, 1)
JUNE_START = datetime(2026, 6, 1, 4, tzinfo=UTC)  # local midnight (EDT)
JULY_START = datetime(2026, 7, 1, 4, tzinfo=UTC)
GAP = (datetime(2026, 6, 12, 4, tzinfo=UTC), datetime(2026, 6, 14, 4, tzinfo=UTC))
FAILED = (datetime(2026, 6, 20, 14, tzinfo=UTC), datetime(2026, 6, 20, 18, tzinfo=UTC))
NEW_AT = datetime(2026, 6, 15, 16, tzinfo=UTC)  # inverter 5 appears at local noon
AFTER = datetime(2026, 7, 1, 12, tzinfo=UTC)
STEP = timedelta(hours=1)  # hourly polls keep the simulated month under a second


@dataclass(frozen=True)
class Month:
    """A simulated June 2026 in a store file, and the truths behind it."""

    db: Path
    weak_serial: str
    new_serial: str


def simulate(db: Path, spec: SiteSpec, start: datetime, end: datetime) -> SimulatedSite:
    """Store the site's answers every STEP from `start` to `end`: none during GAP, failed
    polls during FAILED, cloud cover with each good poll."""
    site = SimulatedSite(spec)
    with Store(db) as store, store.transaction():
        t = start
        while t < end:
            if FAILED[0] <= t < FAILED[1]:
                store.record_failure(t, "timed out", None, None)
            elif not GAP[0] <= t < GAP[1]:
                snap = parse(json.dumps(site.device_list(t)).encode(), polled_at=t)
                poll_id = store.record_snapshot(t, snap, None)
                assert poll_id is not None
                store.enrich_poll(poll_id, {"cloud_cover_pct": site.cloud_cover_pct(t)})
            t += STEP
    return site


def spec(**kw: object) -> SiteSpec:
    base: dict = dict(latitude=42.36, longitude=-71.06, timezone="America/New_York",
                      inverter_count=6, seed=3, epoch=datetime(2026, 5, 20, tzinfo=UTC))
    return SiteSpec(**{**base, **kw})


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> Month:
    db = tmp_path_factory.mktemp("month") / DB_NAME
    faults = (WeakInverter(inverter=2, factor=0.6), MissingInverter(inverter=5, end=NEW_AT))
    site = simulate(db, spec(faults=faults), datetime(2026, 5, 29, 4, tzinfo=UTC), JULY_START)
    inverters = site.state(NEW_AT).inverters
    return Month(db, inverters[2].serial, inverters[5].serial)


@pytest.fixture
def store(month: Month, tmp_path: Path) -> Iterator[Store]:
    """A private copy of the simulated month, at the config's database path."""
    path = tmp_path / "data" / DB_NAME
    path.parent.mkdir(parents=True)
    shutil.copyfile(month.db, path)
    with Store(path) as s:
        yield s


@pytest.fixture(scope="module")
def june(month: Month) -> DigestData:
    with Store(month.db) as s:
        return build_digest_data(s, TZ, JUNE, site_name="Test house", now=AFTER)


def counter_kwh(store: Store, start: datetime, end: datetime) -> float:
    """The production counter's rise over [start, end): the stored truth."""
    sql = ("SELECT lifetime_production_kwh FROM polls WHERE ok=1 AND polled_at < ? "
           "ORDER BY polled_at DESC LIMIT 1")
    return store.db.execute(sql, (iso(end),)).fetchone()[0] - \
        store.db.execute(sql, (iso(start),)).fetchone()[0]


# --- figures ---------------------------------------------------------------------------


def test_month_production_is_the_sum_of_daily_and_the_counters_rise(
        june: DigestData, month: Month) -> None:
    with Store(month.db) as s:
        days = summarize_days(s, TZ, JUNE, date(2026, 6, 30))
        truth = counter_kwh(s, JUNE_START, JULY_START)
    assert june.production_kwh == pytest.approx(sum(d.production_kwh or 0 for d in days),
                                                abs=1e-3)
    assert june.production_kwh == pytest.approx(truth, abs=0.01)
    assert [d.day for d in june.days] == [d.day for d in days]
    assert june.consumption_kwh and june.import_kwh is not None and june.export_kwh
    assert june.self_consumption_pct == pytest.approx(
        100 * (june.production_kwh - june.export_kwh) / june.production_kwh, abs=0.1)
    assert june.cloud_cover_pct is not None and 0 <= june.cloud_cover_pct <= 100


def test_previous_month_is_partial_and_last_year_unknown(june: DigestData) -> None:
    assert june.previous.month == date(2026, 5, 1)
    assert june.previous.days_with_data == 3 and not june.previous.whole
    assert june.previous.production_kwh and june.previous.production_kwh > 0
    assert june.last_year.production_kwh is None
    text = render_text(june)
    assert f"vs May 2026: {june.previous.production_kwh:,.1f} kWh, only 3 of 31 days " \
        "recorded" in text  # and no % change against a partial month
    assert "June 2025: no data" in text


def test_inverters_ranked_weakest_first_with_share_of_median(
        june: DigestData, month: Month) -> None:
    with Store(month.db) as s:
        days = summarize_days(s, TZ, JUNE, date(2026, 6, 30))
    for inv in june.inverters:
        assert inv.kwh == pytest.approx(sum(d.inverter_kwh.get(inv.serial, 0) for d in days),
                                        abs=1e-3)
    shares = [i.share_of_median_pct for i in june.inverters]
    assert shares == sorted(shares)  # type: ignore[type-var]
    weakest = june.inverters[0]
    assert weakest.serial == month.weak_serial and weakest.weak
    assert weakest.share_of_median_pct == pytest.approx(60, abs=4)
    assert [i.serial for i in june.weak_inverters] == [month.weak_serial]
    assert attention(june)[0].startswith(f"Inverter {month.weak_serial} made ")


def test_new_inverter_mid_month_is_compared_over_its_own_days(
        june: DigestData, month: Month) -> None:
    (new,) = [i for i in june.inverters if i.new]
    assert new.serial == month.new_serial
    assert new.first_day == date(2026, 6, 15) and new.days == 16
    assert 88 < (new.share_of_median_pct or 0) < 105 and not new.weak
    assert any("first seen this month" in n for n in june.notes)
    assert "(new 15 Jun" in render_html(june)


def test_completeness_and_gap_days_are_reported(june: DigestData) -> None:
    assert june.interval_s == 3600
    assert june.expected_polls == 30 * 24
    assert june.polls == 30 * 24 - 48  # two local days with no poll at all
    assert june.polls_ok == june.polls - 4  # four failed polls on 20 June
    assert june.completeness_pct == pytest.approx(100 * (720 - 52) / 720)
    assert june.days_without_data == (date(2026, 6, 12), date(2026, 6, 13))
    assert june.catch_up_days == {date(2026, 6, 14)}  # holds the gap's production
    assert june.best_day and june.best_day.day != date(2026, 6, 14)
    assert any("2 day(s) without any good poll (12 Jun, 13 Jun)" in n for n in june.notes)
    text = render_text(june)
    assert f"{june.completeness_pct:.1f}% of polls succeeded (668 good of 720 expected" in text
    assert "Days without any data: 12 Jun, 13 Jun" in text


def test_pvs_health_counts_nightly_restarts_apart(june: DigestData) -> None:
    h = june.health
    assert h.readings == june.polls_ok
    assert h.nightly_hour == 2 and h.nightly_restarts >= 25 and h.reboots == 0
    assert h.flash_avail_kib_min is not None and h.untransmitted_last is not None


def test_flash_wear_is_shown_when_the_pvs_reports_it(tmp_path: Path, june: DigestData
                                                    ) -> None:
    """New firmware reports eMMC wear (/sys/pvs/flashwear_type_b, hex tenths); the digest
    shows the month's highest. Legacy firmware has none, and no line for it."""
    answer = json.loads(real("match_rev_obj_fmt").read_bytes())
    with Store(tmp_path / DB_NAME) as s, s.transaction():
        for day, wear in ((3, "0x02"), (20, "0x03")):
            t = datetime(2026, 6, day, 16, tzinfo=UTC)
            body = {**answer, "/sys/pvs/flashwear_type_b": wear, "/sys/info/uptime": "9000"}
            s.record_snapshot(t, parse(json.dumps(body).encode(), polled_at=t), None)
        data = build_digest_data(s, TZ, JUNE, now=AFTER)
    assert data.health.flash_wear_pct_max == 30.0
    assert "Flash wear (eMMC life used): 30%" in render_text(data)
    assert "Flash wear (eMMC life used)" in render_html(data) and "30%" in render_html(data)
    assert june.health.flash_wear_pct_max is None
    assert "Flash wear" not in render_text(june) and "Flash wear" not in render_html(june)


def test_no_consumption_meter_month_says_so(tmp_path: Path) -> None:
    db = tmp_path / DB_NAME
    simulate(db, spec(consumption_subtype=None, inverter_count=3),
             datetime(2026, 4, 1, 4, tzinfo=UTC), datetime(2026, 4, 4, 4, tzinfo=UTC))
    with Store(db) as s:
        data = build_digest_data(s, TZ, date(2026, 4, 1), now=AFTER)
    assert not data.has_consumption and data.self_consumption_pct is None
    assert data.production_kwh and data.production_kwh > 0
    assert any("No consumption meter" in n for n in data.notes)
    assert "No consumption meter: consumption, import and export not measured." in \
        render_text(data)
    assert "no consumption meter: not measured" in render_html(data)
    assert len(data.days) == 30 and len(data.days_without_data) == 27  # the Pi went off
    assert data.completeness_pct == pytest.approx(100 * 3 / 30)


def test_alerts_opened_resolved_and_still_open(store: Store) -> None:
    rows = [("inverter_offline", "E1", "critical", "resolved", "2026-06-03T15:00:00Z",
             "2026-06-04T15:00:00Z", "Inverter E1 stopped"),
            ("flash_low", "system", "warning", "open", "2026-06-20T15:00:00Z", None,
             "Free flash is low\nCheck the logs"),
            ("old", "system", "info", "resolved", "2026-05-01T00:00:00Z",
             "2026-06-02T00:00:00Z", "old one")]
    with store.transaction():
        store.db.executemany(
            "INSERT INTO alerts (rule, subject, severity, status, opened_at, resolved_at, "
            "message) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    a = build_digest_data(store, TZ, JUNE, now=AFTER).alerts
    assert a.enabled and (a.opened, a.resolved) == (2, 2)
    assert [line.title for line in a.still_open] == ["flash_low system: Free flash is low"]


def test_alerts_absent_says_not_enabled(store: Store) -> None:
    with store.transaction():
        store.db.execute("DROP TABLE alert_events")
        store.db.execute("DROP TABLE alerts")
    data = build_digest_data(store, TZ, JUNE, now=AFTER)
    assert not data.alerts.enabled
    assert "Alerts: not enabled." in render_text(data)
    assert "Alerts: not enabled." in render_html(data)


def test_empty_store_gives_an_honest_empty_digest(tmp_path: Path) -> None:
    with Store(tmp_path / DB_NAME) as s:
        data = build_digest_data(s, TZ, JUNE, now=AFTER)
    assert data.production_kwh is None and data.polls == 0 and not data.inverters
    assert "No data at all was recorded this month" in render_text(data)
    assert "not monitored yet" in render_html(data)


# --- rendering ---------------------------------------------------------------------------


def test_html_is_email_safe_and_marks_the_weak_panel(june: DigestData, month: Month) -> None:
    html = render_html(june)
    lower = html.lower()
    for banned in ("<script", "<link", "<style", "src=\"http", "url(", "javascript:"):
        assert banned not in lower
    assert "width=\"600\"" in html
    row = html[html.index(month.weak_serial) - 200:html.index(month.weak_serial)]
    assert f"color:{WEAK}" in row  # the weak inverter's row is red
    assert html.index(month.weak_serial) < html.index(june.inverters[1].serial)
    assert f"{june.production_kwh:,.1f} kWh" in html
    assert html.count(f"bgcolor=\"{BAR_BEST}\"") == 1


def test_daily_csv_matches_the_daily_figures(june: DigestData) -> None:
    rows = list(csv.DictReader(io.StringIO(daily_csv(june).decode())))
    assert [r["date"] for r in rows] == [d.day.isoformat() for d in june.days]
    total = sum(float(r["production_kwh"]) for r in rows if r["production_kwh"])
    assert total == pytest.approx(june.production_kwh, abs=0.01)
    assert rows[13]["includes_earlier_days"] == "1" and rows[11]["production_kwh"] == ""
    serial = june.inverters[0].serial
    assert sum(float(r[f"{serial}_kwh"] or 0) for r in rows) == \
        pytest.approx(june.inverters[0].kwh, abs=0.01)


def test_a_30_inverter_month_builds_in_under_a_second(tmp_path: Path) -> None:
    """CPU time, not wall time: a loaded CI machine (two suites side by side) stretches
    the wall clock, not the work. benchmarks/bench_digest.py measures the real figure."""
    db = tmp_path / DB_NAME
    fill_synthetic(db, inverters=30)
    with Store(db) as s:
        began = time.process_time()
        data = build_digest_data(s, TZ, JUNE, now=AFTER)
        render_html(data), render_text(data), daily_csv(data)
        elapsed = time.process_time() - began
    assert len(data.inverters) == 30 and data.polls == 30 * 96
    assert elapsed < 1.0, f"{elapsed:.2f} s of CPU"


def fill_synthetic(db: Path, inverters: int) -> None:
    """A 15-minute June with `inverters` inverters, written straight into the tables."""
    with Store(db) as s, s.transaction():
        t, lifetime = JUNE_START, 1000.0
        while t < JULY_START:
            hour = (t.hour - 4) % 24
            kw = max(0.0, 0.3 * (1 - abs(hour - 12.5) / 7))
            lifetime += kw * 0.25
            poll_id = s.db.execute(
                "INSERT INTO polls (polled_at, ok, production_kw, lifetime_production_kwh) "
                "VALUES (?, 1, ?, ?)", (iso(t), kw * inverters, lifetime * inverters)
            ).lastrowid
            s.db.executemany(
                "INSERT INTO inverter_readings (poll_id, serial, power_kw, lifetime_kwh) "
                "VALUES (?, ?, ?, ?)",
                [(poll_id, f"E{i:05d}", kw, lifetime + i) for i in range(inverters)])
            s.db.execute("INSERT INTO supervisor_readings (poll_id, uptime_s, "
                         "flash_avail_kib, untransmitted) VALUES (?, ?, 50000, 0)",
                         (poll_id, (t - JUNE_START).total_seconds()))
            t += timedelta(minutes=15)


# --- sending exactly once ------------------------------------------------------------------


def make_config(config_dict: dict, url: str | None, **digest: object) -> Config:
    targets = [{"url": url, "tags": ["digest"]}] if url else []
    return config_from_dict({**config_dict, "site": {**config_dict["site"], "name": "Test"},
                             "notify": {"targets": targets}, "digest": digest}, env={})


def run_at(config: Config, store: Store, now: datetime, **ctx: bool) -> list[str]:
    """The end of one run at `now`: the digest stage, then the outbox flush."""
    context = RunContext(config=config, store=store, now=now, **ctx)
    return run_stages(context, [s for s in STAGES if s.name in ("digest", "notify")])


def queued(store: Store) -> int:
    return store.db.execute("SELECT count(*) FROM notifications").fetchone()[0]


def test_digest_stage_runs_before_the_outbox_flush() -> None:
    names = [s.name for s in STAGES]
    assert names.index("digest") < names.index("notify")


def test_digest_goes_out_once_with_html_text_and_csv_matching_the_store(
        store: Store, config_dict: dict, month: Month) -> None:
    with Inbox() as inbox:
        config = make_config(config_dict, inbox.url())
        # 23:45 on 30 June, local time: May's digest is the one due (May had 3 days)
        assert run_at(config, store, datetime(2026, 7, 1, 3, 45, tzinfo=UTC)) == []
        assert record(store, "2026-06") is None
        for minutes in (0, 15, 30, 24 * 60):
            assert run_at(config, store, datetime(2026, 7, 1, 4, tzinfo=UTC)
                          + timedelta(minutes=minutes)) == []
        may, msg = inbox.messages
    assert may["Subject"].startswith("Test: May 2026 digest, ")
    assert "only 3 of 31 days" not in may.get_body(("plain",)).get_content()
    rec = record(store, "2026-06")
    assert rec and rec.status == "sent" and rec.sent_at == "2026-07-01T04:00:00Z"
    assert msg["Subject"].startswith("Test: June 2026 digest, ")
    assert [p.get_content_type() for p in msg.walk()] == \
        ["multipart/mixed", "multipart/alternative", "text/plain", "text/html", "text/csv"]
    truth = counter_kwh(store, JUNE_START, JULY_START)
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert f"Production: {truth:,.1f} kWh" in text
    assert f"{truth:,.1f} kWh" in html and month.weak_serial in html and "<table" in html
    (line,) = [x for x in text.splitlines() if month.weak_serial in x and "of median" in x]
    assert line.startswith("   1. ") and line.endswith("<< WEAK")
    (attachment,) = msg.iter_attachments()
    assert attachment.get_filename() == "solar-daily-2026-06.csv"
    rows = list(csv.DictReader(io.StringIO(attachment.get_content())))
    assert len(rows) == 30
    assert sum(float(r["production_kwh"] or 0) for r in rows) == pytest.approx(truth, abs=0.01)
    days = summarize_days(store, TZ, JUNE, date(2026, 6, 30))
    assert [r["production_kwh"] for r in rows] == \
        ["" if d.production_kwh is None else str(round(d.production_kwh, 4)) for d in days]


def test_smtp_outage_delays_the_digest_but_never_doubles_it(
        store: Store, config_dict: dict) -> None:
    port = free_port()
    inbox = Inbox(port)
    config = make_config(config_dict, inbox.url())
    t = datetime(2026, 7, 1, 4, 5, tzinfo=UTC)
    for _ in range(3):  # the mail server is down for three runs
        run_at(config, store, t)
        t += timedelta(minutes=15)
    assert queued(store) == 1
    rec = record(store, "2026-06")
    assert rec and rec.status == "queued"
    pending = store.db.execute("SELECT attempts, last_error FROM notifications").fetchone()
    assert pending["attempts"] == 3 and pending["last_error"]
    with inbox:
        for _ in range(3):
            run_at(config, store, t)
            t += timedelta(minutes=15)
        assert len(inbox.messages) == 1
    assert queued(store) == 1
    rec = record(store, "2026-06")
    assert rec and rec.status == "sent"


def test_a_missed_cron_run_sends_it_later(store: Store, config_dict: dict) -> None:
    with Inbox() as inbox:
        config = make_config(config_dict, inbox.url())
        run_at(config, store, datetime(2026, 7, 9, 16, tzinfo=UTC))  # the Pi was off a week
        run_at(config, store, datetime(2026, 7, 9, 16, 15, tzinfo=UTC))
        assert len(inbox.messages) == 1 and "June 2026" in inbox.messages[0]["Subject"]


def test_day_of_month_replay_and_disabled(store: Store, config_dict: dict) -> None:
    with Inbox() as inbox:
        late = make_config(config_dict, inbox.url(), day_of_month=5)
        run_at(late, store, datetime(2026, 7, 4, 20, tzinfo=UTC))
        assert queued(store) == 0
        run_at(make_config(config_dict, inbox.url()), store, AFTER, replay=True, notify=False)
        assert queued(store) == 0  # a replay never sends unless asked
        run_at(make_config(config_dict, inbox.url(), enabled=False), store, AFTER)
        assert queued(store) == 0
        run_at(late, store, datetime(2026, 7, 5, 12, tzinfo=UTC))
        assert queued(store) == 1 and len(inbox.messages) == 1


def test_no_target_sends_nothing_and_records_nothing(store: Store, config_dict: dict) -> None:
    run_at(make_config(config_dict, None), store, AFTER)
    assert queued(store) == 0 and record(store, "2026-06") is None


def test_a_month_without_data_is_skipped_once(tmp_path: Path, config_dict: dict) -> None:
    config = make_config(config_dict, "mailto://a:b@127.0.0.1:9?to=x@example.com")
    with Store(config.data_path / DB_NAME) as s:
        run_at(config, s, AFTER)
        rec = record(s, "2026-06")
        assert rec and rec.status == "skipped" and queued(s) == 0


# --- the command ---------------------------------------------------------------------------


def write_config(tmp_path: Path, config_dict: dict, month: Month, url: str | None) -> Path:
    import yaml

    raw = {**config_dict, "notify": {"targets": [{"url": url, "tags": ["digest"]}]}
           if url else {"targets": []}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    path.chmod(0o600)
    data = Path(config_dict["data_dir"])
    data.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(month.db, data / DB_NAME)
    return path


def test_digest_command_dry_run_writes_html_and_prints_text(
        tmp_path: Path, config_dict: dict, month: Month,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path, config_dict, month, None)
    out = tmp_path / "june.html"
    assert main(["digest", "--config", str(path), "--month", "2026-06", "--dry-run",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "digest for June 2026 written to" in printed and "(dry run:" in printed
    assert "Production per day (kWh)" in printed
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert main(["digest", "--config", str(path), "--month", "2026-13"]) == 2


def test_digest_command_sends_and_records_the_month(
        tmp_path: Path, config_dict: dict, month: Month) -> None:
    with Inbox() as inbox:
        path = write_config(tmp_path, config_dict, month, inbox.url())
        assert main(["digest", "--config", str(path), "--month", "2026-06"]) == 0
        assert len(inbox.messages) == 1
    with Store(Path(config_dict["data_dir"]) / DB_NAME) as s:
        rec = record(s, "2026-06")
        assert rec and rec.status == "sent"


def test_parse_month() -> None:
    assert parse_month("2026-06") == JUNE
    for bad in ("2026-6", "June", "2026-00", "2026-13"):
        with pytest.raises(ValueError):
            parse_month(bad)


# --- rendering in a real browser -------------------------------------------------------------


def decode_png(data: bytes) -> tuple[int, int, int, list[bytes]]:
    """(width, height, bytes per pixel, rows) of an 8-bit RGB/RGBA PNG, stdlib only."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, []
    width = height = bpp = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
            assert depth == 8 and color in (2, 6) and interlace == 0
            bpp = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat.append(chunk)
    raw = zlib.decompress(b"".join(idat))
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        kind_ = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride) if kind_ else ():
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if kind_ == 1:
                line[i] = (line[i] + a) & 255
            elif kind_ == 2:
                line[i] = (line[i] + b) & 255
            elif kind_ == 3:
                line[i] = (line[i] + ((a + b) >> 1)) & 255
            else:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) \
                    & 255
        rows.append(bytes(line))
        prev = line
    return width, height, bpp, rows


def pixels_of(rows: list[bytes], bpp: int, hex_color: str) -> list[tuple[int, int]]:
    rgb = bytes.fromhex(hex_color.lstrip("#"))
    return [(x // bpp, y) for y, row in enumerate(rows)
            for x in range(0, len(row), bpp) if row[x:x + 3] == rgb]


def test_chromium_screenshot_shows_the_chart(june: DigestData, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    page, png = tmp_path / "digest.html", tmp_path / "digest.png"
    page.write_text(render_html(june), encoding="utf-8")
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={png}",
         "--window-size=900,1600", page.as_uri()],
        check=True, capture_output=True, timeout=60, cwd=tmp_path)
    width, height, bpp, rows = decode_png(png.read_bytes())
    assert (width, height) == (900, 1600)
    colors = {row[x:x + 3] for row in rows[::8] for x in range(0, len(row), bpp * 8)}
    assert len(colors) > 20  # not blank
    bars = pixels_of(rows, bpp, BAR)
    bar_rows = {y for _, y in bars}
    # 28 days with data, one bar each (12 px high), plus the inverters' bars
    assert len(bars) > 28 * 12 * 100 and len(bar_rows) > 28 * 10
    xs = [x for x, _ in bars]
    assert max(xs) - min(xs) > 300  # bars span the chart's width
    assert len(pixels_of(rows, bpp, BAR_BEST)) > 12 * 300  # the best day: a full bar
    weak = pixels_of(rows, bpp, WEAK)
    assert len(weak) > 500  # the weak inverter's red bar and text
    assert min(y for _, y in weak) > min(bar_rows)  # ...in the table below the chart


def test_sqlite_errors_are_not_swallowed(tmp_path: Path) -> None:
    with Store(tmp_path / DB_NAME) as s:
        s.db.execute("DROP TABLE supervisor_readings")
        with pytest.raises(sqlite3.OperationalError):
            build_digest_data(s, TZ, JUNE, now=AFTER)
