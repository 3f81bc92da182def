"""The digest's quiet line for unreliable communication (issue 19): an inverter that
drops out for a poll or three every hour for a week is one line ("14 % of daylight
polls missing"), never an alert; everyday dropouts stay under the line's threshold."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from solar_monitor.digest import build_digest_data, render_html, render_text
from solar_monitor.digest.render import attention
from solar_monitor.emulation.sim import FlappingInverter, SimulatedSite, SiteSpec
from solar_monitor.pvs.parse import parse
from solar_monitor.store import Store
from solar_monitor.sun import sun_elevation_deg
from tests.test_digest import TZ

JUNE = date(2026, 6, 1)
START = datetime(2026, 6, 1, 4, tzinfo=UTC)  # local midnight (EDT)
STEP = timedelta(minutes=15)
DAYS = 14


def test_a_week_of_dropouts_is_one_quiet_line(tmp_path: Path) -> None:
    flap = FlappingInverter(inverter=2, start=START + timedelta(days=3),
                            end=START + timedelta(days=10))
    site = SimulatedSite(SiteSpec(latitude=42.36, longitude=-71.06,
                                  timezone="America/New_York", inverter_count=6, seed=5,
                                  epoch=datetime(2026, 5, 20, tzinfo=UTC), stale_values=True,
                                  faults=(flap,)))
    flapping = site.inverter_serials[2]
    with Store(tmp_path / "db.sqlite") as store:
        with store.transaction():
            t = START
            while t < START + timedelta(days=DAYS):
                el = sun_elevation_deg(42.36, -71.06, t)
                if el >= 15.0 or t.minute == 0:  # the nights thinned: hourly
                    body = json.dumps({"values": [{"name": k, "value": v} for k, v in
                                                  site.vars(t).items()]}).encode()
                    poll_id = store.record_snapshot(t, parse(body, polled_at=t), None)
                    assert poll_id is not None
                    store.enrich_poll(poll_id, {"sun_elevation_deg": el})
                t += STEP
        data = build_digest_data(store, TZ, JUNE, site_name="House",
                                 now=START + timedelta(days=DAYS))
    assert [serial for serial, _ in data.report_gaps] == [flapping]
    pct = data.report_gaps[0][1]
    assert 8.0 <= pct <= 35.0  # a week of 1-3 polls an hour out of 4, in two weeks
    line = f"Inverter {flapping}: {pct:.0f} % of daylight polls missing"
    assert line in render_text(data) and line in render_html(data)
    assert not any(flapping in item for item in attention(data))  # quiet: no attention item
