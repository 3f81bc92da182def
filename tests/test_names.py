"""Inverters named as the owner knows them: one form in alerts, the digest, the sheet and
`check` (names.inverter_label), from the config's optional `inverters:` map."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from solar_monitor.check import run_checks
from solar_monitor.config import ConfigError, config_from_dict
from solar_monitor.names import inverter_label, label_tail, short_serial
from solar_monitor.rules.catalog import RULES
from solar_monitor.rules.engine import Engine
from solar_monitor.store import Store

from .test_rules import NOON, SERIALS, feed, warm

SERIAL = "E00122142045868"


def test_the_label_or_the_short_form() -> None:
    assert short_serial(SERIAL) == "…45868"
    assert inverter_label(SERIAL) == "…45868"
    assert inverter_label(SERIAL, {}) == "…45868"
    assert inverter_label(SERIAL, {SERIAL: "south roof, row 2, #3"}) == \
        "south roof, row 2, #3 (…45868)"
    for text in ("…45868", "south roof, row 2, #3 (…45868) kWh", "Inv 5 …45868 kWh"):
        assert label_tail(text) == "45868"
    assert label_tail("Production kWh") is None


def test_names_are_validated(config_dict: dict) -> None:
    config = config_from_dict({**config_dict, "inverters": {SERIAL: "south roof"}}, env={})
    assert config.inverters == {SERIAL: "south roof"}
    for names, problem in [
        ({SERIAL: "south", "E001": "South"}, "the same label 'South'"),
        ({SERIAL: ""}, "empty serial or label"),
        ({SERIAL: "x" * 61}, "at most 60 characters"),
        ({SERIAL: "two\nlines"}, "one line"),
        (["south"], "must be a section"),
    ]:
        with pytest.raises(ConfigError, match=problem):
            config_from_dict({**config_dict, "inverters": names}, env={})


def test_a_dead_inverter_alert_names_the_panel_and_what_an_installer_needs(
        store: Store, config_dict: dict) -> None:
    config = config_from_dict({**config_dict, "site": {**config_dict["site"], "name": "Home"},
                               "inverters": {SERIALS[2]: "south roof, row 2, #3"}}, env={})
    engine = Engine(store, config)
    warm(engine)
    start = NOON - timedelta(hours=3)
    opened = [e for e in feed(engine, start, start + timedelta(hours=2), dead=(SERIALS[2],))
              if e.event == "open"]
    assert len(opened) == 1
    message = opened[0].message
    assert message.startswith("Inverter south roof, row 2, #3 (…00002) has produced nothing")
    assert f"its serial {SERIALS[2]}" in message and "warranty" in message
    assert "Look at that panel" in message and "digest" in message
    title = store.db.execute("SELECT title FROM notifications").fetchone()[0]
    assert title == "Home: Inverter offline (inverter south roof, row 2, #3 (…00002))"


def test_no_advice_sends_the_owner_to_a_paywalled_app() -> None:
    for rule in RULES:
        assert "app" not in f"{rule.message} {rule.advice}".lower().split(), rule.id


def test_check_lists_the_serials_and_warns_about_a_name_for_none(
        tmp_path: Path, config_dict: dict, capsys: pytest.CaptureFixture) -> None:
    from solar_monitor.emulation.emulator import start_emulator

    with start_emulator(firmware="legacy") as emu:
        config_dict["pvs"]["url"] = emu.url
        serials = emu.site.inverter_serials
        config_dict["inverters"] = {"E00199999999999": "garage"}
        assert run_checks(config_from_dict(config_dict, env={})) is True  # a warning only
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("WARN inverters:"))
    assert "no inverter has serial E00199999999999 (a typo, or a replaced one?)" in line
    assert serials and all(f"{s} …{s[-5:]}" in line for s in serials)
