"""SunStrong's own client, pypvs, unmodified, against the emulator over HTTPS: it logs in,
reads the gateway, the inverters and the meters, and its values equal what
`solar-monitor parse` makes of our client's poll of the same answers.

pypvs was written against real PVS units, not against this emulator, so it is the
independent witness that the emulator's LocalAPI (POST /vars, the Secure cookie, the
variables it reads before login) is the real one's.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp  # pypvs's own dependency; both come with the test extras: never skipped
import pytest
from pypvs.exceptions import PVSAuthenticationError
from pypvs.pvs import PVS

from solar_monitor.cli import main
from solar_monitor.emulation.emulator import Emulator, start_emulator
from solar_monitor.pvs.client import PvsClient

FROZEN = datetime(2026, 6, 10, 16, 0, tzinfo=UTC)  # both clients read the same answers


async def read_with_pypvs(host: str) -> tuple[Any, str]:
    """pypvs's documented sequence: discover, setup with the password, update."""
    async with aiohttp.ClientSession() as session:
        pvs = PVS(session=session, host=host, user="ssm_owner")
        await pvs.discover()
        serial = pvs.serial_number
        await pvs.setup(auth_password=serial[-5:])
        return await pvs.update(), serial


def parse_cli(tmp_path: Path, body: bytes) -> dict[str, Any]:
    """`solar-monitor parse` of one poll, as a user would run it on an archived file."""
    path = tmp_path / "poll.json"
    path.write_bytes(body)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["parse", str(path)]) == 0
    return json.loads(out.getvalue())


def epoch(iso: str | None) -> int:
    assert iso is not None
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


@pytest.mark.parametrize("model", ["PVS6", "PVS5"])
def test_pypvs_reads_the_emulator_like_solar_monitor(model: str, tmp_path: Path) -> None:
    with start_emulator(firmware="varserver", model=model, tls=True,
                        clock=lambda: FROZEN) as emu:
        assert emu.tls_url is not None
        host = emu.tls_url.removeprefix("https://")
        data, serial = asyncio.run(read_with_pypvs(host))
        pypvs_requests = list(emu.request_log)
        ours = parse_cli(tmp_path, PvsClient(emu.tls_url).poll().body)
    check_pypvs_traffic(emu, pypvs_requests)
    assert serial == emu.site.supervisor_serial == ours["supervisor"]["serial"]

    gw, sup = data.gateway, ours["supervisor"]
    assert (gw.pvs_type, gw.software_version, gw.uptime_s, gw.flash_usage_percent) == (
        sup["model"], sup["firmware"], sup["uptime_s"], sup["flash_used_pct"])
    assert gw.pvs_type == model and gw.hardware_version == f"{model} {sup['hardware']}"
    assert gw.model == "PV-only"  # pypvs's model is /sys/info/sys_type

    assert len(data.inverters) == len(ours["inverters"]) == 12
    for inv in ours["inverters"]:
        theirs = data.inverters[inv["serial"]]
        assert (theirs.model, theirs.last_report_date) == (inv["model"],
                                                           epoch(inv["data_time"]))
        assert (theirs.last_report_kw, theirs.lte_kwh, theirs.last_report_voltage_v,
                theirs.last_report_current_a, theirs.last_report_frequency_hz,
                theirs.last_report_temperature_c, theirs.last_mppt_voltage_v,
                theirs.last_mppt_current_a, theirs.last_mppt_power_kw) == (
            inv["power_kw"], inv["lifetime_kwh"], inv["ac_voltage_v"], inv["ac_current_a"],
            inv["freq_hz"], inv["heatsink_c"], inv["dc_voltage_v"], inv["dc_current_a"],
            inv["dc_power_kw"])
    assert any(inv["power_kw"] > 0.05 for inv in ours["inverters"])  # noon: real values

    assert len(data.meters) == len(ours["meters"]) == 2
    for meter in ours["meters"]:
        theirs = data.meters[meter["serial"]]
        assert (theirs.model, theirs.last_report_date) == (meter["model"],
                                                           epoch(meter["data_time"]))
        assert (theirs.power_3ph_kw, theirs.freq_hz, theirs.net_lte_kwh, theirs.pos_lte_kwh,
                theirs.neg_lte_kwh, theirs.q3phsum_kvar, theirs.s3phsum_kva,
                theirs.tot_pf_ratio, theirs.v12_v, theirs.ct_scale_factor) == (
            meter["power_kw"], meter["freq_hz"], meter["lifetime_net_kwh"],
            meter["lifetime_pos_kwh"], meter["lifetime_neg_kwh"], meter["reactive_kvar"],
            meter["apparent_kva"], meter["power_factor"], meter["voltage_v"],
            meter["ct_scale_a"])
        if meter["kind"] == "consumption":
            assert (theirs.i1_a, theirs.i2_a, theirs.v1n_v, theirs.v2n_v, theirs.p1_kw,
                    theirs.p2_kw) == (meter["leg1_a"], meter["leg2_a"], meter["leg1_v"],
                                      meter["leg2_v"], meter["leg1_kw"], meter["leg2_kw"])


async def discover_with_pypvs(host: str) -> str | None:
    """pypvs's discover() alone: it reads the serial before any login."""
    async with aiohttp.ClientSession() as session:
        pvs = PVS(session=session, host=host, user="ssm_owner")
        await pvs.discover()
        return pvs.serial_number


def test_pypvs_finds_the_serial_in_guest_mode_only() -> None:
    """Guest mode (the default) is what lets pypvs start without being given the serial;
    a strict server refuses the read, and pypvs fails."""
    with start_emulator(firmware="varserver", tls=True, clock=lambda: FROZEN) as emu:
        assert emu.auth == "guest" and emu.tls_url is not None
        serial = asyncio.run(discover_with_pypvs(emu.tls_url.removeprefix("https://")))
        assert serial == emu.site.supervisor_serial
    with start_emulator(firmware="varserver", tls=True, clock=lambda: FROZEN,
                        auth="strict") as emu:
        assert emu.tls_url is not None
        with pytest.raises(PVSAuthenticationError):
            asyncio.run(discover_with_pypvs(emu.tls_url.removeprefix("https://")))
    assert not emu.refused and not emu.writes


def check_pypvs_traffic(emu: Emulator, requests: list) -> None:
    """pypvs read over HTTPS with POST /vars, sent only the session cookie, wrote
    nothing."""
    assert {r.scheme for r in requests} == {"https"}
    reads = [r for r in requests if r.target == "/vars"]
    assert reads and all(r.method == "POST" for r in reads)
    assert reads[0].body == b"name=/sys/info/serialnum" and reads[0].cookie is None
    # one login for the data; pypvs takes any 400 for a lost session, so the probes of
    # the absent ESS and transfer switch (400 0x0040) each log in once more
    assert sum(r.target == "/auth?login" for r in requests) == 3
    ess = [r for r in reads if r.body == b"match=/sys/devices/ess/"]
    assert len(ess) == 2 and all(r.cookie and r.cookie.startswith("session=") for r in ess)
    assert not emu.refused and not emu.writes
