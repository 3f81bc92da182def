"""What the LocalAPI's fcgi_vars really prints: `/vars` answers whose strings are unescaped.

The real server prints `{ "/sys/info/ssid":"My "Home" \\ net"}` as is: one SSID or Wi-Fi
key with a `"`, a `\\`, a brace or a newline makes the whole answer invalid JSON. So when
`json.loads` fails on an object-format answer, `scan` reads it entry by entry: an entry
starts at `"<variable name>":"` after `{` or `,` (names are a small character set), and
its value runs, as printed, to the next entry. A value that is not UTF-8 cannot be read;
its name is reported, every other value is kept. `redact_wpa_key` works on the bytes, so
the Wi-Fi key leaves no trace in an archived answer even when the JSON is broken. Pure:
no I/O.
"""

from __future__ import annotations

import re

WPA_KEY = "/sys/info/wpa_key"
REDACTED = "(redacted by solar-monitor)"
# A WPA passphrase is 8-63 characters, a raw PSK 64 hex digits: the key's real end is
# within this many bytes of its start, whatever a broken answer seems to say.
_MAX_KEY_BYTES = 64
_NAME = r"/[A-Za-z0-9_./-]{1,255}"
_ENTRY = re.compile(rf'(?:^\s*\{{|,)\s*"({_NAME})"\s*:\s*"')
_ENTRY_BYTES = re.compile(rf'"\s*,\s*"{_NAME}"\s*:\s*"'.encode())
_UNESCAPED = re.compile(r'["\\\x00-\x1f]')
_KEY_START = re.compile(rb'"/sys/info/wpa_key"\s*:\s*"')


def scan(data: bytes, wanted: str = "") -> tuple[dict[str, str], list[str], list[str]]:
    """{name: value} of an object-format answer printed unescaped, the names whose value
    could not be read, and those read as printed (holding a quote, backslash or control
    character). Only names containing `wanted` (the request's `match=`, any case) are
    kept, so a value that looks like entries cannot add variables outside what was asked.
    Raises ValueError when `data` is not such an answer."""
    text = data.decode("utf-8", "surrogateescape").strip()
    starts = list(_ENTRY.finditer(text))
    if not text.endswith("}") or not starts or starts[0].start() != 0:
        raise ValueError("not an object-format /vars answer")
    values: dict[str, str] = {}
    unreadable: list[str] = []
    printed: list[str] = []
    for entry, following in zip(starts, [*starts[1:], None], strict=True):
        end = following.start() if following else len(text) - 1  # its ',' or the '}'
        name, raw = entry.group(1), text[entry.end():end].rstrip()
        if wanted.lower() not in name.lower():
            continue
        if not raw.endswith('"') or name in values or _has_surrogate(raw):
            unreadable.append(name)
            values.pop(name, None)
            continue
        values[name] = raw[:-1]
        if _UNESCAPED.search(values[name]):
            printed.append(name)
    return values, list(dict.fromkeys(unreadable)), [n for n in printed if n in values]


def redact_wpa_key(body: bytes) -> bytes:
    """`body` with the Wi-Fi key's value replaced by REDACTED, every other byte as
    received; unchanged when it holds no key. The value is taken to run to the last entry
    start (or the last closing quote) within the longest possible key: a key holding
    `","/x":"` looks like more entries, even as valid JSON, and must leave nothing
    behind. What may go with it is a short entry right after the key; the real server
    lists /sys/info/ in name order, where wpa_key comes last."""
    found = _KEY_START.search(body)
    if found is None:
        return body
    start = found.end()
    close = max(body.rstrip().rfind(b'"'), start)  # the last value's closing quote
    stops = [m.start() for m in _ENTRY_BYTES.finditer(body, start)] + [close]
    near = [s for s in stops if s <= start + _MAX_KEY_BYTES]
    stop = near[-1] if near else stops[0]
    # a broken answer may name the key twice: the rest is redacted the same way
    return body[:start] + REDACTED.encode() + redact_wpa_key(body[stop:])


def _has_surrogate(text: str) -> bool:
    """True when `text` holds bytes that were not UTF-8 (surrogateescape'd)."""
    return any("\udc80" <= ch <= "\udcff" for ch in text)
