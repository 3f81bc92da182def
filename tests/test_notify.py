"""Notifications through apprise to a real SMTP server (aiosmtpd) on loopback, and the outbox."""

from __future__ import annotations

import json
import logging
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope

from solar_monitor.cli import main
from solar_monitor.config import Config, config_from_dict
from solar_monitor.notify import (
    check_targets,
    flush_notifications,
    pending_count,
    queue_notification,
    send,
    validate_target,
)
from solar_monitor.store import Store

USER = "pi-sender"
PASSWORD = "Sup3r#S3cret@pw"  # needs %-encoding in a URL: also tests that
URL_PASSWORD = "Sup3r%23S3cret%40pw"
NOW = datetime(2025, 6, 21, 18, 0, tzinfo=UTC)
# aiosmtpd logs each session's EOF at INFO from its own thread, sometimes after pytest
# has closed the stream it captured: "--- Logging error ---" noise in CI, never a finding
logging.getLogger("mail.log").setLevel(logging.WARNING)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    """A real SMTP server on 127.0.0.1 that needs a login and keeps what it receives."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.envelopes: list[Envelope] = []
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port,
                                     authenticator=self._auth, auth_require_tls=False)

    async def handle_DATA(self, server: object, session: object, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 OK"

    @staticmethod
    def _auth(server: object, session: object, envelope: object, mechanism: str,
              data: object) -> AuthResult:
        ok = getattr(data, "login", None) == USER.encode() and \
            getattr(data, "password", None) == PASSWORD.encode()
        return AuthResult(success=ok)

    @property
    def messages(self) -> list[EmailMessage]:
        return [message_from_bytes(e.content, policy=policy.default)  # type: ignore[misc]
                for e in self.envelopes]

    def url(self, to: str = "owner@example.com", password: str = URL_PASSWORD) -> str:
        return (f"mailto://{USER}:{password}@127.0.0.1:{self.port}"
                f"?from=pi@example.com&to={to}&cto=3&rto=3")

    def __enter__(self) -> Inbox:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    with Inbox() as box:
        yield box


def make_config(config_dict: dict, *targets: dict, **notify: object) -> Config:
    return config_from_dict({**config_dict, "notify": {"targets": list(targets), **notify}},
                            env={})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "data" / "solar-monitor.db") as s:
        yield s


# --- send ----------------------------------------------------------------------------------

def test_a_text_message_arrives_with_subject_and_body(inbox: Inbox, config_dict: dict) -> None:
    config = make_config(config_dict, {"url": inbox.url(), "tags": ["alerts"]})
    result = send(config, title="Inverter E00122 stopped", body="No output since 10:15.",
                  tags=["alerts"], level="warning")
    assert result.ok and result.error is None
    assert [r.ok for r in result.targets] == [True]
    (msg,) = inbox.messages
    assert msg["Subject"] == "Inverter E00122 stopped"
    assert msg["To"] == "owner@example.com"
    assert msg.get_body(("plain",)).get_content().strip() == "No output since 10:15."
    assert PASSWORD not in result.targets[0].target and URL_PASSWORD not in result.targets[0].target


def test_html_text_and_attachment_arrive_as_one_multipart_email(
        inbox: Inbox, config_dict: dict, tmp_path: Path) -> None:
    config = make_config(config_dict, {"url": inbox.url(), "tags": ["digest"]})
    csv = tmp_path / "2025-06.csv"
    csv.write_text("date,kwh\n2025-06-01,31.2\n", encoding="utf-8")
    result = send(config, title="June digest", tags=["digest"], body_format="html",
                  body="<h1>June</h1><p>Production <b>912 kWh</b></p>",
                  text_alternative="June\nProduction 912 kWh (our own text part)",
                  attachments=[csv])
    assert result.ok, result.error
    (msg,) = inbox.messages
    assert msg.get_content_type() == "multipart/mixed"
    types = [part.get_content_type() for part in msg.walk()]
    assert types == ["multipart/mixed", "multipart/alternative", "text/plain", "text/html",
                     "text/csv"]
    assert msg.get_body(("plain",)).get_content().splitlines() == \
        ["June", "Production 912 kWh (our own text part)"]  # ours, not converted from HTML
    assert "<b>912 kWh</b>" in msg.get_body(("html",)).get_content()
    (attachment,) = msg.iter_attachments()
    assert attachment.get_filename() == "2025-06.csv"
    assert attachment.get_content() == "date,kwh\n2025-06-01,31.2\n"


def test_html_without_text_alternative_gets_apprises_converted_text(
        inbox: Inbox, config_dict: dict) -> None:
    config = make_config(config_dict, {"url": inbox.url()})
    assert send(config, title="t", body="<p>Hello <b>world</b></p>", body_format="html").ok
    assert inbox.messages[0].get_body(("plain",)).get_content().strip() == "Hello world"


def test_tags_route_alerts_and_digest(inbox: Inbox, config_dict: dict) -> None:
    config = make_config(config_dict,
                         {"url": inbox.url("alerts@example.com"), "tags": ["alerts"]},
                         {"url": inbox.url("digest@example.com"), "tags": "digest"},
                         {"url": inbox.url("all@example.com")})
    assert send(config, title="a", body="alert", tags=["alerts"]).ok
    assert send(config, title="d", body="digest", tags=["digest"]).ok
    got = sorted((m["Subject"], m["To"]) for m in inbox.messages)
    assert got == [("a", "alerts@example.com"), ("a", "all@example.com"),
                   ("d", "all@example.com"), ("d", "digest@example.com")]


def test_no_matching_target_is_a_result_not_an_exception(config_dict: dict) -> None:
    result = send(make_config(config_dict), title="t", body="b", tags=["alerts"])
    assert not result.ok and "notify.targets" in (result.error or "")


def test_failures_are_one_redacted_line_and_never_raise(
        inbox: Inbox, config_dict: dict, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    down = Inbox()  # never started: connection refused
    config = make_config(config_dict, {"url": down.url()},
                         {"url": inbox.url(password="Wr0ng%40pw")},
                         {"url": f"mailto://{USER}:{URL_PASSWORD}@"})
    result = send(config, title="t", body="b")
    assert not result.ok and not inbox.envelopes
    assert [r.ok for r in result.targets] == [False, False, False]
    for r in result.targets:
        assert r.error and "\n" not in r.error
    shown = repr(result) + caplog.text + "".join(capsys.readouterr())
    for secret in (PASSWORD, URL_PASSWORD, "Wr0ng%40pw", "Wr0ng@pw"):
        assert secret not in shown


def test_check_validates_urls_without_sending(inbox: Inbox, config_dict: dict) -> None:
    config = make_config(config_dict, {"url": inbox.url(), "tags": ["alerts"]},
                         {"url": f"nosuchservice://{USER}:{URL_PASSWORD}@host",
                          "tags": ["alerts"]})
    ok, detail = check_targets(config)
    assert ok is False
    assert "#1 mailto://" in detail and "valid" in detail
    assert "notify.targets[1].url" in detail
    assert "no target has tag digest" in detail
    assert PASSWORD not in detail and URL_PASSWORD not in detail
    assert not inbox.envelopes
    assert validate_target(config.notify.targets[0]).ok
    assert check_targets(make_config(config_dict))[0] is None


# --- the outbox ----------------------------------------------------------------------------

def test_a_down_server_leaves_the_message_queued_then_it_arrives_once(
        config_dict: dict, store: Store, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    box = Inbox()
    config = make_config(config_dict, {"url": box.url(), "tags": ["digest"]})
    csv = tmp_path / "june.csv"
    csv.write_text("a,b\n1,2\n", encoding="utf-8")
    queue_notification(store, title="June digest", body="<p>June</p>", tags=["digest"],
                       body_format="html", text_alternative="June", attachments=[csv], now=NOW)
    csv.unlink()  # the outbox keeps its own copy
    assert flush_notifications(config, store, NOW) == (0, 1)
    assert pending_count(store) == 1
    row = store.db.execute("SELECT attempts, last_error FROM notifications").fetchone()
    assert row["attempts"] == 1 and "127.0.0.1" in row["last_error"]
    assert PASSWORD not in caplog.text and URL_PASSWORD not in caplog.text
    with box:
        assert flush_notifications(config, store, NOW + timedelta(minutes=15)) == (1, 0)
        assert flush_notifications(config, store, NOW + timedelta(minutes=30)) == (0, 0)
    (msg,) = box.messages
    assert msg["Subject"] == "June digest"
    assert [a.get_filename() for a in msg.iter_attachments()] == ["june.csv"]
    assert pending_count(store) == 0
    assert not any((store.path.parent / "outbox").iterdir())  # the copy is cleaned up


def test_a_target_that_already_has_it_never_gets_it_twice(
        inbox: Inbox, config_dict: dict, store: Store) -> None:
    down = Inbox()
    config = make_config(config_dict, {"url": inbox.url("a@example.com")},
                         {"url": down.url("b@example.com")})
    queue_notification(store, title="first", body="1", now=NOW)
    queue_notification(store, title="second", body="2", now=NOW)
    assert flush_notifications(config, store, NOW) == (0, 2)
    assert [m["Subject"] for m in inbox.messages] == ["first", "second"]
    with down:
        assert flush_notifications(config, store, NOW + timedelta(minutes=15)) == (2, 0)
    assert [m["Subject"] for m in inbox.messages] == ["first", "second"]
    assert [m["Subject"] for m in down.messages] == ["first", "second"]  # in order


def test_flush_is_bounded_per_run_and_gives_up_after_the_limit(
        config_dict: dict, store: Store, caplog: pytest.LogCaptureFixture) -> None:
    down = Inbox()
    config = make_config(config_dict, {"url": down.url()}, max_per_run=2, give_up_hours=1)
    for n in range(3):
        queue_notification(store, title=f"m{n}", body="b", now=NOW)
    assert flush_notifications(config, store, NOW) == (0, 2)
    attempts = [r[0] for r in store.db.execute("SELECT attempts FROM notifications ORDER BY id")]
    assert attempts == [1, 0, 0]  # after the first failure the target is not tried again
    assert flush_notifications(config, store, NOW + timedelta(hours=2)) == (0, 2)
    assert "given up" in caplog.text
    assert pending_count(store) == 1


def test_queue_joins_the_callers_transaction(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        queue_notification(store, title="t", body="b", now=NOW)
        raise RuntimeError("the rules stage failed")
    assert pending_count(store) == 0


def test_a_run_with_the_smtp_server_down_succeeds_and_the_next_run_delivers(
        config_dict: dict, tmp_path: Path) -> None:
    from solar_monitor.emulation.emulator import start_emulator
    from solar_monitor.pipeline import open_store, run_once

    box = Inbox()
    with start_emulator(firmware="legacy") as emu:
        config = make_config({**config_dict, "pvs": {**config_dict["pvs"], "url": emu.url}},
                             {"url": box.url(), "tags": ["alerts"]})
        with open_store(config) as store:
            queue_notification(store, title="Inverter down", body="b", tags=["alerts"],
                               now=datetime.now(UTC))
        report = run_once(config)
        assert report.ok and report.stage_errors == ()
        with box:
            report = run_once(config, now=datetime.now(UTC) + timedelta(minutes=15))
            assert report.ok and report.stage_errors == ()
    assert [m["Subject"] for m in box.messages] == ["Inverter down"]


def test_nothing_queued_means_apprise_is_never_imported(config_dict: dict, tmp_path: Path) -> None:
    raw = {**config_dict, "notify": {"targets": [{"url": "mailto://a:b@c"}]}}
    code = """
