"""Load and validate the YAML config: every problem at once, each with its key path and a fix.

The schema is the dataclasses below: each field's type, default and `hint` metadata say
what is allowed. Unknown keys are errors, so a typo never silently switches a feature off.
Any string may say `${ENV_VAR}` to take a secret from the environment.
"""

from __future__ import annotations

import functools
import os
import re
import reprlib
import stat
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ENV_CONFIG = "SOLAR_MONITOR_CONFIG"
DEFAULT_CONFIG_PATHS = (Path("config.yaml"), Path("/etc/solar-monitor/config.yaml"))
# Bounds that keep a wrong or hostile file from hanging a cron run (the example is ~4 KB
# and ~100 values): the bytes read, and the values after expanding aliases and merges.
MAX_CONFIG_BYTES = 1024 * 1024
MAX_YAML_VALUES = 10_000


class ConfigError(Exception):
    """The config cannot be used. `problems` holds one line per problem."""

    def __init__(self, problems: list[str], source: str = "config") -> None:
        self.problems = problems
        self.source = source
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s):\n{lines}")


def _f(default: Any = MISSING, *, hint: str = "", secret: bool = False,
       check: typing.Callable[[Any], str | None] | None = None, **kw: Any) -> Any:
    """A schema field: `hint` tells the user how to fix a bad value; `secret` hides it."""
    meta = {"hint": hint, "secret": secret, "check": check}
    kw.setdefault("repr", not secret)  # a secret never shows up in a repr or traceback
    if isinstance(default, list | dict):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta, **kw)
    if is_dataclass(default) and isinstance(default, type):
        return field(default_factory=default, metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


def _url(value: str) -> str | None:
    if not re.match(r"^https?://[^\s/]+", value):
        return "must start with http:// or https:// followed by a host"
    return None


def _timezone(value: str) -> str | None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        near = timezone_suggestions(value)
        guess = f"; did you mean {' or '.join(map(repr, near))}?" if near else ""
        return f"is not an IANA time zone name{guess}"
    return None


@functools.cache
def _zones_by_lower() -> dict[str, str]:
    """Every IANA zone name by its lower case (read from disk once: a fuzzed or badly
    typed config may ask many times)."""
    from zoneinfo import available_timezones

    return {z.lower(): z for z in available_timezones()}


# What owners write for a US zone instead of its IANA name: the abbreviations on a clock
# and the state's big city (an IANA zone is named after one city: all of California is
# America/Los_Angeles). Spelling-close names ('MST' for 'PST') would be the wrong zone.
_COMMON_ZONE_NAMES = {
    "pst": "America/Los_Angeles", "pdt": "America/Los_Angeles",
    "pacific": "America/Los_Angeles", "america/san_francisco": "America/Los_Angeles",
    "america/san_diego": "America/Los_Angeles", "america/sacramento": "America/Los_Angeles",
    "america/san_jose": "America/Los_Angeles", "america/seattle": "America/Los_Angeles",
    "america/portland": "America/Los_Angeles", "america/las_vegas": "America/Los_Angeles",
    "mst": "America/Denver", "mdt": "America/Denver", "mountain": "America/Denver",
    "america/salt_lake_city": "America/Denver", "arizona": "America/Phoenix",
    "cst": "America/Chicago", "cdt": "America/Chicago", "central": "America/Chicago",
    "america/dallas": "America/Chicago", "america/houston": "America/Chicago",
    "america/austin": "America/Chicago", "est": "America/New_York",
    "edt": "America/New_York", "eastern": "America/New_York",
    "america/boston": "America/New_York", "america/miami": "America/New_York",
    "america/atlanta": "America/New_York", "america/washington": "America/New_York",
    "america/philadelphia": "America/New_York",
    "hst": "Pacific/Honolulu", "hawaii": "Pacific/Honolulu",
    "akst": "America/Anchorage", "alaska": "America/Anchorage",
}


def timezone_suggestions(name: str, limit: int = 3) -> list[str]:
    """IANA zone names close to `name` (case-insensitive), best first."""
    import difflib

    if len(name) > 64:  # no zone name is this long; difflib would take its time
        return []
    by_lower = _zones_by_lower()
    if name.lower() in by_lower:
        return [by_lower[name.lower()]]
    key = name.strip().lower().replace(" ", "_")
    if key in _COMMON_ZONE_NAMES:
        return [_COMMON_ZONE_NAMES[key]]
    # 0.88: a typo (Los_Angelos, Chicgo, Londn) is found; a city that is no zone name and
    # not listed above (America/Cleveland) gets no far-away zone that merely looks alike
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=limit, cutoff=0.88)
    return [by_lower[c] for c in close]


