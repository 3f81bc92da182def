"""Notifications through apprise (e-mail, ntfy, Pushover, ...), with a durable outbox.

Two ways in:

* `queue_notification(store, ...)`: what the alert rules and the monthly digest use. The
  message is written to the `notifications` table and sent by `flush_notifications`, which
  the pipeline's last stage runs. A failed send stays queued and is retried on the next
  run; a notifier being down never fails a run.
* `send(config, ...)`: send now, no outbox (`test-alert`).

Routing: each target has tags (`alerts`, `digest`, ...). A message goes to every target
sharing one of its tags; a target without tags, or a message without tags, matches all.
Target URLs hold passwords: nothing here logs or returns one (see `logsetup.redact`).
apprise is imported only when something is sent or checked.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import uuid
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from solar_monitor.config import Config, NotifyTarget
from solar_monitor.logsetup import add_secrets, redact, secret_forms
from solar_monitor.store import Store, from_iso, iso

if TYPE_CHECKING:
    from apprise import Apprise

log = logging.getLogger(__name__)

BodyFormat = Literal["text", "html"]
Level = Literal["info", "success", "warning", "failure"]

TAG_ALERTS = "alerts"
TAG_DIGEST = "digest"
OUTBOX_DIR = "outbox"  # attachment copies, under the data folder next to the database


@dataclass(frozen=True, slots=True)
class Message:
    """One notification. `text_alternative` is the plain-text version of an HTML body:
    the text part of a multipart e-mail, and the whole body for text-only services."""

    title: str
    body: str
    tags: tuple[str, ...] = ()
    body_format: BodyFormat = "text"
    attachments: tuple[Path, ...] = ()
    text_alternative: str | None = None
    level: Level = "info"


@dataclass(frozen=True, slots=True)
class TargetResult:
    """The outcome for one target. `target` and `error` are redacted, safe to print."""

    target: str
    ok: bool
    error: str | None = None


@dataclass(frozen=True, slots=True)
class SendResult:
    """The outcome of one send. `ok` when at least one target matched and all accepted;
    `error` is the first failure as one redacted line."""

    ok: bool
    error: str | None
    targets: tuple[TargetResult, ...] = field(default=())
    redacted: bool = True  # error and target labels never hold a password


# --- sending -----------------------------------------------------------------------------

def send(config: Config, *, title: str, body: str, tags: Sequence[str] = (),
         body_format: BodyFormat = "text", attachments: Sequence[Path] = (),
         text_alternative: str | None = None, level: Level = "info") -> SendResult:
    """Send now to every target matching `tags`. Never raises; never logs a password."""
    message = Message(title, body, tuple(tags), body_format, tuple(Path(a) for a in attachments),
                      text_alternative, level)
    targets = matching_targets(config, message.tags)
    if not targets:
        return SendResult(False, f"no notify target for tags {list(message.tags)}; "
                                 f"add one under notify.targets")
    results = tuple(deliver(t, message) for t in targets)
    failed = [r for r in results if not r.ok]
    error = f"{failed[0].target}: {failed[0].error}" if failed else None
    return SendResult(not failed, error, results)


def test_targets(config: Config, tags: Sequence[str] = ()) -> list[TargetResult]:
    """Send a short test message to each target (those with one of `tags`, if given)."""
    site = config.site.name
    message = Message(f"solar-monitor test from {site}",
                      f"This is a test message from solar-monitor at {site}. "
                      f"If you can read it, this target works.", tuple(tags))
    targets = [t for t in config.notify.targets if not tags or set(tags) & set(t.tags)]
    return [deliver(t, message) for t in targets]


def check_targets(config: Config) -> tuple[bool | None, str]:
    """The `check` probe: does apprise understand every target URL? Sends nothing.

    Returns (None, why) when no target is configured, else (all valid, one-line detail).
    """
    targets = config.notify.targets
    if not targets:
        return None, "no targets: alerts are only logged (add notify.targets)"
    parts: list[str] = []
    ok = True
    for number, target in enumerate(targets, start=1):
        result = validate_target(target)
        tags = ",".join(target.tags) or "all"
        if result.ok:
            parts.append(f"#{number} {result.target} [{tags}] valid")
        else:
            ok = False
            parts.append(f"#{number} {result.target} [{tags}] {result.error}: fix "
                         f"notify.targets[{number - 1}].url (apprise URL syntax; a password "
                         f"with @ / : # ? must be %-encoded, e.g. @ as %40)")
    routed = {tag for t in targets for tag in t.tags} if all(t.tags for t in targets) else None
    missing = [] if routed is None else [t for t in (TAG_ALERTS, TAG_DIGEST) if t not in routed]
    if missing:
        parts.append(f"no target has tag {' or '.join(missing)}: those messages go nowhere")
    return ok, "; ".join(parts)


def matching_targets(config: Config, tags: Sequence[str]) -> list[NotifyTarget]:
    """The configured targets a message with `tags` goes to."""
    wanted = set(tags)
    return [t for t in config.notify.targets
            if not t.tags or not wanted or wanted & set(t.tags)]


def target_key(target: NotifyTarget) -> str:
    """A stable id for a target that does not reveal its URL (for the outbox)."""
    return hashlib.sha256(target.url.encode()).hexdigest()[:16]


def url_secrets(url: str) -> list[str]:
    """The URL and the secrets inside it, for redaction (see logsetup.secret_forms)."""
    return secret_forms(url)


def deliver(target: NotifyTarget, message: Message) -> TargetResult:
    """Send `message` to one target through apprise. Never raises."""
    secrets = url_secrets(target.url)
    add_secrets(secrets)
    label = _label(target.url)
    missing = [p.name for p in message.attachments if not p.is_file()]
    if missing:
        return TargetResult(label, False, f"attachment missing: {missing[0]}")
    try:
        with _apprise_log() as lines:
            app = _apprise(target.url)
            if app is None:
                reason = lines[-1] if lines else "not a valid apprise URL"
                return TargetResult(label, False, redact(reason, secrets))
            label = _privacy_label(app, secrets)
            ok = _notify(app, message)
    except Exception as exc:  # a plugin bug must not cost the run or the other targets
        return TargetResult(label, False, redact(f"{exc.__class__.__name__}: {exc}", secrets))
    if ok:
        return TargetResult(label, True)
    reason = lines[-1] if lines else "the service did not accept the message"
    return TargetResult(label, False, redact(reason, secrets))


def validate_target(target: NotifyTarget) -> TargetResult:
    """Check that apprise understands a target's URL, without sending anything."""
    secrets = url_secrets(target.url)
    add_secrets(secrets)
    with _apprise_log() as lines:
        app = _apprise(target.url)
    if app is None:
        reason = lines[-1] if lines else "not a valid apprise URL"
        return TargetResult(_label(target.url), False, redact(reason, secrets))
    if cut := _cut_email_url(target.url):
        return TargetResult(_label(target.url), False, cut)
    return TargetResult(_privacy_label(app, secrets), True)


