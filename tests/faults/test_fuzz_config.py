"""Fuzz the config loader: any file gives a Config or a ConfigError naming the key path.

Why: the config is hand-edited by owners over SSH; a traceback from `solar-monitor check`
tells them nothing, and an unbounded load (an alias bomb) would hang every cron run.
"""

from __future__ import annotations

import contextlib
import copy
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from solar_monitor.config import MAX_CONFIG_BYTES, Config, ConfigError, load_config

from ..conftest import REPO
from .fuzzing import FUZZ, HUGE_INT, get, paths, put, tried

EXAMPLE = yaml.safe_load((REPO / "config.example.yaml").read_text(encoding="utf-8"))
TOP_KEYS = [f for f in Config.__dataclass_fields__]
UNSET = "SOLAR_FUZZ_NEVER_SET"
# Placeholders replaced in the dumped YAML text: values yaml.safe_dump would quote or
# cannot write, but that an owner can type.
RAW = {HUGE_INT: "9" * 5000, "__BAD_DATE__": "2024-13-45", "__BIG_INT__": "1" * 400,
       "__INF__": ".inf", "__NAN__": ".nan", "__ENV__": "${" + UNSET + "}",
       "__TILDE__": "~no_such_user_zz/x", "__YES__": "yes"}
# Problems that are about the whole file, not one key.
FILE_LEVEL = ("file not found", "cannot read", "YAML syntax error", "the file ", "not UTF-8",
              "too many values", "nested too deeply", "a value YAML cannot read")

_TMP = Path(tempfile.mkdtemp(prefix="solar-fuzz-config-"))


# --- the property every input must satisfy --------------------------------------------------

def load_or_error(text: bytes) -> Config | ConfigError:
    """load_config on a file holding `text`: a Config, or a ConfigError whose every problem
    names a key path (or is about the whole file). Any other exception fails the test."""
    tried()
    path = _TMP / "config.yaml"
    path.write_bytes(text)
    try:
        return load_config(path, env={})
    except ConfigError as exc:
        check_error(exc, _reference(text))
        return exc


def _reference(text: bytes) -> Any:
    """What plain PyYAML reads from `text` (None when it cannot): the keys an error may name.
    Only for the small generated documents: plain PyYAML has no bound on alias bombs."""
    if len(text) > 20_000 or b"*" in text:
        return None
    try:
        return yaml.safe_load(text.decode("utf-8-sig"))
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError):
        return None


def check_error(exc: ConfigError, doc: Any = None) -> None:
    assert exc.problems and str(exc).startswith(f"{exc.source}: {len(exc.problems)} problem(s)")
    for problem in exc.problems:
        assert isinstance(problem, str) and len(problem) <= 600, problem[:200]
        if problem.startswith("At '") and isinstance(doc, dict):
            key = re.split(r"[.\[']", problem[4:], maxsplit=1)[0]
            tops = [*TOP_KEYS, "(empty key)", *(str(k) for k in doc),
                    *(repr(str(k))[1:-1] for k in doc)]
            assert any(t.startswith(key) for t in tops), (key, problem, list(doc))
        elif problem.startswith("At '"):
            assert re.match(r"At '[^\n]*': ", problem), problem
        else:
            assert problem.startswith(FILE_LEVEL), problem


def dump(doc: Any) -> bytes:
    text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    for placeholder, raw in RAW.items():
        text = text.replace(placeholder, raw)
    return text.encode("utf-8", "surrogatepass")


@contextlib.contextmanager
def at_most(seconds: float) -> Any:
    """Generous on purpose: it catches unbounded work (a bomb runs for minutes or hours),
    not a slow moment on a shared CI machine."""
    start = time.perf_counter()
    yield
    assert time.perf_counter() - start < seconds


# --- random documents and random mutations of the example ----------------------------------

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([*RAW, "", "http://pvs", "UTC", "Mars/Base", "42.36", "${HOME}",
                     "alerts", "pvs_rebooted", "\x85", "a\tb"]),
    st.text(max_size=12), st.dates())
VALUES = st.recursive(SCALARS, lambda kids: st.lists(kids, max_size=3)
                      | st.dictionaries(st.text(max_size=6) | st.sampled_from(TOP_KEYS), kids,
                                        max_size=3), max_leaves=6)


def _section(name: str) -> Any:
    known = list(EXAMPLE.get(name) or {}) if isinstance(EXAMPLE.get(name), dict) else []
    keys = st.sampled_from(known) | st.text(max_size=8) if known else st.text(max_size=8)
    return st.dictionaries(keys, VALUES, max_size=4)


DOCUMENTS = st.dictionaries(
    st.sampled_from(TOP_KEYS) | st.text(max_size=10) | st.integers(),
    st.one_of(*(_section(n) for n in TOP_KEYS), VALUES), max_size=5)


