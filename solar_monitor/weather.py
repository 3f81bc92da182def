"""Cloud cover (%), shortwave radiation (W/m2) and snow near each poll, from Open-Meteo or
a CSV.

Live runs fetch Open-Meteo (free, no key) at most every `weather.refresh_minutes`, once per
run at most, with a timeout; the samples are cached in the `weather` table and a poll takes
the nearest one within 45 minutes. A failure leaves the values empty and logs one warning:
weather never fails or slows a run more than one timeout. Replays never use the network:
they read a `time,cloud_cover[,shortwave_radiation][,snow_depth][,snowfall]` CSV given by
`replay --weather FILE`. Snow (depth on the ground in m, snowfall of the past hour in cm)
lets the rules tell a snow-covered panel from a dead one.
"""

from __future__ import annotations

import bisect
import csv
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from solar_monitor.config import Config
from solar_monitor.store import Store, from_iso, iso

if TYPE_CHECKING:
    from solar_monitor.context import RunContext

log = logging.getLogger(__name__)

MATCH_WINDOW = timedelta(minutes=45)
RETRY_AFTER = timedelta(minutes=10)  # after a failure: the next run tries again
KEEP = timedelta(days=3)
NOTES_KEY = "weather"  # RunContext.notes[NOTES_KEY]: the replay's CsvWeather, if any
_FETCHED_AT = "weather.fetched_at"
_FAILED_AT = "weather.failed_at"


class WeatherError(Exception):
    """Weather data could not be fetched or read; the message says why."""


@dataclass(frozen=True, slots=True)
class WeatherSample:
    """Conditions at one instant (UTC): cloud cover in %, global horizontal W/m2, snow
    depth on the ground in m, snowfall of the preceding hour in cm."""

    at: datetime
    cloud_cover_pct: float | None
    shortwave_w_m2: float | None = None
    snow_depth_m: float | None = None
    snowfall_cm: float | None = None


# --- Open-Meteo ----------------------------------------------------------------------------

def fetch_open_meteo(url: str, latitude: float, longitude: float, *,
                     timeout_s: float = 10.0) -> list[WeatherSample]:
    """One GET of the Open-Meteo forecast API: yesterday to tomorrow, hourly plus the
    current 15-minute value. Raises WeatherError (no retry: the next run tries again)."""
    import requests

    params: dict[str, str | float | int] = {
        "latitude": latitude, "longitude": longitude,
        "current": "cloud_cover,shortwave_radiation",
        "hourly": "cloud_cover,shortwave_radiation,snow_depth,snowfall",
        # forecast_days=2: the cache still covers the first hour after midnight UTC
        "past_days": 1, "forecast_days": 2, "timezone": "UTC"}
    try:
        response = requests.get(url, params=params, timeout=timeout_s)
    except requests.Timeout:
        raise WeatherError(f"Open-Meteo did not answer within {timeout_s:g} s") from None
    except requests.RequestException as exc:
        raise WeatherError(f"Open-Meteo unreachable ({exc.__class__.__name__})") from None
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if response.status_code != 200:
        reason = payload.get("reason") if isinstance(payload, dict) else None
        raise WeatherError(f"Open-Meteo answered HTTP {response.status_code}"
                           + (f": {reason}" if reason else ""))
    return parse_open_meteo(payload)


def parse_open_meteo(payload: Any) -> list[WeatherSample]:
    """Open-Meteo JSON (timezone=UTC) -> samples, hourly then current (which takes its
    hour's snow: snow is hourly only). Raises WeatherError."""
    if not isinstance(payload, dict) or not isinstance(payload.get("hourly"), dict):
        raise WeatherError("Open-Meteo answer has no hourly data")
    hourly = payload["hourly"]
    times = hourly.get("time")
    if not isinstance(times, list):
        raise WeatherError("Open-Meteo answer has no hourly times")
    clouds = _column(hourly, "cloud_cover", len(times))
    radiation = _column(hourly, "shortwave_radiation", len(times))
    depth = _column(hourly, "snow_depth", len(times))
    snowfall = _column(hourly, "snowfall", len(times))
    samples = [WeatherSample(_utc(t), c, r, d, f)
               for t, c, r, d, f in zip(times, clouds, radiation, depth, snowfall, strict=True)]
    current = payload.get("current")
    if isinstance(current, dict) and current.get("time"):
        at = _utc(current["time"])
        hour = at.replace(minute=0, second=0, microsecond=0)
        same = next((s for s in samples if s.at == hour), None)
        samples.append(WeatherSample(at, _number(current.get("cloud_cover")),
                                     _number(current.get("shortwave_radiation")),
                                     same.snow_depth_m if same else None,
                                     same.snowfall_cm if same else None))
    return samples


