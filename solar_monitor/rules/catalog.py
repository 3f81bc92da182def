"""The rule catalog: one frozen Rule per alert an owner can get.

A rule's `check` looks at one poll (a `PollView`) and yields `(subject, bad, details)`:
`bad` is True (the problem is there), False (it is not) or None (cannot tell now: night,
overcast, a failed poll...). The engine turns those verdicts into alerts with hysteresis
(`open_polls` bad verdicts spanning `open_after_min`, `clear_polls` good ones spanning
`clear_after_min`), so a rule never has to count polls itself.

Rules gate on the sun and on the inverters' peers, not on the clock: that is what keeps
them quiet at night, at dawn and dusk, under clouds and snow. Every threshold is a
parameter with a default here and an override in `alerts.rules.<id>.<param>`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from solar_monitor.pi_health import PiHealth, describe_flags
from solar_monitor.pvs.models import PRODUCING_MIN_KW, Inverter, Snapshot, Supervisor

Severity = Literal["info", "warning", "critical"]
SubjectKind = Literal["inverter", "meter", "system"]
Verdict = tuple[str, bool | None, dict[str, Any]]
Params = Mapping[str, float]

SYSTEM = "system"

# Hysteresis every rule has; rule-specific thresholds are added per rule.
COMMON_PARAMS = ("open_polls", "open_after_min", "clear_polls", "clear_after_min")


@dataclass
class PollView:
    """What the rules see of one poll: the snapshot plus facts the engine derived.

    Times are epoch seconds (UTC); angles in degrees; power in kW.
    """

    ts: float
    ok: bool
    error: str | None
    snapshot: Snapshot | None
    elevation_deg: float
    azimuth_deg: float
    cloud_cover_pct: float | None
    inverters: dict[str, Inverter]
    median_inverter_kw: float | None
    production_kw: float | None
    expected_kw: float | None  # learned clear-sky production at this sun position
    unchanged: bool | None  # every reading identical to the previous good poll
    known_inverters: Mapping[str, float]
    known_meters: Mapping[str, float]
    new_inverters: Mapping[str, float]  # serial -> first seen (after the warm-up)
    rebooted_at: float | None  # last unexpected PVS restart
    firmware_change: tuple[float, str, str] | None  # (when, old, new)
    day_scores: Mapping[str, tuple[int, int, int, float]]  # finished day: n, low, high, sum
    inverters_warm: bool = True  # a day of history seen
    ignored: frozenset[str] = frozenset()
    active: Callable[[str, str], bool] = field(default=lambda rule, subject: False)
    dark: Callable[[str], bool] = field(default=lambda serial: False)  # normally dark now
    pi: PiHealth | None = None  # the Pi's own health, this run (None: replay, recovery)
    snowy: bool = False  # the weather has snow at the site now (on the ground, or falling)
    # this inverter's darkness is put down to snow now (the weather's, or its row's)
    snow: Callable[[str], bool] = field(default=lambda serial: False)
    # issue 19: listed inverters whose own measurement time is older than
    # inverter_offline's `max_age_min` (not reporting: their values are not current power)
    silent: frozenset[str] = frozenset()
    # the production meter's current power (kW), None without a meter or when it is stale
    meter_kw: float | None = None
    # the production meter counts the power of the silent and absent inverters: they
    # produce, only their reports are lost (a power-line dropout)
    reports_lost: bool = False
    # inverters back from a daylight report gap within the last day (flapping)
    flapping: frozenset[str] = frozenset()

    def live_kw(self, serial: str) -> float:
        """An inverter's current power (kW); 0 when silent (its value is old) or unknown."""
        inv = self.inverters.get(serial)
        return 0.0 if inv is None or serial in self.silent else (inv.power_kw or 0.0)

    @property
    def supervisor(self) -> Supervisor | None:
        return self.snapshot.supervisor if self.snapshot else None