def _range(lo: float, hi: float) -> typing.Callable[[float], str | None]:
    def check(value: float) -> str | None:
        return None if lo <= value <= hi else f"must be between {lo:g} and {hi:g}"
    return check


@dataclass(frozen=True)
class SiteConfig:
    """Where the panels are: drives sun position, weather and local time."""

    latitude: float = _f(hint="decimal degrees, north positive, e.g. 42.36",
                         check=_range(-90, 90))
    longitude: float = _f(hint="decimal degrees, east positive, e.g. -71.06",
                          check=_range(-180, 180))
    timezone: str = _f(hint="an IANA zone such as America/New_York", check=_timezone)
    name: str = _f("My solar system", hint="a label used in e-mails and the sheet")


@dataclass(frozen=True)
class PvsConfig:
    """How to reach and log in to the PVS."""

    url: str = _f(hint="the PVS address, e.g. http://172.27.153.1 (or the Pi's bridge)",
                  check=_url)
    api: Literal["auto", "legacy", "varserver"] = _f(
        "auto", hint="leave 'auto' unless detection fails")
    serial: str | None = _f(None, hint="the PVS serial; read from the PVS when omitted")
    username: str = _f("ssm_owner", hint="'ssm_owner' (older firmware: 'spwr_owner')")
    password: str | None = _f(None, secret=True,
                              hint="defaults to the last 5 characters of the serial")
    verify_tls: bool = _f(False, hint="the PVS uses a self-signed certificate")
    request_timeout_s: float = _f(150.0, check=_range(1, 900),
                                  hint="one HTTP request; DeviceList can take 120 s")
    poll_budget_s: float = _f(240.0, check=_range(1, 3600),
                              hint="a whole poll including retries; keep under the cron interval")
    https_port: int = _f(443, check=_range(1, 65535),
                         hint="the PVS's HTTPS port, used when it refuses plain http (443)")


@dataclass(frozen=True)
class CsvConfig:
    """Local CSV exports under <data_dir>/csv/."""

    enabled: bool = _f(True, hint="false: no CSV files")


@dataclass(frozen=True)
class DigestConfig:
    """The monthly e-mail digest, sent once by the first run after the month ends."""

    enabled: bool = _f(True, hint="false: no monthly e-mail")
    tags: list[str] = _f(["digest"], hint="notify targets with one of these tags receive it")
    day_of_month: int = _f(1, check=_range(1, 28),
                           hint="send on the first run on or after this day of the next month")
    weak_panel_pct: float = _f(85.0, check=_range(1, 100),
                               hint="flag an inverter below this % of the median inverter")


@dataclass(frozen=True)
class ArchiveConfig:
    """Raw answers under <data_dir>/raw/: compacted after a week, kept forever unless a
    retention is set, and trimmed oldest first if the disk runs low (retention.py)."""

    retention_days: int | None = _f(None, check=_range(1, 100000),
                                    hint="delete raw files older than this; empty keeps all")
    compact_after_days: int | None = _f(7, check=_range(1, 100000),
                                        hint="pack each day older than this into one "
                                             ".tar.gz; empty never compacts")
    min_free_mb: int | None = _f(200, check=_range(1, 10_000_000),
                                 hint="below this much free disk, delete the oldest raw "
                                      "days first; empty turns the floor off")


@dataclass(frozen=True)
class WeatherConfig:
    """Cloud cover from Open-Meteo (free, no key), stored with each poll."""

    enabled: bool = _f(True, hint="false: no weather requests, cloud cover stays empty")
    url: str = _f("https://api.open-meteo.com/v1/forecast", check=_url,
                  hint="the Open-Meteo forecast endpoint; change only for a self-hosted one")
    refresh_minutes: int = _f(60, check=_range(15, 1440),
                              hint="fetch at most this often; Open-Meteo updates hourly")
    timeout_s: float = _f(10.0, check=_range(1, 60),
                          hint="one request; a weather failure never fails the run")


