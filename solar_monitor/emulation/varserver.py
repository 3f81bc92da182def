"""The LocalAPI varserver `/vars` answer (PVS6 build 61845 on, PVS5 5412 on): every
public variable of the model's list, flat `{name: string}`, typed like the real varserver."""

from __future__ import annotations

import csv
import functools
import re
import struct
from datetime import datetime
from importlib import resources
from typing import TYPE_CHECKING

from solar_monitor.emulation.readings import (
    _floor,
    _frozen_reading,
    _inverter_reading,
    _legs,
    _meters,
    _pq,
    firmware_names,
    iso_utc,
)
from solar_monitor.emulation.sky import _hash_unit, _ts

if TYPE_CHECKING:
    from solar_monitor.emulation.site import InverterState, SimulatedSite, SiteState

_FLASH_TOTAL_KIB = 131072.0


@functools.cache
def public_variables(model: str) -> dict[str, str]:
    """{name: type} of pypvs's public varserver list for `model` (PVS6|PVS5); device
    names keep their `{index}` placeholder. Copied into the package: varlists/SOURCES.md."""
    name = f"varserver-variables-public-{model.lower()}.csv"
    text = resources.files("solar_monitor.emulation").joinpath("varlists", name).read_text()
    return {row["name"]: row["type"] for row in csv.DictReader(text.splitlines())}


def _float32(x: float) -> str:
    """How the varserver prints a float variable: float32, then C's `%f` ("60.009998")."""
    return f"{struct.unpack('<f', struct.pack('<f', x))[0]:f}"


def _typed(value: float | int | str, kind: str) -> str:
    """A value as the varserver prints a variable of type `kind` (csv's type column)."""
    if isinstance(value, str):
        return value
    if kind == "float":
        return _float32(float(value))
    if kind.startswith(("int", "uint")):
        return str(int(round(value)))
    return str(value)


