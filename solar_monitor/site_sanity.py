"""Sanity checks on the site's position: the typos that would silently switch alerts off.

Inverters are judged only while the sun is up, and the sun's position comes from
`site.latitude` / `site.longitude`. A longitude with the wrong sign (122.42 for San
Francisco, which is -122.42) puts the computed sun 30° below the horizon at noon, and a
dead inverter would never be reported. Two guards:
- `longitude_problem`: the longitude against the time zone (`check` fails on it);
- `night_production_stage`: inverters producing while the computed sun is down (`run`
  warns once per site setting, by e-mail and in the log).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from solar_monitor.links import doc_link

if TYPE_CHECKING:
    from solar_monitor.context import RunContext

log = logging.getLogger(__name__)

# A zone's clocks follow the sun only roughly: western China on Beijing time is 2.9 h
# off, Spain 1.25 h. Farther than this, the longitude or the zone is wrong.
MAX_SOLAR_OFFSET_GAP_H = 3.0
# Beyond these standard offsets a place is on one side of Greenwich (UTC+12 to +14
# islands straddle the date line, so they are left to the offset gap alone).
WEST_OFFSET_H = -3.0
EAST_OFFSET_H = 3.0
DATE_LINE_OFFSET_H = 12.0

NIGHT_ELEVATION_DEG = -6.0  # civil twilight's end: no panel produces below it
NIGHT_MIN_KW = 0.05  # well above the inverters' night draw (about -0.015 kW)
NIGHT_POLLS = 2  # two polls in a row: one odd reading is not a wrong site
NIGHT_STATE_KEY = "site_sanity.night_production"


def standard_offset_h(timezone: str, at: datetime | None = None) -> float:
    """The zone's standard (winter) UTC offset in hours at `at` (now by default)."""
    from zoneinfo import ZoneInfo

    local = (at or datetime.now(UTC)).astimezone(ZoneInfo(timezone))
    offset, dst = local.utcoffset(), local.dst()
    assert offset is not None
    return (offset - dst).total_seconds() / 3600 if dst else offset.total_seconds() / 3600


def longitude_problem(longitude: float, timezone: str, at: datetime | None = None) -> str | None:
    """One line saying what is wrong with this longitude in this zone, with the fix; None
    when they agree. `longitude` in degrees, east positive; `timezone` a valid IANA name."""
    zone_h = standard_offset_h(timezone, at)
    solar_h = longitude / 15.0  # the sun moves 15° of longitude an hour
    gap_h = (solar_h - zone_h + 12.0) % 24.0 - 12.0  # across the date line too
    zone = f"{timezone} (UTC{zone_h:+g})"
    if zone_h <= WEST_OFFSET_H and longitude > 0:
        return (f"longitude {longitude:g} is east of Greenwich, but {zone} is west of it: "
                f"west longitudes are negative: did you mean {-longitude:g}?")
    if EAST_OFFSET_H <= zone_h < DATE_LINE_OFFSET_H and longitude < 0:
        return (f"longitude {longitude:g} is west of Greenwich, but {zone} is east of it: "
                f"east longitudes are positive: did you mean {-longitude:g}?")
    if abs(gap_h) > MAX_SOLAR_OFFSET_GAP_H:
        return (f"longitude {longitude:g} is {abs(gap_h):.1f} h of sun away from {zone}: "
                f"one of them is wrong; take both from the same map (the longitude of "
                f"the zone's clocks is about {zone_h * 15:g})")
    return None


def night_production_stage(ctx: RunContext) -> None:
    """Warn once per site setting (log and e-mail) when inverters produce while the
    computed sun is below the horizon: the site's latitude or longitude is wrong."""
    if ctx.snapshot is None or ctx.poll is None or ctx.replay:
        return  # a replay sends nothing; its first real run after it tells the owner
    from solar_monitor.pvs.models import totals
    from solar_monitor.sun import sun_elevation_deg

    site = ctx.config.site
    at = ctx.poll.polled_at
    elevation = sun_elevation_deg(site.latitude, site.longitude, at)
    produced_kw = totals(ctx.snapshot).production_kw
    setting = f"{site.latitude:g},{site.longitude:g},{site.timezone}"
    state = _load(ctx.store.get_state(NIGHT_STATE_KEY))
    if state.get("site") != setting:
        state = {"site": setting, "streak": 0, "warned_at": None}
    night_output = (elevation < NIGHT_ELEVATION_DEG and produced_kw is not None
                    and produced_kw >= NIGHT_MIN_KW and _most_inverters_produce(ctx))
    streak = state["streak"] + 1 if night_output else 0
    if streak == state["streak"] == 0:
        return  # the usual case: nothing to remember
    state["streak"] = streak
    with ctx.store.transaction():
        if night_output and streak >= NIGHT_POLLS and not state["warned_at"]:
            state["warned_at"] = at.isoformat()
            _warn(ctx, elevation, produced_kw or 0.0)
        ctx.store.set_state(NIGHT_STATE_KEY, json.dumps(state))


def _most_inverters_produce(ctx: RunContext) -> bool:
    """Half the inverters or more report power: one stale value is not daylight."""
    inverters = ctx.snapshot.inverters if ctx.snapshot else []
    producing = sum(1 for i in inverters if (i.power_kw or 0.0) >= 0.005)
    return not inverters or producing * 2 >= len(inverters)


def _load(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        value = {}
    return value if isinstance(value, dict) else {}


def _warn(ctx: RunContext, elevation: float, produced_kw: float) -> None:
    site = ctx.config.site
    local = ctx.poll.polled_at.astimezone(ctx.config.tz) if ctx.poll else ctx.now
    fix = longitude_problem(site.longitude, site.timezone, ctx.now)
    fix = fix[:1].upper() + fix[1:] if fix else None  # it starts a sentence here
    body = (f"The inverters produce {produced_kw:.2f} kW at {local:%Y-%m-%d %H:%M %Z}, but "
            f"for the site in the config (latitude {site.latitude:g}, longitude "
            f"{site.longitude:g}) the sun is {-elevation:.0f}° below the horizon. The site "
            f"is wrong, and inverter alerts (judged only while the sun is up) are off "
            f"until it is fixed. {fix or 'Check site.latitude and site.longitude'} "
            f"(north and east are positive; west longitudes are negative), then run "
            f"'sudo solar-monitor check' ({doc_link('raspberry-pi.md', '6-edit-the-configuration')}"
            f"). This warning is sent once per site setting.")
    log.error("site is wrong: %s", body)
    if ctx.notify:
        from solar_monitor.notify import queue_notification

        queue_notification(ctx.store, title=f"{site.name}: the site's position is wrong",
                           body=body, tags=ctx.config.alerts.tags, level="failure",
                           now=ctx.now)