@dataclass(frozen=True)
class NotifyTarget:
    """One apprise URL and the tags of the messages it receives."""

    url: str = _f(secret=True, hint="an apprise URL such as "
                  "mailtos://user:app-password@gmail.com?to=me@example.com "
                  "(see docs/notifications.md)")
    tags: list[str] = _f([], hint="which messages go here, e.g. [alerts, digest]; "
                                  "empty receives everything")


@dataclass(frozen=True)
class NotifyConfig:
    """Where alerts and digests go; unsent messages wait in an outbox and are retried."""

    targets: list[NotifyTarget] = _f([], hint="a list of {url: ..., tags: [...]} entries")
    max_per_run: int = _f(10, check=_range(1, 1000),
                          hint="messages tried per run; the rest wait for the next run")
    give_up_hours: float = _f(72.0, check=_range(1, 8760),
                              hint="drop a message that could not be sent for this long")


def _spreadsheet(value: str) -> str | None:
    if re.search(r"/spreadsheets/d/[A-Za-z0-9_-]+", value) or re.fullmatch(
            r"[A-Za-z0-9_-]{20,}", value.strip()):
        return None
    return "is neither a Google Sheets address nor a spreadsheet id"


def _local_path(value: str) -> str | None:
    """A path the OS can open: no NUL character, and any `~user` must exist."""
    if "\0" in value:
        return "contains a NUL character; write the path again"
    try:
        Path(value).expanduser()
    except RuntimeError:
        return "names a user with no home directory; write the full path"
    return None


def _absolute(value: str) -> str | None:
    if problem := _local_path(value):
        return problem
    path = Path(value).expanduser()
    return None if path.is_absolute() else "must be an absolute path (cron starts elsewhere)"


@dataclass(frozen=True)
class GoogleSheetsConfig:
    """A Google Sheet that fills itself (docs/google-sheets.md). Off when absent."""

    spreadsheet: str = _f(hint="the sheet's address from the browser, "
                               "https://docs.google.com/spreadsheets/d/<id>/edit, or the id",
                          check=_spreadsheet)
    key_file: str = _f(hint="the service account's JSON key, e.g. "
                            "/etc/solar-monitor/google-key.json (chmod 600)", check=_absolute)
    readings_worksheet: str = _f("Readings", hint="worksheet (tab) name: one row per poll")
    daily_worksheet: str = _f("Daily", hint="worksheet (tab) name: one row per day")
    alerts_worksheet: str = _f("Alerts", hint="worksheet (tab) name: one row per alert event")
    batch_rows: int = _f(500, check=_range(1, 5000), hint="rows per append request")
    timeout_s: float = _f(30.0, check=_range(1, 300), hint="one request to Google")
    max_wait_s: float = _f(60.0, check=_range(0, 600),
                           hint="longest back-off per run when Google says 429 or 5xx")


def _rule_overrides(value: dict[str, Any]) -> str | None:
    from solar_monitor.rules.catalog import check_overrides

    return check_overrides(value)


def _rule_ids(value: list[str]) -> str | None:
    from solar_monitor.rules.catalog import BY_ID

    unknown = [v for v in value if v not in BY_ID]
    if not unknown:
        return None
    close = [r for r in BY_ID if _similar(unknown[0], r)]
    guess = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown rule {unknown[0]!r}; {guess}rules are: {', '.join(BY_ID)}"


@dataclass(frozen=True)
class SnowConfig:
    """Snow in the weather data: inverter darkness is then not judged a failure (issue 15)."""

    enabled: bool = _f(True, hint="false: dark panels under snow are judged as any others")
    min_depth_m: float = _f(0.01, check=_range(0.001, 10),
                            hint="snow on the ground (m, Open-Meteo's snow_depth) from which "
                                 "dark panels are put down to snow")
    after_snowfall_h: float = _f(24.0, check=_range(0, 240),
                                 hint="hours after a snowfall that dark panels are put down "
                                      "to snow, even with no depth on the ground")
    min_snowfall_cm: float = _f(0.5, check=_range(0.01, 100),
                                hint="an hour's snowfall (cm) that counts as a snowfall")
    shed_max_h: float = _f(72.0, check=_range(0, 720),
                           hint="after the weather's snow is gone, panels that went dark "
                                "together under it may stay dark together this long")


