"""Hostile PVS stand-ins on loopback: a drip, an endless body, a gzip bomb, a fixed answer.

Each is a real HTTP server on a free port, answering every path the same way, so the
whole client (supervisor/info, login, DeviceList, /vars) meets it. Bodies are generated
lazily: a "2 GiB" answer costs the server nothing, and the client must stop on its own.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GIB = 1024 ** 3

Answer = Callable[[BaseHTTPRequestHandler], None]


def drip(handler: BaseHTTPRequestHandler) -> None:
    """A DeviceList-looking answer, one byte a second, for ever (until the client leaves)."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(10 ** 6))
    handler.end_headers()
    body = b'{"devices": [' + b" " * (10 ** 6)
    for byte in body:
        handler.wfile.write(bytes([byte]))
        handler.wfile.flush()
        time.sleep(1.0)


def stall(handler: BaseHTTPRequestHandler) -> None:
    """Headers and one byte of body, then silence (the connection stays open)."""
    handler.send_response(200)
    handler.send_header("Content-Length", "100")
    handler.end_headers()
    handler.wfile.write(b"{")
    handler.wfile.flush()
    time.sleep(60)


def header_drip(handler: BaseHTTPRequestHandler) -> None:
    """The status line and then headers, one byte a second, for ever."""
    for byte in b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 10 ** 6:
        handler.wfile.write(bytes([byte]))
        handler.wfile.flush()
        time.sleep(1.0)


def endless(declared: bool) -> Answer:
    """2 GiB of JSON-looking padding, written as fast as the client reads, with its
    Content-Length or (`declared` False) without one: read until the server closes."""

    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        if declared:
            handler.send_header("Content-Length", str(2 * GIB))
        else:
            handler.send_header("Connection", "close")
            handler.close_connection = True
        handler.end_headers()
        handler.wfile.write(b'{"devices": [')
        block = b" " * (1024 * 1024)
        for _ in range(2 * 1024):
            handler.wfile.write(block)
    return answer


@functools.lru_cache(maxsize=1)
def gzip_bomb_body(inflated: int = GIB) -> bytes:
    """~1 MB of gzip that inflates to `inflated` bytes of JSON-looking padding: one member
    per MiB (RFC 1952 allows many), so building it takes milliseconds."""
    block = b" " * (1024 * 1024)
    first = gzip.compress(b'{"devices": [' + block[13:], 9, mtime=0)
    return first + gzip.compress(block, 9, mtime=0) * (inflated // len(block) - 1)


def gzip_answer(body: bytes) -> Answer:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Encoding", "gzip")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
    return answer


def fixed(status: int, body: bytes, content_type: str = "application/json") -> Answer:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
    return answer


@contextmanager
def hostile_pvs(answer: Answer) -> Iterator[str]:
    """Serve `answer` to every GET on a free loopback port; yields the base URL."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                answer(self)  # the client may give up mid-answer, as it should

        def log_message(self, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: object, client_address: object) -> None:
            pass  # a client that hangs up mid-answer is the point of these servers

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