import json, sys
from datetime import datetime, UTC
from pathlib import Path
from solar_monitor.config import config_from_dict
from solar_monitor.notify import flush_notifications
from solar_monitor.store import Store
config = config_from_dict(json.loads(sys.argv[1]), env={})
with Store(Path(sys.argv[2])) as store:
    assert flush_notifications(config, store, datetime.now(UTC)) == (0, 0)
assert "apprise" not in sys.modules, "apprise imported"
"""
    subprocess.run([sys.executable, "-c", code, json.dumps(raw), str(tmp_path / "db")],
                   check=True)


def test_apprises_deprecation_warnings_never_fail_a_message(
        inbox: Inbox, config_dict: dict, tmp_path: Path) -> None:
    """apprise imports `imghdr` on 3.11/3.12 (deprecated, removed in 3.13): a Python run
    with warnings as errors (-W error, PYTHONWARNINGS) must still send. A fresh process,
    because this one may have imported apprise already."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**config_dict, "notify": {"targets": [
        {"url": inbox.url()}]}}), encoding="utf-8")
    path.chmod(0o600)
    result = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-W",
         "error::PendingDeprecationWarning", "-m", "solar_monitor.cli", "test-alert",
         "--config", str(path)],
        capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("PASS mailto://")
    assert len(inbox.messages) == 1


