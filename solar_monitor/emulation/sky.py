"""Sky and physics of a simulated site: seeded noise, clouds, air temperature, the
power of one panel on each roof face, the household load.

Power follows the sun (astral, via `solar_monitor.sun`) and each roof face's angle of
incidence (Kasten-Young air mass, Meinel clear-sky beam, 10 % isotropic diffuse),
reduced by an hourly seeded cloud cover (Kasten-Czeplak) with clear spells and
overcast weeks. Pure functions of (spec, t): no I/O, no wall clock.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from solar_monitor.emulation.spec import SiteSpec
from solar_monitor.sun import daylight_utc, sun_position_deg

_MASK64 = (1 << 64) - 1


def _hash_unit(*parts: int) -> float:
    """A deterministic uniform float in [0, 1) from integers (splitmix64 mixing)."""
    x = 0x243F6A8885A308D3
    for p in parts:
        x = (x ^ (p & _MASK64)) + 0x9E3779B97F4A7C15 & _MASK64
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & _MASK64
        x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _MASK64
        x ^= x >> 31
    return (x >> 11) / float(1 << 53)


def _smooth_noise(x: float, *key: int) -> float:
    """Value noise in [0, 1]: seeded values at integers, cosine-interpolated between."""
    i = math.floor(x)
    f = x - i
    a = _hash_unit(*key, i)
    b = _hash_unit(*key, i + 1)
    w = (1.0 - math.cos(math.pi * f)) / 2.0
    return a + (b - a) * w


def _gauss(x: float, mu: float, sigma: float) -> float:
    return math.exp(-0.5 * ((x - mu) / sigma) ** 2)


def _ts(t: datetime) -> float:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"need an aware datetime, got naive {t!r}")
    return t.timestamp()


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class Sky:
    """The weather and the sun over a site: mixed into `SimulatedSite`."""

    spec: SiteSpec
    _tz: ZoneInfo

    def cloud_cover_pct(self, t: datetime) -> float:
        """Cloud cover in % (0 clear .. 100 overcast), constant within each UTC hour.

        Three seeded value-noise scales (6-day spells, days, 4-hour showers) plus a
        winter bias; the threshold leaves long clear spells at 0 %.
        """
        hour = math.floor(_ts(t) / 3600)
        seed = self.spec.seed
        weekly = _smooth_noise(hour / 144.0, seed, 101)
        daily = _smooth_noise(hour / 24.0, seed, 102)
        showers = _smooth_noise(hour / 4.0, seed, 103)
        doy = (hour / 24.0) % 365.25
        winter = math.cos(2 * math.pi * (doy - 15) / 365.25)
        if self.spec.latitude < 0:
            winter = -winter
        z = 0.55 * weekly + 0.3 * daily + 0.15 * showers + 0.08 * winter
        return round(max(0.0, min(1.0, (z - 0.45) / 0.28)) * 100.0, 1)

    def ambient_c(self, t: datetime) -> float:
        """Air temperature in °C: seasonal plus diurnal swing (warmest mid-afternoon)."""
        ts = _ts(t)
        doy = (ts / 86400.0) % 365.25
        season = -math.cos(2 * math.pi * (doy - 15) / 365.25)
        if self.spec.latitude < 0:
            season = -season
        local_h = self._local_hour(ts)
        diurnal = math.cos(2 * math.pi * (local_h - 15.0) / 24.0)
        return 14.0 + 8.0 * season + 5.0 * diurnal

    def _local_hour(self, ts: float) -> float:
        local = datetime.fromtimestamp(ts, self._tz)
        return local.hour + local.minute / 60.0 + local.second / 3600.0

    def _face_kw(self, t: datetime) -> list[float]:
        """Clear-sky-times-cloud DC-equivalent AC power of one nominal panel per face (kW)."""
        faces = self.spec.faces()
        el, az = sun_position_deg(self.spec.latitude, self.spec.longitude, t)
        if el <= 0.5:
            return [0.0] * len(faces)
        el_r = math.radians(el)
        air_mass = 1.0 / (math.sin(el_r) + 0.50572 * (el + 6.07995) ** -1.6364)
        dni = 1353.0 * 0.7 ** (air_mass**0.678)
        dhi = 0.1 * dni
        cloud = self.cloud_cover_pct(t) / 100.0
        clearness = 1.0 - 0.75 * cloud**3.4
        out = []
        for face in faces:
            tilt = math.radians(face.tilt_deg)
            cos_inc = math.sin(el_r) * math.cos(tilt) + math.cos(el_r) * math.sin(tilt) * math.cos(
                math.radians(az - face.azimuth_deg)
            )
            poa = dni * max(cos_inc, 0.0) + dhi * (1 + math.cos(tilt)) / 2
            out.append(self.spec.panel_kw * 0.9 * poa * clearness / 1000.0)
        return out

    def _load_kw(self, ts: float, local_h: float) -> float:
        """Household load in kW: base, morning and evening peaks, 15-minute seeded noise."""
        shape = (
            0.45
            + 0.9 * _gauss(local_h, 7.5, 1.0)
            + 0.35 * _gauss(local_h, 13.0, 3.0)
            + 1.6 * _gauss(local_h, 19.5, 2.0)
        )
        noise = 0.75 + 0.5 * _hash_unit(self.spec.seed, 9, int(ts // 900))
        # The shape integrates to ~25.7 kWh a day at noise 1.0.
        return shape * noise * self.spec.household_kwh_per_day / 25.7

    def _lit_window(self, day: int) -> tuple[float, float]:
        """Epoch seconds bounding when the sun can be up on a UTC day (saves astral calls).

        Outside sunrise/sunset the elevation is below the 0.5° production cut-off anyway,
        so skipping those steps changes nothing. Polar days: the whole day.
        """
        whole = (day * 86400.0 - 1, day * 86400.0 + 86401)
        if abs(self.spec.latitude) > 60:
            return whole
        d = datetime.fromtimestamp(day * 86400.0, UTC).date()
        spans = [
            daylight_utc(self.spec.latitude, self.spec.longitude, d + timedelta(days=o))
            for o in (-1, 0, 1)
        ]
        if any(span is None for span in spans):
            return whole
        start, end = day * 86400.0, day * 86400.0 + 86400
        lo, hi = math.inf, -math.inf
        for span in spans:
            assert span is not None
            a, b = span[0].timestamp() - 900, span[1].timestamp() + 900
            if b >= start and a <= end:
                lo, hi = min(lo, a), max(hi, b)
        return (lo, hi) if lo <= hi else (0.0, -1.0)