@dataclass(frozen=True)
class AlertsConfig:
    """Alert rules and their e-mails (docs: solar_monitor/rules/catalog.py lists the rules)."""

    enabled: bool = _f(True, hint="false: no alerts at all")
    reminder_hours: float = _f(24.0, check=_range(1, 8760),
                               hint="repeat an open alert's e-mail this often")
    tags: list[str] = _f(["alerts"], hint="notify targets with one of these tags receive them")
    disabled_rules: list[str] = _f([], check=_rule_ids,
                                   hint="rule ids to switch off, e.g. [pvs_rebooted]")
    ignore_inverters: list[str] = _f([], hint="serials of replaced inverters the PVS still "
                                              "lists")
    rules: dict[str, dict[str, float]] = _f(
        {}, check=_rule_overrides,
        hint="per-rule thresholds, e.g. {inverter_offline: {open_after_min: 45}}")
    snow: SnowConfig = _f(SnowConfig)


@dataclass(frozen=True)
class HeartbeatConfig:
    """A dead man's switch (healthchecks.io, Uptime Kuma push...): every run pings `url`,
    a failed one `<url>/fail`, so the owner hears when the Pi itself goes silent."""

    url: str = _f(secret=True, check=_url,
                  hint="the check's ping URL, e.g. https://hc-ping.com/<uuid> "
                       "(docs/notifications.md)")
    timeout_s: float = _f(10.0, check=_range(1, 60),
                          hint="one ping; a failed ping never fails the run")


@dataclass(frozen=True)
class LoggingConfig:
    """Where run logs go. Cron mails stderr; systemd sends it to the journal."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = _f("INFO", hint="INFO is right")
    file: str | None = _f(None, hint="a log file path; stderr when omitted",
                          check=_local_path)


def _prom_file(value: str) -> str | None:
    if problem := _absolute(value):
        return problem
    return None if value.endswith(".prom") else \
        "must end in .prom (node_exporter's textfile collector reads only *.prom files)"


def _host(value: str) -> str | None:
    if not value or "://" in value or "/" in value or any(c.isspace() for c in value):
        return "must be a host name or address, without http:// or a path"
    return None


@dataclass(frozen=True)
class MqttExport:
    """Publish each poll to an MQTT broker, with Home Assistant discovery
    (docs/home-assistant.md). Needs paho-mqtt: pip install 'solar-monitor[mqtt]'."""

    host: str = _f(hint="the broker's host name or address, e.g. 192.168.1.20",
                   check=_host)
    port: int = _f(1883, check=_range(1, 65535), hint="1883, or 8883 with tls: true")
    tls: bool = _f(False, hint="true for a broker that speaks TLS (port 8883)")
    username: str | None = _f(None, hint="the broker user, if it asks for one")
    password: str | None = _f(None, secret=True, hint="the broker user's password")
    topic_prefix: str = _f("solar-monitor", hint="topics start <prefix>/<PVS serial>/")
    discovery_prefix: str | None = _f(
        "homeassistant", hint="Home Assistant's discovery prefix; empty: no discovery")
    discovery: Literal["device", "entity"] = _f(
        "device", hint="'device' (Home Assistant 2024.11 and later) or 'entity' (older)")
    client_id: str | None = _f(None, hint="the MQTT client id; one is made up when omitted")
    timeout_s: float = _f(10.0, check=_range(1, 60),
                          hint="the whole publish; a broker down never fails the run")


@dataclass(frozen=True)
class InfluxdbExport:
    """Write each poll to InfluxDB (line protocol over HTTP; docs/fleet.md)."""

    url: str = _f(hint="the server, e.g. http://192.168.1.20:8086", check=_url)
    api: Literal["v1", "v2"] = _f("v1", hint="'v1' (InfluxDB 1.x: database) or 'v2' "
                                             "(InfluxDB 2.x, VictoriaMetrics: org, bucket, token)")
    database: str | None = _f(None, hint="v1: the database, e.g. solar (CREATE DATABASE solar)")
    username: str | None = _f(None, hint="v1: the user, when auth is on")
    password: str | None = _f(None, secret=True, hint="v1: the user's password")
    org: str | None = _f(None, hint="v2: the organization name")
    bucket: str | None = _f(None, hint="v2: the bucket, e.g. solar")
    token: str | None = _f(None, secret=True, hint="v2: an API token with write access")
    timeout_s: float = _f(10.0, check=_range(1, 120),
                          hint="the whole write; a server down never fails the run")

    def problems(self) -> list[tuple[str, str]]:
        """(key, fix) for settings the chosen api needs and lacks."""
        need = ("database",) if self.api == "v1" else ("org", "bucket")
        return [(k, f"required with api: {self.api}") for k in need if not getattr(self, k)]


@dataclass(frozen=True)
class PrometheusExport:
    """Write each poll to a textfile for node_exporter's textfile collector (docs/fleet.md)."""

    textfile: str = _f(hint="e.g. /var/lib/prometheus/node-exporter/solar_monitor.prom",
                       check=_prom_file)