@FUZZ
@given(DOCUMENTS)
def test_random_documents(doc: dict[Any, Any]) -> None:
    load_or_error(dump(doc))


@st.composite
def mutated_example(draw: Any) -> Any:
    doc = copy.deepcopy(EXAMPLE)
    for _ in range(draw(st.integers(1, 5))):
        path = draw(st.sampled_from(list(paths(doc))))
        op = draw(st.sampled_from(["delete", "replace", "unknown", "nest", "lift"]))
        node = get(doc, path)
        if op == "delete" and path:
            del get(doc, path[:-1])[path[-1]]
        elif op == "unknown" and isinstance(node, dict):
            node[draw(st.text(min_size=1, max_size=10))] = draw(VALUES)
        elif op == "nest":  # wrong nesting: a value pushed one level down
            doc = put(doc, path, {draw(st.sampled_from(TOP_KEYS)): node})
        elif op == "lift" and len(path) == 2 and isinstance(doc, dict):  # a key at the top
            doc[path[-1]] = node
        else:
            doc = put(doc, path, draw(VALUES))
    return doc


@FUZZ
@given(mutated_example())
def test_mutated_example(doc: Any) -> None:
    load_or_error(dump(doc))


LEAVES = [p for p in paths(EXAMPLE) if len(p) == 2 and not isinstance(get(EXAMPLE, p),
                                                                          dict | list)]


