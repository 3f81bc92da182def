"""One exception root for everything the PVS library raises, grouped by what to do next."""

from __future__ import annotations


class PvsError(Exception):
    """Root of every PVS library error. `http_status` is set when the PVS answered."""

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status


class PvsCommunicationError(PvsError):
    """The PVS could not be reached or answered 5xx / too slowly: try again next run."""


class PvsUnreachableError(PvsCommunicationError):
    """Nothing answers at the PVS's address (refused, no route, unknown name): not retried
    within a run, since seconds later it is the same; check the cabling and pvs.url.
    `reason` is the short cause ("connection refused")."""

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


class PvsAuthError(PvsError):
    """Login failed or the session was refused: check the serial / password."""


class PvsResponseError(PvsError):
    """The PVS answered, but not with usable data (HTML, truncated, result != succeed)."""


class ParseError(PvsError):
    """Bytes that are not a PVS answer this parser understands."""
