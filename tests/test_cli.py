"""The command line as a user meets it: exit codes and one-line messages, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from solar_monitor.cli import main
from solar_monitor.emulation.emulator import start_emulator

from .conftest import all_real, real


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real console entry point in a subprocess, as cron would run it."""
    return subprocess.run([sys.executable, "-m", "solar_monitor", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})


def write_config(tmp_path: Path, config_dict: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config_dict))
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("path", all_real(), ids=lambda p: p.name[:50])
def test_parse_prints_every_real_fixture(path: Path, capsys):
    assert main(["parse", str(path)]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("polled_at", "firmware", "api", "supervisor", "meters", "inverters", "other",
                "totals"):
        assert key in out
    assert set(out["totals"]) >= {"production_kw", "consumption_kw", "net_grid_kw",
                                  "inverters_total", "inverters_producing"}


def test_parse_values_of_the_30_inverter_capture(capsys):
    assert main(["parse", str(real("dl_cgi_61839_30"))]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["totals"]["production_kw"] == pytest.approx(8.0855)
    assert out["totals"]["inverters_total"] == 30
    assert out["polled_at"] == "2025-07-20T18:03:33Z"
    assert out["firmware"] == "2025.06, Build 61839" and out["api"] == "legacy"


def test_parse_gzip_and_bad_files(tmp_path: Path):
    import gzip

    good = tmp_path / "20250720T180333Z.json.gz"
    good.write_bytes(gzip.compress(real("dl_cgi_61839_30").read_bytes()))
    result = run_cli("parse", str(good))
    assert result.returncode == 0
    assert json.loads(result.stdout)["totals"]["inverters_total"] == 30

    for name, content in [("empty.json", b""), ("cut.json", b'{"devices": [{"A": "'),
                          ("page.json", b"<html><title>Oops</title></html>")]:
        bad = tmp_path / name
        bad.write_bytes(content)
        result = run_cli("parse", str(bad))
        assert result.returncode == 1
        assert result.stdout == ""
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr
    missing = run_cli("parse", str(tmp_path / "nope.json"))
    assert missing.returncode == 1 and "No such file" in missing.stderr


def test_run_exit_codes(tmp_path: Path, config_dict: dict):
    with start_emulator(firmware="auth") as emu:
        config_dict["pvs"]["url"] = emu.url
        path = write_config(tmp_path, config_dict)
        ok = run_cli("run", "--config", str(path))
        assert ok.returncode == 0, ok.stderr
        assert "poll stored" in ok.stderr
        env_ok = run_cli("run", env={"SOLAR_MONITOR_CONFIG": str(path)})
        assert env_ok.returncode == 0, env_ok.stderr
    config_dict["pvs"]["url"] = "http://127.0.0.1:9"
    config_dict["pvs"]["poll_budget_s"] = 2
    failed = run_cli("run", "--config", str(write_config(tmp_path, config_dict)))
    assert failed.returncode == 1
    assert "poll failed: cannot reach the PVS" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert len(list(Path(config_dict["data_dir"]).rglob("*.error.json"))) == 1


def test_broken_config_names_the_key(tmp_path: Path):
    path = tmp_path / "config.yaml"
    path.write_text("site:\n  latitude: 91\npvs:\n  url: nope\n  pasword: x\n")
    result = run_cli("run", "--config", str(path))
    assert result.returncode == 2
    assert "At 'site.latitude': 91.0 must be between -90 and 90" in result.stderr
    assert "At 'pvs.pasword': unknown key (did you mean 'password'?)" in result.stderr
    assert "At 'data_dir': required" in result.stderr
    assert "Traceback" not in result.stderr


def test_world_readable_config_warns(tmp_path: Path, config_dict: dict):
    config_dict["pvs"]["poll_budget_s"] = 1
    path = write_config(tmp_path, config_dict)
    path.chmod(0o644)
    result = run_cli("run", "--config", str(path))
    assert f"run: chmod 600 {path}" in result.stderr


def test_no_config_at_all(tmp_path: Path):
    result = subprocess.run([sys.executable, "-m", "solar_monitor", "run"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60,
                            env={k: v for k, v in os.environ.items()
                                 if k != "SOLAR_MONITOR_CONFIG"})
    assert result.returncode == 2
    assert "pass --config PATH or set SOLAR_MONITOR_CONFIG" in result.stderr


def test_check_reports_each_part(tmp_path: Path, config_dict: dict):
    with start_emulator(firmware="varserver") as emu:
        config_dict["pvs"]["url"] = emu.url
        result = run_cli("check", "--config", str(write_config(tmp_path, config_dict)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS config: valid" in result.stdout
    assert "PASS pvs:" in result.stdout and "varserver API" in result.stdout
    config_dict["pvs"]["url"] = "http://127.0.0.1:9"
    config_dict["pvs"]["poll_budget_s"] = 2
    bad = run_cli("check", "--config", str(write_config(tmp_path, config_dict)))
    assert bad.returncode == 1 and "FAIL pvs: cannot reach the PVS" in bad.stdout


def test_emulator_rejects_a_bad_fault():
    result = run_cli("emulator", "--port", "0", "--fault", "explode")
    assert result.returncode == 2 and "bad fault 'explode'" in result.stderr