def _shown(path: tuple[Any, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


@FUZZ
@given(st.sampled_from(LEAVES), st.sampled_from([{"a": 1}, [{"b": 2}], {"x": [1, 2]}]))
def test_a_section_where_a_value_belongs_names_the_key(path: tuple[str, str], bad: Any) -> None:
    doc = put(copy.deepcopy(EXAMPLE), path, bad)
    error = load_or_error(dump(doc))
    assert isinstance(error, ConfigError)
    assert any(p.startswith(f"At '{_shown(path)}") for p in error.problems), error.problems


@FUZZ
@given(st.sampled_from([p for p in paths(EXAMPLE) if p and isinstance(get(EXAMPLE, p), dict)]),
       st.text(alphabet="abcdefghij_", min_size=1, max_size=12))
def test_an_unknown_key_is_named(section: tuple[Any, ...], key: str) -> None:
    doc = copy.deepcopy(EXAMPLE)
    if key in get(doc, section) or section == ("alerts", "rules"):
        return  # a known key, or rules: {id: ...} where any key is a rule id (checked below)
    get(doc, section)[key] = 1
    error = load_or_error(dump(doc))
    assert isinstance(error, ConfigError)
    assert any(p.startswith(f"At '{_shown((*section, key))}': unknown key")
               for p in error.problems), error.problems


@FUZZ
@given(st.sampled_from([p for p in paths(EXAMPLE) if isinstance(get(EXAMPLE, p), str)]))
def test_unset_environment_variable_is_named(path: tuple[Any, ...]) -> None:
    doc = put(copy.deepcopy(EXAMPLE), path, "__ENV__")
    error = load_or_error(dump(doc))
    assert isinstance(error, ConfigError)
    assert f"At '{_shown(path)}': environment variable {UNSET} is not set" in str(error)


@pytest.mark.parametrize("section", ["site", "pvs"])
@pytest.mark.parametrize("key", ["latitude", "longitude", "timezone", "url", "data_dir"])
def test_a_missing_required_key_is_named(section: str, key: str) -> None:
    doc = copy.deepcopy(EXAMPLE)
    where = doc if key == "data_dir" else doc[section]
    if key not in where:
        return
    del where[key]
    error = load_or_error(dump(doc))
    assert isinstance(error, ConfigError)
    shown = key if key == "data_dir" else f"{section}.{key}"
    assert f"At '{shown}': required" in str(error)


# --- random text and random bytes ------------------------------------------------------------

TOKENS = ["site", "pvs", "data_dir", "latitude", "url", "tags", ":", ": ", "\n", "  ", "\t",
          "- ", "[", "]", "{", "}", ",", "&a ", "*a", "<<: *a", "<<: [*a, *a]", "!!binary ",
          "!!python/object/apply:os.system ", "!!str ", "!!set ", "? ", "'", '"', "#", "|",
          ">", "%YAML 1.1\n", "---\n", "...\n", "${X}", "1e400", ".inf", "2024-13-45",
          "9" * 5000, "~", "yes", "é", "\x00", "\ufeff", "\x85", "\\", "@", "`"]


@FUZZ
@given(st.lists(st.sampled_from(TOKENS) | st.text(max_size=4), max_size=40).map("".join))
def test_random_yaml_text(text: str) -> None:
    load_or_error(text.encode("utf-8", "surrogatepass"))


@pytest.mark.parametrize("text", ["*a" + "9" * 5000, "&" + "x" * 5000 + " 1\n*y",
                                  "key: !" + "t" * 5000 + " 1"])
def test_a_huge_token_in_a_yaml_error_stays_one_short_line(text: str) -> None:
    """Found by the fuzzer: PyYAML quotes the bad token whole (an alias 5,000 long)."""
    assert isinstance(exc := load_or_error(text.encode()), ConfigError)
    assert all(len(p) < 400 for p in exc.problems), exc.problems


@FUZZ
@given(st.binary(max_size=500))
def test_random_bytes(data: bytes) -> None:
    load_or_error(data)


# --- the named hostile inputs ----------------------------------------------------------------

def _error_for(text: bytes | str) -> ConfigError:
    data = text.encode() if isinstance(text, str) else text
    with at_most(20):
        error = load_or_error(data)
    assert isinstance(error, ConfigError)
    return error


def _laughs(levels: int = 9) -> str:
    """The classic billion laughs: 10**levels references to one list, in a few hundred bytes."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("where", [
    "site: {{latitude: *l{n}}}", "alerts: {{tags: *l{n}}}", "pvs: *l{n}",
    "alerts: {{rules: {{inverter_offline: *l{n}}}}}", "logging: {{level: *l{n}}}"])
def test_billion_laughs_is_refused_quickly(where: str) -> None:
    error = _error_for(_laughs() + where.format(n=8) + "\n")
    assert "too many values" in str(error)


def test_merge_key_bomb_is_refused_quickly() -> None:
    """`<<` merges copy keys (unlike aliases): 10 levels of 10 merges is 10**10 keys."""
    lines = ["m0: &m0 {a: 1, b: 2}"]
    lines += [f"m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * 10)}]}}" for i in range(1, 10)]
    assert "too many values" in str(_error_for("\n".join(lines) + "\n"))


def test_a_recursive_alias_is_refused() -> None:
    assert "too many values" in str(_error_for("site: &s {latitude: *s}\n"))


@pytest.mark.parametrize("text", ["[" * 100_000, "a: " + "{a: " * 5000, "- " * 50_000 + "x"])
def test_deep_nesting_is_refused(text: str) -> None:
    assert "nested too deeply" in str(_error_for(text))


def test_huge_file_is_refused_without_reading_it_all() -> None:
    error = _error_for(b"# " + b"x" * (MAX_CONFIG_BYTES + 10) + b"\n")
    assert "too large" in str(error)


def test_a_directory_instead_of_a_file(tmp_path: Path) -> None:
    tried()
    with pytest.raises(ConfigError, match="is a folder, not a file"):
        load_config(tmp_path, env={})


@pytest.mark.parametrize(("data", "message"), [
    (b"site:\n  name: Caf\xe9\n", "not UTF-8 text (bad byte at line 2, column 12)"),
    (b"", "the file holds no settings"),
    (b"\xef\xbb\xbf# only a comment\n", "the file holds no settings"),
    (b"site:\n\tlatitude: 1\n", "indent with spaces, not tabs"),
    (b"site: \x00\x01\n", "YAML syntax error at line 1, column 7: control character"),
    (b"pvs: {url: 'http://a'}\npvs: {url: 'http://b'}\n", "At 'pvs': duplicate key"),
    (b"site: {latitude: 1, latitude: 2}\n", "At 'site.latitude': duplicate key"),
    (b"data_dir: 2024-13-45\n", "At 'data_dir': '2024-13-45' is not a valid date"),
    (("site: {latitude: " + "9" * 5000 + "}\n").encode(), "is not a valid number"),
    (("site: {latitude: " + "9" * 400 + "}\n").encode(), "At 'site.latitude'"),
    (b"digest: {day_of_month: .inf}\n", "At 'digest.day_of_month': inf is too large"),
    (b"data_dir: ~no_such_user_zz/x\n", "At 'data_dir': '~no_such_user_zz/x' names a user"),
    (b"data_dir: \"/var/\\0lib\"\n", "At 'data_dir': '/var/\\x00lib' contains a NUL"),
])
def test_named_hostile_inputs(data: bytes, message: str) -> None:
    """Each of these either escaped as another exception or gave an unclear message before
    the fix (see the commit)."""
    assert message in str(_error_for(data))


def test_merge_keys_and_anchors_still_work() -> None:
    """The bounds must not reject the YAML features a tidy config legitimately uses."""
    text = ("site: {latitude: 42.36, longitude: -71.06, timezone: UTC}\n"
            "pvs: {url: 'http://pvs'}\ndata_dir: /var/lib/solar-monitor\n"
            "alerts: {tags: &t [mail]}\ndigest: {tags: *t}\n"
            "weather: &w {timeout_s: 20}\n"
            "google_sheets: {<<: *w, spreadsheet: " + "a" * 25 + ", key_file: /k.json}\n")
    config = load_or_error(text.encode())
    assert isinstance(config, Config), config
    assert config.google_sheets is not None and config.google_sheets.timeout_s == 20
    assert config.digest.tags == ["mail"]
