"""The PVS's LocalAPI (`/auth`, `/vars`) as the real server stack answers it, byte for
byte: tjmonk's fcgi_auth, sessionmgr and fcgi_vars behind lighttpd, as recorded in
`tests/fixtures/localapi-observed/` (the README there lists the facts).

Kept apart from the emulator's routing and faults so that one module holds what the real
server does: its sessions, its query parsing and its two answer formats. Strings are
printed as fcgi_vars prints them: unescaped, and unquoted when they look like JSON (first
and last non-space characters `{}` or `[]`), so one `"` in an SSID breaks the answer as
it does on a PVS.
"""

from __future__ import annotations

import base64
import binascii
import math
import secrets
import string
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

AuthMode = Literal["strict", "guest"]
AUTH_MODES: tuple[AuthMode, ...] = ("strict", "guest")
OWNER = "ssm_owner"
GUEST = "pvsguest"  # fcgi_vars -u pvsguest: what a request without a session may read
# What pvsguest may read: pypvs's discover() needs them before it can log in.
GUEST_VARIABLES = frozenset({"/sys/info/serialnum", "/sys/info/ssid", "/sys/info/lmac"})
TOKEN_CHARS = string.ascii_letters + string.digits
TOKEN_LENGTH = 64
SESSION_TICK_S = 5.0  # sessionmgr ends sessions on a timer of this period
VARS_BODY_LIMIT = 1024  # bytes of a POST /vars body; more (or none) answers 413

NO_SESSION = "0x0011"
ENDED_SESSION = "0x0012"
BAD_FORMAT = "0x0020"
NOTHING_FOUND = "0x0040"
UNKNOWN_NAME = "0x0100"
BAD_LENGTH = "0x1000"
BAD_METHOD = "0x2000"
SET_REFUSED = "0x0000"

# lighttpd's own page when the FastCGI handler crashes (a Cookie without `session=`)
LIGHTTPD_500_BODY = (
    '<?xml version="1.0" encoding="iso-8859-1"?>\n'
    '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN"\n'
    '         "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">\n'
    '<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">\n'
    " <head>\n  <title>500 Internal Server Error</title>\n </head>\n"
    " <body>\n  <h1>500 Internal Server Error</h1>\n </body>\n</html>\n"
)


@dataclass(frozen=True)
class Answer:
    """One HTTP answer; `content_type` None sends no Content-Type (the 204 of a logout)."""

    status: int
    body: bytes
    content_type: str | None = "application/json"
    set_cookie: str | None = None
    location: str | None = None


CRASH = Answer(500, LIGHTTPD_500_BODY.encode(), "text/html")


def error(status: int, description: str, code: str | None = None) -> Answer:
    """An fcgi_auth / fcgi_vars error answer, spaced as they print it."""
    text = f'{{"status": {status}, "description" : "{description}"'
    if code is not None:
        text += f', "errorcode" : "{code}"'
    return Answer(status, (text + "}").encode())


def query_pairs(query: str) -> list[tuple[str, str]]:
    """The LocalAPI's query parsing: split on `&` and the first `=`, never URL-decoded."""
    return [(k, v) for k, _, v in (part.partition("=") for part in query.split("&") if part)]


def encode_value(value: str) -> bytes:
    """A variable's bytes: a value read from argv keeps its non-UTF-8 bytes (surrogates)."""
    return value.encode("utf-8", "surrogateescape")


def _printed(value: str) -> bytes:
    """A value as fcgi_vars prints it: unescaped; unquoted when it looks like JSON."""
    raw = encode_value(value)
    core = raw.strip()  # C's isspace: space, \t, \n, \v, \f, \r
    if core[:1] + core[-1:] in (b"{}", b"[]"):
        return raw
    return b'"' + raw + b'"'


def render_list(found: Iterable[tuple[str, str]]) -> bytes:
    """`{"values" : [ { "name": ..., "value" : ... }],"count": N }` + newline."""
    items = [b'{ "name": "' + encode_value(n) + b'", "value" : ' + _printed(v) + b" }"
             for n, v in found]
    return b'{"values" : [ ' + b",".join(items) + f'],"count": {len(items)} }}\n'.encode()


def render_object(found: Iterable[tuple[str, str]]) -> bytes:
    """`{ "name":value,...}` + newline (fmt=obj)."""
    items = [b'"' + encode_value(n) + b'":' + _printed(v) for n, v in found]
    return b"{ " + b",".join(items) + b"}\n"


def cookie_token(cookie: str) -> str | None:
    """The token after the first `session=` in a Cookie header (found by substring, so
    `xsession=` counts), up to `;` or a space; None when longer than a token can be."""
    _, _, rest = cookie.partition("session=")
    end = min((i for i in (rest.find(";"), rest.find(" ")) if i >= 0), default=len(rest))
    token = rest[:end]
    return token if len(token) <= TOKEN_LENGTH else None


