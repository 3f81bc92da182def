"""Pure parser: the bytes of any PVS answer -> a typed Snapshot. No I/O, no clock.

Accepted shapes (detected from the content, never from a file name):
- legacy `Command=DeviceList`: `{"devices": [...], "result": "succeed"}`;
- solar-monitor's varserver envelope: `{"api": "varserver", "responses": [...]}`;
- a bare varserver `/vars` answer, array (`{"values": [...]}`) or object (`{name: value}`)
  format, including the pre-release `/sys/devices/<id>/meter/data` layout;
- `/cgi-bin/dl_cgi/supervisor/info` and the `/auth?login` answer (no devices).
Gzip is detected by its magic bytes. Every failure is a ParseError with a one-line reason.

SunVault storage devices (DeviceList types in BATTERY_DEVICE_TYPES, varserver
`/sys/devices/ess/<i>/...`) become Battery models; their power keeps the PVS's sign (+
discharging). A state of charge is a fraction on the PVS and a percentage in the model.

varserver has no inverter STATE. It is derived: "working" when the inverter reported at
least PRODUCING_MIN_KW within VARSERVER_FRESH_S of the PVS's clock (its age), "error" otherwise
(matching what legacy firmware reports at night or when an inverter stops talking).
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
import math
import re
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from solar_monitor.pvs import fcgi_vars
from solar_monitor.pvs.errors import ParseError
from solar_monitor.pvs.models import (
    PRODUCING_MIN_KW,
    Battery,
    Device,
    Inverter,
    Meter,
    MeterKind,
    Snapshot,
    Supervisor,
    soc_percent,
)

VARSERVER_FRESH_S = 20 * 60
# Bounds on a PVS answer: real ones are tens of KB (a few MB for thousands of inverters)
# and nest 5 levels at most.
MAX_ANSWER_BYTES = 64 * 1024 * 1024  # also caps what a gzip may inflate to
MAX_DEPTH = 64  # deeper JSON would blow the recursion of whatever prints or stores it

# --- field maps: PVS name -> model attribute (numbers become floats) ---------------------

SUPERVISOR_METRICS = {
    "dl_uptime": "uptime_s", "dl_cpu_load": "cpu_load", "dl_mem_used": "mem_used_kib",
    "dl_flash_avail": "flash_avail_kib", "dl_untransmitted": "untransmitted",
    "dl_err_count": "err_count", "dl_comm_err": "comm_err",
    "dl_skipped_scans": "skipped_scans", "dl_scan_time": "scan_time_s",
}
METER_METRICS = {
    "p_3phsum_kw": "power_kw", "q_3phsum_kvar": "reactive_kvar",
    "s_3phsum_kva": "apparent_kva", "tot_pf_rto": "power_factor", "freq_hz": "freq_hz",
    "net_ltea_3phsum_kwh": "lifetime_net_kwh", "pos_ltea_3phsum_kwh": "lifetime_pos_kwh",
    "neg_ltea_3phsum_kwh": "lifetime_neg_kwh", "ct_scl_fctr": "ct_scale_a",
    "i_a": "current_a", "v12_v": "voltage_v", "v1n_v": "leg1_v", "v2n_v": "leg2_v",
    "i1_a": "leg1_a", "i2_a": "leg2_a", "p1_kw": "leg1_kw", "p2_kw": "leg2_kw",
}
INVERTER_METRICS = {
    "p_3phsum_kw": "power_kw", "ltea_3phsum_kwh": "lifetime_kwh",
    "vln_3phavg_v": "ac_voltage_v", "i_3phsum_a": "ac_current_a", "freq_hz": "freq_hz",
    "t_htsnk_degc": "heatsink_c", "v_mppt1_v": "dc_voltage_v", "i_mppt1_a": "dc_current_a",
    "p_mppt1_kw": "dc_power_kw", "p_mpptsum_kw": "dc_power_kw",
}
# Properties consumed into named fields (everything else lands in `extra`).
SUPERVISOR_PROPS = {"SERIAL": "serial", "MODEL": "model", "SWVER": "firmware",
                    "HWVER": "hardware", "STATE": "state"}
METER_PROPS = {"SERIAL": "serial", "MODEL": "model", "STATE": "state"}
INVERTER_PROPS = {"SERIAL": "serial", "MODEL": "model", "STATE": "state",
                  "PANEL": "panel", "SWVER": "firmware"}
DROPPED = {"DEVICE_TYPE", "DATATIME", "CURTIME", "subtype", "production_subtype_enum",
           "consumption_subtype_enum"}

VAR_METER_METRICS = {
    "p3phsumKw": "power_kw", "q3phsumKvar": "reactive_kvar", "s3phsumKva": "apparent_kva",
    "totPfRto": "power_factor", "freqHz": "freq_hz", "netLtea3phsumKwh": "lifetime_net_kwh",
    "posLtea3phsumKwh": "lifetime_pos_kwh", "negLtea3phsumKwh": "lifetime_neg_kwh",
    "ctSclFctr": "ct_scale_a", "iA": "current_a", "v12V": "voltage_v", "v1nV": "leg1_v",
    "v2nV": "leg2_v", "i1A": "leg1_a", "i2A": "leg2_a", "p1Kw": "leg1_kw", "p2Kw": "leg2_kw",
}
VAR_INVERTER_METRICS = {
    "p3phsumKw": "power_kw", "ltea3phsumKwh": "lifetime_kwh", "vln3phavgV": "ac_voltage_v",
    "i3phsumA": "ac_current_a", "freqHz": "freq_hz", "tHtsnkDegc": "heatsink_c",
    "vMppt1V": "dc_voltage_v", "iMppt1A": "dc_current_a", "pMppt1Kw": "dc_power_kw",
}
VAR_SUPERVISOR = {"serialnum": "serial", "model": "model", "sw_rev": "firmware",
                  "hwrev": "hardware"}
VAR_SUPERVISOR_METRICS = {"uptime": "uptime_s", "cpu_usage": "cpu_usage_pct",
                          "flash_usage": "flash_used_pct"}
FLASH_WEAR_VAR = "/sys/pvs/flashwear_type_b"  # eMMC life used, hex tenths: 0x03 = 30 %

# SunVault. DeviceList types (lowercase) that are storage; the DeviceList ESS entries seen
# so far carry no metrics, so their metric names are varserver's, in DeviceList's
# snake_case spelling (p3phsumKw is p_3phsum_kw on both).
BATTERY_DEVICE_TYPES = frozenset({"energy storage system", "ess bms", "battery",
                                  "storage inverter"})
BATTERY_PROPS = {"SERIAL": "serial", "MODEL": "model", "STATE": "state"}
BATTERY_METRICS = {"soc_val": "soc_pct", "customer_soc_val": "customer_soc_pct",
                   "soh_val": "soh_pct", "p_3phsum_kw": "power_kw", "v_batt_v": "battery_v"}
VAR_BATTERY_METRICS = {"socVal": "soc_pct", "customerSocVal": "customer_soc_pct",
                       "sohVal": "soh_pct", "p3phsumKw": "power_kw", "vBattV": "battery_v"}
_SOC_FIELDS = ("soc_pct", "customer_soc_pct")

_VAR_CONSUMED = frozenset({"sn", "prodMdlNm", "msmtEps"})
# Bounded digit runs: int() refuses more than 4300 digits (ValueError), and no index or
# build number is longer than 9.
_DEVICE_VAR = re.compile(r"^/sys/devices/([^/]+)/(\d{1,9})/([^/]+)$")
_OLD_DEVICE_VAR = re.compile(r"^/sys/devices/(\d{1,9})/([^/]+)/data$")
_BUILD = re.compile(r"build\s*(\d{1,9})(?!\d)", re.IGNORECASE)
_SW_REV_BUILD = re.compile(r"\.(\d{4,6})$")
# C0 and C1 controls, DEL, and the bidi marks, embeddings, overrides and isolates (U+202E
# shows "exe.txt" as "txt.exe"), and the Unicode line and paragraph separators
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


# --- entry point -------------------------------------------------------------------------

def parse(data: bytes, *, polled_at: datetime | None = None) -> Snapshot:
    """Parse one PVS answer. `polled_at` (aware) is the collector's time, when known.

    Raises ParseError when the bytes are not a usable PVS answer.
    """
    doc = load_json(data)
    if not isinstance(doc, dict):
        raise ParseError(f"expected a JSON object, got a JSON {type(doc).__name__}")
    if "devices" in doc:
        return _parse_devicelist(doc, polled_at)
    if doc.get("api") == "varserver" and isinstance(doc.get("responses"), list):
        return _parse_envelope(doc, polled_at)
    if isinstance(doc.get("supervisor"), dict):
        _check_result(doc)
        sup = _legacy_supervisor(doc["supervisor"])
        return Snapshot(polled_at=polled_at, api="legacy", source="supervisor_info",
                        firmware=sup.firmware, build=sup.build, supervisor=sup)
    if set(doc) == {"session"}:
        return Snapshot(polled_at=polled_at, api="varserver", source="login")
    variables = _vars_from_answer(doc)
    if variables is not None:
        return _parse_vars(variables, polled_at, source="vars")
    keys = ", ".join(_brief(k, 30) for k in sorted(map(str, doc))[:5]) or "none"
    raise ParseError(f"not a PVS answer this version understands (top-level keys: {keys})")


def load_json(data: bytes) -> Any:
    """Bytes (optionally gzip) -> JSON value, with a one-line ParseError on failure.

    At most MAX_ANSWER_BYTES (after inflating) and MAX_DEPTH levels are accepted."""
    if data[:2] == b"\x1f\x8b":
        data = _gunzip(data)
    if len(data) > MAX_ANSWER_BYTES:
        raise ParseError(f"answer too large ({len(data)} bytes; the limit is "
                         f"{MAX_ANSWER_BYTES} bytes)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ParseError(f"not UTF-8 text (bad byte at offset {exc.start})") from None
    stripped = text.strip()
    if not stripped:
        raise ParseError("empty answer")
    if stripped.startswith("<"):
        title = re.search(r"<(?:title|h1)>([^<]{0,80})", stripped, re.IGNORECASE)
        what = f": {' '.join(title.group(1).split())}" if title else ""
        raise ParseError(f"an HTML page, not JSON{what}")
    try:
        doc = json.loads(stripped)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(stripped) - 1 or not stripped.endswith(("}", "]")):
            raise ParseError(f"truncated JSON ({len(stripped)} bytes)") from None
        raise ParseError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: "
                         f"{exc.msg}") from None
    except ValueError:  # an integer of more than 4300 digits (int() refuses it)
        raise ParseError("JSON holds a number too long to read") from None
    except RecursionError:
        raise ParseError("JSON nested too deeply") from None
    _check_depth(doc)
    return doc


def _gunzip(data: bytes) -> bytes:
    """Inflate each gzip member, never past MAX_ANSWER_BYTES + 1: a small gzip bomb must not
    fill the RAM (the caller refuses the oversized result)."""
    out: list[bytes] = []
    size = 0
    while data and size <= MAX_ANSWER_BYTES:
        inflater = zlib.decompressobj(wbits=31)  # 31: gzip header and CRC checked
        try:
            out.append(inflater.decompress(data, MAX_ANSWER_BYTES + 1 - size))
        except zlib.error as exc:
            raise ParseError(f"corrupt gzip data ({exc})") from None
        size += len(out[-1])
        if not inflater.eof and size <= MAX_ANSWER_BYTES:
            raise ParseError("corrupt gzip data (it ends before the end-of-stream marker)")
        data = inflater.unused_data.lstrip(b"\0")  # members may follow, or zero padding
    return b"".join(out)


def _check_depth(doc: Any) -> None:
    """ParseError when containers nest deeper than MAX_DEPTH, level by level (no recursion;
    json.loads only makes exact dicts and lists, hence `type() is`)."""
    level = [doc] if type(doc) is dict or type(doc) is list else []
    for _ in range(MAX_DEPTH):
        deeper: list[Any] = []
        for node in level:
            deeper += [v for v in (node.values() if type(node) is dict else node)
                       if type(v) is dict or type(v) is list]
        if not deeper:
            return
        level = deeper
    raise ParseError(f"JSON nested too deeply (more than {MAX_DEPTH} levels)")


# --- legacy DeviceList -------------------------------------------------------------------

def _check_result(doc: Mapping[str, Any]) -> None:
    result = doc.get("result")
    if result is not None and str(result).lower() != "succeed":
        raise ParseError(f"the PVS answered result={str(result)[:40]!r}, not 'succeed'")


def _parse_devicelist(doc: dict[str, Any], polled_at: datetime | None) -> Snapshot:
    _check_result(doc)
    devices = doc["devices"]
    if not isinstance(devices, list):
        raise ParseError("'devices' is not a list")
    supervisor: Supervisor | None = None
    meters: list[Meter] = []
    inverters: list[Inverter] = []
    batteries: list[Battery] = []
    other: list[Device] = []
    curtimes: list[datetime] = []
    # each device's age at the poll, on the PVS's own clock (CURTIME) when it sent one:
    # DATATIME is stamped by that clock, so a PVS clock off from ours ages nothing
    reference = pvs_time(_supervisor_curtime(devices)) or polled_at
    for raw in devices:
        if not isinstance(raw, dict):
            other.append(Device("unknown", None, None, {"value": raw}))
            continue
        if (t := pvs_time(raw.get("CURTIME"))) is not None:
            curtimes.append(t)
        kind = str(raw.get("DEVICE_TYPE", "")).strip().lower()
        if kind == "pvs" and supervisor is None:
            supervisor = _legacy_supervisor(raw)
        elif kind == "power meter" and _text(raw.get("SERIAL")):
            meters.append(_legacy_meter(raw, reference))
        elif kind == "inverter" and _text(raw.get("SERIAL")):
            inverters.append(_legacy_inverter(raw, reference))
        elif kind in BATTERY_DEVICE_TYPES:
            batteries.append(_legacy_battery(raw))
        else:
            other.append(Device(_text(raw.get("DEVICE_TYPE")) or "unknown",
                                _text(raw.get("SERIAL")), _text(raw.get("STATE")), raw))
    _check_usable(len(devices), meters, inverters, batteries)
    sup_time = pvs_time(_supervisor_curtime(devices)) if supervisor else None
    pvs_now = sup_time or (max(curtimes) if curtimes else None)
    return Snapshot(
        polled_at=polled_at or pvs_now, api="legacy", source="devicelist",
        firmware=supervisor.firmware if supervisor else None,
        build=supervisor.build if supervisor else None, pvs_time=pvs_now,
        supervisor=supervisor, meters=tuple(meters), inverters=tuple(inverters),
        other=tuple(other), batteries=tuple(batteries),
    )


def _check_usable(listed: int, meters: Any, inverters: Any, batteries: Any) -> None:
    """ParseError when a device list holds no inverter, meter or battery: such a poll
    says nothing about the site ("0/0 inverters producing" would pass for a reading)."""
    if not (meters or inverters or batteries):
        raise ParseError(f"no usable device: {listed} device(s) listed, none an inverter, "
                         "meter or battery with a serial")


def _supervisor_curtime(devices: list[Any]) -> Any:
    """The supervisor's own CURTIME (the PVS clock), if it sent one."""
    for raw in devices:
        if isinstance(raw, dict) and str(raw.get("DEVICE_TYPE", "")).lower() == "pvs":
            return raw.get("CURTIME")
    return None