@dataclass(frozen=True)
class Exports:
    """Optional copies of each poll for the engines people already run; each failure is
    logged and never fails the run."""

    mqtt: MqttExport | None = _f(None, hint="a section with at least host (Home Assistant)")
    influxdb: InfluxdbExport | None = _f(None, hint="a section with url and api")
    prometheus: PrometheusExport | None = _f(None, hint="a section with textfile")


MAX_LABEL_CHARS = 60


def _inverter_labels(value: dict[str, str]) -> str | None:
    """Each label one short line, and no two inverters with the same name."""
    seen: dict[str, str] = {}
    for serial, label in value.items():
        text = label.strip()
        if not serial.strip() or not text:
            return f"has an empty serial or label ({serial!r}: {label!r})"
        if len(text) > MAX_LABEL_CHARS or not text.isprintable():
            return (f"label of {serial} must be one line of at most {MAX_LABEL_CHARS} "
                    f"characters")
        if text.lower() in seen:
            return f"gives {seen[text.lower()]} and {serial} the same label {text!r}"
        seen[text.lower()] = serial
    return None


@dataclass(frozen=True)
class Config:
    """The whole config file."""

    site: SiteConfig = _f(hint="required section")
    pvs: PvsConfig = _f(hint="required section")
    data_dir: str = _f(hint="where raw files, the database and CSV go, "
                            "e.g. /var/lib/solar-monitor", check=_local_path)
    csv: CsvConfig = _f(CsvConfig)
    archive: ArchiveConfig = _f(ArchiveConfig)
    digest: DigestConfig = _f(DigestConfig)
    logging: LoggingConfig = _f(LoggingConfig)
    weather: WeatherConfig = _f(WeatherConfig)
    notify: NotifyConfig = _f(NotifyConfig)
    alerts: AlertsConfig = _f(AlertsConfig)
    google_sheets: GoogleSheetsConfig | None = _f(
        None, hint="a section with spreadsheet and key_file (docs/google-sheets.md)")
    heartbeat: HeartbeatConfig | None = _f(
        None, hint="a section with the ping url of a healthchecks.io check "
                   "(docs/notifications.md)")
    exports: Exports = _f(Exports, hint="sections mqtt, influxdb, prometheus (docs/fleet.md)")
    inverters: dict[str, str] = _f(
        {}, check=_inverter_labels,
        hint="inverter serial: the panel's place, e.g. E00122142045868: south roof, row 2, #3")

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser()

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.site.timezone)

    def secrets(self) -> list[str]:
        """Every secret value in this config, for redaction in logs."""
        found: list[str] = []
        _collect_secrets(self, found)
        return [s for s in found if s]


def _collect_secrets(obj: Any, out: list[str]) -> None:
    if not is_dataclass(obj):
        return
    for f in fields(obj):
        value = getattr(obj, f.name)
        if f.metadata.get("secret") and isinstance(value, str):
            out.append(value)
        elif isinstance(value, list | tuple):
            for item in value:
                _collect_secrets(item, out)
        else:
            _collect_secrets(value, out)


# --- loading -----------------------------------------------------------------------------

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class _Problems(list[str]):
    def add(self, path: str, message: str, hint: str = "") -> None:
        self.append(f"At '{path}': {message}" + (f" ({hint})" if hint else ""))


def resolve_path(cli_path: str | None) -> Path:
    """The config file to use: --config, then $SOLAR_MONITOR_CONFIG, then the defaults."""
    if cli_path:
        return Path(cli_path)
    if os.environ.get(ENV_CONFIG):
        return Path(os.environ[ENV_CONFIG])
    for candidate in DEFAULT_CONFIG_PATHS:
        if candidate.exists():
            return candidate
    raise ConfigError(
        ["no config file found; pass --config PATH or set SOLAR_MONITOR_CONFIG "
         "(start from config.example.yaml)"], source="config")