def basic_credentials(authorization: str | None) -> tuple[str, str]:
    """(user, password) of a Basic Authorization header; ("", "") when unreadable."""
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    try:
        user, _, password = base64.b64decode(encoded.strip()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    return user, password


class Sessions:
    """sessionmgr's table: one session per user and client address, a 64-character
    token, ended `ttl_s` after login (never extended, not even by a new login) on the
    next tick of a `SESSION_TICK_S` timer, or by a logout. A login while the session
    lives gives its token again; after its end, a new one. Thread-safe."""

    def __init__(self, clock: Callable[[], datetime], ttl_s: float) -> None:
        self._clock = clock
        self._ttl_s = ttl_s
        self._origin = clock()  # the timer starts with the server
        self._lock = threading.Lock()
        self._by_key: dict[tuple[str, str], str] = {}
        self._live: dict[str, tuple[str, datetime]] = {}  # token -> (user, end)

    def _end_of(self, login: datetime) -> datetime:
        since_start_s = (login - self._origin).total_seconds() + self._ttl_s
        ticks = math.ceil(since_start_s / SESSION_TICK_S)
        return self._origin + timedelta(seconds=ticks * SESSION_TICK_S)

    def _user(self, token: str, now: datetime) -> str | None:
        entry = self._live.get(token)
        if entry is None:
            return None
        if now >= entry[1]:
            del self._live[token]
            return None
        return entry[0]

    def login(self, user: str, client: str) -> str:
        """The token of `user` at `client`: the live one, else a new one."""
        now = self._clock()
        with self._lock:
            token = self._by_key.get((user, client))
            if token is None or self._user(token, now) is None:
                token = "".join(secrets.choice(TOKEN_CHARS) for _ in range(TOKEN_LENGTH))
                self._by_key[(user, client)] = token
                self._live[token] = (user, self._end_of(now))
            return token

    def user(self, token: str) -> str | None:
        """Who a token belongs to, or None when unknown, ended or logged out."""
        with self._lock:
            return self._user(token, self._clock())

    def logout(self, token: str) -> bool:
        """End a live session; False when there was none."""
        with self._lock:
            if self._user(token, self._clock()) is None:
                return False
            del self._live[token]
            return True


def auth_answer(query: str, authorization: str | None, cookie: str | None,
                sessions: Sessions, serial: str, client: str) -> Answer:
    """fcgi_auth: `login` (Basic ssm_owner and the serial's last five characters, case
    as printed) or `logout`; anything else, extra parameters included, is 400."""
    if query == "login":
        user, password = basic_credentials(authorization)
        if user != OWNER or password != serial[-5:]:
            return error(401, "Unauthorized")
        token = sessions.login(OWNER, client)
        return Answer(200, f'{{"session": "{token}" }}\r\n'.encode(),
                      set_cookie=f"session={token}; Secure; HttpOnly")
    if query == "logout":
        if cookie is None:
            return error(401, "Unauthorized")
        if "session=" not in cookie:
            return CRASH
        token = cookie_token(cookie)
        if token is None or not sessions.logout(token):
            return error(401, "Unauthorized")
        return Answer(204, b"", content_type=None)
    return error(400, "Bad request")


def vars_user(cookie: str | None, sessions: Sessions, auth: AuthMode) -> str | Answer:
    """Who a /vars request reads as, or the answer that refuses it: no usable cookie is
    pvsguest (guest) or 401 0x0011 (strict); an unknown or ended token 401 0x0012; a
    Cookie header without `session=` crashes the handler (500)."""
    if cookie is not None and "session=" not in cookie:
        return CRASH
    token = cookie_token(cookie) if cookie is not None else None
    if token is None:
        return GUEST if auth == "guest" else error(401, "Unauthorized", NO_SESSION)
    return sessions.user(token) or error(401, "Unauthorized", ENDED_SESSION)


@dataclass(frozen=True)
class VarsResult:
    """What a /vars query selected (in answer order), how to print it, what it wrote."""

    found: tuple[tuple[str, str], ...]
    as_object: bool
    written: tuple[tuple[str, str], ...]


def run_vars_query(query: str, user: str, variables: Mapping[str, str],
                   writable: frozenset[str],
                   write: Callable[[str, str], str | None]) -> VarsResult | Answer:
    """fcgi_vars's query, parameter by parameter in order: `name=` (comma list; one
    unknown fails all, 0x0100), `match=` (case-insensitive substring), `set=name=value`
    (unknown 400, read-only 401, errorcode 0x0000; `write` stores and returns the value
    as the varserver prints it, or None when it does not fit the type: 400), `fmt=`
    (first letter o or l, the last one wins; else 0x0020). Nothing selected: 0x0040."""
    visible = variables if user == OWNER else {
        k: v for k, v in variables.items() if k in GUEST_VARIABLES}
    found: list[tuple[str, str]] = []
    written: list[tuple[str, str]] = []
    as_object = False
    for key, value in query_pairs(query):
        if key == "fmt":
            if value[:1].lower() not in ("o", "l"):
                return error(400, "Bad request", BAD_FORMAT)
            as_object = value[:1].lower() == "o"
        elif key == "name":
            for name in filter(None, value.split(",")):
                if name not in visible:
                    return error(400, "Bad request", UNKNOWN_NAME)
                found.append((name, visible[name]))
        elif key == "match" and value:
            needle = value.lower()
            found.extend((k, v) for k, v in visible.items() if needle in k.lower())
        elif key == "set":
            for pair in filter(None, value.split(",")):
                name, _, new = pair.partition("=")
                if name not in visible:
                    return error(400, "Bad request", SET_REFUSED)
                if user != OWNER or name not in writable:
                    return error(401, "Unauthorized", SET_REFUSED)
                stored = write(name, new)
                if stored is None:
                    return error(400, "Bad request", SET_REFUSED)
                found.append((name, stored))
                written.append((name, stored))
    if not found:
        return error(400, "Bad request", NOTHING_FOUND)
    return VarsResult(tuple(found), as_object, tuple(written))
