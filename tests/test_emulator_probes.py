"""The emulator as a witness: every raw request the real LocalAPI server stack answered
(tests/fixtures/localapi-observed/, three runs: strict over http and https, guest over
http) is sent again, in order, over a real socket to an emulator seeded with the observed
site's serial and MAC, and the whole table must match: status, Content-Type, Set-Cookie
and the body byte for byte (tokens aside).

The placeholders the recording left are filled in as the fixtures' SOURCES.md says.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from solar_monitor.emulation.emulator import Emulator, start_emulator
from solar_monitor.emulation.sim import SimulatedSite, SiteSpec
from tests.test_emulator import Clock

OBSERVED = Path(__file__).resolve().parent / "fixtures" / "localapi-observed"
RUNS = ("strict-http", "strict-https", "guest-http")
SERIAL = "ZT01234567890ABCDEF"  # the observed site: password BCDEF
OBSERVED_SITE = {"/sys/info/lmac": "00:22:F2:C1:E1:C2"}
START = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
CREDENTIALS = {  # probe id -> what its `what` says it sent, for the two placeholders
    "login-wrong": "ssm_owner:ABCDE",
    "login-lower": "ssm_owner:" + SERIAL[-5:].lower(),
    "login-user": "spwr_owner:" + SERIAL[-5:],
}


@dataclass(frozen=True)
class Seen:
    """The parts of an answer the table compares."""

    status: int
    content_type: str | None
    set_cookie: str | None
    body: str


def load(run: str) -> dict[str, Any]:
    return json.loads((OBSERVED / f"{run}.json").read_text())


def emulator_for(run: str, clock: Clock) -> Emulator:
    site = SimulatedSite(SiteSpec(build=61846, serial=SERIAL,
                                  epoch=datetime(2026, 12, 3, tzinfo=UTC)))
    return start_emulator(site, firmware="varserver", tls=True, clock=clock,
                          auth=run.split("-")[0], variables=OBSERVED_SITE)


def raw_request(probe: dict[str, Any], token: str | None) -> bytes:
    """The probe's request as bytes, placeholders filled in, sent as the recording did."""
    req = probe["request"]
    lines = [f"{req['method']} {req['target']} HTTP/1.1", "Host: 127.0.0.1",
             "Connection: close"]
    for name, value in req["headers"].items():
        if value.startswith("Basic <"):
            user_password = CREDENTIALS.get(probe["id"], "ssm_owner:" + SERIAL[-5:])
            value = "Basic " + base64.b64encode(user_password.encode()).decode()
        lines.append(f"{name}: {value.replace('<token>', token or '')}")
    body: str | None = req["body"]
    if body is not None and "...<" in body:  # "xxx...<1024 bytes>": pad to that length
        head, _, size = body.partition("...<")
        body = head.ljust(int(size.split()[0]), "x")
    payload = (body or "").encode()
    if req["headers"].get("Transfer-Encoding") == "chunked":
        payload = b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload)
    elif body is not None:
        lines.append(f"Content-Length: {len(payload)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


def send(emu: Emulator, scheme: str, data: bytes, method: str) -> http.client.HTTPResponse:
    """One request on a new socket (TLS for https), the answer read in full."""
    port = emu.tls_port if scheme == "https" else emu.port
    assert port is not None
    sock: socket.socket = socket.create_connection(("127.0.0.1", port), timeout=5)
    if scheme == "https":
        context = ssl.create_default_context(cafile=str(emu.cert_path))
        sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
    with sock:
        sock.sendall(data)
        answer = http.client.HTTPResponse(sock, method=method)
        answer.begin()
        answer.body = answer.read()  # type: ignore[attr-defined]
        return answer


def replay(run: str) -> Iterator[tuple[str, Seen, Seen]]:
    """(probe id, observed, emulator's) for every probe of a run, in order: the 69 raw
    requests, and the one observation (a login after a logout gets a new token)."""
    recording = load(run)
    clock = Clock(START)
    token: str | None = None
    with emulator_for(run, clock) as emu:
        for probe in recording["probes"]:
            if probe["id"] == "new-token-after-logout":  # observed, not a raw request
                old = token
                answer = send(emu, recording["scheme"], raw_request(
                    {"id": "login", "request": recording["probes"][0]["request"]}, None),
                    "GET")
                token = json.loads(answer.body)["session"]  # type: ignore[attr-defined]
                fresh = "a new token" if token != old else "the same token"
                yield probe["id"], Seen(200, None, None, "a new token"), Seen(
                    answer.status, None, None, fresh)
                continue
            if probe["id"].endswith("-3s"):
                clock.advance(seconds=3)
            method = probe["request"]["method"]
            answer = send(emu, recording["scheme"], raw_request(probe, token), method)
            text = answer.body.decode("utf-8", "surrogateescape")  # type: ignore[attr-defined]
            cookie = answer.getheader("Set-Cookie")
            if answer.status == 200 and probe["request"]["target"].startswith("/auth"):
                token = token or json.loads(text)["session"]
            if token:
                text = text.replace(token, "<token>")
                cookie = cookie.replace(token, "<token>") if cookie else None
            want = probe["answer"]
            yield probe["id"], Seen(want["status"], want["content_type"], want["set_cookie"],
                                    want["body"]), Seen(answer.status,
                                                        answer.getheader("Content-Type"),
                                                        cookie, text)


@pytest.mark.parametrize("run", RUNS)
def test_the_emulator_answers_every_probe_as_the_real_server(run: str) -> None:
    table = list(replay(run))
    assert len(table) == 70
    differ = [(probe, want, got) for probe, want, got in table if want != got]
    assert not differ, f"{len(table) - len(differ)}/70 match in {run}; differ:\n" + "\n".join(
        f"{probe}:\n  real {want}\n  emu  {got}" for probe, want, got in differ)


def test_a_token_lives_300_s_from_login_to_the_next_5_s_tick() -> None:
    clock = Clock(START)
    with emulator_for("strict-http", clock) as emu:
        clock.advance(seconds=2)  # the session timer ticks from the server's start
        first = emu.sessions.login("ssm_owner", "127.0.0.1")
        clock.advance(seconds=299)
        assert emu.sessions.login("ssm_owner", "127.0.0.1") == first  # not extended
        clock.advance(seconds=3)  # 302 s after login: the tick at 305 s has not come
        assert emu.sessions.user(first) == "ssm_owner"
        clock.advance(seconds=1)
        assert emu.sessions.user(first) is None
        assert emu.sessions.login("ssm_owner", "127.0.0.1") != first
        other = emu.sessions.login("ssm_owner", "127.0.0.2")  # one session per address
        assert len({first, other}) == 2 and emu.sessions.logout(other)
        assert not emu.sessions.logout(other)