def _split(raw: Mapping[str, Any], props: Mapping[str, str], metrics: Mapping[str, str],
           dropped: frozenset[str] | set[str] = DROPPED) -> tuple[dict[str, Any], dict[str, Any]]:
    """Named model fields, and everything else (unknown or unparseable) for `extra`.

    `dropped` keys are consumed elsewhere (timestamps, subtype, serial)."""
    named: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in raw.items():
        if key in props:
            named[props[key]] = _text(value)
        elif key in metrics:
            number = to_float(value)
            if number is None and value not in ("", None):
                extra[key] = value  # kept, not dropped, when it is not a number
            if metrics[key] not in named or named[metrics[key]] is None:
                named[metrics[key]] = number
        elif key not in dropped:
            extra[key] = value
    return named, extra


def _legacy_supervisor(raw: Mapping[str, Any]) -> Supervisor:
    named, extra = _split(raw, SUPERVISOR_PROPS, SUPERVISOR_METRICS)
    build = raw.get("BUILD")
    extra.pop("BUILD", None)
    return Supervisor(
        build=_int(build) if _int(build) is not None else firmware_build(named.get("firmware")),
        data_time=pvs_time(raw.get("DATATIME")), extra=extra, **named)


def _legacy_meter(raw: Mapping[str, Any], reference: datetime | None) -> Meter:
    named, extra = _split(raw, METER_PROPS, METER_METRICS)
    subtype = _text(raw.get("subtype") or raw.get("production_subtype_enum")
                    or raw.get("consumption_subtype_enum"))
    measured = pvs_time(raw.get("DATATIME"))
    return Meter(kind=meter_kind(str(raw.get("TYPE", "")), named["serial"], subtype),
                 subtype=subtype, data_time=measured, age_s=_age_s(measured, reference),
                 extra=extra, **named)