# --- the CLI -------------------------------------------------------------------------------

def test_test_alert_prints_one_line_per_target(
        inbox: Inbox, config_dict: dict, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    down = Inbox()
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**config_dict, "notify": {"targets": [
        {"url": inbox.url(), "tags": ["alerts"]},
        {"url": down.url(), "tags": ["digest"]}]}}), encoding="utf-8")
    path.chmod(0o600)
    assert main(["test-alert", "--config", str(path)]) == 1
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("PASS mailto://") and lines[1].startswith("FAIL mailto://")
    assert PASSWORD not in out + err and URL_PASSWORD not in out + err
    assert main(["test-alert", "--config", str(path), "--tag", "alerts"]) == 0
    assert len(inbox.messages) == 2
    assert "solar-monitor test" in inbox.messages[0]["Subject"]
    capsys.readouterr()
    assert main(["test-alert", "--config", str(path), "--tag", "nope", "--tag", "nix"]) == 2
    assert "no notify target with tag nope or nix; add one" in capsys.readouterr().err


def test_outbox_rows_keep_what_the_callers_asked_for(store: Store, tmp_path: Path) -> None:
    nid = queue_notification(store, title="t", body="<p>b</p>", tags=["alerts", "digest"],
                             body_format="html", text_alternative="b", level="failure",
                             now=NOW)
    row = store.db.execute("SELECT * FROM notifications WHERE id=?", (nid,)).fetchone()
    assert (row["body_format"], row["text_alternative"], row["level"]) == ("html", "b", "failure")
    assert json.loads(row["tags_json"]) == ["alerts", "digest"]
    assert row["created_at"] == "2025-06-21T18:00:00Z" and row["sent_at"] is None


