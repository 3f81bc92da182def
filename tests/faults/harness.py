"""A site under test for long fault scenarios: the PVS emulator, a fake Google Sheet and a
real SMTP server, all on loopback, and the real pipeline run every 15 simulated minutes.

The emulator and every run share one simulated clock (`Clock`), so the PVS's own clock
always equals the run's time, as on a real site. Retries inside a poll do not really
sleep (the client's one test seam); everything else is real: HTTP, SQLite, gspread,
apprise and SMTP.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from solar_monitor.config import Config, config_from_dict
from solar_monitor.emulation.emulator import Emulator, default_spec, start_emulator
from solar_monitor.emulation.sim import SimulatedSite
from solar_monitor.pipeline import RunReport, open_store, run_once
from solar_monitor.sinks import sheets
from tests.fake_sheets import FakeSheetsAPI
from tests.test_notify import Inbox, free_port
from tests.test_pipeline import Clock, fast_client

SID = "1FaultsFaultsFaultsFaultsFaultsFaultsFaults0"
EMAIL = "solar-monitor@solar-test.iam.gserviceaccount.com"
SITE = {"name": "Test house", "latitude": 42.36, "longitude": -71.06,
        "timezone": "America/New_York"}
TZ = ZoneInfo(SITE["timezone"])
STEP = timedelta(minutes=15)
TITLES = ("Readings", "Daily", "Alerts")


def local(day: datetime, hours: float) -> datetime:
    """`hours` after the local midnight of `day` (an aware datetime), as UTC."""
    midnight = datetime.combine(day.astimezone(TZ).date(), datetime.min.time(), tzinfo=TZ)
    return (midnight + timedelta(hours=hours)).astimezone(day.tzinfo)


def make_site(start: datetime, inverters: int = 8, seed: int = 3) -> SimulatedSite:
    """A site near Boston whose counters start at the UTC midnight before `start`."""
    return SimulatedSite(default_spec(start, inverter_count=inverters, seed=seed,
                                      latitude=SITE["latitude"], longitude=SITE["longitude"],
                                      timezone=SITE["timezone"]))


class MailServer:
    """The owner's SMTP server on one fixed port; it can go down and come back, and
    `messages` holds everything it ever accepted."""

    def __init__(self) -> None:
        self.port = free_port()
        self._boxes: list[Inbox] = []
        self._up: Inbox | None = None

    def url(self) -> str:
        return Inbox(self.port).url()

    def up(self) -> None:
        assert self._up is None
        self._up = Inbox(self.port).__enter__()
        self._boxes.append(self._up)

    def down(self) -> None:
        assert self._up is not None
        self._up.__exit__(None, None, None)
        self._up = None

    @property
    def is_up(self) -> bool:
        return self._up is not None

    @property
    def messages(self) -> list[EmailMessage]:
        return [m for box in self._boxes for m in box.messages]


@dataclass
class Rig:
    """One site under test. `run()` is one cron run at the clock's time, then +15 min."""

    config: Config
    clock: Clock
    emulator: Emulator
    sheet: FakeSheetsAPI
    mail: MailServer
    reports: list[RunReport] = field(default_factory=list)

    def run(self) -> RunReport:
        report = run_once(self.config, now=self.clock.now, client=fast_client(self.config))
        self.reports.append(report)
        self.clock.now += STEP
        return report

    def run_until(self, end: datetime,
                  actions: dict[datetime, Callable[[], None]] | None = None) -> None:
        """Run every 15 minutes until `end` (exclusive), doing `actions[t]` just before
        the run at t."""
        actions = actions or {}
        while self.clock.now < end:
            if (action := actions.get(self.clock.now)) is not None:
                action()
            self.run()

    def query(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        with open_store(self.config) as store:
            return store.db.execute(sql, args).fetchall()

    def sheet_rows(self, title: str) -> list[dict[str, Any]]:
        """The data rows of a worksheet, each as {header: value}."""
        header, *rows = self.sheet.sheet(SID, title).values()
        return [dict(zip(header, row, strict=False)) for row in rows]


def pvs_settings() -> dict[str, Any]:
    """Short timeouts: a slow PVS costs one real second per run, not two minutes."""
    return {"request_timeout_s": 1.0, "poll_budget_s": 2.0}


@contextmanager
def rig(tmp_path: Path, site: SimulatedSite, start: datetime, *, firmware: str = "varserver",
        **sections: Any) -> Iterator[Rig]:
    """Start the emulator, the fake sheet and the SMTP server; yield the rig.

    `sections` are config sections merged over the defaults (alerts, notify...)."""
    clock = Clock(start)
    mail = MailServer()
    with ExitStack() as stack:
        fake = stack.enter_context(FakeSheetsAPI())
        fake.add_spreadsheet(SID, "Solar at home")
        # 1024 bits: each run loads the key (Google's 2048-bit keys cost ~35 ms a load)
        key = fake.service_account_key(tmp_path / "google-key.json", EMAIL, bits=1024)
        hooks = sheets.SESSION_HOOKS
        sheets.SESSION_HOOKS = [fake.mount]
        stack.callback(setattr, sheets, "SESSION_HOOKS", hooks)
        emulator = stack.enter_context(start_emulator(site, firmware=firmware, clock=clock))
        mail.up()
        stack.callback(lambda: mail.down() if mail.is_up else None)
        raw: dict[str, Any] = {
            "site": dict(SITE),
            "pvs": {"url": emulator.url, **pvs_settings()},
            "data_dir": str(tmp_path / "data"),
            "weather": {"enabled": False},
            "notify": {"targets": [{"url": mail.url(), "tags": ["alerts", "digest"]}]},
            "google_sheets": {"spreadsheet": SID, "key_file": str(key), "timeout_s": 5,
                              "max_wait_s": 0},
        }
        for name, value in sections.items():
            raw[name] = {**raw.get(name, {}), **value}
        config = config_from_dict(raw, env={})
        yield Rig(config, clock, emulator, fake, mail)
