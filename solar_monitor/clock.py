"""Which time a poll is stamped with: the Pi's clock, checked against the PVS's.

A Raspberry Pi has no battery clock. After a power cut it starts from the last time it
saved (fake-hwclock), hours or days behind, until NTP puts it right, and a bad NTP answer
or a hand-set date can throw it forwards. A wrong stamp is worse than a missing poll: rows
land out of order, the CSV watermark skips them, and the sun gate judges a night reading
as noon (a false "inverter dead" alert).

So every poll is placed by three witnesses:
  1. the PVS's own clock (CURTIME / livedata time), which is NTP-synced and battery-backed:
     when it disagrees with the Pi's by more than TOLERANCE, the PVS wins, unless the
     kernel says NTP keeps the Pi's clock synced, or the PVS's time is more than
     MAX_PVS_LEAD after the last poll (a PVS that answers 2099 once): a PVS clock can be
     wrong too, and a stamp in the future would block every later poll;
  2. for a failed poll (no PVS time), the time elapsed since the last PVS-confirmed poll
     on the kernel's boot clock, which no wall-clock jump moves (same boot only);
  3. the last stored poll: a poll is never stamped at or before it. A poll that cannot be
     placed after it is not recorded (its raw answer is kept aside, see archive.UNPLACED).
     A stored poll after the time two clocks agree on (`trusted_now`) is a stamp an older
     version took from a bad PVS clock: it is not the last poll.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

TOLERANCE = timedelta(minutes=5)
# How far past the last poll (or the Pi's clock, before any poll) a PVS time may lead and
# still correct an unsynced Pi: a Pi unplugged for weeks restarts at its last saved time.
MAX_PVS_LEAD = timedelta(days=31)
_TIME_ERROR = 5  # adjtimex(2): the kernel's clock is not synchronized
ANCHOR_KEY = "clock_anchor"  # store state: the last PVS-confirmed time on the boot clock
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


@dataclass(frozen=True, slots=True)
class Clocks:
    """What this machine says at the start of a run. `boot_id`/`since_boot_s` are None
    where there is no boot clock (or in simulated time, where it would not advance)."""

    wall: datetime
    boot_id: str | None = None
    since_boot_s: float | None = None
    synced: bool = False  # the kernel says NTP disciplines the wall clock (adjtimex)


@dataclass(frozen=True, slots=True)
class Anchor:
    """A moment when the PVS confirmed the time: (boot, boot clock, UTC)."""

    boot_id: str
    since_boot_s: float
    utc: datetime

    def to_json(self) -> str:
        return json.dumps({"boot_id": self.boot_id, "since_boot_s": self.since_boot_s,
                           "utc": self.utc.isoformat()})

    @classmethod
    def from_json(cls, text: str | None) -> Anchor | None:
        try:
            d = json.loads(text or "")
            return cls(str(d["boot_id"]), float(d["since_boot_s"]),
                       datetime.fromisoformat(d["utc"]).astimezone(UTC))
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True, slots=True)
class Placement:
    """The decision: `at` is None when the poll cannot be placed after the last one.
    `warning` says why the Pi's clock was not used as is."""

    at: datetime | None
    source: str  # "pi", "pvs", "boot clock" or "none"
    warning: str | None = None


def read_clocks() -> Clocks:
    """The wall clock plus the boot clock (Linux), read back to back."""
    wall = datetime.now(UTC).replace(microsecond=0)
    try:
        boot_id = _BOOT_ID.read_text().strip()
        since_boot = time.clock_gettime(time.CLOCK_BOOTTIME)
    except (OSError, AttributeError):  # not Linux
        return Clocks(wall)
    return Clocks(wall, boot_id, since_boot, ntp_synced())


def ntp_synced() -> bool:
    """True when the kernel's clock is synchronized (what `timedatectl` calls "System
    clock synchronized"), read with adjtimex(2); False when unknown."""
    import ctypes  # only here: a run pays for it once

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        timex = ctypes.create_string_buffer(256)  # struct timex is 208 bytes; modes = 0
        state = libc.adjtimex(timex)
    except (OSError, AttributeError):
        return False
    return 0 <= state < _TIME_ERROR


