"""The Pi's own health: power (the firmware's throttled flags), CPU temperature, and
whether the data card can still be written.

Every reader takes a `root` (the real one is `/`), so tests point it at a fake sysfs/proc
tree. A reader that finds nothing returns None: on a machine that is not a Pi the
power and temperature rules stay silent. Only the standard library is used; the
`vcgencmd` fallback runs a process only when the sysfs file is absent.
"""

from __future__ import annotations

import contextlib
import errno
import os
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/")
THROTTLED_SYSFS = "sys/devices/platform/soc/soc:firmware/get_throttled"
VCGENCMD = ("usr/bin/vcgencmd", "opt/vc/bin/vcgencmd")
CPU_TEMP = "sys/class/thermal/thermal_zone0/temp"
MOUNTINFO = "proc/self/mountinfo"
PROBE_NAME = ".health-probe"
# errno values a dying SD card gives: the kernel remounts it read-only after I/O errors
STORAGE_ERRNOS = frozenset({errno.EIO, errno.EROFS})

# get_throttled bits: 0-3 now, 16-19 the same "has occurred since boot"
_FLAGS = ((0, "under-voltage"), (1, "ARM frequency capped"), (2, "throttled"),
          (3, "soft temperature limit"))
POWER_MASK = 0b0111 | (0b0111 << 16)  # under-voltage, capped, throttled
HEAT_MASK = 0b1000 | (0b1000 << 16)  # soft temperature limit


@dataclass(frozen=True, slots=True)
class PiHealth:
    """One reading of the Pi. `throttled` is the raw get_throttled bit field (None: not a
    Pi, or unreadable); `cpu_temp_c` in °C; `storage_problem` says why the data folder
    cannot be written (None: it can)."""

    throttled: int | None
    cpu_temp_c: float | None
    storage_problem: str | None

    @property
    def power_flags(self) -> int:
        return (self.throttled or 0) & POWER_MASK


def read_pi_health(data_dir: Path, root: Path | None = None) -> PiHealth:
    """Read everything once (a few small files, one tiny write), from `root` (default
    ROOT, looked up now so tests can point it elsewhere). Never raises."""
    root = ROOT if root is None else root
    return PiHealth(read_throttled(root), read_cpu_temp_c(root),
                    storage_problem(data_dir, root))


def read_throttled(root: Path = ROOT) -> int | None:
    """The firmware's throttled bit field, from sysfs or else `vcgencmd get_throttled`."""
    sysfs = root / THROTTLED_SYSFS
    with contextlib.suppress(OSError, ValueError):
        return _hex(sysfs.read_text(encoding="ascii"))
    for rel in VCGENCMD:
        tool = root / rel
        if not os.access(tool, os.X_OK):
            continue
        import subprocess  # only on a Pi without the sysfs file

        try:
            done = subprocess.run([str(tool), "get_throttled"], capture_output=True,
                                  text=True, timeout=5, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        # "throttled=0x50005"
        with contextlib.suppress(ValueError):
            return _hex(done.stdout.strip().rpartition("=")[2])
        return None
    return None


def _hex(text: str) -> int:
    text = text.strip().lower()
    return int(text.removeprefix("0x"), 16)


def describe_flags(flags: int) -> str:
    """'under-voltage now, throttled since boot' for a get_throttled bit field."""
    now = [name for bit, name in _FLAGS if flags & (1 << bit)]
    boot = [name for bit, name in _FLAGS if flags & (1 << (bit + 16)) and not flags & (1 << bit)]
    parts = [f"{', '.join(now)} now"] if now else []
    parts += [f"{', '.join(boot)} since boot"] if boot else []
    return "; ".join(parts) or "no flag"


def read_cpu_temp_c(root: Path = ROOT) -> float | None:
    """The CPU temperature in °C (the kernel reports millidegrees), or None."""
    try:
        return round(int((root / CPU_TEMP).read_text(encoding="ascii").strip()) / 1000.0, 1)
    except (OSError, ValueError):
        return None


def storage_problem(data_dir: Path, root: Path = ROOT) -> str | None:
    """Why the data folder cannot be written, or None: its filesystem mounted read-only
    (mountinfo; os.statvfs on the real root), or a small write + fsync failing with an
    I/O error, which is how an SD card dies."""
    if _read_only(data_dir, root):
        return f"the filesystem holding {data_dir} is mounted read-only"
    if not data_dir.is_dir():
        return None  # the run creates it (and says so if it cannot)
    probe = data_dir / PROBE_NAME
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"ok\n")
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        if exc.errno in STORAGE_ERRNOS:
            return f"writing to {data_dir} fails: {exc.strerror or exc}"
        return None  # permissions, a full disk: the run reports those itself
    return None


def _read_only(data_dir: Path, root: Path) -> bool:
    mount = _mount_of(data_dir, root)
    if mount is not None:
        return "ro" in mount
    if root == ROOT:
        with contextlib.suppress(OSError):
            return bool(os.statvfs(data_dir).f_flag & os.ST_RDONLY)
    return False


def _mount_of(data_dir: Path, root: Path) -> set[str] | None:
    """The mount options of the mount point holding `data_dir`, from mountinfo (the
    longest mount point that is a prefix of the folder), or None when unreadable."""
    try:
        text = (root / MOUNTINFO).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    target = str(_existing(data_dir))
    best: tuple[int, set[str]] | None = None
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 6:
            continue
        point = fields[4].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) > best[0]):
            best = (len(point), set(fields[5].split(",")))
    return None if best is None else best[1]


def _existing(path: Path) -> Path:
    """`path` resolved, or its nearest existing parent (a data folder not created yet)."""
    path = path.absolute()
    while not path.exists() and path.parent != path:
        path = path.parent
    return path.resolve()


def storage_failure(exc: BaseException) -> bool:
    """Whether a run's storage error looks like a failing card (EIO, EROFS), not a full
    disk or a permission problem."""
    if isinstance(exc, OSError):
        return exc.errno in STORAGE_ERRNOS
    text = str(exc).lower()  # sqlite3: "disk I/O error", "attempt to write a readonly database"
    return "disk i/o error" in text or "readonly database" in text
