"""Broken configs and the exact text `solar-monitor check` prints for each (exit 2).

Why exact text: the message is the product here. An owner reads it over SSH and must see
the key and the fix; a wording change has to be a reviewed change to NAME.expected.

To regenerate after a deliberate wording change (a human decision, never in CI):
    SOLAR_MONITOR_REGEN=1 .venv/bin/python -m pytest -p no:cacheprovider \\
        tests/faults/test_config_corpus.py
then read the diff of tests/faults/configs/*.expected before committing it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from solar_monitor.cli import Exit, main

from ..conftest import REPO
from .fuzzing import tried

CORPUS = Path(__file__).resolve().parent / "configs"
CASES = sorted(p.stem for p in CORPUS.glob("*.yaml"))
REGEN = os.environ.get("SOLAR_MONITOR_REGEN") == "1"
PLACEHOLDER = "<CORPUS>"
UNSET = "SOLAR_MONITOR_CORPUS_UNSET"  # referenced by env_variable_unset.yaml


def _deterministic(text: str) -> str:
    return text.replace(str(CORPUS), PLACEHOLDER)


def _compare(name: str, stderr: str) -> None:
    expected = CORPUS / f"{name}.expected"
    actual = _deterministic(stderr)
    if REGEN:
        expected.write_text(actual, encoding="utf-8")
        return
    assert expected.exists(), f"no {expected.name}: run with SOLAR_MONITOR_REGEN=1, review"
    assert actual == expected.read_text(encoding="utf-8")


def test_the_corpus_is_big_enough_and_complete() -> None:
    assert len(CASES) >= 25
    orphans = {p.stem for p in CORPUS.glob("*.expected")} - set(CASES)
    assert not orphans, f"expected output without a config: {orphans}"


@pytest.mark.parametrize("name", CASES)
def test_broken_config(name: str, capsys: pytest.CaptureFixture[str],
                       monkeypatch: pytest.MonkeyPatch) -> None:
    tried()
    monkeypatch.delenv(UNSET, raising=False)
    code = main(["check", "--config", str(CORPUS / f"{name}.yaml")])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    assert code == Exit.CONFIG and out == ""
    assert err.startswith(f"solar-monitor: config error in {CORPUS / name}.yaml: ")
    _compare(name, err)


@pytest.mark.parametrize("name", ["typo_in_key", "billion_laughs", "latin1_text"])
def test_broken_config_through_the_console_script(name: str) -> None:
    """The same text from a fresh process (the entry point cron and systemd really run)."""
    if REGEN:
        pytest.skip("regenerating")
    env = {k: v for k, v in os.environ.items() if k != UNSET}
    done = subprocess.run(
        [sys.executable, "-m", "solar_monitor", "check", "--config",
         str(CORPUS / f"{name}.yaml")],
        capture_output=True, text=True, timeout=60, cwd=REPO, env=env)
    assert done.returncode == Exit.CONFIG and done.stdout == ""
    assert _deterministic(done.stderr) == (CORPUS / f"{name}.expected").read_text("utf-8")
