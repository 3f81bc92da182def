"""Config loading: every problem at once, with key paths and hints; secrets from env."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from solar_monitor.config import (
    ConfigError,
    config_from_dict,
    load_config,
    permission_warning,
)

from .conftest import REPO


def test_example_config_is_valid_and_complete():
    config = load_config(REPO / "config.example.yaml", env={})
    assert config.site.timezone == "America/New_York"
    assert config.pvs.url == "http://172.27.153.1"
    assert config.data_dir == "/var/lib/solar-monitor"


def test_minimal_config_gets_defaults(config_dict):
    config = config_from_dict(config_dict, env={})
    assert config.pvs.api == "auto" and config.pvs.username == "ssm_owner"
    assert config.pvs.poll_budget_s == 10.0
    assert config.csv.enabled is True
    assert config.archive.retention_days is None


def test_every_problem_is_reported_with_its_path():
    raw = {"site": {"latitude": "north", "longitud": 1, "timezone": "Mars/Base"},
           "pvs": {"url": "172.27.153.1", "api": "new", "verify_tls": "yes"},
           "csvv": {"enabled": True}}
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw, env={})
    problems = info.value.problems
    expected = [
        "At 'csvv': unknown key (did you mean 'csv'?)",
        "At 'site.longitud': unknown key (did you mean 'longitude'?)",
        "At 'site.latitude': 'north' must be a number",
        "At 'site.longitude': required",
        "At 'site.timezone': 'Mars/Base' is not an IANA time zone name",
        "At 'pvs.url': '172.27.153.1' must start with http:// or https://",
        "At 'pvs.api': 'new' is not one of auto, legacy, varserver",
        "At 'pvs.verify_tls': 'yes' must be true or false",
        "At 'data_dir': required",
    ]
    assert len(problems) == len(expected)
    for want in expected:
        assert any(p.startswith(want) for p in problems), (want, problems)


def test_secret_from_environment_and_missing_variable(config_dict):
    config_dict["pvs"]["password"] = "${PVS_PW}"
    config = config_from_dict(config_dict, env={"PVS_PW": "hunter22"})
    assert config.pvs.password == "hunter22"
    assert "hunter22" not in repr(config)
    assert config.secrets() == ["hunter22"]
    with pytest.raises(ConfigError) as info:
        config_from_dict(config_dict, env={})
    assert info.value.problems == ["At 'pvs.password': environment variable PVS_PW is not set "
                                   "(export it, or put the value in the file)"]


def test_bad_secret_value_is_not_echoed(config_dict):
    config_dict["pvs"]["password"] = ["hunter22"]
    with pytest.raises(ConfigError) as info:
        config_from_dict(config_dict, env={})
    assert "hunter22" not in str(info.value)


@pytest.mark.parametrize(("text", "message"), [
    ("site: [1, 2\n", "YAML syntax error at line 2"),
    ("- just\n- a list\n", "must be a YAML mapping"),
    ("", "must be a YAML mapping"),
])
def test_unreadable_files(tmp_path: Path, text, message):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert message in str(info.value)


def test_missing_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml", env={})


def test_permission_warning(tmp_path: Path):
    path = tmp_path / "config.yaml"
    path.write_text("x: 1\n")
    os.chmod(path, 0o644)
    assert "chmod 600" in (permission_warning(path) or "")
    os.chmod(path, 0o600)
    assert permission_warning(path) is None


def test_relative_data_dir_is_next_to_the_config(tmp_path: Path):
    path = tmp_path / "etc" / "config.yaml"
    path.parent.mkdir()
    path.write_text("site: {latitude: 1, longitude: 2, timezone: UTC}\n"
                    "pvs: {url: 'http://pvs'}\ndata_dir: data\n")
    assert load_config(path, env={}).data_dir == str(tmp_path / "etc" / "data")


def test_a_config_the_user_may_not_read_says_to_use_sudo(tmp_path: Path, config_dict: dict):
    """google-sheets.md's step 7 without sudo: 'Permission denied' now says what to do."""
    import os
    import shutil
    import subprocess
    import sys

    import yaml

    folder = tmp_path / "etc"
    folder.mkdir()
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config_dict))
    path.chmod(0o600)
    command = [sys.executable, "-m", "solar_monitor", "check", "--config", str(path)]
    if os.geteuid() == 0:  # root reads any file: run as nobody, as an owner's login would
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv to drop to another user")
        tmp_path.chmod(0o755)
        drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        if subprocess.run([*drop, sys.executable, "-c", "pass"], capture_output=True,
                          timeout=60).returncode != 0:  # e.g. a pyenv Python under /root
            pytest.skip("this Python cannot run as another user (its files are private)")
        command = [*drop, *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60,
                            cwd=tmp_path, env={**os.environ, "HOME": str(tmp_path)})
    assert result.returncode == 2, result.stderr
    assert (f"cannot read {path}: permission denied; run the command with sudo"
            in result.stderr)
    assert "Traceback" not in result.stderr



def test_every_commented_key_of_the_example_validates_once_uncommented():
    # what an owner does: remove the '# ' in front of an example line, keep the rest
    key_line = re.compile(r"^(\s*)# ?( *(?:- )?[A-Za-z_]\w*:(?:\s|$).*)$")
    lines = (REPO / "config.example.yaml").read_text(encoding="utf-8").splitlines()
    uncommented = [key_line.sub(r"\1\2", line) for line in lines]
    assert sum(a != b for a, b in zip(lines, uncommented, strict=True)) > 40
    raw = yaml.safe_load("\n".join(uncommented))
    env = {"PVS_PASSWORD": "x", "GMAIL_APP_PASSWORD": "y", "MQTT_PASSWORD": "z"}
    config = config_from_dict(raw, env=env)
    assert config.google_sheets is not None and config.heartbeat is not None
    assert config.exports.mqtt is not None and config.exports.prometheus is not None
    assert config.inverters and config.pvs.serial and len(config.notify.targets) == 2
    assert set(config.alerts.rules) >= {"inverter_offline", "pi_hot", "production_low"}
