"""Snow-aware alerts (issue 15): a snowy winter sends no false alarm, a real failure under
snow is still caught.

Synthetic snapshots on a real database, with the weather's snow depth and snowfall given
to the engine as the rules stage gives them (from the poll's stored weather).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from solar_monitor.config import Config, config_from_dict
from solar_monitor.rules.engine import AlertEvent, Engine
from solar_monitor.store import Store
from tests.test_rules import NOON, SERIALS, STEP, elevation, snap, warm

TOP, BOTTOM = tuple(SERIALS[:4]), tuple(SERIALS[4:])


Dark = Callable[[datetime], tuple[str, ...]]


def feed(engine: Engine, start: datetime, end: datetime, *, dark: Dark = lambda at: (),
         depth_m: Callable[[datetime], float | None] = lambda at: None,
         snowfall_cm: Callable[[datetime], float | None] = lambda at: None,
         **kw: object) -> list[AlertEvent]:
    """Polls every 15 minutes in [start, end): the inverters `dark(at)` make nothing."""
    events: list[AlertEvent] = []
    at = start
    while at < end:
        events += engine.evaluate(at, snap(at, dead=dark(at), **kw), None,  # type: ignore[arg-type]
                                  snow_depth_m=depth_m(at), snowfall_cm=snowfall_cm(at))
        at += STEP
    return events


def opens(events: list[AlertEvent]) -> list[tuple[str, str]]:
    return [(e.rule, e.subject) for e in events if e.event == "open"]


def first_daylight(at: datetime) -> datetime:
    while elevation(at) < 15.0:
        at += STEP
    return at


def test_a_row_under_snow_while_its_peers_produce_is_not_a_failure(store: Store,
                                                                   config: Config) -> None:
    engine = Engine(store, config)
    warm(engine)
    start = NOON - timedelta(hours=3)
    end = start + timedelta(days=3)
    # the bottom row stays under snow for two days, one panel after another clearing
    # on the third; the ground's snow lasts to the end
    def dark(at: datetime) -> tuple[str, ...]:
        clear = start + timedelta(days=2, hours=1)
        return tuple(s for k, s in enumerate(BOTTOM) if at < clear + k * timedelta(hours=1))

    events = feed(engine, start, end, dark=dark, depth_m=lambda at: 0.15)
    assert events == []
    after = feed(engine, end, end + timedelta(days=1), depth_m=lambda at: 0.0)
    assert after == []


def test_the_same_darkness_without_snow_in_the_weather_is_a_failure(store: Store,
                                                                    config: Config) -> None:
    """The control: without snow data alerts behave as before (the row opens 4 alerts)."""
    engine = Engine(store, config)
    warm(engine)
    start = NOON - timedelta(hours=3)
    events = feed(engine, start, start + timedelta(hours=2), dark=lambda at: BOTTOM)
    assert sorted(opens(events)) == [("inverter_offline", s) for s in BOTTOM]
    store2 = Store(store.path.with_name("other.sqlite"))
    with store2:
        engine2 = Engine(store2, config)
        warm(engine2)
        events = feed(engine2, start, start + timedelta(hours=2), dark=lambda at: BOTTOM,
                      depth_m=lambda at: 0.005)  # below min_depth_m: not snow
        assert sorted(opens(events)) == [("inverter_offline", s) for s in BOTTOM]


def test_a_failure_during_snow_is_caught_within_an_hour_once_the_snow_is_gone(
        store: Store, config: Config) -> None:
    engine = Engine(store, config)
    warm(engine)
    start = NOON - timedelta(hours=3)
    died = start + timedelta(hours=26)  # under snow, the next day, while its peers produce
    melted = start + timedelta(days=2, hours=1)  # the weather's snow is gone at 14:00

    def dark(at: datetime) -> tuple[str, ...]:
        return (SERIALS[1],) if at >= died else ()

    events = feed(engine, start, melted, dark=dark, depth_m=lambda at: 0.2)
    assert events == []
    events = feed(engine, melted, melted + timedelta(hours=3), dark=dark,
                  depth_m=lambda at: 0.0)
    (event,) = [e for e in events if e.event == "open"]
    assert (event.rule, event.subject) == ("inverter_offline", SERIALS[1])
    assert event.time - first_daylight(melted) <= timedelta(hours=1)


def test_a_failure_at_dusk_before_a_snowfall_is_caught_the_first_clear_morning(
        store: Store, config: Config) -> None:
    engine = Engine(store, config)
    warm(engine)
    died = NOON
    while elevation(died) >= 15.0:  # dusk: the sun too low to judge it that evening
        died += STEP
    snowfall = died + timedelta(hours=3)
    melted = snowfall + timedelta(days=1, hours=10)  # gone overnight, two days later

    def depth(at: datetime) -> float | None:
        return 0.1 if snowfall <= at < melted else 0.0

    def dark(at: datetime) -> tuple[str, ...]:
        return ((SERIALS[6],) if at >= died else ()) + (
            BOTTOM if snowfall <= at < melted - timedelta(hours=12) else ())

    events = feed(engine, NOON - timedelta(hours=4), melted + timedelta(days=1), dark=dark,
                  depth_m=depth)
    (event,) = [e for e in events if e.event == "open"]
    assert (event.rule, event.subject) == ("inverter_offline", SERIALS[6])
    assert event.time >= melted
    assert event.time - first_daylight(melted) <= timedelta(hours=1)


def test_panels_dark_together_keep_shedding_after_the_weather_snow_then_a_lone_one_fails(
        store: Store, config: Config) -> None:
    """What the site teaches: panels that went dark together under the snow and come back
    one by one are snow, even once the weather's depth is 0 (the ground cleared first);
    the one left dark long after its peers cleared is a failure."""
    engine = Engine(store, config)
    warm(engine)
    start = NOON - timedelta(hours=3)
    melted = start + timedelta(hours=20)  # the weather's snow is gone before dawn
    cleared = melted + timedelta(hours=9)  # the bottom row sheds it from 14:00

    def dark(at: datetime) -> tuple[str, ...]:  # the row's last panel: dead under the snow
        mates = BOTTOM[:-1]
        return tuple(s for k, s in enumerate(mates) if at < cleared + k * timedelta(minutes=30)
                     ) + BOTTOM[-1:]

    def depth(at: datetime) -> float:
        return 0.3 if at < melted else 0.0

    lone = cleared + timedelta(minutes=30 * (len(BOTTOM) - 2))  # its last row-mate is back
    events = feed(engine, start, lone, dark=dark, depth_m=depth)
    assert events == []  # the row still shedding: no alert, though the weather says clear
    events = feed(engine, lone, lone + timedelta(hours=3), dark=dark, depth_m=depth)
    (event,) = [e for e in events if e.event == "open"]
    assert event.subject == BOTTOM[-1]
    assert event.time - lone <= timedelta(hours=1)


def test_row_shedding_is_judged_again_after_shed_max_h(store: Store,
                                                       config_dict: dict) -> None:
    config = config_from_dict({**config_dict, "alerts": {"snow": {"shed_max_h": 12}}},
                              env={})
    engine = Engine(store, config)
    warm(engine)
    start = NOON - timedelta(hours=3)
    melted = start + timedelta(hours=2)
    events = feed(engine, start, start + timedelta(days=1, hours=2), dark=lambda at: BOTTOM,
                  depth_m=lambda at: 0.2 if at < melted else 0.0)
    assert sorted(opens(events)) == [("inverter_offline", s) for s in BOTTOM]
    assert min(e.time for e in events) >= melted + timedelta(hours=12)


def test_snowfall_alone_holds_for_after_snowfall_h(store: Store, config: Config) -> None:
    """Snow that fell but never lay on the ground (depth 0) still covers panels a while."""
    engine = Engine(store, config)
    warm(engine)
    start = NOON - timedelta(hours=3)
    fell = start - timedelta(hours=1)
    row = BOTTOM[1:]  # three panels: with a fourth dark, the median inverter still produces
    events = feed(engine, fell, start + timedelta(hours=4), dark=lambda at: row,
                  depth_m=lambda at: 0.0,
                  snowfall_cm=lambda at: 2.0 if at < fell + timedelta(hours=1) else 0.0)
    assert events == []
    # 24 h after the snowfall the weather has no snow left: a panel that dies now is
    # judged as ever (the row that went dark together under the snow is still shedding)
    later = fell + timedelta(hours=25)  # the hour of snowfall ended at fell + 1 h
    events = feed(engine, start + timedelta(hours=4), later + timedelta(hours=1),
                  dark=lambda at: row + ((SERIALS[0],) if at >= later else ()),
                  depth_m=lambda at: 0.0)
    (event,) = [e for e in events if e.event == "open"]
    assert event.subject == SERIALS[0] and event.time - later <= timedelta(hours=1)


def test_the_whole_array_buried_looks_tripped_but_is_not_alerted_under_snow(
        store: Store, config: Config) -> None:
    engine = Engine(store, config)
    warm(engine)
    start = NOON - timedelta(hours=3)
    buried = dict(dark=lambda at: tuple(SERIALS), meter_kw=0.0)  # no standby draw either
    events = feed(engine, start, start + timedelta(hours=6), depth_m=lambda at: 0.4,
                  **buried)  # type: ignore[arg-type]
    assert events == []
    # the snow gone from the weather, an array still dark like that is a tripped breaker
    events = feed(engine, start + timedelta(hours=24), start + timedelta(hours=28),
                  depth_m=lambda at: 0.0, **buried)  # type: ignore[arg-type]
    assert opens(events) == [("production_low", "system")]


def test_snow_memory_survives_a_restart(store: Store, config: Config) -> None:
    engine = Engine(store, config)
    warm(engine)
    start = NOON - timedelta(hours=3)
    feed(engine, start, start + timedelta(hours=1), dark=lambda at: BOTTOM,
         depth_m=lambda at: 0.2)
    again = Engine(store, config)  # the next cron run
    assert set(again.memory.snow_dark) == set(BOTTOM)
    events = feed(again, start + timedelta(hours=1), start + timedelta(hours=3),
                  dark=lambda at: BOTTOM, depth_m=lambda at: 0.0)
    assert events == []  # the row is still shedding the snow it went dark under


def test_snow_switched_off_judges_darkness_as_before(store: Store, config_dict: dict) -> None:
    config = config_from_dict({**config_dict, "alerts": {"snow": {"enabled": False}}}, env={})
    engine = Engine(store, config)
    warm(engine)
    start = NOON - timedelta(hours=3)
    events = feed(engine, start, start + timedelta(hours=2), dark=lambda at: BOTTOM,
                  depth_m=lambda at: 0.3)
    assert sorted(opens(events)) == [("inverter_offline", s) for s in BOTTOM]


def test_snow_days_do_not_age_what_a_panel_taught_about_its_shade() -> None:
    """After five days under snow, a panel's own best power in a slot (learned on a dull
    day before it) must not have decayed into "normally dark here": its failure would
    then wait for a bright day to be judged."""
    from solar_monitor.rules.learn import Memory

    day = 20_000 * 86400.0 + 15 * 3600  # 15:00 UTC
    before, after = Memory(), Memory()
    for mem in (before, after):
        mem.learn_own("A", day, 0.03)  # 30 W in this slot on an overcast day
        mem.learn_own("A", day - 3600, 0.06)
    after.observe_snow(day + 0.2 * 86400, True, 72 * 3600, {"A"}, set())
    after.observe_snow(day + 5 * 86400, False, 72 * 3600, set(), set())
    later = day + 5 * 86400
    assert before.dark("A", later)  # five ordinary days: 0.8**5 of 30 W is under 15 W
    assert not after.dark("A", later)  # the snow days did not count