def _legacy_inverter(raw: Mapping[str, Any], reference: datetime | None) -> Inverter:
    named, extra = _split(raw, INVERTER_PROPS, INVERTER_METRICS)
    if named.get("state"):
        named["state"] = named["state"].lower()
    measured = pvs_time(raw.get("DATATIME"))
    return Inverter(data_time=measured, age_s=_age_s(measured, reference), extra=extra,
                    **named)


def _age_s(measured: datetime | None, reference: datetime | None) -> float | None:
    """Seconds from a device's own measurement time to the poll's time on the same clock
    (never negative: a measurement a little ahead is current); None when either is
    unknown."""
    if measured is None or reference is None:
        return None
    return max(0.0, (reference - measured).total_seconds())


def _legacy_battery(raw: Mapping[str, Any]) -> Battery:
    named, extra = _split(raw, BATTERY_PROPS, BATTERY_METRICS)
    if named.get("state"):
        named["state"] = named["state"].lower()
    return Battery(device_type=str(raw.get("DEVICE_TYPE")),
                   data_time=pvs_time(raw.get("DATATIME")), extra=extra,
                   **_battery_units(named))


def _battery_units(named: dict[str, Any]) -> dict[str, Any]:
    """States of charge from the PVS's fraction to % (state of health is sent in %)."""
    for key in _SOC_FIELDS:
        if isinstance(named.get(key), float):
            named[key] = soc_percent(named[key])
    return named


