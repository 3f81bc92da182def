"""Fuzz the PVS parser: any bytes give a sane Snapshot or a one-line ParseError, nothing else.

Why: parse() runs under cron on whatever the PVS, a broken bridge or a half-written archive
file hands it; any other exception is a traceback in a mail nobody reads and a missed poll.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import gzip
import io
import json
import math
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from solar_monitor.cli import main
from solar_monitor.emulation.sim import SimulatedSite, SiteSpec
from solar_monitor.pvs.errors import ParseError
from solar_monitor.pvs.models import Device, Snapshot, totals
from solar_monitor.pvs.parse import MAX_ANSWER_BYTES, MAX_DEPTH, parse
from solar_monitor.snapshot_json import snapshot_to_dict

from ..conftest import REPO, all_real, real
from .fuzzing import FUZZ, FUZZ_CLI, HUGE_INT, JSON, mutate, paths, put, tried

POLLED_AT = datetime(2025, 6, 28, 17, 5, tzinfo=UTC)
NOON = datetime(2025, 6, 28, 19, 0, tzinfo=UTC)


def _varserver_seeds() -> dict[str, Any]:
    """The varserver layouts no real fixture has yet: flat /vars and the envelope."""
    variables = SimulatedSite(SiteSpec(inverter_count=3, build=61850)).vars(NOON)
    envelope = {"api": "varserver", "requested_at": NOON.isoformat(), "responses": [
        {"path": "/vars?match=/sys/&fmt=obj", "status": 200, "body": json.dumps(variables)},
        {"path": "/vars?match=/sys/livedata/", "status": 400, "body": "no match"}]}
    return {"sim_vars": variables, "sim_envelope": envelope}


SEEDS: dict[str, Any] = {p.name: json.loads(p.read_bytes()) for p in all_real()}
SEEDS.update(_varserver_seeds())
SEED_NAMES = sorted(SEEDS)


# --- the property every input must satisfy --------------------------------------------------

def parse_or_error(data: bytes, polled_at: datetime | None = POLLED_AT) -> Snapshot | None:
    """parse(data): a sane Snapshot, or None after a well-formed ParseError. Anything else
    (another exception, a RecursionError) propagates and fails the test."""
    tried()
    try:
        snapshot = parse(data, polled_at=polled_at)
    except ParseError as exc:
        message = str(exc)
        assert message and "\n" not in message, f"not one line: {message!r}"
        assert len(message) <= 300, f"message too long: {message[:100]!r}..."
        return None
    check_sane(snapshot)
    return snapshot


def _metric_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.type == "float | None"]


def _check_times(obj: Any) -> None:
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, datetime):
            assert value.utcoffset() == timedelta(0), f"{f.name} is not aware UTC: {value!r}"


def check_sane(s: Snapshot) -> None:
    """What models.py promises: metrics are finite floats or None, times aware UTC, every
    meter and inverter has a serial; and the CLI can print it."""
    assert s.api in ("legacy", "varserver")
    assert s.build is None or isinstance(s.build, int)
    _check_times(s)
    devices: list[Any] = [*s.meters, *s.inverters]
    if s.supervisor is not None:
        devices.append(s.supervisor)
    for device in devices:
        _check_times(device)
        for name in _metric_names(type(device)):
            value = getattr(device, name)
            assert value is None or (type(value) is float and math.isfinite(value)), \
                f"{type(device).__name__}.{name} = {value!r}"
    for device in (*s.meters, *s.inverters):
        assert isinstance(device.serial, str) and device.serial.strip(), device
    for inverter in s.inverters:
        assert inverter.state is None or isinstance(inverter.state, str)
        if inverter.state_derived:
            assert inverter.state in ("working", "error")
    assert all(isinstance(d, Device) for d in s.other)
    t = totals(s)
    assert t.inverters_producing <= t.inverters_total == len(s.inverters)
    json.dumps(snapshot_to_dict(s))  # what `solar-monitor parse` prints


def encode(doc: Any) -> bytes:
    """JSON bytes; the HUGE_INT placeholder becomes an integer Python's int() refuses."""
    return json.dumps(doc).replace(f'"{HUGE_INT}"', "9" * 5000).encode()