def _column(block: Mapping[str, Any], name: str, length: int) -> list[float | None]:
    values = block.get(name)
    if values is None:
        return [None] * length
    if not isinstance(values, list) or len(values) != length:
        raise WeatherError(f"Open-Meteo {name} does not match its times")
    return [_number(v) for v in values]


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


def _utc(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        raise WeatherError(f"not an ISO-8601 time: {text!r}") from None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


# --- the cache -----------------------------------------------------------------------------

def refresh(config: Config, store: Store, now: datetime) -> bool:
    """Fetch Open-Meteo into the cache unless it is fresh (or failed moments ago).

    Returns True when a request was made and succeeded. Never raises WeatherError: a
    failure is logged as one warning line and remembered so the next run tries again.
    """
    weather = config.weather
    fetched = from_iso(store.get_state(_FETCHED_AT))
    failed = from_iso(store.get_state(_FAILED_AT))
    if fetched and now - fetched < timedelta(minutes=weather.refresh_minutes):
        return False
    if failed and now - failed < RETRY_AFTER:
        return False
    site = config.site
    try:
        samples = fetch_open_meteo(weather.url, site.latitude, site.longitude,
                                   timeout_s=weather.timeout_s)
    except WeatherError as exc:
        log.warning("weather: %s; cloud cover left empty", exc)
        store.set_state(_FAILED_AT, iso(now) or "")
        return False
    with store.transaction():
        save_samples(store, samples, now)
        store.set_state(_FETCHED_AT, iso(now) or "")
    return True


def save_samples(store: Store, samples: Iterable[WeatherSample], now: datetime) -> None:
    """Cache samples (newer fetches overwrite) and drop those older than three days."""
    store.db.executemany(
        "INSERT OR REPLACE INTO weather (at, cloud_cover_pct, shortwave_w_m2, snow_depth_m, "
        "snowfall_cm, fetched_at) VALUES (?, ?, ?, ?, ?, ?)",
        [(iso(s.at), s.cloud_cover_pct, s.shortwave_w_m2, s.snow_depth_m, s.snowfall_cm,
          iso(now)) for s in samples])
    store.db.execute("DELETE FROM weather WHERE at < ?", (iso(now - KEEP),))


def cached_sample(store: Store, at: datetime) -> WeatherSample | None:
    """The cached sample nearest to `at`, if one lies within 45 minutes."""
    row = store.db.execute(
        "SELECT at, cloud_cover_pct, shortwave_w_m2, snow_depth_m, snowfall_cm FROM weather "
        "WHERE at BETWEEN ? AND ? "
        "ORDER BY abs(julianday(at) - julianday(?)) LIMIT 1",
        (iso(at - MATCH_WINDOW), iso(at + MATCH_WINDOW), iso(at))).fetchone()
    if row is None:
        return None
    return WeatherSample(from_iso(row[0]) or at, row[1], row[2], row[3], row[4])


# --- replay: a CSV file --------------------------------------------------------------------

class CsvWeather:
    """Weather for a replay, from a CSV with columns `time,cloud_cover` (UTC ISO-8601, %)
    and optionally `shortwave_radiation` (W/m2), `snow_depth` (m) and `snowfall` (cm).
    Lines before the `time` header (an Open-Meteo CSV download starts with the site's
    metadata) are skipped; header units as Open-Meteo writes them (`snow_depth (m)`) are
    fine, and other units for snow are refused (a depth in cm read as m would be 100x)."""

    def __init__(self, samples: Iterable[WeatherSample]) -> None:
        self.samples = sorted(samples, key=lambda s: s.at)
        self._times = [s.at for s in self.samples]

    @classmethod
    def load(cls, path: Path) -> CsvWeather:
        """Read `path`. Raises WeatherError naming the file and line of a problem."""
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise WeatherError(f"cannot read {path}: {exc.__class__.__name__}") from None
        start = next((i for i, line in enumerate(lines)
                      if line.lower().split(",")[0].strip() == "time"), None)
        if start is None:
            raise WeatherError(f"{path}: no header line starting with 'time'")
        rows = csv.reader(lines[start:])
        header = [h.strip().lower() for h in next(rows)]
        cloud = _find(header, "cloud_cover")
        if cloud is None:
            raise WeatherError(f"{path}: no cloud_cover column")
        radiation = _find(header, "shortwave_radiation")
        depth = _find(header, "snow_depth", "(m)", path)
        snowfall = _find(header, "snowfall", "(cm)", path)
        samples = []
        for number, row in enumerate(rows, start=start + 2):
            if not row or not row[0].strip():
                continue
            try:
                samples.append(WeatherSample(_utc(row[0]), _cell(row, cloud),
                                             _cell(row, radiation), _cell(row, depth),
                                             _cell(row, snowfall)))
            except (WeatherError, ValueError) as exc:
                raise WeatherError(f"{path} line {number}: {exc}") from None
        return cls(samples)

    def at(self, when: datetime) -> WeatherSample | None:
        """The sample nearest to `when`, if one lies within 45 minutes."""
        i = bisect.bisect_left(self._times, when)
        near = [s for s in self.samples[max(i - 1, 0):i + 1]
                if abs(s.at - when) <= MATCH_WINDOW]
        return min(near, key=lambda s: abs(s.at - when), default=None)


def _find(header: list[str], name: str, unit: str | None = None,
          path: Path | None = None) -> int | None:
    """The column named `name` (units after a space are allowed); with `unit`, a unit
    other than that one is a WeatherError."""
    index = next((i for i, h in enumerate(header) if h.split(" ")[0] == name), None)
    if index is not None and unit is not None:
        given = header[index][len(name):].strip()
        if given and given != unit:
            raise WeatherError(f"{path}: column {header[index]!r} must be in {unit[1:-1]} "
                               f"(as Open-Meteo writes it: '{name} {unit}')")
    return index


def _cell(row: list[str], index: int | None) -> float | None:
    if index is None or index >= len(row) or not row[index].strip():
        return None
    return float(row[index])


# --- the enricher --------------------------------------------------------------------------

def enrich(ctx: RunContext, at: datetime) -> dict[str, float | None]:
    """pipeline.ENRICHERS entry: cloud_cover_pct (%), shortwave_w_m2 (W/m2), snow_depth_m
    (m) and snowfall_cm (cm) near `at`, or None. A replay reads `ctx.notes["weather"]` (a
    CsvWeather) and never the network."""
    sample: WeatherSample | None = None
    if ctx.config.weather.enabled:
        if ctx.replay:
            provider = ctx.notes.get(NOTES_KEY)
            sample = provider.at(at) if isinstance(provider, CsvWeather) else None
        else:
            refresh(ctx.config, ctx.store, ctx.now)
            sample = cached_sample(ctx.store, at)
    return {"cloud_cover_pct": sample.cloud_cover_pct if sample else None,
            "shortwave_w_m2": sample.shortwave_w_m2 if sample else None,
            "snow_depth_m": sample.snow_depth_m if sample else None,
            "snowfall_cm": sample.snowfall_cm if sample else None}


def check_weather(config: Config, now: datetime | None = None) -> tuple[bool | None, str]:
    """The `check` probe: one request to Open-Meteo. (None, why) when switched off."""
    if not config.weather.enabled:
        return None, "switched off (weather.enabled: false)"
    now = now or datetime.now(UTC)
    try:
        samples = fetch_open_meteo(config.weather.url, config.site.latitude,
                                   config.site.longitude, timeout_s=config.weather.timeout_s)
    except WeatherError as exc:
        return False, (f"{exc}; cloud cover and snow stay empty until it answers, so alerts "
                       f"cannot tell heavy cloud or snow from a fault (on a Pi without "
                       f"internet: weather.enabled: false)")
    near = CsvWeather(samples).at(now)
    if near is None or near.cloud_cover_pct is None:
        return False, "Open-Meteo answered without a value for now; is site.latitude right?"
    return True, (f"Open-Meteo: {near.cloud_cover_pct:g}% cloud cover, "
                  f"{near.shortwave_w_m2 or 0:g} W/m2 at the site now")
