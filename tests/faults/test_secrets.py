"""Secrets never leak: failing runs through the real CLI, grepped for canary secrets.

Every secret a config can hold is a distinctive canary (all contain CANARY): the PVS
password (given through ${ENV}), an SMTP password that needs %-encoding, a webhook token in
a URL path and one in a header option, and a fresh RSA service-account key. Each scenario
makes a real part fail (the emulator, aiosmtpd, a webhook, the fake Google API), runs the
CLI at -v with the third-party loggers (requests, urllib3, apprise, gspread, google-auth)
lifted to DEBUG as well, and then greps stdout, stderr, the log file and every file in the
data folder (gzip decompressed, SQLite dumped) for each canary, its Basic-auth and SMTP
AUTH base64 forms, the PEM body lines, and the OAuth tokens derived from the key.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from aiosmtpd.smtp import AuthResult, Envelope

from solar_monitor import logsetup, pipeline
from solar_monitor.cli import main
from solar_monitor.config import load_config
from solar_monitor.emulation.emulator import Emulator, default_spec, start_emulator
from solar_monitor.emulation.sim import SimulatedSite
from solar_monitor.notify import queue_notification
from solar_monitor.pvs.parse import parse
from solar_monitor.sinks import outbox, sheets
from solar_monitor.store import Store
from tests.conftest import REPO, real
from tests.fake_sheets import FakeSheetsAPI
from tests.test_notify import Inbox, free_port

pytestmark = pytest.mark.usefixtures("no_retry_sleep")
CANARY = "c4n4ry"
PVS_PASSWORD = "PVS-PASS-c4n4ry"
PVS_ENV = "SM_TEST_PVS_PASSWORD"
SMTP_USER = "pi-sender"
SMTP_PASSWORD = "SMTP@c4n4ry#pw"  # needs %-encoding in an apprise URL
SMTP_PASSWORD_URL = quote(SMTP_PASSWORD, safe="")
HOOK_TOKEN = "hook-c4n4ry-T0KEN"  # a webhook whose path is the secret
HEADER_TOKEN = "hdr-c4n4ry-bearer"  # apprise's +Header=value option
KEY_ID = "c4n4ry0f00d0key0id0000000000000000000000"
SID = "1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdEFG"
EMAIL = "solar-monitor@solar-test.iam.gserviceaccount.com"
THIRD_PARTY = ("urllib3", "requests", "apprise", "gspread", "google", "google.auth")


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# --- what must never appear, and where we look -------------------------------------------

@dataclass(frozen=True)
class Canaries:
    """Every fragment that would betray a secret, with a name for the failure message."""

    fragments: dict[str, str]

    def found_in(self, text: str) -> list[str]:
        return [name for name, value in self.fragments.items() if value in text]


@pytest.fixture(scope="module")
def rsa_key() -> tuple[Any, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return key, pem


@pytest.fixture(scope="module")
def canaries(rsa_key: tuple[Any, str]) -> Canaries:
    pem_lines = rsa_key[1].strip().splitlines()[1:-1]
    fragments = {
        "canary": CANARY,  # every raw and %-encoded secret above contains it
        "pvs basic auth": _b64(f"ssm_owner:{PVS_PASSWORD}"),
        "pvs password b64": _b64(PVS_PASSWORD),
        "smtp AUTH PLAIN": _b64(f"\0{SMTP_USER}\0{SMTP_PASSWORD}"),
        "smtp AUTH LOGIN": _b64(SMTP_PASSWORD),
        "smtp basic auth": _b64(f"{SMTP_USER}:{SMTP_PASSWORD}"),
        "oauth access token": "ya29.",  # what the fake token endpoint hands out
        "signed JWT header": "eyJhbGciOi",  # the start of the key-signed assertion
    }
    fragments.update({f"PEM line {n}": line for n, line in enumerate(pem_lines)})
    return Canaries(fragments)


def data_texts(folder: Path) -> dict[str, str]:
    """Every file under `folder` as text: gzip decompressed; SQLite as bytes and as a dump."""
    texts: dict[str, str] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.name.endswith(".gz"):
            data = gzip.decompress(data)
        texts[str(path)] = data.decode("utf-8", errors="replace")
    for db in folder.rglob("*.db"):
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            texts[f"{db} (dump)"] = "\n".join(con.iterdump())
        con.close()
    return texts


def assert_clean(canaries: Canaries, texts: dict[str, str]) -> None:
    leaks = {where: found for where, text in texts.items() if (found := canaries.found_in(text))}
    assert not leaks, f"secrets leaked: {leaks}"


# --- running the CLI -----------------------------------------------------------------------

@dataclass
class Outcome:
    code: int
    out: str
    err: str
    texts: dict[str, str]

    @property
    def said(self) -> str:
        return self.out + self.err + "".join(v for k, v in self.texts.items() if k.endswith("log"))


@pytest.fixture(autouse=True)
def fresh_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no registered secrets, as a new process does: a secret some
    earlier test registered must not hide a leak in this one."""
    monkeypatch.setattr(logsetup._filter, "secrets", [])  # noqa: SLF001