def load_config(path: Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate `path`. Raises ConfigError listing every problem."""
    raw = _load_yaml(_read(path), str(path))
    config = config_from_dict(raw, env=os.environ if env is None else env, source=str(path))
    if not Path(config.data_dir).expanduser().is_absolute():
        # cron starts in $HOME: a relative data_dir means "next to the config file"
        config = replace(config, data_dir=str(path.resolve().parent / config.data_dir))
    return config


def _read(path: Path) -> str:
    """The file's text: at most MAX_CONFIG_BYTES of UTF-8, else a ConfigError saying why."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError([f"file not found: {path}"], source=str(path)) from None
    except PermissionError:
        raise ConfigError([f"cannot read {path}: permission denied; run the command with "
                           "sudo (the config holds passwords: only its owner may read it)"],
                          source=str(path)) from None
    except IsADirectoryError:
        raise ConfigError([f"cannot read {path}: it is a folder, not a file (pass the "
                           "config file itself)"], source=str(path)) from None
    except OSError as exc:
        raise ConfigError([f"cannot read {path}: {exc.strerror or exc.__class__.__name__}"],
                          source=str(path)) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError([f"the file is too large (over {MAX_CONFIG_BYTES // 1024} KB; a "
                           "config is a few KB): is it the right file?"], source=str(path))
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - data.rfind(b"\n", 0, exc.start)
        raise ConfigError([f"not UTF-8 text (bad byte at line {line}, column {column}); "
                           "save the file as UTF-8"], source=str(path)) from None


def _load_yaml(text: str, source: str) -> Any:
    """YAML text -> plain data, bounded: no alias bomb, no deep nesting, no duplicate key."""
    import yaml  # only commands that read a config pay for the import

    try:
        loader = yaml.SafeLoader(text)  # refuses control characters right away
        node = loader.get_single_node()
        if node is None:
            return None
        _check_nodes(node, loader, source)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_problem(exc, text)], source=source) from None
    except RecursionError:
        raise ConfigError(["the file is nested too deeply to be a config; start from "
                           "config.example.yaml"], source=source) from None
    except (ValueError, TypeError, OverflowError) as exc:  # a scalar _check_nodes missed
        raise ConfigError([f"a value YAML cannot read: {exc} (put it in quotes)"],
                          source=source) from None


_YAML_INT = "tag:yaml.org,2002:int"
_YAML_TIMESTAMP = "tag:yaml.org,2002:timestamp"


