"""Read one HTTP answer body inside a deadline and a byte cap, decoded bytes included.

Whatever answers at the PVS's address may drip a byte a second, stall, send gigabytes, or
send a small gzip that inflates to gigabytes. `requests`' `.content` reads to the end, and
urllib3 inflates before anyone can count, so the body is streamed here instead: every
socket wait ends by the deadline, every chunk is counted after decoding, and reading stops
at the first byte over the cap. Only gzip/deflate are inflated (the client asks for
`identity`; a server that compresses anyway is still read, bounded).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from solar_monitor.pvs.errors import PvsCommunicationError, PvsResponseError

CHUNK_BYTES = 64 * 1024
_INFLATED = frozenset({"gzip", "x-gzip", "deflate"})
_MIN_WAIT_S = 0.05


def read_body(response: Any, *, limit: int, deadline: float, wait_s: float,
              monotonic: Callable[[], float], what: str) -> bytes:
    """The decoded body of a `requests` response opened with `stream=True`.

    Each socket read waits at most `wait_s` and never past `deadline` (monotonic seconds).
    Raises PvsResponseError past `limit` decoded bytes or on a corrupt/unknown encoding,
    PvsCommunicationError when the deadline passes or the connection breaks."""
    import urllib3

    inflater = _Inflater.for_encoding(response.headers.get("Content-Encoding"), what)
    declared = _content_length(response.headers.get("Content-Length"))
    if inflater is None and declared is not None and declared > limit:
        raise _too_large(what, limit, declared)
    raw = response.raw
    out = bytearray()
    while True:
        left = deadline - monotonic()
        if left <= 0:
            raise PvsCommunicationError(
                f"the PVS did not finish its answer to {what} within the poll budget "
                f"({len(out)} bytes received): a stalled or dripping answer")
        _limit_wait(raw, min(wait_s, left))
        try:
            chunk = raw.read1(CHUNK_BYTES, decode_content=False)
        except urllib3.exceptions.ReadTimeoutError:
            if deadline - monotonic() <= 0:
                continue  # the deadline check above words the failure
            raise PvsCommunicationError(f"the PVS stopped sending its answer to {what} for "
                                        f"{wait_s:.0f} s") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise PvsCommunicationError(
                f"the connection broke during the answer to {what} "
                f"({exc.__class__.__name__})") from None
        if not chunk:
            break
        if inflater is None:
            out += chunk
        else:
            inflater.feed(chunk, out, limit)
        if len(out) > limit:
            raise _too_large(what, limit, None)
    if inflater is not None:
        inflater.finish()
    return bytes(out)


class _Inflater:
    """gzip/deflate, inflated a bounded amount at a time (several gzip members allowed)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.zobj = zlib.decompressobj(wbits=47)  # 32 + 15: a zlib or a gzip header

    @classmethod
    def for_encoding(cls, header: str | None, what: str) -> _Inflater | None:
        encoding = (header or "identity").strip().lower()
        if encoding in ("", "identity"):
            return None
        if encoding in _INFLATED:
            return cls(what)
        raise PvsResponseError(f"the answer to {what} came in an encoding that was not "
                               f"asked for ({encoding[:40]!r})", http_status=200)

    def feed(self, data: bytes, out: bytearray, limit: int) -> None:
        """Inflate `data` into `out`, stopping once `out` holds more than `limit` bytes."""
        try:
            while data and len(out) <= limit:
                # max_length >= 1 here (0 would mean "no limit")
                out += self.zobj.decompress(data, limit + 1 - len(out))
                data = self.zobj.unconsumed_tail
                if self.zobj.eof:
                    data = self.zobj.unused_data.lstrip(b"\0")
                    if data:
                        self.zobj = zlib.decompressobj(wbits=47)
        except zlib.error as exc:
            raise PvsResponseError(f"the answer to {self.what} is corrupt compressed data "
                                   f"({exc})", http_status=200) from None

    def finish(self) -> None:
        if not self.zobj.eof:
            raise PvsResponseError(f"the compressed answer to {self.what} ends early",
                                   http_status=200)


def _too_large(what: str, limit: int, declared: int | None) -> PvsResponseError:
    size = f"{declared} bytes" if declared is not None else f"more than {limit} bytes"
    return PvsResponseError(f"the answer to {what} is too large ({size}, decoded; the "
                            f"limit is {limit // (1024 * 1024)} MiB)", http_status=200)


def _content_length(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _limit_wait(raw: Any, seconds: float) -> None:
    """Make the next socket read give up after `seconds` (the deadline, not a fresh read
    timeout per byte: that is how a drip outlives every timeout)."""
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    if sock is not None:
        sock.settimeout(max(_MIN_WAIT_S, seconds))


# --- the header phase: a status line or headers dripped a byte a second -------------------
# http.client reads the status line and headers with readline (64 KiB a line, 100 lines),
# each socket read under the read timeout, so a drip there outlives any timeout too. The
# adapter below arms a timer around each connection's getresponse() that shuts the socket
# down at the poll's deadline (a shutdown wakes a blocked recv; a close would not).

_HEADERS = threading.local()


@contextmanager
def headers_deadline(deadline: float, monotonic: Callable[[], float]) -> Iterator[None]:
    """Within this block, waiting for an answer's headers ends at `deadline` (monotonic)."""
    _HEADERS.deadline = time.monotonic() + (deadline - monotonic())  # on the real clock
    try:
        yield
    finally:
        _HEADERS.deadline = None


def deadline_adapter() -> Any:
    """A requests transport adapter whose connections honour `headers_deadline`."""
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    def guarded(base: type) -> type:
        class Guarded(base):  # type: ignore[valid-type, misc]
            def getresponse(self) -> Any:
                timer = _arm(self.sock)
                try:
                    return super().getresponse()
                finally:
                    if timer is not None:
                        timer.cancel()
        return Guarded

    class HTTPPool(HTTPConnectionPool):
        ConnectionCls = guarded(HTTPConnection)

    class HTTPSPool(HTTPSConnectionPool):
        ConnectionCls = guarded(HTTPSConnection)

    class Adapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": HTTPPool, "https": HTTPSPool}

    return Adapter()


def _arm(sock: Any) -> threading.Timer | None:
    deadline = getattr(_HEADERS, "deadline", None)
    if sock is None or deadline is None:
        return None
    timer = threading.Timer(max(0.0, deadline - time.monotonic()), _shut, (sock,))
    timer.daemon = True
    timer.start()
    return timer


def _shut(sock: Any) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