@pytest.fixture(autouse=True)
def loud_libraries(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """After the product sets up logging, lift the libraries it quietens to DEBUG too:
    redaction must hold even for what they say there. Logging is restored afterwards."""
    original = logsetup.setup_logging
    root = logging.getLogger()
    saved = (list(root.handlers), root.level,
             {name: logging.getLogger(name).level for name in THIRD_PARTY})

    def setup(level: str = "INFO", file: str | None = None) -> None:
        original(level, file)
        for name in THIRD_PARTY:
            logging.getLogger(name).setLevel(logging.DEBUG)

    monkeypatch.setattr(logsetup, "setup_logging", setup)
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
    for name, level in saved[2].items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Site:
    monkeypatch.setenv(PVS_ENV, PVS_PASSWORD)
    return Site(tmp_path)


class Site:
    """A config file (mode 600) and its data folder; the PVS password comes from ${ENV}."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.config_path = root / "config.yaml"
        self.raw: dict[str, Any] = {
            "site": {"latitude": 42.36, "longitude": -71.06, "timezone": "America/New_York"},
            "pvs": {"url": f"http://127.0.0.1:{free_port()}", "password": f"${{{PVS_ENV}}}",
                    "poll_budget_s": 5.0, "request_timeout_s": 3.0},
            "data_dir": str(self.data),
            "weather": {"enabled": False},
            "logging": {"file": str(self.data / "solar-monitor.log")},
        }

    def write(self, text: str | None = None) -> Path:
        """The config file: `raw` as YAML, or `text` as given (for broken YAML)."""
        self.data.mkdir(exist_ok=True)
        self.config_path.write_text(text or yaml.safe_dump(self.raw), encoding="utf-8")
        self.config_path.chmod(0o600)
        return self.config_path

    def cli(self, capsys: pytest.CaptureFixture[str], *args: str,
            text: str | None = None) -> Outcome:
        """`solar-monitor <args> --config <this> -v` in this process."""
        self.write(text)
        code = main([*args, "--config", str(self.config_path), "-v"])
        out, err = capsys.readouterr()
        for handler in logging.getLogger().handlers:
            handler.flush()  # the log file is among the texts grepped
        return Outcome(int(code), out, err, data_texts(self.data))


def emulator(firmware: str = "varserver") -> Emulator:
    """A PVS on the wall clock (the CLI runs on it too). Its login takes only the serial's
    last five characters, so the canary password is always refused."""
    spec = default_spec(datetime.now(UTC), inverter_count=4, latitude=42.36,
                        longitude=-71.06, timezone="America/New_York", seed=3)
    return start_emulator(SimulatedSite(spec), firmware=firmware)


# --- loopback services that fail --------------------------------------------------------------

class SmtpServer(Inbox):
    """aiosmtpd on loopback that knows the canary login, or refuses every login, and can
    answer DATA with a 5xx."""

    def __init__(self, *, accept_login: bool = True, data_reply: str = "250 OK") -> None:
        self.accept_login = accept_login
        self.data_reply = data_reply
        super().__init__()

    def _auth(self, server: object, session: object, envelope: object, mechanism: str,
              data: object) -> AuthResult:
        ok = self.accept_login and getattr(data, "login", None) == SMTP_USER.encode() and \
            getattr(data, "password", None) == SMTP_PASSWORD.encode()
        return AuthResult(success=ok)

    async def handle_DATA(self, server: object, session: object, envelope: Envelope) -> str:
        return self.data_reply

    def url(self, to: str = "owner@example.com", password: str = SMTP_PASSWORD_URL) -> str:
        return (f"mailto://{SMTP_USER}:{password}@127.0.0.1:{self.port}"
                f"?from=pi@example.com&to={to}&cto=3&rto=3")


@pytest.fixture
def failing_webhook() -> Iterator[str]:
    """A webhook that answers 500 and, like many, quotes the path it was called on."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = json.dumps({"error": f"no such hook {self.path}"}).encode()
            self.send_response(500)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield (f"json://127.0.0.1:{server.server_address[1]}/hook/{HOOK_TOKEN}"
           f"?+X-Token={HEADER_TOKEN}")
    server.shutdown()
    server.server_close()


def queue_a_message(site: Site) -> None:
    """An alert waiting in the outbox, so the run's notify stage tries to send it."""
    site.data.mkdir(exist_ok=True)
    with Store(site.data / pipeline.DB_NAME) as store:
        queue_notification(store, title="Inverter E001 stopped", body="check it",
                           tags=["alerts"], now=datetime.now(UTC))


# --- the grep itself can fail -----------------------------------------------------------------

def test_the_grep_finds_every_form_everywhere(tmp_path: Path, canaries: Canaries) -> None:
    """Positive control: a leak of each fragment, in each kind of file, is caught."""
    for name, value in canaries.fragments.items():
        folder = tmp_path / name.replace(" ", "_")
        (folder / "raw").mkdir(parents=True)
        (folder / "raw" / "x.json.gz").write_bytes(gzip.compress(f"[{value}]".encode()))
        with sqlite3.connect(folder / "solar-monitor.db") as con:
            con.execute("CREATE TABLE t (v TEXT)")
            con.execute("INSERT INTO t VALUES (?)", (f"error: {value}",))
        con.close()
        texts = data_texts(folder)
        assert any(name in canaries.found_in(t) for t in texts.values()), name
        with pytest.raises(AssertionError, match="secrets leaked"):
            assert_clean(canaries, {"x.json.gz": texts[str(folder / "raw" / "x.json.gz")]})


def test_every_secret_is_really_configured(site: Site, rsa_key: tuple[Any, str],
                                           canaries: Canaries) -> None:
    """The canaries reach the product: a clean grep means redaction, not absence."""
    site.raw["notify"] = {"targets": [{"url": SmtpServer().url()}]}
    config = load_config(site.write())
    assert config.pvs.password == PVS_PASSWORD  # through ${ENV}: not in the file itself
    assert PVS_PASSWORD not in site.config_path.read_text()
    assert SMTP_PASSWORD_URL in config.notify.targets[0].url
    assert all(line in rsa_key[1] for n, line in canaries.fragments.items() if "PEM" in n)


# --- the PVS fails --------------------------------------------------------------------------

PVS_FAULTS: dict[str, tuple[str, Callable[[Emulator], None], str]] = {
    # name: (firmware, fault, what the error says)
    "login_401": ("varserver", lambda emu: None, "refused the login as ssm_owner (HTTP 401)"),
    "auth_firmware_401": ("auth", lambda emu: None, "refused the login as ssm_owner (HTTP 401)"),
    "forbidden_403": ("legacy", lambda emu: emu.faults.forbidden(), "HTTP 403"),
    "html": ("legacy", lambda emu: emu.faults.html(), "HTML page"),
    "truncated": ("legacy", lambda emu: emu.faults.truncated(), "truncated JSON"),
    "unavailable_503": ("legacy", lambda emu: emu.faults.unavailable(60), "HTTP 503"),
    "slow_timeout": ("legacy", lambda emu: emu.faults.slow(2.5), "no answer from the PVS"),
}


@pytest.mark.parametrize("fault", list(PVS_FAULTS))
def test_failed_poll_and_failed_alert_leak_nothing(
        fault: str, site: Site, capsys: pytest.CaptureFixture[str], canaries: Canaries,
        failing_webhook: str) -> None:
    """run: the PVS fails, and the queued alert meets a webhook answering 500."""
    firmware, make_fault, error = PVS_FAULTS[fault]
    with emulator(firmware) as emu:
        make_fault(emu)
        site.raw["pvs"].update(url=emu.url, request_timeout_s=1.0, poll_budget_s=2.0)
        site.raw["notify"] = {"targets": [{"url": failing_webhook}]}
        queue_a_message(site)
        result = site.cli(capsys, "run")
    assert result.code == 1 and error in result.err, result.err
    assert "will retry next run" in result.said  # the mail failed and was logged
    assert any(k.endswith(".error.json") for k in result.texts)
    assert_clean(canaries, {"stdout": result.out, "stderr": result.err, **result.texts})


def test_unreachable_pvs_run_and_check(site: Site, capsys: pytest.CaptureFixture[str],
                                       canaries: Canaries) -> None:
    run = site.cli(capsys, "run")
    assert run.code == 1 and "cannot reach the PVS" in run.err
    check = site.cli(capsys, "check")
    assert check.code == 1 and "FAIL pvs: cannot reach the PVS" in check.out
    for result in (run, check):
        assert_clean(canaries, {"stdout": result.out, "stderr": result.err, **result.texts})


def test_check_with_login_rejected(site: Site, capsys: pytest.CaptureFixture[str],
                                   canaries: Canaries) -> None:
    with emulator("varserver") as emu:
        site.raw["pvs"]["url"] = emu.url
        result = site.cli(capsys, "check")
    assert result.code == 1 and "FAIL pvs: the PVS refused the login as ssm_owner" in result.out
    assert_clean(canaries, {"stdout": result.out, "stderr": result.err, **result.texts})


def test_pvs_url_with_credentials(site: Site, capsys: pytest.CaptureFixture[str],
                                  canaries: Canaries) -> None:
    """A bridge behind a password: the PVS address itself holds one."""
    site.raw["pvs"]["url"] = f"http://admin:URL-{CANARY}@127.0.0.1:{free_port()}"
    result = site.cli(capsys, "run")
    assert result.code == 1 and "cannot reach the PVS" in result.err
    assert_clean(canaries, {"stdout": result.out, "stderr": result.err, **result.texts})


# --- notifications fail ------------------------------------------------------------------------

@pytest.fixture(params=["auth_refused", "smtp_down", "data_550", "webhook_500"])
def broken_target(request: pytest.FixtureRequest, failing_webhook: str) -> Iterator[str]:
    """One notify target URL whose delivery fails in its own way."""
    if request.param == "webhook_500":
        yield failing_webhook
        return
    if request.param == "smtp_down":
        yield SmtpServer().url()  # never started: connection refused
        return
    server = SmtpServer(accept_login=request.param != "auth_refused",
                        data_reply="550 5.7.1 message refused")
    with server:
        yield server.url()


def test_test_alert_and_check_with_a_broken_target(
        broken_target: str, site: Site, capsys: pytest.CaptureFixture[str],
        canaries: Canaries) -> None:
    site.raw["notify"] = {"targets": [{"url": broken_target, "tags": ["alerts", "digest"]}]}
    assert CANARY in broken_target
    alert = site.cli(capsys, "test-alert")
    assert alert.code == 1 and alert.out.startswith("FAIL "), alert.out
    check = site.cli(capsys, "check")
    assert "PASS notify:" in check.out, check.out  # a valid URL: check sends nothing
    for result in (alert, check):
        assert_clean(canaries, {"stdout": result.out, "stderr": result.err, **result.texts})


def test_run_with_smtp_refusing_the_login_keeps_the_outbox_clean(
        site: Site, capsys: pytest.CaptureFixture[str], canaries: Canaries) -> None:
    with SmtpServer(accept_login=False) as smtp:
        site.raw["notify"] = {"targets": [{"url": smtp.url()}]}
        queue_a_message(site)
        result = site.cli(capsys, "run")
    assert "will retry next run" in result.said, result.said
    dump = next(v for k, v in result.texts.items() if k.endswith("(dump)"))
    assert 'INSERT INTO "notifications"' in dump  # the outbox row, with its last_error
    assert_clean(canaries, {"stdout": result.out, "stderr": result.err, **result.texts})


def test_digest_to_a_failing_webhook(site: Site, capsys: pytest.CaptureFixture[str],
                                     canaries: Canaries, failing_webhook: str) -> None:
    site.raw["notify"] = {"targets": [{"url": failing_webhook, "tags": ["digest"]}]}
    result = site.cli(capsys, "digest", "--month", "2026-05")
    assert result.code == 1 and "digest not sent: json://" in result.err, result.err
    assert_clean(canaries, {"stdout": result.out, "stderr": result.err, **result.texts})


# --- Google refuses -------------------------------------------------------------------------

FIXTURE = real("dl_cgi_61839_30_inverters").read_bytes()


@pytest.fixture
def google(site: Site, rsa_key: tuple[Any, str], monkeypatch: pytest.MonkeyPatch
           ) -> Iterator[FakeSheetsAPI]:
    """The fake Sheets API and token endpoint, a canary key file, and rows waiting for it."""
    with FakeSheetsAPI() as fake:
        fake.add_spreadsheet(SID, "Solar at home")
        fake.public_keys[EMAIL] = rsa_key[0].public_key()
        monkeypatch.setattr(sheets, "SESSION_HOOKS", [fake.mount])
        key_file = site.root / "google-key.json"
        key_file.write_text(json.dumps(key_info(rsa_key[1], fake.url)))
        key_file.chmod(0o600)
        site.raw["google_sheets"] = {"spreadsheet": SID, "key_file": str(key_file),
                                     "timeout_s": 5, "max_wait_s": 0}
        queue_sheet_rows(site)
        yield fake


def key_info(pem: str, fake_url: str) -> dict[str, str]:
    return {"type": "service_account", "project_id": "solar-test", "private_key_id": KEY_ID,
            "private_key": pem, "client_email": EMAIL, "client_id": "42",
            "token_uri": f"{fake_url}/token"}


def queue_sheet_rows(site: Site) -> None:
    """A stored poll whose Readings row waits for the sheet (`sheets sync` has work)."""
    site.data.mkdir(exist_ok=True)
    at = datetime(2026, 6, 9, 16, 0, tzinfo=UTC)
    with Store(site.data / pipeline.DB_NAME) as store:
        with store.transaction():
            store.record_snapshot(at, parse(FIXTURE, polled_at=at), None)
        outbox.enqueue_poll(store, at, at)


def _break_key(site: Site, how: str) -> None:
    key_file = Path(site.raw["google_sheets"]["key_file"])
    text = key_file.read_text()
    if how == "missing":
        key_file.unlink()
    elif how == "folder":
        key_file.unlink()
        key_file.mkdir()
    elif how == "truncated":
        key_file.write_text(text[: len(text) * 2 // 3])
    elif how == "bad_pem":
        info = json.loads(text)
        head, *body, tail = info["private_key"].strip().splitlines()
        info["private_key"] = "\n".join([head, *reversed(body), tail]) + "\n"
        key_file.write_text(json.dumps(info))


GOOGLE_FAULTS: dict[str, tuple[Callable[[FakeSheetsAPI, Site], None], str]] = {
    "token_rejected": (lambda g, s: setattr(g, "token_error", "invalid_grant"),
                       "Google refused the service-account key"),
    "not_shared_403": (lambda g, s: setattr(g, "shared", False), "may not edit"),
    "api_off_403": (lambda g, s: setattr(g, "api_enabled", False), "Google Sheets API is off"),
    "server_500": (lambda g, s: g.fail("*", 500, times=99), "Google answered 500"),
    "key_missing": (lambda g, s: _break_key(s, "missing"), "cannot read the key file"),
    "key_is_a_folder": (lambda g, s: _break_key(s, "folder"), "cannot read the key file"),
    "key_truncated": (lambda g, s: _break_key(s, "truncated"), "is not a JSON key file"),
    "key_bad_pem": (lambda g, s: _break_key(s, "bad_pem"), "unusable private key"),
}


@pytest.mark.parametrize("fault", list(GOOGLE_FAULTS))
def test_sheets_sync_and_check_when_google_refuses(
        fault: str, google: FakeSheetsAPI, site: Site, capsys: pytest.CaptureFixture[str],
        canaries: Canaries) -> None:
    make_fault, error = GOOGLE_FAULTS[fault]
    make_fault(google, site)
    sync = site.cli(capsys, "sheets", "sync")
    assert sync.code == 1 and error in sync.err, sync.err
    check = site.cli(capsys, "check")
    assert check.code == 1 and "FAIL google_sheets: " in check.out, check.out
    assert error in check.out
    for result in (sync, check):
        assert_clean(canaries, {"stdout": result.out, "stderr": result.err, **result.texts})


def test_run_with_google_refusing_the_key(google: FakeSheetsAPI, site: Site,
                                          capsys: pytest.CaptureFixture[str],
                                          canaries: Canaries) -> None:
    google.token_error = "invalid_grant"
    with emulator("legacy") as emu:
        site.raw["pvs"]["url"] = emu.url
        result = site.cli(capsys, "run")
    assert result.code == 0 and "Google Sheet not updated" in result.said
    assert_clean(canaries, {"stdout": result.out, "stderr": result.err, **result.texts})


# --- config errors where the bad value is a secret ------------------------------------------

CONFIG_ERRORS: dict[str, tuple[Callable[[dict[str, Any]], str | None], str]] = {
    # name: (break the raw config, or return broken YAML text; the problem's key path)
    "password_as_list": (lambda raw: raw["pvs"].update(password=[PVS_PASSWORD]),
                         "pvs.password"),
    "password_as_mapping": (lambda raw: raw["pvs"].update(password={"pw": PVS_PASSWORD}),
                            "pvs.password"),
    "password_under_a_typo": (lambda raw: raw["pvs"].update(pasword=PVS_PASSWORD),
                              "pvs.pasword"),
    "pvs_url_with_password_bad_scheme": (
        lambda raw: raw["pvs"].update(url=f"ftp://admin:URL-{CANARY}@pvs.local"), "pvs.url"),
    "target_url_as_mapping": (
        lambda raw: raw.update(notify={"targets": [{"url": {"pass": SMTP_PASSWORD}}]}),
        "notify.targets[0].url"),
    "target_under_a_typo": (
        lambda raw: raw.update(notify={"targets": [{"ulr": SmtpServer().url()}]}),
        "notify.targets[0].ulr"),
    "yaml_error_in_password": (
        lambda raw: yaml.safe_dump(raw).replace(f"${{{PVS_ENV}}}", f'"{PVS_PASSWORD}'),
        "YAML syntax error"),
    "yaml_tab_in_password": (
        lambda raw: yaml.safe_dump(raw).replace(f"${{{PVS_ENV}}}", f"\t{PVS_PASSWORD}"),
        "YAML syntax error"),
}


@pytest.mark.parametrize("problem", list(CONFIG_ERRORS))
def test_config_errors_do_not_echo_a_secret(problem: str, site: Site,
                                            capsys: pytest.CaptureFixture[str],
                                            canaries: Canaries) -> None:
    make_problem, where = CONFIG_ERRORS[problem]
    text = make_problem(site.raw)
    written = text or yaml.safe_dump(site.raw)
    assert CANARY in written  # the secret is in the file the error is about
    result = site.cli(capsys, "run", text=text)
    assert result.code == 2 and where in result.err, result.err
    assert_clean(canaries, {"stdout": result.out, "stderr": result.err, **result.texts})


def test_apprise_url_with_an_unknown_scheme(site: Site, capsys: pytest.CaptureFixture[str],
                                            canaries: Canaries) -> None:
    """Valid config, but apprise cannot parse the URL: check and test-alert say so."""
    url = f"mailtoo://{SMTP_USER}:{SMTP_PASSWORD_URL}@127.0.0.1:25?to=a@example.com"
    site.raw["notify"] = {"targets": [{"url": url, "tags": ["alerts", "digest"]}]}
    check = site.cli(capsys, "check")
    assert "FAIL notify: #1" in check.out, check.out
    alert = site.cli(capsys, "test-alert")
    assert alert.code == 1 and "FAIL mailtoo://" in alert.out, alert.out
    for result in (check, alert):
        assert_clean(canaries, {"stdout": result.out, "stderr": result.err, **result.texts})


# --- the heartbeat's URL is the check's secret token ----------------------------------------

HEARTBEAT_TOKEN = "hb-c4n4ry-5f0c6a1e"


@pytest.mark.parametrize("fault", ["answers_500", "refused"])
def test_a_failing_heartbeat_leaks_nothing(fault: str, site: Site,
                                           capsys: pytest.CaptureFixture[str],
                                           canaries: Canaries, failing_webhook: str) -> None:
    """run (the PVS unreachable: the /fail ping) and check, with the heartbeat answering 500
    and quoting its path, or refusing the connection; requests and urllib3 at DEBUG."""
    port = failing_webhook.split("127.0.0.1:", 1)[1].split("/", 1)[0] \
        if fault == "answers_500" else str(free_port())
    site.raw["heartbeat"] = {"url": f"http://127.0.0.1:{port}/ping/{HEARTBEAT_TOKEN}",
                             "timeout_s": 2}
    run = site.cli(capsys, "run")
    assert run.code == 1 and "heartbeat ping failed (the run is not affected)" in run.said
    check = site.cli(capsys, "check")
    assert "FAIL heartbeat: http://127.0.0.1:" in check.out, check.out
    dump = next(v for k, v in run.texts.items() if k.endswith("(dump)"))
    assert "failed: http://127.0.0.1:" in dump  # the runs row keeps the ping's failure
    for result in (run, check):
        assert_clean(canaries, {"stdout": result.out, "stderr": result.err, **result.texts})


# --- a library raises with a secret in its message --------------------------------------------

def secret_laden_error() -> RuntimeError:
    """What a careless library might raise: every kind of configured secret in the text."""
    return RuntimeError(
        f"535 login failed for mailto://{SMTP_USER}:{SMTP_PASSWORD_URL}@mail.example.com "
        f"(password {SMTP_PASSWORD!r}); POST http://hooks.example.com/hook/{HOOK_TOKEN} "
        f"X-Token: {HEADER_TOKEN}; PVS password {PVS_PASSWORD}")


def test_a_stage_raising_a_secret(site: Site, capsys: pytest.CaptureFixture[str],
                                  canaries: Canaries, failing_webhook: str,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from solar_monitor.sinks import csv_files

    def export_csv(*args: Any, **kwargs: Any) -> int:
        raise secret_laden_error()

    monkeypatch.setattr(csv_files, "export_csv", export_csv)
    site.raw["notify"] = {"targets": [{"url": failing_webhook},
                                      {"url": SmtpServer().url(), "tags": ["digest"]}]}
    with emulator("legacy") as emu:
        site.raw["pvs"]["url"] = emu.url
        result = site.cli(capsys, "run")
    assert result.code == 4 and "csv stage failed: 535 login failed" in result.said
    assert "poll stored, but csv: 535 login failed" in result.err
    assert_clean(canaries, {"stdout": result.out, "stderr": result.err, **result.texts})


def test_a_check_probe_raising_a_secret(site: Site, capsys: pytest.CaptureFixture[str],
                                        canaries: Canaries, failing_webhook: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from solar_monitor import weather

    def probe(config: Any) -> tuple[bool, str]:
        raise secret_laden_error()

    monkeypatch.setattr(weather, "check_weather", probe)
    site.raw["notify"] = {"targets": [{"url": failing_webhook},
                                      {"url": SmtpServer().url(), "tags": ["digest"]}]}
    result = site.cli(capsys, "check")
    assert "FAIL weather: unexpected RuntimeError: 535 login failed" in result.out, result.out
    assert_clean(canaries, {"stdout": result.out, "stderr": result.err, **result.texts})


def test_a_command_raising_a_secret(google: FakeSheetsAPI, site: Site,
                                    capsys: pytest.CaptureFixture[str], canaries: Canaries,
                                    failing_webhook: str,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception nothing expected escapes the command: a redacted line, no traceback."""
    def flush(*args: Any, **kwargs: Any) -> None:
        raise secret_laden_error()

    monkeypatch.setattr(sheets, "flush", flush)
    site.raw["notify"] = {"targets": [{"url": failing_webhook},
                                      {"url": SmtpServer().url(), "tags": ["digest"]}]}
    result = site.cli(capsys, "sheets", "sync")
    assert result.code == 1 and "535 login failed" in result.said, result.said
    assert_clean(canaries, {"stdout": result.out, "stderr": result.err, **result.texts})


# --- a real process, as cron runs it ----------------------------------------------------------

def test_real_processes_at_debug_leak_nothing(
        site: Site, google: FakeSheetsAPI, failing_webhook: str, canaries: Canaries) -> None:
    """`python -m solar_monitor run -v` and `test-alert -v`, stdout and stderr: the PVS
    refuses the login, the webhook answers 500, Google refuses the key, SMTP refuses DATA."""
    google.token_error = "invalid_grant"
    del site.raw["logging"]  # logs to stderr, as under cron
    env = {**os.environ, PVS_ENV: PVS_PASSWORD,
           # nothing may reach the internet: only loopback bypasses this dead proxy
           "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
           "NO_PROXY": "127.0.0.1,localhost"}
    with emulator("varserver") as emu, SmtpServer(data_reply="554 5.7.1 rejected") as smtp:
        site.raw["pvs"]["url"] = emu.url
        site.raw["notify"] = {"targets": [{"url": failing_webhook},
                                          {"url": smtp.url(), "tags": ["alerts"]}]}
        queue_a_message(site)
        config = str(site.write())
        runs = [subprocess.run([sys.executable, "-m", "solar_monitor", *args, "--config",
                                config, "-v"], capture_output=True, text=True, timeout=60,
                               env=env, cwd=REPO) for args in (["run"], ["test-alert"])]
    run, alert = runs
    assert run.returncode == 1 and "refused the login as ssm_owner (HTTP 401)" in run.stderr
    assert "DEBUG" in run.stderr and "Google Sheet not updated" in run.stderr, run.stderr
    assert "will retry next run" in run.stderr
    assert alert.returncode == 1 and alert.stdout.count("FAIL ") == 2, alert.stdout
    outputs = {f"{name} {stream}": getattr(proc, stream) for name, proc in
               (("run", run), ("test-alert", alert)) for stream in ("stdout", "stderr")}
    assert_clean(canaries, {**outputs, **data_texts(site.data)})


# --- the config file's permissions ----------------------------------------------------------

@pytest.mark.parametrize(("mode", "warned"), [(0o644, True), (0o640, True), (0o600, False)])
def test_a_config_readable_by_others_is_warned_about(
        mode: int, warned: bool, site: Site, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    path = site.write()
    path.chmod(mode)
    monkeypatch.setattr(site, "write", lambda text=None: path)  # keep the mode under test
    result = site.cli(capsys, "test-alert")  # no target: exits early, after loading
    assert result.code == 2
    warning = f"{path} is readable by other users and may hold passwords; run: chmod 600 {path}"
    assert (warning in result.said) is warned, result.said