# --- (a) mutated real payloads ---------------------------------------------------------------

@st.composite
def mutated(draw: Any) -> bytes:
    """A real payload with 1-6 structural mutations, then maybe truncated and/or gzipped."""
    doc = copy.deepcopy(SEEDS[draw(st.sampled_from(SEED_NAMES))])
    for _ in range(draw(st.integers(1, 6))):
        doc = mutate(draw, doc)
    data = encode(doc)
    gzipped = draw(st.booleans())
    if gzipped:
        data = gzip.compress(data)
    if draw(st.integers(0, 3)) == 0:  # a quarter are cut short, as by a dropped connection
        data = data[:draw(st.integers(0, max(len(data) - 1, 0)))]
    return data


@FUZZ
@given(mutated(), st.sampled_from([POLLED_AT, None]))
def test_mutated_real_payloads(data: bytes, polled_at: datetime | None) -> None:
    """Without `polled_at` the parser falls back on the payload's own clocks: fuzz both."""
    parse_or_error(data, polled_at)


@FUZZ
@given(st.sampled_from(SEED_NAMES), st.data())
def test_truncated_real_payloads_are_parse_errors(name: str, data: st.DataObject) -> None:
    """A real answer cut at any byte (a dropped connection) is refused, never half-read."""
    raw, gz = encode(SEEDS[name]), gzip.compress(encode(SEEDS[name]))
    cut = data.draw(st.integers(0, len(raw) - 2))
    assert parse_or_error(raw[:cut]) is None
    assert parse_or_error(gz[:data.draw(st.integers(0, len(gz) - 1))]) is None


def _unknown_key(draw: Any) -> str:
    return "zzFuzz" + draw(st.text(alphabet="abcxyz_", min_size=1, max_size=6))


@FUZZ
@given(st.sampled_from([n for n in SEED_NAMES if "devices" in SEEDS[n]]), st.data())
def test_unknown_device_fields_are_kept(name: str, data: st.DataObject) -> None:
    """models.py: fields the parser does not map are kept, so new firmware loses nothing."""
    doc = copy.deepcopy(SEEDS[name])
    index = data.draw(st.integers(0, len(doc["devices"]) - 1))
    key = _unknown_key(data.draw)
    value = data.draw(JSON.filter(lambda v: HUGE_INT not in json.dumps(v)))  # readable JSON
    doc["devices"][index][key] = value
    snapshot = parse_or_error(encode(doc))
    assert snapshot is not None
    kept = [d.extra for d in (snapshot.supervisor, *snapshot.meters, *snapshot.inverters,
                              *snapshot.batteries) if d]
    kept += [d.fields for d in snapshot.other]
    assert any(key in fields and _same(fields[key], value) for fields in kept)


@FUZZ
@given(st.data())
def test_unknown_varserver_fields_are_kept(data: st.DataObject) -> None:
    variables = dict(SEEDS["sim_vars"])
    inverter = data.draw(st.sampled_from(sorted({n.rsplit("/", 1)[0] for n in variables
                                                 if n.startswith("/sys/devices/inverter/")})))
    key, value = _unknown_key(data.draw), data.draw(st.text(max_size=10))
    variables[f"{inverter}/{key}"] = value
    snapshot = parse_or_error(encode(variables))
    assert snapshot is not None and any(i.extra.get(key) == value for i in snapshot.inverters)