@dataclass(frozen=True, slots=True)
class Rule:
    """One alert rule. `message` says what is wrong ({subject} and the check's details
    are filled in); `advice` says what to check. `params` are the default thresholds."""

    id: str
    title: str
    severity: Severity
    subject: SubjectKind
    check: Callable[[PollView, Params], Iterator[Verdict]]
    message: str
    advice: str
    params: Mapping[str, float]


def _daylight(v: PollView, p: Params) -> bool:
    return v.ok and v.elevation_deg >= p["min_elevation_deg"]


def _inverters_judged(v: PollView, p: Params) -> bool:
    """Daylight, and a day of history: an inverter's normally dark hours (regular shade)
    are known only after it has been seen through a day."""
    return _daylight(v, p) and v.inverters_warm


def _peers_produce(v: PollView, p: Params) -> bool:
    """The inverters' median produces a meaningful amount: the sun really reaches the
    array (not night, dawn, dusk, heavy overcast or snow)."""
    med = v.median_inverter_kw
    return med is not None and med >= p["min_peer_kw"] and len(v.inverters) >= 2


# --------------------------------------------------------------------------- checks


def inverter_offline(v: PollView, p: Params) -> Iterator[Verdict]:
    if not _inverters_judged(v, p):
        return
    gate = _peers_produce(v, p)
    med = v.median_inverter_kw or 0.0
    for serial, inv in v.inverters.items():
        if serial in v.ignored:
            continue
        kw = v.live_kw(serial)
        if serial not in v.silent and inv.producing and kw >= p["peer_fraction"] * med:
            yield serial, False, {}
        elif not gate or v.dark(serial) or v.snow(serial):
            continue
        elif serial in v.silent:
            yield serial, True, _silent_details(v, inv, med)
        else:
            yield serial, True, {"peer_kw": med, "kw": kw,
                                 "what": f"produced nothing ({inv.state or 'no state'})"}


def _silent_details(v: PollView, inv: Inverter, med: float) -> dict[str, Any]:
    """Why a silent inverter is bad: its reports are lost while the meter still counts its
    power (judged as slowly as a dropout deserves), or it stopped while its last values
    claim power (new firmware keeps them: judged from when it stopped)."""
    details: dict[str, Any] = {"peer_kw": med, "kw": 0.0,
                               "what": "not reported (the PVS repeats its old values)"}
    if v.reports_lost:
        details["reports_lost"] = True
        details["flapping"] = inv.serial in v.flapping
    elif inv.data_time is not None and (inv.power_kw or 0.0) >= PRODUCING_MIN_KW:
        details["stopped"] = inv.data_time.timestamp()
    return details


def inverter_missing(v: PollView, p: Params) -> Iterator[Verdict]:
    # All absent at once is a PVS restart or a PVS that lost its bus: not one inverter.
    if not _inverters_judged(v, p) or not v.inverters:
        return
    gate = _peers_produce(v, p)
    for serial in v.known_inverters:
        if serial in v.ignored:
            continue
        if serial in v.inverters:
            yield serial, False, {}
        elif (gate and not v.active("inverter_offline", serial) and not v.dark(serial)
              and not v.snow(serial)):
            # the meter still counts it, or there is no meter to tell: a dropout until
            # it has lasted longer than one
            lost = v.reports_lost or v.meter_kw is None
            yield serial, True, {"present": len(v.inverters), "reports_lost": lost,
                                 "flapping": serial in v.flapping}