def _check_nodes(root: Any, loader: Any, source: str) -> None:
    """Walk the YAML node graph before building anything: count every value reached
    (through aliases and merges too, so a billion laughs stops at MAX_YAML_VALUES), and
    report duplicate keys and unreadable numbers / dates with their key paths."""
    import yaml

    problems = _Problems()
    stack: list[tuple[Any, str]] = [(root, "")]
    for _seen in range(MAX_YAML_VALUES + 1):
        if not stack:
            break
        node, path = stack.pop()
        children: list[tuple[Any, str]] = []
        if isinstance(node, yaml.MappingNode):
            first_line: dict[tuple[str, str], int] = {}
            for key, value in node.value:
                if key.tag == "tag:yaml.org,2002:merge":
                    children.append((value, path))
                    continue
                here = _join(path, _key(key.value) if isinstance(key, yaml.ScalarNode) else "?")
                if isinstance(key, yaml.ScalarNode):
                    if (line := first_line.get((key.tag, key.value))) is not None:
                        problems.add(here, f"duplicate key (first on line {line + 1}); keep one")
                    first_line.setdefault((key.tag, key.value), key.start_mark.line)
                children += [(key, here), (value, here)]
        elif isinstance(node, yaml.SequenceNode):
            children = [(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        elif node.tag in (_YAML_INT, _YAML_TIMESTAMP):
            try:
                loader.construct_object(node)
            except (ValueError, OverflowError):
                kind = "number" if node.tag == _YAML_INT else "date"
                problems.add(path, f"{_show(node.value, {})} is not a valid {kind}",
                             "put it in quotes if it is text")
        stack += reversed(children)
    else:
        raise ConfigError([f"the file expands to too many values (over {MAX_YAML_VALUES}, "
                           "through aliases '*name' or merges '<<'); a config needs a few "
                           "hundred"], source=source)
    if problems:
        raise ConfigError(list(problems), source=source)


MAX_QUOTED_CHARS = 80


def _clipped(problem: str) -> str:
    """PyYAML quotes the offending token whole ('found undefined alias' and a 5,000
    character name): one line stays one line."""
    if len(problem) <= 2 * MAX_QUOTED_CHARS:
        return problem
    return f"{problem[:MAX_QUOTED_CHARS]}… ({len(problem)} characters)"


def _yaml_problem(exc: Exception, text: str) -> str:
    """One line for a YAML error: where, what, and how to fix it."""
    import yaml

    if isinstance(exc, yaml.reader.ReaderError) and isinstance(exc.character, int):
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - text.rfind("\n", 0, exc.position)
        return (f"YAML syntax error at line {line}, column {column}: control character "
                f"#x{exc.character:02x} is not allowed (binary data, or not a text file?)")
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = _clipped(getattr(exc, "problem", None) or "invalid YAML")
    context = getattr(exc, "context", None)
    start = getattr(exc, "context_mark", None)
    opened = start.line + 1 if context and start and mark and start.line != mark.line else 0
    if opened:  # e.g. an unclosed quote: where it opened is where to look
        problem += f" {context} that starts at line {opened}, column {start.column + 1}"
    if context and context.startswith("expected a single document"):
        problem = f"{context}, {problem} (remove the second '---')"
    elif "'\\t'" in problem:
        problem += " (indent with spaces, not tabs)"
    elif "constructor for the tag" in problem:
        problem += " (remove the '!' tag: a config holds plain values)"
    elif opened:
        problem += f" (check the quotes and brackets from line {opened} on)"
    else:
        problem += " (check the indentation and quotes on that line and the one before)"
    return f"YAML syntax error{where}: {problem}"


def config_from_dict(raw: Any, *, env: Mapping[str, str], source: str = "config") -> Config:
    """Validate an already-parsed YAML document into a Config."""
    problems = _Problems()
    if raw is None:
        raise ConfigError(["the file holds no settings (empty, or only comments); it must be "
                           "a YAML mapping (key: value lines): start from config.example.yaml"],
                          source=source)
    if not isinstance(raw, dict):
        raise ConfigError(["the file must be a YAML mapping (key: value lines); "
                           "start from config.example.yaml"], source=source)
    value = _build(Config, raw, "", problems, env)
    if problems:
        raise ConfigError(list(problems), source=source)
    return value


def _build(cls: type, raw: dict[str, Any], prefix: str, problems: _Problems,
           env: Mapping[str, str]) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    for key in raw:
        if key not in known:
            close = [k for k in known if _similar(str(key), k)]
            sections = {n: _optional(hints[n]) or hints[n] for n in known}
            home = [n for n, tp in sections.items() if is_dataclass(tp)
                    and str(key) in {f.name for f in fields(tp)}]
            suggestion = f"did you mean '{close[0]}'?" if close else \
                f"it belongs under '{_join(prefix, home[0])}:', indented" if home else \
                f"allowed keys: {', '.join(known)}"
            problems.add(_join(prefix, _key(key)), "unknown key", suggestion)
    kwargs: dict[str, Any] = {}
    for name, f in known.items():
        path = _join(prefix, name)
        hint = f.metadata.get("hint", "")
        if name not in raw or raw[name] is None and _optional(hints[name]) is None:
            if f.default is MISSING and f.default_factory is MISSING:
                problems.add(path, "required", hint)
            continue
        value = _coerce(hints[name], raw[name], path, problems, env, f.metadata)
        if value is _INVALID:
            continue
        check = f.metadata.get("check")
        if check and value is not None and (msg := check(value)):
            problems.add(path, f"{_show(value, f.metadata)} {msg}", hint)
            continue
        kwargs[name] = value
    try:
        value = cls(**kwargs)
    except TypeError:  # a required field was reported above
        return None
    for key, message in getattr(value, "problems", lambda: [])():
        problems.add(_join(prefix, key), message, known[key].metadata.get("hint", ""))
    return value


_INVALID = object()


def _optional(tp: Any) -> Any:
    """The inner type of `X | None`, or None when `tp` is not optional."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) < len(typing.get_args(tp)):
            return args[0]
    return None


def _coerce(tp: Any, value: Any, path: str, problems: _Problems,
            env: Mapping[str, str], meta: Mapping[str, Any]) -> Any:
    hint = meta.get("hint", "")
    inner = _optional(tp)
    if inner is not None:
        return None if value is None else _coerce(inner, value, path, problems, env, meta)
    if isinstance(value, str):
        value = _expand_env(value, path, problems, env)
        if value is _INVALID:
            return _INVALID
    origin = typing.get_origin(tp)
    if is_dataclass(tp):
        if not isinstance(value, dict):
            problems.add(path, "must be a section (indented key: value lines)", hint)
            return _INVALID
        built = _build(tp, value, path, problems, env)
        return _INVALID if built is None else built
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            problems.add(path, f"{_show(value, meta)} is not one of "
                               f"{', '.join(map(str, choices))}", hint)
            return _INVALID
        return value
    if origin is dict:
        key_tp, item_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            problems.add(path, "must be a section (indented key: value lines)", hint)
            return _INVALID
        entries = {str(k): _coerce(item_tp, v, _join(path, _key(k)), problems, env, meta)
                   for k, v in value.items()}
        return _INVALID if any(v is _INVALID for v in entries.values()) else entries
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, str | dict) or not isinstance(value, list):
            value = [value]
        items = [_coerce(item_tp, v, f"{path}[{i}]", problems, env, meta)
                 for i, v in enumerate(value)]
        return _INVALID if any(i is _INVALID for i in items) else items
    if tp is bool:
        if isinstance(value, bool):
            return value
        quoted = isinstance(value, str) and value.lower() in ("true", "false", "yes", "no")
        problems.add(path, f"{_show(value, meta)} must be true or false"
                     + (" without quotes" if quoted else ""), hint)
        return _INVALID
    if tp in (int, float):
        if isinstance(value, bool):
            problems.add(path, "must be a number, not true/false", hint)
            return _INVALID
        try:
            number = tp(value)
        except (TypeError, ValueError):
            problems.add(path, f"{_show(value, meta)} must be a number", hint)
            return _INVALID
        except OverflowError:  # int(.inf), float(10**400)
            problems.add(path, f"{_show(value, meta)} is too large", hint)
            return _INVALID
        if tp is int and isinstance(value, float) and not value.is_integer():
            problems.add(path, f"{_show(value, meta)} must be a whole number", hint)
            return _INVALID
        return number
    if tp is str:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            problems.add(path, "must be text", hint)
            return _INVALID
        return value
    raise TypeError(f"unsupported schema type {tp!r} at {path}")  # a bug in the schema


def _expand_env(value: str, path: str, problems: _Problems, env: Mapping[str, str]) -> Any:
    missing = [name for name in _ENV_REF.findall(value) if name not in env]
    if missing:
        problems.add(path, f"environment variable {missing[0]} is not set",
                     "export it, or put the value in the file")
        return _INVALID
    return _ENV_REF.sub(lambda m: env[m.group(1)], value)


_REPR = reprlib.Repr()  # bounded: a value built from aliases can be huge or recursive
_REPR.maxstring = _REPR.maxother = 80
_REPR.maxlist = _REPR.maxdict = _REPR.maxset = 4
_REPR.maxlevel = 3


def _show(value: Any, meta: Mapping[str, Any]) -> str:
    return "value hidden" if meta.get("secret") else _REPR.repr(value)


def _key(key: Any) -> str:
    """A key as shown in a key path: printable, one line, at most 60 characters."""
    text = str(key) or "(empty key)"
    text = text if text.isprintable() else repr(text)[1:-1]
    return text if len(text) <= 60 else text[:57] + "..."


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _similar(a: str, b: str) -> bool:
    """Cheap typo detector: same letters give or take one edit."""
    import difflib

    return difflib.SequenceMatcher(None, a.lower(), b.lower()).ratio() >= 0.75


def permission_warning(path: Path) -> str | None:
    """A warning when the config (which may hold secrets) is readable by other users."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if mode & (stat.S_IRGRP | stat.S_IROTH | stat.S_IWGRP | stat.S_IWOTH):
        return (f"{path} is readable by other users and may hold passwords; "
                f"run: chmod 600 {path}")
    return None
