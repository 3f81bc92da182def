"""The legacy `Command=DeviceList` answer (PVS6 builds before 61845, PVS5 before 5412):
every device one JSON object, every value a string except ISDETAIL (bool), panid and slave."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from solar_monitor.emulation.faults import PvsReboot
from solar_monitor.emulation.readings import (
    _floor,
    _inverter_reading,
    _legs,
    _meters,
    _MeterValues,
    _num,
    _pq,
    firmware_names,
    pvs_time,
)
from solar_monitor.emulation.sky import _hash_unit

if TYPE_CHECKING:
    from solar_monitor.emulation.site import InverterState, SimulatedSite, SiteState


def _hidden_after_reboot(site: SimulatedSite, t: datetime) -> bool:
    """True while a PvsReboot's `missing_s` window hides every inverter from DeviceList."""
    return any(
        isinstance(f, PvsReboot)
        and f.start is not None
        and f.start <= t < f.start + timedelta(seconds=f.missing_s)
        for f in site.faults
    )


def _supervisor_entry(site: SimulatedSite, st: SiteState, curtime: str) -> dict[str, object]:
    uptime_s = max(0.0, (st.data_time - st.last_boot).total_seconds())
    return {
        "DETAIL": "detail",
        "STATE": "working",
        "STATEDESCR": "Working",
        "SERIAL": site.supervisor_serial,
        "MODEL": "PV Supervisor PVS6",
        "HWVER": "6.02",
        "SWVER": firmware_names(st.build)[0],
        "DEVICE_TYPE": "PVS",
        "DATATIME": pvs_time(_floor(st.data_time, 300)),
        "dl_err_count": "0",
        "dl_comm_err": str(int(uptime_s // 600)),
        "dl_skipped_scans": "0",
        "dl_scan_time": str(2 * site.spec.inverter_count),
        "dl_untransmitted": str(st.untransmitted),
        "dl_uptime": str(int(uptime_s)),
        "dl_cpu_load": _num(st.cpu_load, 2),
        "dl_mem_used": str(int(st.mem_used_kib)),
        "dl_flash_avail": str(int(st.flash_avail_kib)),
        "panid": 260000000 + int(_hash_unit(site.spec.seed, 16) * 1e6),
        "CURTIME": curtime,
    }


def _meter_entry(
    site: SimulatedSite, st: SiteState, m: _MeterValues, kind: str, curtime: str
) -> dict[str, object]:
    production = kind == "p"
    serial = site.production_meter_serial if production else site.consumption_meter_serial
    subtype = "GROSS_PRODUCTION_SITE" if production else str(site.spec.consumption_subtype)
    s_kva, pf = _pq(m)
    ct_a = 50 if production else 100
    out: dict[str, object] = {
        "ISDETAIL": True,
        "SERIAL": serial,
        "TYPE": "PVS5-METER-P" if production else "PVS5-METER-C",
        "STATE": "working",
        "STATEDESCR": "Working",
        "MODEL": f"PVS6M0400{kind}",
        "DESCR": f"Power Meter {serial}",
        "DEVICE_TYPE": "Power Meter",
        "interface": "mime",
        ("production_subtype_enum" if production else "consumption_subtype_enum"): subtype,
        "subtype": subtype,
        "SWVER": "3000",
        "PORT": "",
        "DATATIME": pvs_time(_floor(st.data_time, 15)),
        "ct_scl_fctr": str(ct_a),
        "net_ltea_3phsum_kwh": _num(m.net_kwh, 4),
        "p_3phsum_kw": _num(m.power_kw, 4),
        "q_3phsum_kvar": _num(m.reactive_kvar, 4),
        "s_3phsum_kva": _num(s_kva, 4),
        "tot_pf_rto": _num(pf, 4),
        "freq_hz": _num(st.grid_hz, 4),
    }
    if production:
        out["i_a"] = _num(s_kva * 1000.0 / st.grid_v, 4)
        out["v12_v"] = _num(st.grid_v, 4)
    else:
        out.update(_legs(st, m, s_kva, "legacy"))
        out["neg_ltea_3phsum_kwh"] = _num(m.neg_kwh, 4)
        out["pos_ltea_3phsum_kwh"] = _num(m.pos_kwh, 4)
    out.update(
        {"CAL0": str(ct_a), "origin": "data_logger", "OPERATION": "noop", "CURTIME": curtime}
    )
    return out


def _inverter_entry(
    site: SimulatedSite, st: SiteState, inv: InverterState, curtime: str
) -> dict[str, object]:
    r = _inverter_reading(site, st, inv)
    out: dict[str, object] = {
        "ISDETAIL": True,
        "SERIAL": inv.serial,
        "TYPE": "SOLARBRIDGE",
        "STATE": "working" if r.working else "error",
        "STATEDESCR": "Working" if r.working else "Error",
        "MODEL": "AC_Module_Type_E",
        "DESCR": f"Inverter {inv.serial}",
        "DEVICE_TYPE": "Inverter",
        "hw_version": "4405",
        "interface": "mime",
        "PANEL": "SPR-X22-360-E-AC",
        "slave": 0,
        "SWVER": "4.21.3",
        "PORT": "",
        "MOD_SN": "",
        "NMPLT_SKU": "",
    }
    if r.has_metrics and r.report_time is not None:
        out.update(
            {
                "DATATIME": pvs_time(r.report_time),
                "ltea_3phsum_kwh": _num(r.lifetime_kwh, 4),
                "p_3phsum_kw": _num(r.power_kw, 4),
                "vln_3phavg_v": _num(r.ac_v, 2),
                "i_3phsum_a": _num(r.ac_a, 2),
                "p_mppt1_kw": _num(r.dc_kw, 4),
                "v_mppt1_v": _num(r.dc_v, 2),
                "i_mppt1_a": _num(r.dc_a, 2),
                "t_htsnk_degc": _num(r.heatsink_c, 0),
                "freq_hz": _num(r.freq_hz, 2),
                "stat_ind": "0",
            }
        )
    out.update({"origin": "data_logger", "OPERATION": "noop", "CURTIME": curtime})
    return out


def _render_device_list(site: SimulatedSite, st: SiteState, t: datetime) -> dict[str, object]:
    curtime = pvs_time(t)
    devices: list[dict[str, object]] = [_supervisor_entry(site, st, curtime)]
    prod, cons = _meters(site, st)
    if site.spec.production_meter:
        devices.append(_meter_entry(site, st, prod, "p", curtime))
    if cons is not None:
        devices.append(_meter_entry(site, st, cons, "c", curtime))
    if not _hidden_after_reboot(site, st.data_time):
        devices.extend(
            _inverter_entry(site, st, inv, curtime) for inv in st.inverters if not inv.missing
        )
    return {"devices": devices, "result": "succeed"}
