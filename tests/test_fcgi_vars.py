"""fcgi_vars prints string values unescaped (localapi-observed/README.md): the entry scan
and the byte-level Wi-Fi key redaction, on answers as the real server prints them."""

from __future__ import annotations

import json

import pytest

from solar_monitor.pvs.fcgi_vars import REDACTED, redact_wpa_key, scan

KEY = 'Wk"se\\c{r}et'


def printed(**values: str) -> bytes:
    """An object-format answer the way fcgi_vars prints it: `{ "name":"value",...}`."""
    entries = ",".join(f'"/sys/info/{k}":"{v}"' for k, v in values.items())
    return ("{ " + entries + "}\n").encode()


def test_the_real_servers_spacing_is_read_and_quotes_are_read_as_printed() -> None:
    body = printed(serialnum="ZT01234567890ABCDEF", ssid='My "Home" \\ net{x}\n2',
                   sw_rev="2025.09.04.61846")
    values, unreadable, as_printed = scan(body, "/sys/info/")
    assert values == {"/sys/info/serialnum": "ZT01234567890ABCDEF",
                      "/sys/info/ssid": 'My "Home" \\ net{x}\n2',
                      "/sys/info/sw_rev": "2025.09.04.61846"}
    assert (unreadable, as_printed) == ([], ["/sys/info/ssid"])


def test_a_value_that_forges_entries_adds_nothing_outside_the_match() -> None:
    forged = 'x","/sys/devices/inverter/0/sn":"FAKE","/sys/info/serialnum":"EVIL'
    values, unreadable, _ = scan(printed(serialnum="ZT1", ssid=forged), "/sys/info/")
    assert "/sys/devices/inverter/0/sn" not in values
    assert "/sys/info/serialnum" not in values and "/sys/info/serialnum" in unreadable


def test_not_utf8_is_named_and_the_rest_kept() -> None:
    values, unreadable, _ = scan(b'{ "/sys/info/ssid":"Caf\xe9","/sys/info/model":"PVS6"}')
    assert values == {"/sys/info/model": "PVS6"} and unreadable == ["/sys/info/ssid"]


@pytest.mark.parametrize(("key", "marker"), [
    (KEY, 'se\\c{r'), ("abc#1", "abc#"), ('k","/sys/info/zz":"Q9', "Q9"),
    ("a" * 62 + "Z", "aaaa")], ids=["quotes", "plain", "forges-an-entry", "63-chars"])
@pytest.mark.parametrize("after", [{}, {"zz": "1"}, {"zz": "1", "zzz": 'q"'}],
                         ids=["last", "then-one", "then-broken"])
def test_the_wifi_key_leaves_no_trace_broken_json_or_not(key: str, marker: str,
                                                         after: dict) -> None:
    """Nothing of the key is left, whatever follows it; a short entry right after a key
    in broken JSON may go with it (over-redaction is the safe side)."""
    body = printed(serialnum="ZT1", ssid="home", wpa_key=key, **after)
    redacted = redact_wpa_key(body)
    assert marker.encode() not in redacted
    assert redacted.startswith(b'{ "/sys/info/serialnum":"ZT1","/sys/info/ssid":"home",'
                               b'"/sys/info/wpa_key":"' + REDACTED.encode())


def test_valid_json_stays_valid_without_the_key() -> None:
    body = json.dumps({"/sys/info/model": "PVS6", "/sys/info/wpa_key": 'a"b\\c'}).encode()
    assert json.loads(redact_wpa_key(body)) == {"/sys/info/model": "PVS6",
                                                "/sys/info/wpa_key": REDACTED}
    assert redact_wpa_key(b'{"/sys/info/model":"PVS6"}') == b'{"/sys/info/model":"PVS6"}'