def test_the_example_targets_are_valid_once_uncommented(tmp_path: Path) -> None:
    from solar_monitor.config import load_config

    repo = Path(__file__).resolve().parent.parent
    text = (repo / "config.example.yaml").read_text(encoding="utf-8")
    uncommented = re.sub(r"(?m)^(\s+)# (- url:|  tags:)", r"\1\2", text)
    assert uncommented != text
    path = tmp_path / "config.yaml"
    path.write_text(uncommented, encoding="utf-8")
    config = load_config(path, env={"GMAIL_APP_PASSWORD": "abcdabcdabcdabcd"})
    assert [t.tags for t in config.notify.targets] == [["alerts", "digest"], ["alerts"]]
    assert all(validate_target(t).ok for t in config.notify.targets)


@pytest.mark.parametrize("password", ["abc#def", "a/b"])
def test_check_fails_an_email_url_cut_short_by_a_raw_password(config_dict: dict,
                                                              password: str) -> None:
    # apprise accepts both with a host:port (a relay on the LAN), reading a wrong host;
    # the first e-mail would fail instead, far from its cause
    config_dict["notify"] = {"targets": [
        {"url": "mailtos://you:${SMTP_PASSWORD}@192.168.1.5:587?from=pi@home.lan&to=me@home.lan"}]}
    config = config_from_dict(config_dict, env={"SMTP_PASSWORD": password})
    ok, detail = check_targets(config)
    assert ok is False
    assert "write # as %23 and / as %2F" in detail and password not in detail
    encoded = password.replace("#", "%23").replace("/", "%2F")
    config = config_from_dict(config_dict, env={"SMTP_PASSWORD": encoded})
    assert check_targets(config)[0] is True