def inverters_silent(v: PollView, p: Params) -> Iterator[Verdict]:
    """Most inverters silent (old values, or gone from the list) together in daylight
    while the production meter still counts their power: communications, one system
    alert, never one per inverter. A frozen PVS is data_stale's; a meter near 0, or no
    meter, production_low's (breaker or array)."""
    if not _inverters_judged(v, p) or v.snowy:
        return
    known = [s for s in v.known_inverters if s not in v.ignored]
    gone = [s for s in known if s in v.silent or s not in v.inverters]
    if len(known) < 2 or len(gone) <= p["share"] * len(known):
        if known:
            yield SYSTEM, False, {}
        return
    if v.unchanged or v.active("data_stale", SYSTEM):
        return  # the PVS froze: data_stale says so
    if v.meter_kw is None or v.meter_kw < p["meter_zero_kw"]:
        # nothing reaches the meter, or no meter to tell silence from darkness: the
        # production figure is 0 (old values are no power), production_low's to say
        return
    cause = (f"the production meter still counts {v.meter_kw:.2f} kW, so the panels "
             "produce: the PVS has lost contact with them (communications)")
    yield SYSTEM, True, {"count": len(gone), "total": len(known), "cause": cause}


def inverter_underperforming(v: PollView, p: Params) -> Iterator[Verdict]:
    for serial, (n, low, high, total) in v.day_scores.items():
        if serial in v.ignored or n < p["min_samples"]:
            continue
        share = {"share_pct": round(100 * total / n)}
        if 2 * low > n:
            yield serial, True, share
        elif 2 * high > n:
            yield serial, False, share


def pvs_unreachable(v: PollView, p: Params) -> Iterator[Verdict]:
    yield SYSTEM, not v.ok, {"error": v.error or "no answer"}


def data_stale(v: PollView, p: Params) -> Iterator[Verdict]:
    if v.ok and v.unchanged is not None:
        yield SYSTEM, v.unchanged, {}


def pvs_storage_low(v: PollView, p: Params) -> Iterator[Verdict]:
    sup = v.supervisor
    if sup is None or (sup.flash_avail_kib is None and sup.flash_used_pct is None):
        return
    low = (sup.flash_avail_kib is not None and sup.flash_avail_kib < p["min_free_kib"]) or \
        (sup.flash_used_pct is not None and sup.flash_used_pct >= p["max_used_pct"])
    free = "?" if sup.flash_avail_kib is None else f"{sup.flash_avail_kib / 1024:.1f} MiB"
    used = "?" if sup.flash_used_pct is None else f"{sup.flash_used_pct:.0f} %"
    yield SYSTEM, low, {"free": free, "used": used}


def pvs_flash_wear(v: PollView, p: Params) -> Iterator[Verdict]:
    sup = v.supervisor
    if sup is None or sup.flash_wear_pct is None:
        return  # legacy firmware does not report it
    yield SYSTEM, sup.flash_wear_pct >= p["max_wear_pct"], {"wear_pct": sup.flash_wear_pct}


def pvs_upload_backlog(v: PollView, p: Params) -> Iterator[Verdict]:
    sup = v.supervisor
    if sup is None or sup.untransmitted is None:
        return
    yield SYSTEM, sup.untransmitted >= p["max_records"], {"records": int(sup.untransmitted)}


def pvs_rebooted(v: PollView, p: Params) -> Iterator[Verdict]:
    if not v.ok:
        return
    recent = v.rebooted_at is not None and v.ts - v.rebooted_at < p["window_h"] * 3600
    yield SYSTEM, recent, {"at": v.rebooted_at}


def firmware_changed(v: PollView, p: Params) -> Iterator[Verdict]:
    if not v.ok:
        return
    change = v.firmware_change
    recent = change is not None and v.ts - change[0] < p["window_h"] * 3600
    old, new = (change[1], change[2]) if change else ("?", "?")
    yield SYSTEM, recent, {"old": old, "new": new}


def new_inverter(v: PollView, p: Params) -> Iterator[Verdict]:
    if not v.ok:
        return
    for serial, first in v.new_inverters.items():
        yield serial, v.ts - first < p["window_h"] * 3600, {}


def inverter_over_temperature(v: PollView, p: Params) -> Iterator[Verdict]:
    if not v.ok:
        return
    for serial, inv in v.inverters.items():
        t = inv.heatsink_c
        if t is None or serial in v.ignored or serial in v.silent:
            continue  # a silent inverter's heatsink is an old reading
        if t >= p["max_c"]:
            yield serial, True, {"temp_c": t}
        elif t < p["max_c"] - p["hysteresis_c"]:
            yield serial, False, {"temp_c": t}