def _cut_email_url(url: str) -> str | None:
    """Why an e-mail URL that apprise accepts is still cut short, or None.

    A raw `#` or `/` in the password (often pasted in from the env file) ends the host
    part early: apprise then reads a wrong host and the test e-mail fails far from its
    cause. E-mail URLs use neither, unlike some services (Slack's `#channel`)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme.lower() not in ("mailto", "mailtos"):
        return None
    if parts.fragment or "@" in parts.path:
        return ("a # or / before the server's name cuts the URL short: in a user name or "
                "password (in the env file too) write # as %23 and / as %2F")
    return None


def _apprise(url: str) -> Apprise | None:
    import apprise

    asset = apprise.AppriseAsset(app_id="solar-monitor", app_desc="Solar system watchdog",
                                 app_url="https://github.com/solar-monitor")
    app = apprise.Apprise(asset=asset)
    return app if app.add(url) and len(app) == 1 else None


def _notify(app: Apprise, message: Message) -> bool:
    import apprise

    plugin = app[0]
    body, body_format = message.body, message.body_format
    resolve = getattr(plugin, "resolve_format", None)  # apprise >= 1.9
    renders = resolve(apprise.NotifyFormat.HTML) if resolve else plugin.notify_format
    if body_format == "html" and message.text_alternative is not None and \
            renders != apprise.NotifyFormat.HTML:
        body, body_format = message.text_alternative, "text"  # a text-only service
    attach = apprise.AppriseAttachment([str(p) for p in message.attachments]) \
        if message.attachments else None
    text_part = message.text_alternative if body_format == "html" else None
    with _email_text_part(text_part):
        return bool(app.notify(body=body, title=message.title, body_format=body_format,
                               notify_type=message.level, attach=attach))


@contextlib.contextmanager
def _email_text_part(text: str | None) -> Iterator[None]:
    """Make apprise's e-mail plugin use `text` as the text/plain part of an HTML message.

    apprise builds multipart/alternative itself, with a text part converted from the HTML;
    it has no parameter for our own text. Its e-mail module looks the converter up by name
    at send time, so we stand in for that one call and leave every other conversion alone.
    If a future apprise moves the converter, the e-mail keeps apprise's own text part.
    """
    module: Any = None
    if text is not None:
        with contextlib.suppress(ImportError):
            from apprise.plugins.email import base as module
    original = getattr(module, "convert_between", None)
    if original is None:
        yield
        return

    def convert(from_format: Any, to_format: Any, content: Any = None) -> Any:
        if (_value(from_format), _value(to_format)) == ("html", "text"):
            return text
        return original(from_format, to_format, content)

    module.convert_between = convert
    try:
        yield
    finally:
        module.convert_between = original


def _value(fmt: Any) -> Any:
    return getattr(fmt, "value", fmt)  # NotifyFormat is a str Enum


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(" ".join(record.getMessage().split()))


@contextlib.contextmanager
def _apprise_log() -> Iterator[list[str]]:
    """Keep apprise's own log lines (which may quote a URL) out of our log; yield its
    warnings and errors so the caller can report the last one, redacted.

    apprise's deprecation warnings are silenced here: on Python 3.11 and 3.12 it imports
    the deprecated `imghdr` (removed in 3.13, where apprise brings a shim), which under
    `-W error` or PYTHONWARNINGS=error would fail every alert for a library's housekeeping."""
    logger = logging.getLogger("apprise")
    handler = _Collect()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            yield handler.lines
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _privacy_label(app: Apprise, secrets: Sequence[str]) -> str:
    """apprise's own password-free form of the URL, without its path and query: apprise
    keeps a webhook's path (json://host/hook/<token>) and an ntfy topic as they are."""
    parts = urlsplit(app[0].url(privacy=True))
    return redact(f"{parts.scheme}://{parts.netloc}", secrets)


