"""Archive retention: delete raw day folders older than `archive.retention_days`.

A day folder is deleted only when every poll in it is in the store, so retention can
never lose a reading the database does not have. Off by default: a year of raw answers
is about 140 MB on disk (one 4 KB block per file), so an 8 GB card lasts decades.
"""

from __future__ import annotations

import logging
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from solar_monitor.archive import classify
from solar_monitor.store import Store, iso

log = logging.getLogger(__name__)


def prune_archive(store: Store, raw: Path, now: datetime, retention_days: int) -> int:
    """Delete day folders (UTC) entirely older than the retention. Returns files deleted."""
    cutoff = (now.astimezone(UTC) - timedelta(days=retention_days)).date()
    removed = 0
    for day_dir in sorted(raw.glob("[0-9][0-9][0-9][0-9]/[0-9][0-9]/[0-9][0-9]")):
        day = _folder_date(day_dir)
        if day is None or day >= cutoff:
            continue
        polls = [p for f in day_dir.iterdir() if (p := classify(f, UTC)) is not None]
        stored = store.poll_times_since(datetime(day.year, day.month, day.day, tzinfo=UTC))
        missing = [p for p in polls if iso(p.polled_at) not in stored]
        if missing:
            log.warning("retention: keeping %s: %d poll(s) there are not in the database "
                        "(run 'solar-monitor replay %s' to store them)",
                        day_dir, len(missing), day_dir)
            continue
        shutil.rmtree(day_dir)
        removed += len(polls)
        for parent in (day_dir.parent, day_dir.parent.parent):
            if not any(parent.iterdir()):
                parent.rmdir()
    if removed:
        log.info("retention: deleted %d raw file(s) older than %s", removed, cutoff)
    return removed


def _folder_date(day_dir: Path) -> date | None:
    try:
        return date(int(day_dir.parent.parent.name), int(day_dir.parent.name),
                    int(day_dir.name))
    except ValueError:
        return None