def _same(a: Any, b: Any) -> bool:
    """Equality that treats NaN as equal to itself (JSON round trip of a NaN value)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


# --- (b) random JSON and random bytes ------------------------------------------------------

DEVICE_KEYS = ["DEVICE_TYPE", "SERIAL", "STATE", "MODEL", "TYPE", "SWVER", "BUILD", "CURTIME",
               "DATATIME", "subtype", "p_3phsum_kw", "ltea_3phsum_kwh", "net_ltea_3phsum_kwh",
               "dl_uptime", "freq_hz"]
VAR_NAMES = st.builds("/sys/devices/{}/{}/{}".format,
                      st.sampled_from(["inverter", "meter", "ess", "x"]),
                      st.sampled_from(["0", "1", "007", "99999999999"]),
                      st.sampled_from(["sn", "msmtEps", "p3phsumKw", "prodMdlNm", "new"])) | \
    st.sampled_from(["/sys/info/sw_rev", "/sys/info/serialnum", "/sys/livedata/pv_p",
                     "/sys/livedata/time", "/sys/devices/1/meter/data", "/x"])
DEVICE = st.dictionaries(st.sampled_from(DEVICE_KEYS) | st.text(max_size=6), JSON, max_size=8)
SHAPED = st.one_of(
    st.fixed_dictionaries({"devices": st.lists(DEVICE | JSON, max_size=6)},
                          optional={"result": JSON}),
    st.dictionaries(VAR_NAMES, JSON, min_size=1, max_size=10),
    st.fixed_dictionaries({"values": st.lists(st.fixed_dictionaries(
        {"name": VAR_NAMES | JSON}, optional={"value": JSON}) | JSON, max_size=6)}),
    st.fixed_dictionaries({"api": st.just("varserver"), "responses": st.lists(
        st.fixed_dictionaries({"status": st.sampled_from([200, 400]) | JSON,
                               "body": st.dictionaries(VAR_NAMES, JSON).map(json.dumps) | JSON},
                              optional={"path": JSON}), max_size=3)},
                          optional={"requested_at": JSON}),
    st.fixed_dictionaries({"supervisor": DEVICE}, optional={"result": JSON}),
)


@FUZZ
@given(JSON)
def test_random_json(doc: Any) -> None:
    parse_or_error(encode(doc))


@FUZZ
@given(SHAPED)
def test_random_json_shaped_like_pvs_answers(doc: Any) -> None:
    """Random values in the shapes parse() recognises, so the fuzzing reaches past the
    top-level checks into every field conversion."""
    parse_or_error(encode(doc))


@FUZZ
@given(st.binary(max_size=2000) | st.binary(max_size=200).map(lambda b: b"\x1f\x8b" + b)
       | st.binary(max_size=200).map(gzip.compress))
def test_random_bytes(data: bytes) -> None:
    parse_or_error(data)


# --- (c) huge payloads -------------------------------------------------------------------------

@contextlib.contextmanager
def at_most(seconds: float) -> Any:
    """Generous on purpose: it catches unbounded work (a bomb runs for minutes or hours),
    not a slow moment on a shared CI machine."""
    start = time.perf_counter()
    yield
    elapsed = time.perf_counter() - start
    assert elapsed < seconds, f"took {elapsed:.1f} s"


def test_5000_inverters_parse_in_bounded_time() -> None:
    doc = json.loads(real("30_inverters").read_bytes())
    template = next(d for d in doc["devices"] if d.get("DEVICE_TYPE") == "Inverter")
    doc["devices"] += [{**template, "SERIAL": f"E{i:08d}"} for i in range(5000)]
    with at_most(30):
        snapshot = parse_or_error(encode(doc))
    assert snapshot is not None and len(snapshot.inverters) == 5030


@pytest.mark.parametrize("opener", ["[", '{"a":', '{"devices": [{"DEVICE_TYPE": "x", "v": ['])
def test_100k_levels_of_nesting_is_a_parse_error(opener: str) -> None:
    data = (opener * 100_000).encode()
    with at_most(20):
        assert parse_or_error(data) is None
    with at_most(20):
        assert parse_or_error(gzip.compress(data)) is None


def test_nesting_just_below_the_limit_still_prints() -> None:
    """A deep but allowed payload must survive snapshot_to_dict (the CLI's recursion)."""
    deep = "[" * (MAX_DEPTH - 3) + "]" * (MAX_DEPTH - 3)
    data = f'{{"devices": [{{"DEVICE_TYPE": "Inverter", "SERIAL": "E1", "v": {deep}}}]}}'.encode()
    assert parse_or_error(data) is not None
    too_deep = f'{{"devices": [{{"DEVICE_TYPE": "x", "v": [{deep}]}}]}}'.encode()
    with pytest.raises(ParseError, match="nested too deeply"):
        parse(too_deep)


def test_50_mb_string_field_is_kept_in_bounded_time() -> None:
    big = "x" * 50_000_000
    data = encode({"devices": [{"DEVICE_TYPE": "Inverter", "SERIAL": "E1", "note": big,
                                "p_3phsum_kw": "x" * 100_000}]})
    with at_most(30):
        snapshot = parse(data)
    assert snapshot.inverters[0].extra["note"] == big and snapshot.inverters[0].power_kw is None


def _gzip_of_spaces(total: int) -> bytes:
    """A small gzip that inflates to `total` bytes: a gzip bomb, built without the RAM."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1) as f:
        f.write(b"{")
        chunk = b" " * 1_000_000
        for _ in range(total // len(chunk)):
            f.write(chunk)
        f.write(b"}")
    return out.getvalue()


def test_gzip_bomb_is_refused_without_inflating_it() -> None:
    bomb = _gzip_of_spaces(MAX_ANSWER_BYTES + 2_000_000)
    assert len(bomb) < MAX_ANSWER_BYTES // 100
    with at_most(20), pytest.raises(ParseError, match="too large"):
        parse(bomb)


def test_oversized_plain_answer_is_refused() -> None:
    with pytest.raises(ParseError, match="too large"):
        parse(b" " * (MAX_ANSWER_BYTES + 1))


# --- (d) wrong types at every level ------------------------------------------------------------

WRONG = [None, True, 0, -1.5, 10**400, HUGE_INT, "", "x", "12.5 kW", "\ud800",
         "Build " + "9" * 5000, "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",
         "1" * 5000, [], {}, [[]], {"a": {}}]


def _miniature(doc: Any) -> Any:
    """`doc` with every list cut to 3 items: the same shapes, a fraction of the paths."""
    if isinstance(doc, dict):
        return {k: _miniature(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_miniature(v) for v in doc[:3]]
    return doc


@pytest.mark.parametrize("name", SEED_NAMES)
def test_every_position_with_every_wrong_type(name: str) -> None:
    """Exhaustive, not random: each node of each (shrunken) seed, swapped for each type."""
    doc = _miniature(SEEDS[name])
    for path in list(paths(doc)):
        for value in WRONG:
            parse_or_error(encode(put(copy.deepcopy(doc), path, value)))


@pytest.mark.parametrize(("doc", "message"), [
    ({"devices": "nope"}, "'devices' is not a list"),
    ({"devices": {"0": {}}}, "'devices' is not a list"),
    ({"devices": None}, "'devices' is not a list"),
    ({"devices": [], "result": {"code": 1}}, "not 'succeed'"),
    ({"api": "varserver", "responses": [{"status": 200, "body": 5}]}, "is not /vars data"),
    ({"api": "varserver", "responses": [{"status": 200, "body": "\ud800"}]}, "not UTF-8"),
    ({"api": "varserver", "responses": []}, "no successful answer"),
    ({"values": 3}, "not a PVS answer"),
    ({"a\nb": 1, "x" * 10_000: 2}, "not a PVS answer"),
])
def test_wrong_types_give_the_documented_error(doc: Any, message: str) -> None:
    tried()
    with pytest.raises(ParseError, match=message) as info:
        parse(encode(doc))
    assert "\n" not in str(info.value) and len(str(info.value)) <= 300


def test_wrong_types_inside_devices_are_kept_not_fatal() -> None:
    """A device that is a string, numbers with units, a serial that is a number: the poll
    still parses, the odd values land in `extra` / `other` and metrics stay None."""
    doc = {"devices": [
        "not a device", 7, None,
        {"DEVICE_TYPE": "Inverter", "SERIAL": 12345, "STATE": ["working"],
         "p_3phsum_kw": "0.2 kW", "ltea_3phsum_kwh": {"v": 1}, "freq_hz": True,
         "CURTIME": 20250628},
        {"DEVICE_TYPE": "Power Meter", "SERIAL": "   ", "p_3phsum_kw": "1"},
        {"DEVICE_TYPE": ["PVS"], "SERIAL": "ZT1"}]}
    snapshot = parse_or_error(encode(doc))
    assert snapshot is not None
    inverter = snapshot.inverters[0]
    assert inverter.serial == "12345" and inverter.power_kw is None
    assert inverter.extra["p_3phsum_kw"] == "0.2 kW" and inverter.extra["freq_hz"] is True
    assert snapshot.meters == ()  # a blank serial is not a meter we can track
    assert len(snapshot.other) == 5 and snapshot.other[0].fields == {"value": "not a device"}


@pytest.mark.parametrize(("data", "message"), [
    (encode({"devices": [], "x": HUGE_INT}), "number"),
    (encode({"supervisor": {"SWVER": "Build " + "1" * 5000}}), None),
    (encode({"/sys/devices/inverter/" + "1" * 5000 + "/sn": "E1"}), None),
    (encode({"/sys/devices/" + "1" * 5000 + "/meter/data": {"sn": "M1"}}), None),
    (encode({"/sys/devices/inverter/0/sn": "E1",
             "/sys/devices/inverter/0/msmtEps": "0001-01-01T00:00:00+01:00"}), None),
    (encode({"api": "varserver", "requested_at": "9999-12-31T23:59:59-01:00", "responses": [
        {"status": 200, "body": encode({"/sys/devices/inverter/0/sn": "E1"}).decode()}]}),
     None),
    (b"<html><title>Bad\nGateway</title></html>", "HTML page"),
])
def test_regressions_found_by_fuzzing(data: bytes, message: str | None) -> None:
    """Each of these escaped as ValueError / UnicodeEncodeError / OverflowError, or gave a
    multi-line message, before the fix (see the commit)."""
    snapshot = parse_or_error(data, polled_at=None)
    if message is None:
        assert snapshot is not None
    else:
        with pytest.raises(ParseError, match=message):
            parse(data)


# --- the CLI: `solar-monitor parse FILE` ------------------------------------------------------

def _run_cli(path: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["parse", str(path)])
    return code, out.getvalue(), err.getvalue()


@FUZZ_CLI
@given(mutated())
def test_cli_parse_on_mutated_files(data: bytes) -> None:
    """Exit 0 with JSON on stdout, or exit 1 with one `solar-monitor: FILE: reason` line."""
    tried()
    with _tmp_file("20250628T170500Z.json.gz", data) as path:
        code, out, err = _run_cli(path)
    assert "Traceback" not in out + err
    if code == 0:
        assert json.loads(out)["api"] in ("legacy", "varserver") and not err
    else:
        assert code == 1 and not out
        assert err.startswith(f"solar-monitor: {path}: ") and err.count("\n") == 1


@contextlib.contextmanager
def _tmp_file(name: str, data: bytes) -> Any:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        yield path


@pytest.mark.parametrize("data", [
    b'{"devices": [], "x": ' + b"1" * 5000 + b"}",
    b'{"devices": [{"DEVICE_TYPE": "x", "v": ' + b"[" * 900 + b"]" * 900 + b"}]}",
    b"[" * 100_000,
])
def test_cli_parse_subprocess_never_prints_a_traceback(tmp_path: Path, data: bytes) -> None:
    """The real console entry in a fresh interpreter (recursion limit and all)."""
    path = tmp_path / "answer.json"
    path.write_bytes(data)
    done = subprocess.run([sys.executable, "-m", "solar_monitor", "parse", str(path)],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"solar-monitor: {path}: ")


def test_seed_payloads_are_valid_to_start_with() -> None:
    """The mutations start from answers the parser accepts (else the fuzzing proves little)."""
    for name in SEED_NAMES:
        assert parse_or_error(encode(SEEDS[name])) is not None, name