def _render_vars(site: SimulatedSite, st: SiteState, t: datetime) -> dict[str, str]:
    """Every variable of the model's public list that this site has, typed like the real
    varserver. Battery (ess, livedata soc/ess_*) and transfer-switch names are left out:
    the simulated site has neither."""
    types = public_variables(site.spec.model)
    uptime_s = max(0.0, (st.data_time - st.last_boot).total_seconds())
    lmac = "00:22:F2:" + ":".join(
        f"{int(_hash_unit(site.spec.seed, 18, j) * 256):02X}" for j in range(3))
    serial = site.supervisor_serial
    raw: dict[str, float | int | str] = {
        "/sys/info/serialnum": serial,
        "/sys/info/sw_rev": firmware_names(st.build)[1],
        "/sys/info/fwrev": " Major 2, Revision 0x00000001, Build 3",
        "/sys/info/model": site.spec.model,
        "/sys/info/hwrev": "6.02" if site.spec.model == "PVS6" else "5.01",
        "/sys/info/boardtype": "800-02473" if site.spec.model == "PVS6" else "800-01856",
        "/sys/info/sys_type": "PV-only",
        "/sys/info/finance_type": "UNKNOWN",
        "/sys/info/ssid": f"SunPower{serial[4:6]}{serial[-3:]}",
        "/sys/info/wpa_key": f"Wk{int(_hash_unit(site.spec.seed, 19) * 2**32):08x}",
        "/sys/info/lmac": lmac,
        "/sys/info/active_interface": "wan0",
        "/sys/info/active_interface_mac": lmac,
        "/sys/info/uptime": f"{uptime_s:.2f}",  # a str variable with two decimals
        "/sys/info/cpu_usage": int(st.cpu_load * 100 / 4),
        "/sys/info/ram_usage": int(st.mem_used_kib * 100 / 262144),
        "/sys/info/flash_usage": int(100 * (1 - st.flash_avail_kib / _FLASH_TOTAL_KIB)),
        # hex tenths of wear: 0x03 = 30 %
        "/sys/pvs/flashwear_type_b": f"0x{site.flash_wear_tenths(t):02x}",
        "/sys/pvs/usb_erase_count": 0,
        "/sys/telemetryws/enable": 1,
        "/sys/toggle_cell/broadband_connected": 1,
        "/sys/toggle_cell/cell_connected": 0,
        "/sys/toggle_cell/low_data_mode": 0,
        "/metrics/network/interface_report_request": 0,
        "/network/report/send": 0,
        "/ess/config/dcm/control_param/min_customer_soc": 0.30,
        "/ess/config/dcm/mode_param/control_mode": "STANDBY",
    }
    for net in ("sta0", "wan0", "wan1", "wwan0", "wan", "cell", "plc"):
        raw[f"/net/{net}/state"] = "up" if net in ("wan0", "wan") else "down"
    prod, cons = _meters(site, st)
    meter_time = iso_utc(_floor(st.data_time, 15))
    meters = [("p", prod)] if site.spec.production_meter else []
    if cons is not None:
        meters.append(("c", cons))
    model = site.spec.model
    for idx, (kind, m) in enumerate(meters):
        s_kva, pf = _pq(m)
        fields: dict[str, float | int | str] = {
            "sn": site.production_meter_serial if kind == "p" else site.consumption_meter_serial,
            "prodMdlNm": f"{model}M0400{kind}",
            "msmtEps": meter_time,
            "p3phsumKw": m.power_kw,
            "netLtea3phsumKwh": m.net_kwh,
            "posLtea3phsumKwh": m.pos_kwh,
            "negLtea3phsumKwh": m.neg_kwh,
            "q3phsumKvar": m.reactive_kvar,
            "s3phsumKva": s_kva,
            "totPfRto": pf,
            "freqHz": st.grid_hz,
            "ctSclFctr": 50 if kind == "p" else 100,
            "v12V": st.grid_v,
        }
        if kind == "c":
            fields.update({k: float(v) for k, v in _legs(st, m, s_kva, "varserver").items()})
        raw.update({f"/sys/devices/meter/{idx}/{k}": v for k, v in fields.items()})
    idx = 0
    for inv in st.inverters:
        if inv.missing or not _listed(site, st, inv):
            continue
        r = _inverter_reading(site, st, inv)
        if site.spec.stale_values and inv.frozen_at is None and inv.last_production and \
                (inv.dead or inv.power_kw <= 0.0):
            r = _frozen_reading(site, inv.index, inv.last_production)  # its last values
        fields = {
            "sn": inv.serial,
            "prodMdlNm": "AC_Module_Type_E",
            "msmtEps": iso_utc(r.report_time or st.data_time),
            "p3phsumKw": r.power_kw,
            "ltea3phsumKwh": r.lifetime_kwh,
            "pMppt1Kw": r.dc_kw,
            "vMppt1V": r.dc_v,
            "iMppt1A": r.dc_a,
            "vln3phavgV": r.ac_v,
            "i3phsumA": r.ac_a,
            "freqHz": r.freq_hz,
            "tHtsnkDegc": r.heatsink_c,
        }
        raw.update({f"/sys/devices/inverter/{idx}/{k}": v for k, v in fields.items()})
        idx += 1
    data_ts = _ts(t)  # the PVS's own clock: it moves even while the values are frozen
    raw["/sys/livedata/time"] = int(data_ts * 1000) if site.spec.livedata_time_ms else int(data_ts)
    raw["/sys/livedata/pv_p"] = prod.power_kw
    raw["/sys/livedata/pv_en"] = st.production_kwh
    if cons is not None:
        raw.update({
            "/sys/livedata/net_p": st.load_kw - st.production_kw,
            "/sys/livedata/net_en": st.import_kwh - st.export_kwh,
            "/sys/livedata/site_load_p": st.load_kw,
            "/sys/livedata/site_load_en": st.load_kwh,
        })
    out: dict[str, str] = {}
    for name, value in raw.items():
        kind = types.get(_INDEX.sub("/{index}/", name, count=1))
        if kind is not None:  # only the model's public names (no /sys/pvs/ on a PVS5)
            out[name] = _typed(value, kind)
    return out


_INDEX = re.compile(r"/\d+/")


def _listed(site: SimulatedSite, st: SiteState, inv: InverterState) -> bool:
    """After a restart the varserver only knows inverters that reported since (with
    `dawn_lag_max_s`, from a seeded lag after each one's first production); a
    StaleInverter stays listed."""
    if inv.kept:
        return True
    if inv.last_production is None or inv.last_production < st.last_boot:
        return False
    if site.spec.dawn_lag_max_s <= 0:
        return True
    first = site.first_report(inv.index, st.last_boot)
    return first is not None and first <= st.data_time
