"""Logging for cron and systemd: one line per event, secrets redacted everywhere."""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote, urlsplit

# user:password@ in any URL (apprise mailto://user:pass@host, https://u:p@...)
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]+@",
                              re.IGNORECASE)
_REDACTED = "***"
# ?pass=... and apprise's +Header=value options (an Authorization or X-Token header)
_SECRET_PARAM = re.compile(r"^\+|pass|token|key|secret", re.IGNORECASE)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every known secret and every URL password replaced by ***."""
    for secret in sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True):
        text = text.replace(secret, _REDACTED)
    return _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{_REDACTED}@", text)


class RedactingFilter(logging.Filter):
    """Rewrites each record's final message with secrets removed."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = list(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info:
            # A traceback can quote a URL or a header: keep only its last line, redacted.
            exc = record.exc_info[1]
            message = f"{message} ({exc.__class__.__name__}: {exc})"
            record.exc_info = None
            record.exc_text = None
        record.msg = redact(message, self.secrets)
        record.args = None
        return True


_filter = RedactingFilter()


def setup_logging(level: str = "INFO", file: str | None = None) -> None:
    """Configure the root logger once: stderr (or a file), redacted, quiet libraries."""
    handler: logging.Handler = (logging.FileHandler(file, encoding="utf-8") if file
                                else logging.StreamHandler(sys.stderr))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s",
                                           "%Y-%m-%d %H:%M:%S"))
    handler.addFilter(_filter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("urllib3", "requests", "google", "gspread", "apprise"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def secret_forms(value: str) -> list[str]:
    """`value` and, when it is a URL, the secrets inside it as a library may quote them
    apart from the URL: the password (raw and %-decoded), secret query options, and the
    path (a webhook's token often is the path)."""
    found = [value]
    if "://" in value:
        with contextlib.suppress(ValueError):
            parts = urlsplit(value)
            if parts.password:
                found += [parts.password, unquote(parts.password)]
            found += [v for k, v in parse_qsl(parts.query) if _SECRET_PARAM.search(k)]
            found += [parts.path, unquote(parts.path)]
    return [s for s in dict.fromkeys(found) if len(s.strip("/")) >= 3]


def add_secrets(secrets: Iterable[str]) -> None:
    """Register more values to redact (config passwords, apprise URLs, key contents),
    each with its `secret_forms`, once: each run and each send registers them again, and
    a process making many runs (demo, tests) must not grow the list without end."""
    known = set(_filter.secrets)
    for form in (f for s in secrets if s for f in secret_forms(s)):
        if form not in known:
            known.add(form)
            _filter.secrets.append(form)


def scrub(text: str) -> str:
    """`text` with every registered secret redacted: for what is printed or stored
    rather than logged (error lines, archived errors)."""
    return redact(text, _filter.secrets)