def _label(url: str) -> str:
    """`scheme://` and nothing else: a URL apprise could not parse may hide a token anywhere."""
    scheme = url.split("://", 1)[0] if "://" in url else "?"
    return f"{scheme}://"


# --- the outbox --------------------------------------------------------------------------

def queue_notification(store: Store, *, title: str, body: str, tags: Sequence[str] = (),
                       body_format: BodyFormat = "text", attachments: Sequence[Path] = (),
                       text_alternative: str | None = None, level: Level = "info",
                       now: datetime) -> int:
    """Queue a message for `flush_notifications`; returns its outbox id.

    Attachments are copied into `<data_dir>/outbox/`, so the caller may delete its files.
    Works inside or outside the caller's `store.transaction()`. Raises OSError when an
    attachment cannot be read or copied (nothing is queued then).
    """
    copies: list[str] = []
    if attachments:
        folder = store.path.parent / OUTBOX_DIR / f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
        folder.mkdir(parents=True, exist_ok=True)
        for source in map(Path, attachments):
            copy = folder / source.name
            shutil.copyfile(source, copy)
            copies.append(str(copy))
    cur = store.db.execute(
        "INSERT INTO notifications (created_at, title, body, body_format, text_alternative, "
        "level, tags_json, attachments_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (iso(now), title, body, body_format, text_alternative, level,
         json.dumps(list(tags)), json.dumps(copies)))
    assert cur.lastrowid is not None
    return cur.lastrowid


def pending_count(store: Store) -> int:
    """How many queued messages are neither sent nor given up."""
    row = store.db.execute("SELECT count(*) FROM notifications "
                           "WHERE sent_at IS NULL AND gave_up_at IS NULL").fetchone()
    return int(row[0])


def flush_notifications(config: Config, store: Store, now: datetime) -> tuple[int, int]:
    """Try the queued messages, oldest first; returns (sent, failed) for this run.

    At most `notify.max_per_run` messages are tried. A target that fails is not tried again
    in this run, so later messages to it wait their turn and stay in order. A message is
    done once every matching target has it (a target never gets it twice); one still failing
    after `notify.give_up_hours` is given up with an error line. Never raises on a failed
    send; sqlite3.Error propagates. Imports apprise only when something is queued.
    """
    rows = store.queued_notifications(limit=config.notify.max_per_run)
    sent = failed = 0
    down: dict[str, str] = {}  # target key -> why it failed earlier in this run
    for row in rows:
        message = _message(row)
        delivered: list[str] = json.loads(row["delivered_json"])
        errors: list[str] = []
        tried = False
        for target in matching_targets(config, message.tags):
            key = target_key(target)
            if key in delivered:
                continue
            if key in down:
                errors.append(down[key])
                continue
            result = deliver(target, message)
            tried = True
            if result.ok:
                delivered.append(key)
            else:
                down[key] = f"{result.target}: {result.error}"
                errors.append(down[key])
        done = not errors
        expired = not done and now - (from_iso(row["created_at"]) or now) >= \
            timedelta(hours=config.notify.give_up_hours)
        store.db.execute(
            "UPDATE notifications SET delivered_json=?, attempts=attempts+?, "
            "last_attempt_at=coalesce(?, last_attempt_at), last_error=?, sent_at=?, "
            "gave_up_at=? WHERE id=?",
            (json.dumps(delivered), int(tried), iso(now) if tried else None,
             errors[0] if errors else row["last_error"], iso(now) if done else None,
             iso(now) if expired else None, row["id"]))
        if done:
            sent += bool(delivered)
            if not delivered:
                log.info("notification %r: no target for tags %s; not sent",
                         message.title, list(message.tags))
            _remove_attachments(store, message)
        else:
            failed += 1
            if expired:
                log.error("notification %r given up after %g hours: %s", message.title,
                          config.notify.give_up_hours, errors[0])
                _remove_attachments(store, message)
            elif tried:
                log.warning("notification %r not sent, will retry next run: %s",
                            message.title, errors[0])
    return sent, failed


def _message(row: Any) -> Message:
    return Message(row["title"], row["body"], tuple(json.loads(row["tags_json"])),
                   row["body_format"], tuple(Path(p) for p in json.loads(row["attachments_json"])),
                   row["text_alternative"], row["level"])


def _remove_attachments(store: Store, message: Message) -> None:
    outbox = (store.path.parent / OUTBOX_DIR).resolve()
    for folder in {p.parent for p in message.attachments}:
        if folder.resolve().parent == outbox:  # only our own copies
            shutil.rmtree(folder, ignore_errors=True)