def trusted_now(clocks: Clocks, pvs_time: datetime | None) -> datetime | None:
    """The time now when it can be trusted: an NTP-synced Pi clock, or a Pi clock the
    PVS's agrees with (two witnesses). None when neither holds."""
    if clocks.synced or (pvs_time is not None and abs(pvs_time - clocks.wall) <= TOLERANCE):
        return clocks.wall
    return None


def place_poll(clocks: Clocks, pvs_time: datetime | None, last: datetime | None,
               anchor: Anchor | None) -> Placement:
    """Decide the stamp of a poll taken at `clocks` whose answer carried `pvs_time`
    (None for a failed poll), given the last stored poll and the saved anchor.

    Candidates are tried in order of trust; the first one after the last stored poll
    wins. One within TOLERANCE before it (two runs in one second, a small step back)
    is stamped a second after it."""
    pi = clocks.wall
    candidates: list[tuple[datetime, str, str | None]] = []
    if pvs_time is not None:
        pvs = pvs_time.astimezone(UTC).replace(microsecond=0)
        if abs(pvs - pi) > TOLERANCE and (clocks.synced or pvs > (last or pi) + MAX_PVS_LEAD):
            why = ("the Pi's clock is NTP-synced" if clocks.synced
                   else f"it is more than {MAX_PVS_LEAD.days} days after the last poll")
            candidates.append((pi, "pi", f"the PVS's clock ({_fmt(pvs)}) is {_gap(pvs, pi)} "
                               f"the Pi's, and {why}: this poll is stamped with the Pi's "
                               "clock (the PVS's clock is wrong)"))
        elif abs(pvs - pi) > TOLERANCE:
            candidates.append((pvs, "pvs", f"the Pi's clock ({_fmt(pi)}) is {_gap(pi, pvs)} "
                               f"the PVS's ({_fmt(pvs)}); this poll is stamped with the "
                               "PVS's time. Is NTP reachable? (timedatectl status)"))
            candidates.append((pi, "pi", f"the PVS's clock ({_fmt(pvs)}) is {_gap(pvs, pi)} "
                               f"the Pi's and before the last poll ({_fmt(last)}); using "
                               "the Pi's clock"))
    elif (estimate := _from_anchor(clocks, anchor)) is not None \
            and abs(estimate - pi) > TOLERANCE:
        candidates.append((estimate, "boot clock", f"the Pi's clock ({_fmt(pi)}) jumped: it "
                           f"is {_gap(pi, estimate)} the time counted since the PVS last "
                           f"confirmed it; this poll is stamped {_fmt(estimate)}"))
    if not candidates:
        candidates.append((pi, "pi", None))
    for at, source, warning in candidates:
        if last is None or at > last:
            return Placement(at, source, warning)
        if last - at <= TOLERANCE:
            return Placement(last + timedelta(seconds=1), source, warning)
    return Placement(None, "none", f"the Pi's clock ({_fmt(pi)}) is before the last stored "
                     f"poll ({_fmt(last)}) and the PVS gave no time to correct it: the "
                     "clock went back (a power cut on a Pi without a clock battery?). "
                     "This poll is not recorded; its answer is kept under raw/unplaced/.")


def anchor_for(clocks: Clocks, placement: Placement, pvs_time: datetime | None
               ) -> Anchor | None:
    """A new anchor when the PVS confirmed this poll's time (None: keep the old one)."""
    if (pvs_time is None or placement.at is None or clocks.boot_id is None
            or clocks.since_boot_s is None or placement.source not in ("pi", "pvs")):
        return None
    if not clocks.synced and abs(pvs_time - placement.at) > TOLERANCE:
        return None  # the PVS's time was not believed: it confirmed nothing
    return Anchor(clocks.boot_id, clocks.since_boot_s, placement.at)


def _from_anchor(clocks: Clocks, anchor: Anchor | None) -> datetime | None:
    if (anchor is None or clocks.boot_id is None or clocks.since_boot_s is None
            or anchor.boot_id != clocks.boot_id or clocks.since_boot_s < anchor.since_boot_s):
        return None
    elapsed = timedelta(seconds=round(clocks.since_boot_s - anchor.since_boot_s))
    return anchor.utc + elapsed


def _fmt(at: datetime | None) -> str:
    return "none" if at is None else at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _gap(a: datetime, b: datetime) -> str:
    """'3:12:00 behind' / 'ahead of', for 'a is ... b'."""
    delta = b - a
    return f"{abs(delta)} {'behind' if delta > timedelta(0) else 'ahead of'}"
