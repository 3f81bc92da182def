"""The owner's typos that would silently switch alerts off: each with its exact mistake.

A west longitude written positive, a time zone with a wrong capital, a site whose sun is
down while the inverters produce. `check` fails on the first two with a one-line fix;
`run` warns once (log and e-mail) on the third.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from solar_monitor.archive import ArchivedPoll
from solar_monitor.check import check_site
from solar_monitor.cli import main
from solar_monitor.config import ConfigError, config_from_dict, timezone_suggestions
from solar_monitor.context import RunContext
from solar_monitor.emulation.emulator import start_emulator
from solar_monitor.pipeline import open_store
from solar_monitor.pvs.parse import parse
from solar_monitor.site_sanity import NIGHT_STATE_KEY, longitude_problem, night_production_stage

from .conftest import real
from .test_cli import run_cli, write_config

SAN_FRANCISCO = {"latitude": 37.77, "longitude": -122.42, "timezone": "America/Los_Angeles"}


def test_check_fails_on_a_west_longitude_written_positive(tmp_path: Path, config_dict: dict,
                                                          capsys: pytest.CaptureFixture) -> None:
    config_dict["site"] = {**SAN_FRANCISCO, "longitude": 122.42}
    with start_emulator(firmware="varserver") as emu:
        config_dict["pvs"]["url"] = emu.url
        assert main(["check", "--config", str(write_config(tmp_path, config_dict))]) == 1
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("FAIL")]
    assert lines == ["FAIL site: site.longitude: longitude 122.42 is east of Greenwich, but "
                     "America/Los_Angeles (UTC-8) is west of it: west longitudes are "
                     "negative: did you mean -122.42?"]


def test_check_passes_the_right_site_and_says_which_setup(tmp_path: Path, config_dict: dict,
                                                          capsys: pytest.CaptureFixture) -> None:
    config_dict["site"] = SAN_FRANCISCO
    with start_emulator(firmware="varserver") as emu:
        config_dict["pvs"]["url"] = emu.url
        assert main(["check", "--config", str(write_config(tmp_path, config_dict))]) == 0
    out = capsys.readouterr().out
    assert ("PASS site: latitude 37.77, longitude -122.42 agree with America/Los_Angeles "
            "(UTC-8)") in out
    assert "LocalAPI firmware: it should also answer on its home-network address" in out


def test_check_says_legacy_firmware_keeps_the_pi_on_lan1(tmp_path: Path, config_dict: dict,
                                                         capsys: pytest.CaptureFixture) -> None:
    with start_emulator(firmware="legacy") as emu:
        config_dict["pvs"]["url"] = emu.url
        assert main(["check", "--config", str(write_config(tmp_path, config_dict))]) == 0
    assert "legacy firmware: it answers only on its LAN1 port" in capsys.readouterr().out


def test_a_time_zone_typo_is_a_config_error_with_the_near_name(tmp_path: Path,
                                                               config_dict: dict) -> None:
    config_dict["site"]["timezone"] = "America/New_york"
    result = run_cli("check", "--config", str(write_config(tmp_path, config_dict)))
    assert result.returncode == 2
    problems = [line for line in result.stderr.splitlines() if line.strip().startswith("-")]
    assert problems == ["  - At 'site.timezone': 'America/New_york' is not an IANA time zone "
                        "name; did you mean 'America/New_York'? (an IANA zone such as "
                        "America/New_York)"]


def test_time_zone_suggestions() -> None:
    assert timezone_suggestions("america/los_angeles") == ["America/Los_Angeles"]
    assert "America/Chicago" in timezone_suggestions("America/Chicgo")
    assert timezone_suggestions("Nowhere/Atall") == []
    # a city that is no zone name gets no far-away look-alike (Moncton, Creston, Boise)
    assert timezone_suggestions("America/Cleveland") == []
    with pytest.raises(ConfigError, match="did you mean 'Europe/London'"):
        config_from_dict({"site": {"latitude": 51.5, "longitude": -0.12,
                                   "timezone": "Europe/Londn"},
                          "pvs": {"url": "http://127.0.0.1"}, "data_dir": "/tmp/x"}, env={})


@pytest.mark.parametrize(("written", "meant"), [
    ("PST", "America/Los_Angeles"), ("America/San_Francisco", "America/Los_Angeles"),
    ("Pacific", "America/Los_Angeles"), ("CDT", "America/Chicago"),
    ("america/boston", "America/New_York"),
])
def test_an_owners_name_for_a_us_zone_suggests_its_iana_name(written: str, meant: str) -> None:
    # difflib alone offered 'MST' for 'PST' and 'America/Rosario' for 'America/San_Francisco'
    assert timezone_suggestions(written) == [meant]


def test_check_warns_on_a_zone_without_summer_time(tmp_path: Path, config_dict: dict) -> None:
    config_dict["site"] = {**SAN_FRANCISCO, "longitude": -71.06, "timezone": "EST"}
    result = check_site(config_from_dict(config_dict, env={}))
    assert result.status == "WARN"
    assert "EST never changes for summer time: if your clocks do, use America/New_York" in \
        result.detail
    config_dict["site"]["timezone"] = "America/New_York"
    assert check_site(config_from_dict(config_dict, env={})).status == "PASS"


WINTER = datetime(2026, 1, 15, tzinfo=UTC)


@pytest.mark.parametrize(("longitude", "zone"), [
    (-122.42, "America/Los_Angeles"), (-71.06, "America/New_York"),
    (-157.86, "Pacific/Honolulu"), (151.21, "Australia/Sydney"), (-3.70, "Europe/Madrid"),
    (-0.12, "Europe/London"), (75.99, "Asia/Shanghai"),  # Kashgar on Beijing time
    (-171.76, "Pacific/Apia"), (-157.47, "Pacific/Kiritimati"),
    (-68.3, "America/Argentina/Ushuaia"),
])
def test_real_places_pass(longitude: float, zone: str) -> None:
    assert longitude_problem(longitude, zone, WINTER) is None


@pytest.mark.parametrize(("longitude", "zone", "fix"), [
    (122.42, "America/Los_Angeles", "west longitudes are negative: did you mean -122.42?"),
    (71.06, "America/New_York", "did you mean -71.06?"),
    (157.86, "Pacific/Honolulu", "did you mean -157.86?"),
    (-151.21, "Australia/Sydney", "east longitudes are positive: did you mean 151.21?"),
    (-71.06, "America/Los_Angeles", "3.3 h of sun away from America/Los_Angeles (UTC-8)"),
])
def test_contradictions_fail_with_the_fix(longitude: float, zone: str, fix: str) -> None:
    problem = longitude_problem(longitude, zone, WINTER)
    assert problem is not None and fix in problem and "\n" not in problem


def test_check_site_line(config_dict: dict) -> None:
    config_dict["site"] = {**SAN_FRANCISCO, "longitude": 122.42}
    result = check_site(config_from_dict(config_dict, env={}))
    assert result.status == "FAIL" and "did you mean -122.42?" in result.detail


# --- run: inverters producing while the computed sun is down ------------------------------

CAPTURE = real("dl_cgi_61839_30")  # 8.09 kW from 30 inverters at 2025-07-20 18:03 UTC


def _poll(ctx_config, store, at: datetime) -> RunContext:
    snapshot = parse(CAPTURE.read_bytes(), polled_at=at)
    return RunContext(config=ctx_config, store=store, now=at, snapshot=snapshot,
                      poll=ArchivedPoll(CAPTURE, at, failed=False))


def _notifications(store) -> list[tuple[str, str]]:
    return list(store.db.execute("SELECT title, body FROM notifications"))


def test_run_warns_once_when_the_sun_is_down_at_noon(config_dict: dict,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    # San Francisco's noon with the longitude's sign lost: the computed sun is 34° down.
    config_dict["site"] = {**SAN_FRANCISCO, "longitude": 122.42, "name": "Home"}
    wrong = config_from_dict(config_dict, env={})
    noon = datetime(2025, 7, 20, 19, 0, tzinfo=UTC)
    with open_store(wrong) as store, caplog.at_level(logging.ERROR):
        for i in range(8):  # two hours of polls: one warning
            night_production_stage(_poll(wrong, store, noon + timedelta(minutes=15 * i)))
        sent = _notifications(store)
        assert len(sent) == 1
        title, body = sent[0]
        assert title == "Home: the site's position is wrong"
        assert "below the horizon" in body and "did you mean -122.42?" in body
        assert "until it is fixed. Longitude 122.42 is east of Greenwich" in body
        assert "https://github.com/solar-monitor/solar-monitor/blob/main/docs/" \
               "raspberry-pi.md#6-edit-the-configuration" in body
        assert sum("site is wrong" in r.message for r in caplog.records) == 1

        # fixed: no more warnings, and the old memory does not hold a new mistake back
        right = config_from_dict({**config_dict, "site": {**SAN_FRANCISCO}}, env={})
        for i in range(4):
            night_production_stage(_poll(right, store, noon + timedelta(days=1, minutes=15 * i)))
        assert len(_notifications(store)) == 1
        other = config_from_dict({**config_dict, "site": {**SAN_FRANCISCO, "latitude": -37.77}},
                                 env={})
        for hours in (0, 1):  # the southern winter's sun is down at 04:00 UTC too
            night_production_stage(_poll(other, store, noon + timedelta(days=2, hours=9 + hours)))
        assert len(_notifications(store)) == 2


def test_one_odd_reading_is_not_a_wrong_site(config_dict: dict) -> None:
    config_dict["site"] = SAN_FRANCISCO
    config = config_from_dict(config_dict, env={})
    night = datetime(2025, 7, 20, 9, 0, tzinfo=UTC)  # 02:00 in San Francisco
    with open_store(config) as store:
        night_production_stage(_poll(config, store, night))
        assert _notifications(store) == []
        assert store.get_state(NIGHT_STATE_KEY) is not None  # the streak is remembered
        day = datetime(2025, 7, 20, 19, 0, tzinfo=UTC)
        night_production_stage(_poll(config, store, day))  # the right site at noon: quiet
        night_production_stage(_poll(config, store, night + timedelta(days=1)))
        assert _notifications(store) == []


def test_where_pvs_url_points_and_what_the_firmware_allows() -> None:
    from solar_monitor.check import _setup, _where

    assert _where("http://172.27.153.1") == "lan1"
    assert _where("https://127.0.0.1:8443") == "local" and _where("http://[::1]") == "local"
    assert _where("http://192.168.1.60") == "home" and _where("http://pvs.lan") == "home"
    assert _setup("legacy", "lan1").startswith("legacy firmware: it answers only on its LAN1")
    assert "home-network address answers" in _setup("varserver", "home")
    assert "inferred" in _setup("varserver", "lan1")