# --- varserver ---------------------------------------------------------------------------

def _parse_envelope(doc: dict[str, Any], polled_at: datetime | None) -> Snapshot:
    variables: dict[str, Any] = {}
    warnings: list[str] = []
    for response in doc["responses"]:
        if not isinstance(response, dict) or response.get("status") != 200:
            continue
        found = _envelope_answer(response, warnings)
        if found is None:
            raise ParseError(f"varserver answer for {_brief(response.get('path'), 60)} "
                             "is not /vars data")
        variables.update(found)
    if not variables:
        raise ParseError("the varserver envelope holds no successful answer")
    when = polled_at or _aware(doc.get("requested_at"))
    snapshot = _parse_vars(variables, when, source="varserver")
    _check_usable(len(snapshot.other) + len(snapshot.inverters) + len(snapshot.meters)
                  + len(snapshot.batteries), snapshot.meters, snapshot.inverters,
                  snapshot.batteries)
    return dataclasses.replace(snapshot, warnings=tuple(warnings)) if warnings else snapshot


def _envelope_answer(response: dict[str, Any], warnings: list[str]) -> dict[str, Any] | None:
    """The variables of one archived /vars answer (`body` text, or `body_b64` bytes when
    the PVS sent bytes that are not UTF-8). An answer that is not JSON because the PVS
    printed a string unescaped (fcgi_vars does) is read entry by entry, with a warning."""
    body = response.get("body")
    if isinstance(response.get("body_b64"), str):
        try:
            data = base64.b64decode(response["body_b64"], validate=True)
        except ValueError:
            raise ParseError("an archived body_b64 is not base64") from None
    elif isinstance(body, str):
        # surrogatepass: a lone surrogate ("\\ud800" in the envelope) becomes a ParseError
        data = body.encode("utf-8", "surrogatepass")
    else:
        return _vars_from_answer(body) if isinstance(body, dict) else None
    try:
        answer = load_json(data)
    except ParseError as exc:
        path = str(response.get("path", ""))
        try:
            found, unreadable, printed = fcgi_vars.scan(data, _match_of(path))
        except ValueError:
            raise exc from None
        what = _short_path(path)
        if printed:
            warnings.append(f"the PVS printed {', '.join(printed)} unescaped (not JSON): "
                            f"read as printed, every other value of {what} kept")
        if unreadable:
            warnings.append(f"could not read {', '.join(unreadable)} in {what} (not "
                            "UTF-8, or cut by a value printed unescaped); the rest is kept")
        return found
    return _vars_from_answer(answer) if isinstance(answer, dict) else None


