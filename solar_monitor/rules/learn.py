"""The rules engine's memory: rolling state, and what it learns from the site's history.

Two parts, persisted as JSON in `alert_memory` (rows 'rolling' and 'learned'):
- rolling: known devices, the previous poll's fingerprint (stale data), PVS boots and
  firmware, today's per-inverter scores, and each (rule, subject) streak;
- learned: a clear-sky envelope (production by sun position), each inverter's ratio to
  the array's median inverter, and each inverter's own recent best power, both per
  15-minute slot of the (UTC) day: the same slot on consecutive days is the same sun
  position to within a degree or so.

Why learned rather than modelled: the owner's roof faces, tilts, shade and panel ages are
unknown to us, but a few clear days show them. An inverter on a west roof or behind a
chimney has its own normal ratio to its peers, and is judged against that; ratios are
learned only on clear-ish polls (production near the envelope), where roof faces differ
most predictably. An inverter whose own best recent power in this slot is tiny (15 W, or
a tenth of its best in any slot) is "normally dark" here (regular shade, a roof face
turned away) and is not called offline for producing nothing there. Envelopes are
decaying maxima: a robust stand-in for the P95 of production.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ENVELOPE_DECAY_PER_DAY = 0.985  # a clear-sky maximum fades to half in ~46 days
ENVELOPE_MAX_AGE_DAYS = 60.0  # older bins are not trusted (seasons moved on)
ELEVATION_BIN_DEG = 5.0
AZIMUTH_BIN_DEG = 15.0
SLOT_S = 900  # ratios and own envelopes: per 15-minute slot of the UTC day
OWN_DECAY_PER_DAY = 0.8  # an inverter's own best power: "the last week or so"
OWN_MAX_AGE_DAYS = 21.0
DARK_FRACTION = 0.1
DARK_MAX_KW = 0.015  # ... or under this: a panel in regular shade that barely starts
RATIO_ALPHA = 0.1  # exponential weight of one clear poll in an inverter's ratio
RATIO_WARM_SAMPLES = 3  # a slot judges only after this many samples
RATIO_ACCEPT = (0.8, 1.25)  # a sample this far from normal is judged, never learned
GAIN_ACCEPT = (0.8, 1.25)  # a meter/inverters ratio this far from 1 is not learned
FLAP_MEMORY_S = 86400  # an inverter back from a report gap within this is flapping
CLEAR_FRACTION = 0.6  # a poll is clear-ish when production is this share of the envelope
LEARN_MIN_ELEVATION_DEG = 15.0
LEARN_MIN_MEDIAN_KW = 0.03
WARMUP_S = 48 * 3600  # new inverters and restarts are not news in the first two days
BOOT_JUMP_S = 5400  # the estimated boot time moving later by this much is a restart
ROUTINE_BOOT_WINDOW_S = 2700  # a restart within 45 min of the same local time ...
ROUTINE_BOOT_DAYS = 2  # ... on this many of the last 8 days is the nightly routine
BOOT_HISTORY_S = 8 * 86400
NEW_INVERTER_KEEP_S = 7 * 86400


def env_key(elevation_deg: float, azimuth_deg: float) -> str:
    return f"{int(elevation_deg // ELEVATION_BIN_DEG)},{int(azimuth_deg // AZIMUTH_BIN_DEG)}"


def slot_key(ts: float) -> str:
    return str(int(ts % 86400 // SLOT_S))


def _decayed(entry: list[float] | None, ts: float, decay: float, max_age: float
             ) -> float | None:
    if entry is None:
        return None
    age = ts / 86400 - entry[1]
    return None if age > max_age else entry[0] * decay ** max(age, 0.0)


@dataclass
class Streak:
    """Consecutive bad (or good) verdicts of one (rule, subject); times in epoch s."""

    bad_n: int = 0
    bad_since: float = 0.0
    good_n: int = 0
    good_since: float = 0.0

    def to_json(self) -> list[float]:
        return [self.bad_n, self.bad_since, self.good_n, self.good_since]

    @classmethod
    def from_json(cls, data: list[float]) -> Streak:
        return cls(int(data[0]), float(data[1]), int(data[2]), float(data[3]))


@dataclass
class Memory:
    """Everything the engine carries from one poll to the next. Times: epoch seconds."""

    first_ts: float | None = None
    last_ts: float | None = None
    known_inverters: dict[str, float] = field(default_factory=dict)
    known_meters: dict[str, float] = field(default_factory=dict)
    new_inverters: dict[str, float] = field(default_factory=dict)
    fingerprint: Any = None
    boot_ts: float | None = None
    boots: list[list[float]] = field(default_factory=list)  # [boot ts, local time of day]
    rebooted_at: float | None = None
    firmware: str | None = None
    firmware_change: list[Any] | None = None
    day: str | None = None
    day_scores: dict[str, list[float]] = field(default_factory=dict)  # n, low, high, sum
    flagged_today: set[str] = field(default_factory=set)
    streaks: dict[tuple[str, str], Streak] = field(default_factory=dict)
    # snow (issue 15): the last snowfall, the last poll the weather had snow, and the
    # inverters that went dark under that snow and have not produced since (serial -> ts)
    snowfall_ts: float | None = None
    snow_since: float | None = None  # the first poll of the weather's current snow
    snow_ts: float | None = None
    snow_dark: dict[str, float] = field(default_factory=dict)
    # the production meter's reading over the inverters' sum, when every inverter reports:
    # tells an inverter whose reports are lost (the meter still counts its power) from one
    # that stopped producing (issue 19)
    meter_gain: float | None = None
    # daylight report gaps: inverters silent or absent now, and when each last came back
    # from a gap (an inverter that drops out and returns is flapping, not failing)
    in_gap: set[str] = field(default_factory=set)
    came_back: dict[str, float] = field(default_factory=dict)
    # learned
    envelope: dict[str, list[float]] = field(default_factory=dict)  # key -> [kw, day]
    ratios: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # [ratio, n]
    own: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # [kw, day]
    learned_dirty: bool = False

    # ------------------------------------------------------------------ persistence

    def rolling_json(self) -> dict[str, Any]:
        return {
            "first_ts": self.first_ts, "last_ts": self.last_ts,
            "known_inverters": self.known_inverters, "known_meters": self.known_meters,
            "new_inverters": self.new_inverters, "fingerprint": self.fingerprint,
            "boot_ts": self.boot_ts, "boots": self.boots, "rebooted_at": self.rebooted_at,
            "firmware": self.firmware, "firmware_change": self.firmware_change,
            "day": self.day, "day_scores": self.day_scores,
            "flagged_today": sorted(self.flagged_today),
            "streaks": {f"{r}|{s}": st.to_json() for (r, s), st in self.streaks.items()},
            "snowfall_ts": self.snowfall_ts, "snow_ts": self.snow_ts,
            "snow_since": self.snow_since,
            "snow_dark": self.snow_dark, "meter_gain": self.meter_gain,
            "in_gap": sorted(self.in_gap), "came_back": self.came_back,
        }

    def learned_json(self) -> dict[str, Any]:
        return {"envelope": self.envelope, "ratios": self.ratios, "own": self.own}

    @classmethod
    def from_json(cls, rolling: dict[str, Any] | None, learned: dict[str, Any] | None
                  ) -> Memory:
        mem = cls()
        if rolling:
            for name in ("first_ts", "last_ts", "known_inverters", "known_meters",
                         "new_inverters", "fingerprint", "boot_ts", "boots", "rebooted_at",
                         "firmware", "firmware_change", "day", "day_scores",
                         "snowfall_ts", "snow_ts", "snow_dark", "snow_since", "meter_gain",
                         "came_back"):
                if name in rolling:
                    setattr(mem, name, rolling[name])
            mem.flagged_today = set(rolling.get("flagged_today", []))
            mem.in_gap = set(rolling.get("in_gap", []))
            for key, data in rolling.get("streaks", {}).items():
                rule, _, subject = key.partition("|")
                mem.streaks[(rule, subject)] = Streak.from_json(data)
        if learned:
            mem.envelope = learned.get("envelope", {})
            mem.ratios = learned.get("ratios", {})
            mem.own = learned.get("own", {})
        return mem

    # ------------------------------------------------------------------ meter gain

    def learn_meter_gain(self, meter_kw: float, inverters_kw: float) -> None:
        """Follow the production meter's reading over the inverters' sum (both kW), taken
        when every known inverter reports; a ratio far from 1 is a glitch, not a gain."""
        ratio = meter_kw / inverters_kw
        if not GAIN_ACCEPT[0] <= ratio <= GAIN_ACCEPT[1]:
            return
        gain = self.meter_gain
        self.meter_gain = round(ratio if gain is None else gain + RATIO_ALPHA * (ratio - gain),
                                5)

    def observe_gaps(self, ts: float, gone: set[str], reporting: set[str]) -> None:
        """Daylight polls only: note which inverters are in a report gap, and when each
        came back from one (forgotten after FLAP_MEMORY_S)."""
        for serial in self.in_gap & reporting:
            self.came_back[serial] = ts
        self.in_gap = (self.in_gap - reporting) | gone
        for serial in [s for s, t in self.came_back.items() if ts - t > FLAP_MEMORY_S]:
            del self.came_back[serial]

    # ------------------------------------------------------------------ envelope

    def expected_kw(self, elevation_deg: float, azimuth_deg: float, ts: float) -> float | None:
        """Learned clear-sky production (kW) at this sun position, or None if unknown."""
        return _decayed(self.envelope.get(env_key(elevation_deg, azimuth_deg)), ts,
                        ENVELOPE_DECAY_PER_DAY, ENVELOPE_MAX_AGE_DAYS)

    def learn_envelope(self, elevation_deg: float, azimuth_deg: float, ts: float,
                       production_kw: float) -> None:
        key = env_key(elevation_deg, azimuth_deg)
        current = self.expected_kw(elevation_deg, azimuth_deg, ts)
        if current is None or production_kw > current:
            self.envelope[key] = [round(production_kw, 4), round(ts / 86400, 3)]
            self.learned_dirty = True

    # ------------------------------------------------------------------ own envelope

    def dark(self, serial: str, ts: float) -> bool:
        """True when this inverter's best recent power in this slot is under DARK_MAX_KW
        or under DARK_FRACTION of its best in any slot: producing nothing here is normal."""
        own = self.own.get(serial)
        if not own:
            return False
        here = _decayed(own.get(slot_key(ts)), ts, OWN_DECAY_PER_DAY, OWN_MAX_AGE_DAYS)
        peak = _decayed(own.get("peak"), ts, OWN_DECAY_PER_DAY, OWN_MAX_AGE_DAYS)
        if here is None:
            return False
        return here < DARK_MAX_KW or (peak is not None and here < DARK_FRACTION * peak)

    def learn_own(self, serial: str, ts: float, kw: float) -> None:
        own = self.own.setdefault(serial, {})
        day = round(ts / 86400, 3)
        for key in (slot_key(ts), "peak"):
            current = _decayed(own.get(key), ts, OWN_DECAY_PER_DAY, OWN_MAX_AGE_DAYS)
            if current is None or kw > current:
                own[key] = [round(kw, 4), day]
                self.learned_dirty = True

    # ------------------------------------------------------------------ peer ratios

    def score_and_learn(self, serial: str, ts: float, ratio: float,
                        weak_ratio: float, ok_ratio: float) -> None:
        """Judge one clear-poll ratio against the inverter's learned ratio (into today's
        score), and learn from it when it is normal."""
        bins = self.ratios.setdefault(serial, {})
        key = slot_key(ts)
        entry = bins.get(key)
        if entry is None:
            bins[key] = [ratio, 1]
            self.learned_dirty = True
            return
        learned, n = entry
        if n >= RATIO_WARM_SAMPLES and learned > 0:
            rel = ratio / learned
            score = self.day_scores.setdefault(serial, [0, 0, 0, 0.0])
            score[0] += 1
            score[1] += rel < weak_ratio
            score[2] += rel >= ok_ratio
            score[3] = round(score[3] + rel, 4)
            if not RATIO_ACCEPT[0] <= rel <= RATIO_ACCEPT[1]:
                return
            entry[0] = round(learned + RATIO_ALPHA * (ratio - learned), 5)
        else:  # warm-up: a plain mean
            entry[0] = round((learned * n + ratio) / (n + 1), 5)
        entry[1] = n + 1
        self.learned_dirty = True

    # ------------------------------------------------------------------ snow

    def observe_snow(self, ts: float, weather_snow: bool, shed_max_s: float,
                     dark: set[str], back: set[str]) -> bool:
        """Follow a snow episode; True while it lasts (the weather's snow, then up to
        `shed_max_s` more while panels that went dark under it are still dark).

        `dark`: inverters dark now (daylight, not their normal shade); `back`: inverters
        clearly producing again. What the site teaches: panels that go dark together
        under snow and come back one by one are snow, so an inverter stays in
        `snow_dark` from the moment it goes dark under the weather's snow until it
        produces again, and the episode ends early once none is left dark.
        """
        for serial in back:
            self.snow_dark.pop(serial, None)
        if weather_snow:
            if self.snow_since is None:
                self.snow_since = ts
            self.snow_ts = ts
            for serial in dark:
                self.snow_dark.setdefault(serial, ts)
            return True
        if self.snow_since is not None:
            self._skip_snow_days(ts - self.snow_since)
            self.snow_since = None
        if self.snow_ts is None or ts - self.snow_ts >= shed_max_s or not self.snow_dark:
            self.snow_dark.clear()
            return False
        return True

    def _skip_snow_days(self, seconds: float) -> None:
        """Snow days teach nothing about shade: age each inverter's own best powers as if
        they had not passed, or a panel would look "normally dark" in every slot after a
        week of snow (and its failure would wait for a bright day to be judged)."""
        shift = seconds / 86400
        for own in self.own.values():
            for entry in own.values():
                entry[1] = round(entry[1] + shift, 3)
        self.learned_dirty = True

    def snow_shedding(self, serial: str) -> bool:
        """After the weather's snow: `serial` went dark under it and so did another
        inverter that is still dark (a row still shedding its snow), not a lone failure."""
        return serial in self.snow_dark and len(self.snow_dark) >= 2

    # ------------------------------------------------------------------ PVS restarts

    def observe_boot(self, ts: float, uptime_s: float | None, local_seconds: float) -> None:
        """Track PVS restarts from its uptime; flag one that is neither in the warm-up
        nor at the time of day of its usual (nightly) restart."""
        if uptime_s is None:
            return
        boot = ts - uptime_s
        previous, self.boot_ts = self.boot_ts, boot
        if previous is None or boot - previous < BOOT_JUMP_S:
            return
        self.boots = [b for b in self.boots if ts - b[0] < BOOT_HISTORY_S]
        # the same local time of day, or the same UTC one (a nightly restart at 02:00 local
        # happens at 03:00 on the day clocks spring forward)
        routine = sum(1 for b, tod in self.boots
                      if _tod_distance(tod, local_seconds - uptime_s) <= ROUTINE_BOOT_WINDOW_S
                      or _tod_distance(b, boot) <= ROUTINE_BOOT_WINDOW_S)
        self.boots.append([boot, (local_seconds - uptime_s) % 86400])
        warm = self.first_ts is not None and ts - self.first_ts >= WARMUP_S
        if warm and routine < ROUTINE_BOOT_DAYS:
            self.rebooted_at = boot


def _tod_distance(a: float, b: float) -> float:
    """Distance between two times of day (seconds), across midnight."""
    d = abs(a % 86400 - b % 86400)
    return min(d, 86400 - d)
