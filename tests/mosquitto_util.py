"""A real mosquitto broker on a free loopback port, and a subscriber that records."""

from __future__ import annotations

import getpass
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.haproxy_util import free_port, wait_listening

MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
MOSQUITTO_SUB = shutil.which("mosquitto_sub")
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")

needs_mosquitto = pytest.mark.skipif(
    not (MOSQUITTO and MOSQUITTO_SUB and MOSQUITTO_PASSWD),
    reason="needs mosquitto and mosquitto-clients (Debian packages; .ci/run installs them)")


@contextmanager
def mosquitto(folder: Path, users: dict[str, str] | None = None,
              tls: tuple[Path, Path] | None = None) -> Iterator[int]:
    """Run mosquitto on 127.0.0.1 (anonymous, or only `users` with their passwords; TLS
    with `tls` = (certificate, key)); yields its port and stops it on the way out."""
    assert MOSQUITTO is not None and MOSQUITTO_PASSWD is not None
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    # as root, mosquitto would switch to user mosquitto, who cannot read pytest's tmp_path
    lines = [f"listener {port} 127.0.0.1", "persistence false", f"user {getpass.getuser()}"]
    if users:
        passwords = folder / "passwords"
        passwords.touch(mode=0o600)
        for user, password in users.items():
            subprocess.run([MOSQUITTO_PASSWD, "-b", str(passwords), user, password],
                           check=True, capture_output=True)
        lines += ["allow_anonymous false", f"password_file {passwords}"]
    else:
        lines.append("allow_anonymous true")
    if tls:
        lines += [f"certfile {tls[0]}", f"keyfile {tls[1]}"]
    conf = folder / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n")
    log = (folder / "mosquitto.log").open("wb")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log, stderr=log)
    try:
        try:
            wait_listening(port)
        except OSError:
            raise RuntimeError(f"mosquitto did not start: {log.name}") from None
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=5)
        log.close()


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (openssl), the certificate its own CA."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed (apt-get install -y openssl)")
    cert, key = folder / "broker.crt", folder / "broker.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


@dataclass
class Received:
    """What a subscriber got: (topic, payload, retained) in order."""

    messages: list[tuple[str, bytes, bool]] = field(default_factory=list)

    def topics(self) -> list[str]:
        return [t for t, _, _ in self.messages]

    def last(self, topic: str) -> bytes | None:
        found = [p for t, p, _ in self.messages if t == topic]
        return found[-1] if found else None


@contextmanager
def subscriber(port: int, topic: str = "#") -> Iterator[Received]:
    """A live subscriber on `topic` (paho, QoS 1), subscribed before the block and read
    after it: it sees the non-retained states as Home Assistant would."""
    from paho.mqtt import client as paho

    received = Received()
    subscribed = threading.Event()
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"test-sub-{port}")
    client.on_connect = lambda c, _u, _f, _rc, _p: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = lambda _c, _u, m: received.messages.append(
        (m.topic, m.payload, bool(m.retain)))
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert subscribed.wait(5), "the test subscriber never subscribed"
        yield received
        time.sleep(0.2)  # the last messages reach the subscriber
    finally:
        client.disconnect()
        client.loop_stop()


def retained(port: int, topic: str, count: int,
             login: tuple[str, str] | None = None) -> Received:
    """The retained messages under `topic` (mosquitto_sub --retained-only, which exits
    after `count` messages or at its 5 s timeout)."""
    assert MOSQUITTO_SUB is not None
    auth = ["-u", login[0], "-P", login[1]] if login else []
    proc = subprocess.run(
        [MOSQUITTO_SUB, "-h", "127.0.0.1", "-p", str(port), "-t", topic, "--retained-only",
         "-C", str(count), "-W", "5", "-F", "%r\t%t\t%x", *auth],
        capture_output=True, timeout=10)
    return Received(_parse_lines(proc.stdout.decode()))


def _parse_lines(out: str) -> list[tuple[str, bytes, bool]]:
    """`%r\t%t\t%x` lines (retain flag, topic, payload in hex) -> messages; -d noise skipped."""
    messages = []
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[0] in ("0", "1"):
            messages.append((parts[1], bytes.fromhex(parts[2]), parts[0] == "1"))
    return messages