def _match_of(path: str) -> str:
    """The `match=` of a /vars request path ('' when none)."""
    found = re.search(r"[?&]match=([^&]*)", path)
    return found.group(1) if found else ""


def _short_path(path: str) -> str:
    return _brief(path.split("&fmt")[0], 60)


def _vars_from_answer(doc: dict[str, Any]) -> dict[str, Any] | None:
    """{name: value} from either /vars format, or None when `doc` is not a /vars answer."""
    if isinstance(doc.get("values"), list):
        out = {}
        for item in doc["values"]:
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                out[item["name"]] = item.get("value")
        return out
    if doc and all(isinstance(k, str) and k.startswith("/") for k in doc):
        return dict(doc)
    return None


def _parse_vars(variables: Mapping[str, Any], polled_at: datetime | None,
                source: str) -> Snapshot:
    groups: dict[tuple[str, int], dict[str, Any]] = {}
    info: dict[str, Any] = {}
    livedata: dict[str, Any] = {}
    loose: dict[str, Any] = {}
    for name, value in variables.items():
        if m := _DEVICE_VAR.match(name):
            groups.setdefault((m.group(1), int(m.group(2))), {})[m.group(3)] = value
        elif (m := _OLD_DEVICE_VAR.match(name)) and isinstance(value, dict):
            groups[(m.group(2), int(m.group(1)))] = dict(value)
        elif name.startswith("/sys/info/"):
            info[name.removeprefix("/sys/info/")] = value
        elif name.startswith("/sys/livedata/"):
            key = name.removeprefix("/sys/livedata/")
            livedata[key] = v if (v := to_float(value)) is not None else value
        else:
            loose[name] = value
    times = [t for fields in groups.values() if (t := _aware(fields.get("msmtEps")))]
    live_time = _epoch(livedata.get("time"))
    reference = polled_at or live_time or (max(times) if times else None)
    supervisor = _var_supervisor(info, loose) if info or loose else None
    age_reference = live_time or reference  # msmtEps is stamped by the PVS's own clock
    meters: list[Meter] = []
    inverters: list[Inverter] = []
    batteries: list[Battery] = []
    other: list[Device] = []
    for (kind, _index), fields in sorted(groups.items()):
        serial = _text(fields.get("sn"))
        if kind == "inverter" and serial:
            inverters.append(_var_inverter(fields, age_reference))
        elif kind == "meter" and serial:
            meters.append(_var_meter(fields, age_reference))
        elif kind == "ess":
            batteries.append(_var_battery(fields))
        else:
            other.append(Device(kind, serial, None, fields))
    return Snapshot(
        polled_at=reference, api="varserver", source=source,
        firmware=supervisor.firmware if supervisor else None,
        build=supervisor.build if supervisor else None,
        pvs_time=live_time, supervisor=supervisor, meters=tuple(meters),
        inverters=tuple(inverters), other=tuple(other), livedata=livedata,
        batteries=tuple(batteries),
    )


