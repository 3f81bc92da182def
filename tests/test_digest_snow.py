"""The digest tells the owner, quietly, when snow kept the whole array dark for a day
(issue 15): which days and how many daylight hours, from the weather stored with polls."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from solar_monitor.digest import build_digest_data, render_html, render_text
from solar_monitor.emulation.sim import SimulatedSite, SiteSpec, SnowCover
from solar_monitor.pvs.parse import parse
from solar_monitor.store import Store
from solar_monitor.sun import sun_elevation_deg
from tests.test_digest import TZ

JAN = date(2026, 1, 1)
START = datetime(2026, 1, 1, 5, tzinfo=UTC)  # local midnight (EST)
STEP = timedelta(hours=1)


def local(day: int, hour: float) -> datetime:
    return (datetime(2026, 1, day, tzinfo=TZ) + timedelta(hours=hour)).astimezone(UTC)


def month_with_snow(db: Path, *, snow_weather: bool) -> SimulatedSite:
    """January 2026 at hourly polls: a heavy snowfall on the 9th evening buries all six
    panels through the 10th and 11th (the top row clears on the 12th, the bottom row on
    the 13th); a light one on the 20th, whose top row clears the next morning."""
    heavy = SnowCover(start=local(9, 19), end=local(15, 12), factor=0.0,
                      rows=((0, 1, 2), (3, 4, 5)), clears_at=(local(12, 11), local(13, 12)),
                      depth_m=0.3, meter_zero=True)
    light = SnowCover(start=local(20, 20), end=local(23, 12), factor=0.0,
                      rows=((0, 1, 2), (3, 4, 5)), clears_at=(local(21, 10), local(22, 12)),
                      depth_m=0.05)
    site = SimulatedSite(SiteSpec(latitude=42.36, longitude=-71.06,
                                  timezone="America/New_York", inverter_count=6, seed=3,
                                  epoch=datetime(2025, 12, 20, tzinfo=UTC),
                                  faults=(heavy, light)))
    with Store(db) as store, store.transaction():
        t = START
        while t < START + timedelta(days=31):
            snap = parse(json.dumps(site.device_list(t)).encode(), polled_at=t)
            poll_id = store.record_snapshot(t, snap, None)
            assert poll_id is not None
            weather = {"snow_depth_m": site.snow_depth_m(t),
                       "snowfall_cm": site.snowfall_cm(t)} if snow_weather else {}
            store.enrich_poll(poll_id, {"sun_elevation_deg": sun_elevation_deg(
                42.36, -71.06, t), "cloud_cover_pct": site.cloud_cover_pct(t), **weather})
            t += STEP
    return site


def test_days_the_whole_array_stayed_under_snow_are_told_with_the_hours_lost(
        tmp_path: Path) -> None:
    site = month_with_snow(tmp_path / "db.sqlite", snow_weather=True)
    with Store(tmp_path / "db.sqlite") as store:
        data = build_digest_data(store, TZ, JAN, site_name="Snowy house",
                                 now=datetime(2026, 2, 1, 12, tzinfo=UTC))
    assert data.snow_days == (date(2026, 1, 10), date(2026, 1, 11))
    # the truth: every daylight hour (sun >= 10°) of those two days, all panels covered
    daylight = [local(d, h) for d in (10, 11) for h in range(24)
                if sun_elevation_deg(42.36, -71.06, local(d, h)) >= 10.0]
    assert all(site.snow_covered(i, t) for t in daylight for i in range(6))
    assert data.snow_hours_lost == len(daylight) and 10 <= len(daylight) <= 16
    text = render_text(data)
    assert (f"Lost to snow: {len(daylight)} daylight hours on 2 day(s) the whole array was "
            "under snow (10 Jan, 11 Jan); it clears by itself, no alert was sent") in text
    assert "Lost to snow" in render_html(data)


def test_no_snow_data_no_snow_line(tmp_path: Path) -> None:
    month_with_snow(tmp_path / "db.sqlite", snow_weather=False)
    with Store(tmp_path / "db.sqlite") as store:
        data = build_digest_data(store, TZ, JAN, site_name="Snowy house",
                                 now=datetime(2026, 2, 1, 12, tzinfo=UTC))
    assert data.snow_days == () and data.snow_hours_lost == 0.0
    assert "Lost to snow" not in render_text(data) + render_html(data)