def meter_missing(v: PollView, p: Params) -> Iterator[Verdict]:
    if not v.ok or v.snapshot is None:
        return
    present = {m.serial for m in v.snapshot.meters}
    for serial in v.known_meters:
        yield serial, serial not in present, {}


def _grid_readings(snap: Snapshot, silent: frozenset[str]) -> tuple[list[float], list[float]]:
    """(volts, hertz) from the meters, else the inverters' median (no meter sites); never
    an old reading (the varserver keeps a silent inverter's last volts and hertz)."""
    meters = [m for m in snap.meters if not m.stale]
    volts = [m.voltage_v for m in meters if m.voltage_v is not None]
    hertz = [m.freq_hz for m in meters if m.freq_hz is not None]
    if not volts or not hertz:
        current = [i for i in snap.inverters if i.serial not in silent]
        inv_v = sorted(i.ac_voltage_v for i in current if i.ac_voltage_v)
        inv_hz = sorted(i.freq_hz for i in current if i.freq_hz)
        volts = volts or ([inv_v[len(inv_v) // 2]] if inv_v else [])
        hertz = hertz or ([inv_hz[len(inv_hz) // 2]] if inv_hz else [])
    return volts, hertz


def grid_out_of_range(v: PollView, p: Params) -> Iterator[Verdict]:
    if not v.ok or v.snapshot is None:
        return
    volts, hertz = _grid_readings(v.snapshot, v.silent)
    if not volts and not hertz:
        return
    bad_v = [x for x in volts if not p["min_v"] <= x <= p["max_v"]]
    bad_hz = [x for x in hertz if not p["min_hz"] <= x <= p["max_hz"]]
    shown = ", ".join([f"{x:.1f} V" for x in bad_v or volts[:1]] +
                      [f"{x:.2f} Hz" for x in bad_hz or hertz[:1]])
    yield SYSTEM, bool(bad_v or bad_hz), {"reading": shown}


def production_low(v: PollView, p: Params) -> Iterator[Verdict]:
    if not _daylight(v, p) or v.expected_kw is None or v.production_kw is None:
        return
    if v.expected_kw < p["min_expected_kw"]:
        return
    if v.active("grid_out_of_range", SYSTEM) or v.active("data_stale", SYSTEM):
        return  # the inverters are off for a reason another alert already gives
    if v.cloud_cover_pct is not None and v.cloud_cover_pct >= p["overcast_pct"]:
        return  # quiet on overcast days
    ratio = max(0.0, v.production_kw) / v.expected_kw
    details = {"kw": max(0.0, v.production_kw), "expected_kw": v.expected_kw,
               "pct": round(100 * ratio)}
    if ratio >= p["ok_ratio"]:
        yield SYSTEM, False, details
    elif ratio < p["low_ratio"]:
        # Snow, ice or deep overcast leave the array connected but dark: some inverters
        # report a trickle of power, or the production meter shows their standby draw
        # (about -15 W). A tripped breaker disconnects them: no power and a meter at 0.
        alive = any(v.live_kw(serial) > 0.0 for serial in v.inverters)
        meter = v.snapshot.meter("production") if v.snapshot else None
        standby = meter is not None and (meter.power_kw or 0.0) <= -p["standby_kw"]
        # Under the weather's snow a buried array reads exactly like this; the hardware
        # signs (grid, a frozen or silent PVS) have rules of their own that snow never
        # holds. Judged again once the snow is gone from the weather data.
        if not alive and not standby and not v.snowy:
            yield SYSTEM, True, details


def pi_undervoltage(v: PollView, p: Params) -> Iterator[Verdict]:
    if v.pi is None or v.pi.throttled is None:
        return  # not a Pi (no firmware flags): silent
    flags = v.pi.power_flags
    yield SYSTEM, bool(flags), {"flags": describe_flags(flags),
                                "raw": f"0x{v.pi.throttled:x}"}


def pi_storage_failing(v: PollView, p: Params) -> Iterator[Verdict]:
    if v.pi is not None:
        problem = v.pi.storage_problem
        yield SYSTEM, problem is not None, {"problem": problem or "none"}


def pi_hot(v: PollView, p: Params) -> Iterator[Verdict]:
    t = v.pi.cpu_temp_c if v.pi is not None else None
    if t is None:
        return
    if t >= p["max_c"]:
        yield SYSTEM, True, {"temp_c": t}
    elif t < p["max_c"] - p["hysteresis_c"]:
        yield SYSTEM, False, {"temp_c": t}


# --------------------------------------------------------------------------- the table

_HYST = {"open_polls": 3, "open_after_min": 30, "clear_polls": 2, "clear_after_min": 15}
_EVENT = {"open_polls": 1, "open_after_min": 0, "clear_polls": 1, "clear_after_min": 0,
          "window_h": 6}
_SUN = {"min_elevation_deg": 15.0, "min_peer_kw": 0.03}
# an inverter whose reports are lost while the meter counts its power: longer than a
# dropout lasts (1-3 polls), and longer still when it is flapping (two may follow)
_LOST = {"lost_open_polls": 4, "lost_open_min": 45.0, "flap_open_polls": 8,
         "flap_open_min": 120.0}

RULES: tuple[Rule, ...] = (
    Rule("pvs_unreachable", "PVS unreachable", "critical", "system", pvs_unreachable,
         "The PVS has not answered since {since} ({error}). Nothing is being monitored.",
         "Check that the PVS has power (its lights are on), the Pi's cable to its LAN1 port "
         "(or, when pvs.url is the PVS's home-network address, that the PVS is on your "
         "network), then run 'sudo solar-monitor check' on the Pi.",
         {**_HYST, "clear_polls": 1, "clear_after_min": 0}),
    Rule("data_stale", "PVS data frozen", "critical", "system", data_stale,
         "The PVS answers, but none of its readings has changed since {since}.",
         "Power-cycle the PVS (its breaker off 1 minute, then on); if the data stays "
         "frozen, its data logger hangs: ask your installer or SunStrong to service it.",
         {**_HYST, "open_polls": 4, "open_after_min": 90}),
    Rule("grid_out_of_range", "Grid out of range", "warning", "system", grid_out_of_range,
         "Grid voltage or frequency outside the normal band since {since} ({reading}); "
         "the inverters stop producing while it lasts.",
         "If it persists or repeats, report it to your utility; many neighbours see it too.",
         {**_HYST, "open_polls": 2, "open_after_min": 15, "min_v": 212.0, "max_v": 254.0,
          "min_hz": 59.5, "max_hz": 60.5}),
    Rule("production_low", "Production far below normal", "critical", "system", production_low,
         "The whole system produces {kw:.2f} kW ({pct} % of the {expected_kw:.2f} kW it "
         "makes at this sun position on clear days) since {since}, and no inverter reports "
         "any power.",
         "Check the solar breaker in the main panel and the PV disconnect. If the panels "
         "are covered in snow, this clears by itself when it melts.",
         {**_HYST, "open_polls": 6, "open_after_min": 90, "min_elevation_deg": 20.0,
          "low_ratio": 0.15, "ok_ratio": 0.3, "overcast_pct": 80.0, "min_expected_kw": 0.2,
          "standby_kw": 0.005}),
    Rule("inverter_offline", "Inverter offline", "warning", "inverter", inverter_offline,
         "Inverter {subject} has {what} since {since} while the sun is up and the median "
         "inverter makes {peer_kw:.3f} kW.",
         "Look at that panel (damage, debris, a loose connector under it). A "
         "microinverter that stays off needs replacing and may still be under warranty: "
         "give your installer its serial {serial}, the date it stopped ({since}) and the "
         "monthly digest's kWh history of that inverter.",
         {**_HYST, **_SUN, "peer_fraction": 0.05, "max_age_min": 10.0,
          "stopped_open_polls": 2, "stopped_open_min": 35.0, **_LOST}),
    Rule("inverter_missing", "Inverter missing", "warning", "inverter", inverter_missing,
         "Inverter {subject} is no longer in the PVS's device list since {since}, while "
         "{present} others are.",
         "Power-cycle the PVS (breaker off 1 minute) to make it rediscover the inverter; "
         "if it stays missing, look at that panel and give your installer its serial "
         "{serial}; if it was replaced, add the old serial to alerts.ignore_inverters.",
         {**_HYST, **_SUN, **_LOST}),
    Rule("inverters_silent", "Inverters not reporting", "critical", "system",
         inverters_silent,
         "{count} of {total} inverters have not reported since {since} while the sun is "
         "up: {cause}.",
         "Power-cycle the PVS (breaker off 1 minute). If they stay silent, the power-line "
         "link to the inverters is failing: call your installer.",
         {**_HYST, **_SUN, "share": 0.5, "meter_zero_kw": 0.02}),
    Rule("inverter_underperforming", "Inverter underperforming", "warning", "inverter",
         inverter_underperforming,
         "Inverter {subject} produced about {share_pct} % of its usual share of the array "
         "on sunny hours, day after day (since {since}).",
         "Look at that panel for new shade (a growing tree), dirt or damage; a failing "
         "panel or inverter is a warranty claim: your installer needs its serial {serial} "
         "and the monthly digest's kWh history of that inverter.",
         {"open_polls": 2, "open_after_min": 0, "clear_polls": 2, "clear_after_min": 0,
          "weak_ratio": 0.75, "ok_ratio": 0.85, "min_samples": 3}),
    Rule("inverter_over_temperature", "Inverter hot", "warning", "inverter",
         inverter_over_temperature,
         "Inverter {subject} heatsink at {temp_c:.0f} °C since {since}.",
         "Look under that panel for debris blocking the air flow; the inverter produces "
         "less while it is hot.",
         {**_HYST, "max_c": 85.0, "hysteresis_c": 5.0}),
    Rule("meter_missing", "Meter missing", "warning", "meter", meter_missing,
         "Power meter {subject} is no longer in the PVS's device list since {since}: "
         "production and consumption figures are incomplete.",
         "Power-cycle the PVS (its breaker off 1 minute, then on); if the meter stays "
         "missing, ask your installer to check its wiring (inside the PVS: mains).",
         {**_HYST, "open_polls": 4, "open_after_min": 45}),
    Rule("pvs_storage_low", "PVS storage nearly full", "warning", "system", pvs_storage_low,
         "The PVS's flash is nearly full ({free} free, {used} used) since {since}: the known "
         "firmware bug that stops cloud reporting.",
         "Check that the PVS is online (its network cable or Wi-Fi to your router); a "
         "power cycle (breaker off 1 minute) or a firmware update clears its logs.",
         {**_HYST, "min_free_kib": 10240.0, "max_used_pct": 92.0, "clear_polls": 4,
          "clear_after_min": 60}),
    # SunPower's servers refused firmware updates to a PVS at 80 % wear; peer projects
    # alert at 90 %. Wear only grows, so the alert clears only after a PVS swap.
    Rule("pvs_flash_wear", "PVS flash wearing out", "warning", "system", pvs_flash_wear,
         "The PVS's flash memory (eMMC) has used {wear_pct:.0f} % of its rated life "
         "(since {since}). At 80 % SunPower stopped sending a PVS firmware updates, and a "
         "worn-out eMMC fails.",
         "The PVS still works: plan its replacement with your installer or SunStrong "
         "before the flash fails.",
         {**_HYST, "max_wear_pct": 80.0, "clear_polls": 4, "clear_after_min": 60}),
    Rule("pvs_upload_backlog", "PVS not reaching the cloud", "warning", "system",
         pvs_upload_backlog,
         "{records} records wait for upload on the PVS (since {since}): it is not reaching "
         "the cloud, and its flash will fill up.",
         "Check the PVS's internet connection (Wi-Fi or Ethernet to your router).",
         {**_HYST, "open_polls": 4, "open_after_min": 60, "max_records": 100.0,
          "clear_polls": 4, "clear_after_min": 60}),
    Rule("pvs_rebooted", "PVS restarted", "info", "system", pvs_rebooted,
         "The PVS restarted unexpectedly (outside its usual nightly restart) around {since}.",
         "Nothing to do if it happens once; frequent restarts point at power or firmware "
         "trouble.",
         dict(_EVENT)),
    Rule("firmware_changed", "PVS firmware changed", "info", "system", firmware_changed,
         "The PVS firmware changed from {old} to {new} around {since}.",
         "Nothing to do; if readings stop, 'sudo solar-monitor check' says what the new "
         "firmware needs.",
         dict(_EVENT)),
    Rule("new_inverter", "New inverter", "info", "inverter", new_inverter,
         "A new inverter, {subject}, appeared in the PVS's device list around {since}.",
         "Expected after an inverter replacement; otherwise 'sudo solar-monitor check' "
         "lists the inverters the PVS sees, and the config's inverters: can name it.",
         {**_EVENT, "window_h": 24}),
    # The watchdog itself: judged on each run's reading of the Pi (never in a replay).
    Rule("pi_storage_failing", "The Pi's SD card is failing", "critical", "system",
         pi_storage_failing,
         "The Pi's data storage is failing since {since}: {problem}. This is how SD "
         "cards die; readings may stop being saved at any moment.",
         "Replace the SD card soon (a high-endurance card); copy the data folder off first "
         "if it still reads. A power cut during a write can also cause this: reboot once.",
         {"open_polls": 1, "open_after_min": 0, "clear_polls": 4, "clear_after_min": 60}),
    Rule("pi_undervoltage", "The Pi's power supply is too weak", "warning", "system",
         pi_undervoltage,
         "The Pi reports {flags} (firmware flags {raw}, since {since}): its supply "
         "sags. Brown-outs corrupt the SD card and drop the network; a Pi powered from a "
         "PVS USB port is the usual cause.",
         "Power the Pi from its own 5 V supply (the official one for the model, with its "
         "short thick cable), not a PVS USB port; the since-boot flags clear at the next reboot.",
         {"open_polls": 1, "open_after_min": 0, "clear_polls": 2, "clear_after_min": 15}),
    Rule("pi_hot", "The Pi runs hot", "warning", "system", pi_hot,
         "The Pi's CPU has been at {temp_c:.0f} °C or more since {since}; it slows down "
         "and ages faster (a PVS box in the summer sun gets hot).",
         "Give the Pi a heatsink or a ventilated case, keep it away from the PVS's own "
         "warm parts, and shade the box if the sun falls on it.",
         {**_HYST, "open_polls": 4, "open_after_min": 45, "clear_polls": 2,
          "clear_after_min": 30, "max_c": 75.0, "hysteresis_c": 5.0}),
)

BY_ID: dict[str, Rule] = {r.id: r for r in RULES}


def params_for(rule: Rule, overrides: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """The rule's defaults with the config's overrides applied."""
    return {**rule.params, **overrides.get(rule.id, {})}


def check_overrides(overrides: Mapping[str, Mapping[str, Any]]) -> str | None:
    """Config check: every rule id and parameter name must exist (a typo never silently
    leaves the default in place)."""
    for rule_id, params in overrides.items():
        rule = BY_ID.get(rule_id)
        if rule is None:
            return f"unknown rule {rule_id!r}; rules are: {', '.join(BY_ID)}"
        unknown = [k for k in params if k not in rule.params]
        if unknown:
            return (f"rule {rule_id!r} has no parameter {unknown[0]!r}; "
                    f"it has: {', '.join(rule.params)}")
    return None