def _var_inverter(fields: Mapping[str, Any], reference: datetime | None) -> Inverter:
    named, extra = _split(fields, {}, VAR_INVERTER_METRICS, _VAR_CONSUMED)
    measured = _aware(fields.get("msmtEps"))
    age_s = _age_s(measured, reference)
    fresh = age_s is not None and age_s <= VARSERVER_FRESH_S
    power = named.get("power_kw")
    working = fresh and power is not None and power >= PRODUCING_MIN_KW
    return Inverter(serial=_text(fields["sn"]) or "", model=_text(fields.get("prodMdlNm")),
                    state="working" if working else "error", state_derived=True,
                    data_time=measured, age_s=age_s, extra=extra, **named)


def _var_meter(fields: Mapping[str, Any], reference: datetime | None) -> Meter:
    named, extra = _split(fields, {}, VAR_METER_METRICS, _VAR_CONSUMED)
    serial = _text(fields["sn"]) or ""
    measured = _aware(fields.get("msmtEps"))
    return Meter(serial=serial, kind=meter_kind("", serial, None), subtype=None,
                 model=_text(fields.get("prodMdlNm")), data_time=measured,
                 age_s=_age_s(measured, reference), extra=extra, **named)


def _var_battery(fields: Mapping[str, Any]) -> Battery:
    named, extra = _split(fields, {}, VAR_BATTERY_METRICS, _VAR_CONSUMED | {"opMode"})
    return Battery(device_type="ess", serial=_text(fields.get("sn")),
                   model=_text(fields.get("prodMdlNm")), op_mode=_text(fields.get("opMode")),
                   data_time=_aware(fields.get("msmtEps")), extra=extra,
                   **_battery_units(named))


