"""A short backtest through the real CLI: simulated weeks with faults injected at known
times, replayed with `--events-out`, scored like benchmarks/bench_alerts.py scores a year.

Every injected fault must open its alert, in time, and nothing else may open.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from solar_monitor.emulation.sim import RoofFace

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_alerts.py"


def _bench():  # benchmarks/ is not a package: load the module from its file
    spec = importlib.util.spec_from_file_location("bench_alerts", BENCH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_alerts"] = module
    spec.loader.exec_module(module)
    return module


def test_short_backtest_detects_every_fault_without_false_alarms(tmp_path: Path) -> None:
    bench = _bench()
    site = bench.build_site("test-site", seed=7, latitude=42.36, longitude=-71.06,
                            timezone="America/New_York", days=16,
                            faces=(RoofFace(180.0, 25.0, 6), RoofFace(250.0, 25.0, 6)))
    rules = {f.rule for f in site.faults}
    assert {"inverter_offline", "inverter_missing", "inverter_underperforming",
            "pvs_unreachable", "data_stale", "grid_out_of_range", "pvs_rebooted"} <= rules
    result = bench.replay_site(site, 16, tmp_path)
    by_rule = {}
    for fault in result["faults"]:
        assert fault["detected"], f"missed {fault['rule']} at {fault['start']}"
        by_rule.setdefault(fault["rule"], []).append(fault["latency_h"])
    assert result["false_alarms"] == []
    assert max(by_rule["inverter_offline"]) <= 1.0  # within an hour of daylight
    assert max(by_rule["pvs_unreachable"]) <= 1.0
    assert max(by_rule["inverter_underperforming"]) <= 72.0


def test_short_snowy_backtest_no_false_alarm_and_the_fault_under_snow_caught(
        tmp_path: Path) -> None:
    """Two snowfalls in January (rows clearing on different days, the whole array buried
    a day with its meter at 0, snow depth in an Open-Meteo style CSV) and an inverter
    dying at dusk just before the second: no false alarm, and the dead one is caught
    within a daylight hour of the snow leaving the weather data."""
    bench = _bench()
    site = bench.build_snowy_site("test-snowy", seed=13, days=26)
    assert [f.rule for f in site.faults] == ["inverter_offline"]
    assert sum(1 for f in site.spec.faults if type(f).__name__ == "SnowCover") == 2
    result = bench.replay_site(site, 26, tmp_path)
    assert result["false_alarms"] == []
    (fault,) = result["faults"]
    assert fault["detected"] and fault["after_snow_h"] is not None
    assert 0 <= fault["after_snow_h"] <= 1.0
    weather = (tmp_path / "test-snowy" / "test-snowy-weather.csv").read_text().splitlines()
    assert weather[3] == "time,cloud_cover (%),snow_depth (m),snowfall (cm)"


def test_issue19_sites_window_keeps_the_firmware_update_in_effect() -> None:
    from datetime import UTC, datetime

    bench = _bench()
    names = ["fw-switch-18", "dropouts-12", "no-meters-10"]
    for s in bench.choose(365, names):
        assert s.faults and s.traps  # every site lists its faults and traps
        assert all(f.what for f in s.faults)
    start = datetime(2025, 5, 8, tzinfo=UTC)
    (site,) = bench.choose(6, ["fw-switch-18"], start)
    assert [f.rule for f in site.faults] == ["inverter_offline"]
    assert [f.rule for f in site.earlier] == ["firmware_changed"]  # ended ones dropped
    sim = bench.SimulatedSite(site.spec)
    answer = bench.render(sim, site, start + bench.timedelta(days=2, hours=20))
    assert any(k.startswith("/sys/devices/inverter/") for k in answer)  # varserver /vars
    assert "`inverter_offline` or `inverter_missing`" in bench.describe(site)
