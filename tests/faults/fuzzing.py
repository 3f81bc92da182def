"""Shared fuzzing tools: the example budget, an input counter, and JSON mutations.

Why one module: every fuzz test draws from the same budget (`SOLAR_FUZZ_EXAMPLES`) and
reports into the same counter, so the README can quote one figure for the whole run.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("SOLAR_FUZZ_EXAMPLES", "250"))

# No example database: CI runs on a fresh clone with -p no:cacheprovider, so a failure
# must be reproducible from the seed hypothesis prints, not from a local cache.
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.large_base_example])
# The CLI is slower per input (files, JSON output): a tenth of the budget.
FUZZ_CLI = settings(FUZZ, max_examples=max(10, EXAMPLES // 10))

TRIED = {"inputs": 0}


def tried() -> None:
    """Count one fuzzed input (reported at the end of the session)."""
    TRIED["inputs"] += 1


Path_ = tuple[Any, ...]

# A placeholder the tests' encoder turns into a 5000-digit integer (json.dumps cannot).
HUGE_INT = "__HUGE_INT__"

# Values of every JSON type, plus the strings a PVS or a broken bridge could send.
WEIRD_STRINGS = ["", " ", "NaN", "nan", "Infinity", "-Infinity", "1e400", "-0", "12.5 kW",
                 "1,234.5", "0x1F", "２３", "٣٤", "\u0000", "\ud800", "é" * 3, "\n",
                 "2025,13,45,25,61,61", "2025,06,28,17,00,00", "0,0,0,0,0,0",
                 "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00",
                 "2025-06-28T17:00:00Z", "Build 99999999999999999999", "2025.06.24.61845",
                 "inverter", "Inverter", "Power Meter", "PVS", "succeed", "fail",
                 "/sys/devices/inverter/0/sn", "<html>", HUGE_INT]
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.sampled_from([10**400, -(10**400), -1]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(WEIRD_STRINGS),
    st.text(max_size=12))
JSON = st.recursive(SCALARS, lambda kids: st.lists(kids, max_size=4)
                    | st.dictionaries(st.text(max_size=8), kids, max_size=4), max_leaves=12)
OPS = ("delete", "replace", "duplicate", "add_key", "wrap", "stringify")


def paths(doc: Any, here: Path_ = ()) -> Iterator[Path_]:
    """Every path (tuple of keys / indices) in a JSON document, the root first."""
    yield here
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from paths(value, (*here, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            yield from paths(value, (*here, index))


def get(doc: Any, path: Path_) -> Any:
    for step in path:
        doc = doc[step]
    return doc


def put(doc: Any, path: Path_, value: Any) -> Any:
    """`doc` with the node at `path` replaced (in place below the root)."""
    if not path:
        return value
    get(doc, path[:-1])[path[-1]] = value
    return doc


def mutate(draw: Any, doc: Any) -> Any:
    """One random structural mutation of `doc` (a deep copy is the caller's business)."""
    path = draw(st.sampled_from(list(paths(doc))))
    op = draw(st.sampled_from(OPS))
    node = get(doc, path)
    if op == "delete" and path:
        parent = get(doc, path[:-1])
        del parent[path[-1]]
        return doc
    if op == "duplicate" and isinstance(node, list) and node:
        node.insert(draw(st.integers(0, len(node))), copy.deepcopy(draw(st.sampled_from(node))))
        return doc
    if op == "add_key" and isinstance(node, dict):
        node[draw(st.text(max_size=10))] = draw(JSON)
        return doc
    if op == "wrap":
        return put(doc, path, draw(st.sampled_from([[node], {"value": node}])))
    if op == "stringify":
        return put(doc, path, str(node))
    return put(doc, path, draw(JSON))
