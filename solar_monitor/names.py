"""What an owner calls an inverter: one form for alerts, the digest, the sheet and `check`.

A microinverter's serial (E00122142045868) means nothing on the roof. The optional config
map `inverters: {serial: "south roof, row 2, #3"}` gives each one a name; without one,
the short form is the serial's last five characters, as printed at the end of the sticker
on the inverter and in the installer's layout. Both keep the tail, so a name can always
be traced back to the serial (the sheet finds its inverter columns by it, too).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

TAIL_CHARS = 5
_TAIL = re.compile(r"…(\S+?)\)?(?: kWh)?$")


def short_serial(serial: str) -> str:
    """'…45868': the serial's last five characters."""
    return f"…{serial[-TAIL_CHARS:]}"


def inverter_label(serial: str, labels: Mapping[str, str] | None = None) -> str:
    """The owner's name for an inverter, 'south roof, row 2, #3 (…45868)', or the short
    form '…45868' when the config gives it none."""
    name = (labels or {}).get(serial)
    return f"{name} ({short_serial(serial)})" if name else short_serial(serial)


def label_tail(label: str) -> str | None:
    """The serial tail a label or a sheet header ends with ('Inv 5 …45868 kWh' -> '45868')."""
    found = _TAIL.search(label)
    return found.group(1) if found else None