def _var_supervisor(info: Mapping[str, Any], loose: Mapping[str, Any]) -> Supervisor:
    named: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in info.items():
        if key in VAR_SUPERVISOR:
            named[VAR_SUPERVISOR[key]] = _text(value)
        elif key in VAR_SUPERVISOR_METRICS:
            named[VAR_SUPERVISOR_METRICS[key]] = to_float(value)
        else:
            extra[key] = value
    extra.update(loose)
    if (wear := flash_wear_pct(loose.get(FLASH_WEAR_VAR))) is not None:
        named["flash_wear_pct"] = wear
        del extra[FLASH_WEAR_VAR]
    return Supervisor(build=firmware_build(named.get("firmware")), extra=extra, **named)


# --- small conversions -------------------------------------------------------------------

def meter_kind(type_: str, serial: str | None, subtype: str | None) -> MeterKind:
    """production / consumption from TYPE (`PVS5-METER-P`), subtype, or the serial's suffix."""
    upper = type_.upper()
    if upper.endswith("-P") or (subtype or "").upper().endswith("PRODUCTION_SITE"):
        return "production"
    if upper.endswith("-C") or "CONSUMPTION" in (subtype or "").upper():
        return "consumption"
    suffix = (serial or "")[-1:].lower()
    return {"p": "production", "c": "consumption"}.get(suffix, "unknown")  # type: ignore[return-value]


def firmware_build(version: str | None) -> int | None:
    """61839 from '2025.06, Build 61839' (dl_cgi) or '2025.06.24.61840' (varserver)."""
    if not version:
        return None
    m = _BUILD.search(version) or _SW_REV_BUILD.search(version.strip())
    return int(m.group(1)) if m else None


def flash_wear_pct(value: Any) -> float | None:
    """/sys/pvs/flashwear_type_b -> % of the eMMC's rated life used: the PVS sends hex
    tenths ("0x03" = 30 %; 0x0B, the eMMC's "exceeded", is 110 %). None when absent or
    not such a value."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        tenths = value
    else:
        text = str(value).strip().lower()
        if not re.fullmatch(r"(0x)?[0-9a-f]{1,4}", text):
            return None
        tenths = int(text, 16)
    return float(tenths * 10) if 0 <= tenths <= 0x0B else None


def pvs_time(value: Any) -> datetime | None:
    """'YYYY,MM,DD,HH,MM,SS' (UTC) -> aware datetime, or None when absent or malformed."""
    if not isinstance(value, str):
        return None
    return _pvs_time(value)


@functools.lru_cache(maxsize=1024)  # every device of a poll repeats the same few times
def _pvs_time(value: str) -> datetime | None:
    try:
        parts = [int(p) for p in value.split(",")]
        return datetime(*parts[:6], tzinfo=UTC) if len(parts) == 6 else None
    except (ValueError, TypeError, OverflowError):
        return None


def to_float(value: Any) -> float | None:
    """A PVS number (string or number) -> float; None for empty, text, NaN or infinity."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _int(value: Any) -> int | None:
    number = to_float(value)
    return int(number) if number is not None and number.is_integer() else None


def _text(value: Any) -> str | None:
    """PVS text for a named field: control characters (NUL, ESC, CR/LF, bidi overrides)
    stripped, since it reaches CSV files, sheets, e-mails and terminals; None if empty."""
    if value is None:
        return None
    text = _CONTROL.sub("", str(value)).strip()
    return text or None


def _aware(value: Any) -> datetime | None:
    """ISO-8601 text -> aware UTC datetime (naive is taken as UTC), or None."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 moved out of range
        return None


def _brief(value: Any, limit: int) -> str:
    """repr() cut to `limit` characters: a ParseError stays one short line."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


# Livedata time is Unix seconds or milliseconds. 1e11 s is the year 5138 and 1e11 ms is
# 1973, so the magnitude tells them apart for every plausible clock.
_EPOCH_MS_FROM = 1e11


def _epoch(value: Any) -> datetime | None:
    """Unix seconds or milliseconds (by magnitude) -> aware UTC; None for zero or less and
    from the year 3000 on (a garbage clock must not become the poll's time)."""
    number = to_float(value)
    if number is not None and number >= _EPOCH_MS_FROM:
        number /= 1000
    if number is None or not 0 < number < 32503680000:
        return None
    return datetime.fromtimestamp(number, UTC)
