"""Render a month's digest: HTML for every mail client, plain text, and the daily CSV.

Pure functions of `DigestData`. The HTML is what Gmail, Outlook (Word's engine) and
Apple Mail all render the same way: a 600 px table layout, inline styles only, no
<script>, no remote images or CSS; charts are table cells with a width and a background
colour, so they need nothing to load. Site-local dates and times only (the `tz_name`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from html import escape

from solar_monitor.daily import DaySummary
from solar_monitor.digest.data import DigestData, InverterMonth, MonthTotal, PvsHealth
from solar_monitor.digest.watchdog import watchdog_lines

WIDTH_PX = 600
BAR = "#f59e0b"  # production bars (amber)
BAR_BEST = "#16a34a"
BAR_WORST = "#64748b"
BAR_CATCH_UP = "#fcd34d"
WEAK = "#dc2626"
WEAK_BG = "#fee2e2"
OK_BG = "#dcfce7"
ATTENTION_BG = "#fef3c7"
MUTED = "#6b7280"
TEXT = "#111827"
FONT = "font-family:Arial,Helvetica,sans-serif"
COMPLETENESS_WARN_PCT = 90.0
TEXT_BAR_WIDTH = 30


def csv_filename(data: DigestData) -> str:
    return f"solar-daily-{data.key}.csv"


def subject(data: DigestData) -> str:
    """The e-mail subject: month, production and whether anything needs attention."""
    kwh = _kwh(data.production_kwh)
    flag = f", {len(attention(data))} to check" if attention(data) else ""
    return f"{data.site_name or 'Solar'}: {data.label} digest, {kwh}{flag}"


def attention(data: DigestData) -> list[str]:
    """What the owner should look at, one line each, most important first."""
    items = [f"Inverter {i.label} made {i.share_of_median_pct:.0f}% of the median panel "
             f"({i.kwh:.1f} kWh vs {i.median_kwh:.1f} kWh)"
             for i in data.weak_inverters]
    if data.alerts.still_open:
        items.append(f"{len(data.alerts.still_open)} alert(s) still open")
    if data.expected_polls and data.completeness_pct < COMPLETENESS_WARN_PCT:
        items.append(f"Only {data.completeness_pct:.1f}% of the expected polls succeeded")
    if data.days_without_data:
        items.append(f"{len(data.days_without_data)} day(s) without any data")
    if not data.polls_ok and _monitored_during(data):
        items.append("No good poll was stored this month: the PVS never answered")
    return items


def _monitored_during(data: DigestData) -> bool:
    """Whether monitoring had started by the month's end (a fresh install's earlier
    months have no data, and nothing needs attention about them)."""
    first = data.monitored_from
    return first is not None and (not data.days or first <= data.days[-1].day)


def first_month_line(data: DigestData) -> str | None:
    """'first month: data from 05 December 2026' for a month before any data, else None."""
    if data.polls_ok:
        return None
    if data.monitored_from is None:
        return "First month: no poll stored yet; the data starts with the first run."
    if not _monitored_during(data):
        return (f"First month: data from {data.monitored_from:%d %B %Y}, after "
                f"{data.label}; the next digest has it.")
    return None


# --- HTML ------------------------------------------------------------------------------


def render_html(data: DigestData) -> str:
    """The digest as one self-contained HTML document (e-mail safe)."""
    parts = [
        _header(data), _attention_box(data), _energy(data), _daily_chart(data),
        _inverter_table(data), _completeness(data), _health(data), _watchdog(data),
        _alerts(data),
        _notes(data), _footer(data),
    ]
    body = "\n".join(p for p in parts if p)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
        f"<title>{escape(subject(data))}</title></head>\n"
        f"<body style=\"margin:0;padding:0;background:#f3f4f6;{FONT};color:{TEXT}\">\n"
        "<table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" "
        "border=\"0\" style=\"background:#f3f4f6\"><tr><td align=\"center\" "
        "style=\"padding:16px 0\">\n"
        f"<table role=\"presentation\" width=\"{WIDTH_PX}\" cellpadding=\"0\" "
        f"cellspacing=\"0\" border=\"0\" style=\"width:{WIDTH_PX}px;background:#ffffff;"
        f"border:1px solid #e5e7eb\">\n{body}\n</table>\n</td></tr></table>\n</body></html>\n")


def _section(title: str, inner: str) -> str:
    return (f"<tr><td style=\"padding:16px 24px 4px 24px\"><h2 style=\"margin:0 0 8px 0;"
            f"font-size:16px;{FONT};color:{TEXT}\">{escape(title)}</h2>\n{inner}</td></tr>")


def _table(rows: Iterable[str], attrs: str = "") -> str:
    return ("<table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" "
            f"border=\"0\" style=\"font-size:13px;{FONT};border-collapse:collapse\"{attrs}>"
            + "".join(rows) + "</table>")


def _cell(text: str, *, right: bool = False, bold: bool = False, color: str = "",
          extra: str = "") -> str:
    style = "padding:3px 4px;" + ("text-align:right;" if right else "") + \
        ("font-weight:bold;" if bold else "") + (f"color:{color};" if color else "") + extra
    return f"<td style=\"{style}\">{text}</td>"


def _bar(pct: float, color: str, height_px: int = 12) -> str:
    """A horizontal bar: a table whose first cell's width is the value (works in Outlook)."""
    pct = max(0.0, min(100.0, pct))
    filled = max(1, round(pct)) if pct > 0 else 0
    if not filled:
        return "&nbsp;"
    rest = (f"<td width=\"{100 - filled}%\" style=\"font-size:0;line-height:0\">&nbsp;</td>"
            if filled < 100 else "")
    return ("<table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" "
            f"border=\"0\"><tr><td class=\"bar\" width=\"{filled}%\" bgcolor=\"{color}\" "
            f"style=\"background:{color};height:{height_px}px;font-size:0;line-height:0\">"
            f"&nbsp;</td>{rest}</tr></table>")


def _header(data: DigestData) -> str:
    name = escape(data.site_name or "Your solar system")
    lines = [_compare_html(data, data.previous), _compare_html(data, data.last_year)]
    if first := first_month_line(data):
        lines = [escape(first)]
    return (
        f"<tr><td style=\"padding:20px 24px 8px 24px;background:#111827;color:#ffffff\">"
        f"<div style=\"font-size:13px;color:#d1d5db\">{name} &middot; monthly digest</div>"
        f"<div style=\"font-size:22px;font-weight:bold;margin-top:4px\">"
        f"{escape(data.label)}</div>"
        f"<div style=\"font-size:34px;font-weight:bold;margin-top:10px;color:{BAR}\">"
        f"{_kwh(data.production_kwh)}</div>"
        f"<div style=\"font-size:13px;color:#d1d5db\">produced</div>"
        f"<div style=\"font-size:13px;color:#e5e7eb;margin:8px 0 8px 0\">"
        f"{'<br>'.join(lines)}</div></td></tr>")


def _compare(data: DigestData, other: MonthTotal) -> str:
    label = f"{other.month:%B %Y}"
    if other.production_kwh is None:
        return f"{label}: no data"
    change = ""
    if data.production_kwh is not None and other.production_kwh > 0 and other.whole:
        pct = 100.0 * (data.production_kwh - other.production_kwh) / other.production_kwh
        change = f" ({pct:+.1f}%)"
    partial = "" if other.whole else \
        f", only {other.days_with_data} of {other.days_in_month} days recorded"
    return f"{label}: {_kwh(other.production_kwh)}{change}{partial}"


def _compare_html(data: DigestData, other: MonthTotal) -> str:
    prefix = "vs " if other is data.previous else "same month last year, "
    return escape(prefix + _compare(data, other))


def _attention_box(data: DigestData) -> str:
    items = attention(data)
    if not items:
        return (f"<tr><td style=\"padding:16px 24px 0 24px\"><div style=\"background:{OK_BG};"
                f"padding:10px 12px;font-size:14px;color:#166534\"><b>&#10003; Nothing needs "
                f"attention.</b> Every inverter is within {100 - data.weak_threshold_pct:.0f}"
                f"% of the median panel.</div></td></tr>")
    lis = "".join(f"<li style=\"margin:2px 0\">{escape(i)}</li>" for i in items)
    return (f"<tr><td style=\"padding:16px 24px 0 24px\"><div style=\"background:{ATTENTION_BG};"
            f"border-left:4px solid {WEAK};padding:10px 12px;font-size:14px\">"
            f"<b style=\"color:{WEAK}\">Needs attention</b><ul style=\"margin:6px 0 0 0;"
            f"padding-left:20px\">{lis}</ul></div></td></tr>")


def _energy(data: DigestData) -> str:
    rows = [("Production", _kwh(data.production_kwh))]
    if data.has_consumption:
        rows += [("Consumption (estimated)", _kwh(data.consumption_kwh)),
                 ("Grid import (estimated)", _kwh(data.import_kwh)),
                 ("Grid export (estimated)", _kwh(data.export_kwh)),
                 ("Self-consumption share", _self_share(data))]
    else:
        rows.append(("Consumption, import, export", _no_consumption(data)))
    if data.best_day:
        rows.append(("Best day", _day_line(data.best_day)))
    if data.worst_day:
        rows.append(("Worst day", _day_line(data.worst_day)))
    rows.append(("Average cloud cover", _pct(data.cloud_cover_pct) if
                 data.cloud_cover_pct is not None else "not recorded"))
    if data.snow_days:
        rows.append(("Lost to snow", _snow_line(data)))
    html = _table(f"<tr style=\"border-bottom:1px solid #f3f4f6\">{_cell(escape(k))}"
                  f"{_cell(escape(v), right=True, bold=True)}</tr>" for k, v in rows)
    return _section("Energy", html)


def _day_line(day: DaySummary) -> str:
    return f"{day.day:%a %d %b}: {_kwh(day.production_kwh)}"


def _chart_top(data: DigestData) -> float:
    """The kWh a full bar stands for: the best ordinary day. A day holding earlier days'
    production would squash every other bar, so its bar is capped instead."""
    ordinary = [d.production_kwh or 0.0 for d in data.days if d.day not in data.catch_up_days]
    return max(ordinary or [d.production_kwh or 0.0 for d in data.days] or [0.0])


def _daily_chart(data: DigestData) -> str:
    top = _chart_top(data)
    rows = []
    for d in _chart_days(data):
        if isinstance(d, str):
            rows.append(f"<tr>{_cell(d, color=MUTED, extra='white-space:nowrap')}"
                        f"<td style=\"padding:2px 4px;color:{MUTED}\">not monitored yet</td>"
                        f"{_cell('&ndash;', right=True)}</tr>")
            continue
        label = _cell(f"{d.day:%a %d}", color=MUTED, extra="white-space:nowrap;width:56px")
        if d.production_kwh is None:
            bar = f"<span style=\"color:{MUTED}\">{_no_data(data, d)}</span>"
            value = "&ndash;"
        else:
            color = BAR
            if data.best_day and d.day == data.best_day.day:
                color = BAR_BEST
            elif data.worst_day and d.day == data.worst_day.day:
                color = BAR_WORST
            elif d.day in data.catch_up_days:
                color = BAR_CATCH_UP
            bar = _bar(100.0 * d.production_kwh / top if top else 0.0, color)
            value = f"{d.production_kwh:.1f}" + ("*" if d.day in data.catch_up_days else "")
        rows.append(f"<tr>{label}<td style=\"padding:2px 4px;width:440px\">{bar}</td>"
                    f"{_cell(value, right=True, extra='white-space:nowrap;width:60px')}</tr>")
    if not rows:
        return _section("Production per day", "<p>No days to show.</p>")
    legend = (f"<p style=\"font-size:12px;color:{MUTED};margin:6px 0 0 0\">kWh per day. "
              f"<span style=\"color:{BAR_BEST}\">&#9632;</span> best day, "
              f"<span style=\"color:{BAR_WORST}\">&#9632;</span> worst day"
              + (f", <span style=\"color:{BAR_CATCH_UP}\">&#9632;</span>* includes earlier "
                 "days without data" if data.catch_up_days else "") + ".</p>")
    return _section("Production per day",
                    _table(rows, " id=\"daily-chart\"") + legend)


def _inverter_table(data: DigestData) -> str:
    if not data.inverters:
        return _section("Inverters", "<p>No inverter reported this month.</p>")
    head = ("<tr style=\"border-bottom:1px solid #d1d5db\">"
            + _cell("#", bold=True) + _cell("Inverter", bold=True)
            + _cell("kWh", right=True, bold=True) + _cell("Share of median", bold=True)
            + _cell("", extra="width:44px") + "</tr>")
    rows = [head] + [_inverter_row(n, i, data) for n, i in enumerate(data.inverters, 1)]
    note = (f"<p style=\"font-size:12px;color:{MUTED};margin:6px 0 0 0\">Weakest first. "
            f"Red: under {data.weak_threshold_pct:.0f}% of the median inverter "
            f"({_kwh(_median(data.inverters))}).</p>")
    return _section("Inverters", _table(rows, " id=\"inverters\"") + note)


def _inverter_row(rank: int, inv: InverterMonth, data: DigestData) -> str:
    share = inv.share_of_median_pct
    color = WEAK if inv.weak else BAR
    style = f" style=\"background:{WEAK_BG};color:{WEAK};font-weight:bold\"" if inv.weak else \
        " style=\"border-bottom:1px solid #f3f4f6\""
    name = escape(inv.label)  # the serial too: an installer's warranty claim needs it
    name += f" <span style=\"color:{MUTED};font-weight:normal;font-size:11px\">" \
            f"{escape(inv.serial)}</span>"
    if inv.new:
        name += f" <span style=\"color:{MUTED};font-weight:normal\">(new {inv.first_day:%d %b}, " \
                f"{inv.days} days)</span>"
    elif inv.days < len([d for d in data.days if d.inverter_kwh]):
        name += f" <span style=\"color:{MUTED};font-weight:normal\">({inv.days} days)</span>"
    bar = _bar(min(share or 0.0, 150.0) / 1.5, color, 10)
    return (f"<tr{style}>{_cell(str(rank))}{_cell(name)}{_cell(f'{inv.kwh:.1f}', right=True)}"
            f"<td style=\"padding:3px 4px;width:160px\">{bar}</td>"
            f"{_cell(_pct(share, 0, 'median 0 kWh'), right=True)}</tr>")


def _completeness(data: DigestData) -> str:
    minutes = data.interval_s / 60
    lines = [
        f"<b>{data.completeness_pct:.1f}%</b> of polls succeeded: {data.polls_ok:,} good of "
        f"{data.expected_polls:,} expected (one every {minutes:.0f} min); "
        f"{data.polls - data.polls_ok:,} failed." if data.expected_polls or data.polls
        else escape(NOTHING_EXPECTED),
    ]
    if data.days_without_data:
        shown = ", ".join(f"{d:%d %b}" for d in data.days_without_data)
        lines.append(f"Days without any data: {escape(shown)}.")
    lines += [escape(line) for line in _gap_lines(data)]
    return _section("Data completeness", "".join(
        f"<p style=\"margin:0 0 4px 0;font-size:13px\">{line}</p>" for line in lines))


def _health(data: DigestData) -> str:
    h = data.health
    if not h.readings:
        return _section("PVS health", "<p style=\"font-size:13px\">The PVS reported no "
                                      "health counters this month.</p>")
    rows = [
        ("Reboots", _reboots(h)),
        ("Free flash (lowest / last)", f"{_mib(h.flash_avail_kib_min)} / "
                                       f"{_mib(h.flash_avail_kib_last)}"),
        ("Upload backlog (highest / last)", f"{_records(h.untransmitted_max)} / "
                                            f"{_records(h.untransmitted_last)}"),
    ]
    if h.flash_used_pct_max is not None:
        rows.insert(2, ("Flash used (highest)", _pct(h.flash_used_pct_max)))
    if h.flash_wear_pct_max is not None:
        rows.insert(2, ("Flash wear (eMMC life used)", _pct(h.flash_wear_pct_max, 0)))
    if h.firmware:
        rows.append(("Firmware", ", ".join(h.firmware)))
    return _section("PVS health", _table(
        f"<tr style=\"border-bottom:1px solid #f3f4f6\">{_cell(escape(k))}"
        f"{_cell(escape(v), right=True)}</tr>" for k, v in rows))


def _gap_lines(data: DigestData) -> list[str]:
    """One quiet line per inverter whose reports were often lost (never an alert)."""
    return [f"Inverter {serial}: {pct:.0f} % of daylight polls missing (not listed, or "
            "its values old)." for serial, pct in data.report_gaps]


def _watchdog(data: DigestData) -> str:
    return _section("The watchdog itself", _table(
        f"<tr style=\"border-bottom:1px solid #f3f4f6\">{_cell(escape(k))}"
        f"{_cell(escape(v), right=True)}</tr>" for k, v in watchdog_lines(data.watchdog)))


def _alerts(data: DigestData) -> str:
    a = data.alerts
    if not a.enabled:
        return _section("Alerts", "<p style=\"font-size:13px\">Alerts: not enabled.</p>")
    text = (f"<p style=\"margin:0 0 4px 0;font-size:13px\">{a.opened} opened, {a.resolved} "
            f"resolved, {len(a.still_open)} still open at the end of the month.</p>")
    if a.still_open:
        text += "<ul style=\"margin:4px 0;padding-left:20px;font-size:13px\">" + "".join(
            f"<li style=\"color:{WEAK}\">{escape(line.title)} (since "
            f"{line.opened_at:%d %b})</li>" for line in a.still_open) + "</ul>"
    return _section("Alerts", text)


def _snow_line(data: DigestData) -> str:
    """Days the whole array stayed buried: said here, never as an alert."""
    days = ", ".join(f"{d:%d %b}" for d in data.snow_days)
    return (f"{data.snow_hours_lost:g} daylight hours on {len(data.snow_days)} day(s) the "
            f"whole array was under snow ({days}); it clears by itself, no alert was sent")


def _notes(data: DigestData) -> str:
    if not data.notes:
        return ""
    return _section("About these figures", "<ul style=\"margin:0;padding-left:20px;"
                    f"font-size:12px;color:{MUTED}\">"
                    + "".join(f"<li>{escape(n)}</li>" for n in data.notes) + "</ul>")


def _footer(data: DigestData) -> str:
    return (f"<tr><td style=\"padding:16px 24px 20px 24px;font-size:11px;color:{MUTED}\">"
            f"Dates are local to {escape(data.tz_name)}. The daily figures are attached as "
            f"{escape(csv_filename(data))}. Sent by solar-monitor.</td></tr>")


# --- plain text -----------------------------------------------------------------------


def render_text(data: DigestData) -> str:
    """The digest for text-only mail clients: the same facts, bars drawn with '#'."""
    out = [f"{data.site_name or 'Solar'}: monthly digest, {data.label}", "",
           f"Production: {_kwh(data.production_kwh)}",
           f"  vs {_compare(data, data.previous)}",
           f"  same month last year, {_compare(data, data.last_year)}", ""]
    if first := first_month_line(data):
        out[3:5] = [f"  {first}"]
    items = attention(data)
    out += ["NEEDS ATTENTION:"] + [f"  ! {i}" for i in items] if items else \
        ["Nothing needs attention."]
    out += ["", "Energy"]
    if data.has_consumption:
        out += [f"  Consumption (estimated): {_kwh(data.consumption_kwh)}",
                f"  Grid import (estimated): {_kwh(data.import_kwh)}",
                f"  Grid export (estimated): {_kwh(data.export_kwh)}",
                f"  Self-consumption share:  {_self_share(data)}"]
    else:
        out.append(f"  Consumption, import, export: {_no_consumption(data)}.")
    if data.best_day:
        out.append(f"  Best day:  {_day_line(data.best_day)}")
    if data.worst_day:
        out.append(f"  Worst day: {_day_line(data.worst_day)}")
    out.append(f"  Average cloud cover: {_pct(data.cloud_cover_pct)}"
               if data.cloud_cover_pct is not None else "  Average cloud cover: not recorded")
    if data.snow_days:
        out.append(f"  Lost to snow: {_snow_line(data)}")
    out += ["", "Production per day (kWh)"]
    top = _chart_top(data)
    for d in _chart_days(data):
        if isinstance(d, str):
            out.append(f"  {d}  not monitored yet")
            continue
        if d.production_kwh is None:
            out.append(f"  {d.day:%a %d}  {_no_data(data, d):<{TEXT_BAR_WIDTH}}      -")
            continue
        n = min(TEXT_BAR_WIDTH, round(TEXT_BAR_WIDTH * d.production_kwh / top)) if top else 0
        mark = "*" if d.day in data.catch_up_days else " "
        out.append(f"  {d.day:%a %d}  {'#' * n:<{TEXT_BAR_WIDTH}} {d.production_kwh:6.1f}{mark}")
    if data.catch_up_days:
        out.append("  * includes earlier days without data")
    out += ["", f"Inverters, weakest first (under {data.weak_threshold_pct:.0f}% of the "
                f"median is flagged)"]
    for n, i in enumerate(data.inverters, 1):
        flag = "  << WEAK" if i.weak else ""
        new = f" (new {i.first_day:%d %b})" if i.new else ""
        share = "no share: the median is 0 kWh" if i.share_of_median_pct is None else \
            f"{i.share_of_median_pct:>4.0f}% of median"
        out.append(f"  {n:2d}. {i.label:<24} {i.kwh:8.1f} kWh  {share}{new}{flag}")
    if not data.inverters:
        out.append("  No inverter reported this month.")
    out += ["", "Data completeness",
            f"  {data.completeness_pct:.1f}% of polls succeeded ({data.polls_ok:,} good of "
            f"{data.expected_polls:,} expected, {data.polls - data.polls_ok:,} failed)"
            if data.expected_polls or data.polls else f"  {NOTHING_EXPECTED}"]
    if data.days_without_data:
        out.append("  Days without any data: "
                   + ", ".join(f"{d:%d %b}" for d in data.days_without_data))
    out += [f"  {line}" for line in _gap_lines(data)]
    h = data.health
    out += ["", "PVS health"]
    if h.readings:
        out += [f"  Reboots: {_reboots(h)}",
                f"  Free flash (lowest / last): {_mib(h.flash_avail_kib_min)} / "
                f"{_mib(h.flash_avail_kib_last)}",
                f"  Upload backlog (highest / last): {_records(h.untransmitted_max)} / "
                f"{_records(h.untransmitted_last)}"]
        if h.flash_wear_pct_max is not None:
            out.append(f"  Flash wear (eMMC life used): {_pct(h.flash_wear_pct_max, 0)}")
    else:
        out.append("  No health counters reported.")
    out += ["", "The watchdog itself"] + [f"  {k}: {v}" for k, v in
                                          watchdog_lines(data.watchdog)]
    a = data.alerts
    out += ["", "Alerts"]
    if a.enabled:
        out.append(f"  {a.opened} opened, {a.resolved} resolved, {len(a.still_open)} still "
                   "open")
        out += [f"  - {line.title} (since {line.opened_at:%d %b})" for line in a.still_open]
    else:
        out.append("  Alerts: not enabled.")
    if data.notes:
        out += ["", "About these figures"] + [f"  - {n}" for n in data.notes]
    out += ["", f"Dates are local to {data.tz_name}. Daily figures attached as "
                f"{csv_filename(data)}."]
    return "\n".join(out) + "\n"


# --- CSV ------------------------------------------------------------------------------

CSV_COLUMNS = ("date", "production_kwh", "consumption_kwh", "import_kwh", "export_kwh",
               "peak_kw", "peak_time_local", "cloud_cover_pct", "polls", "polls_ok",
               "includes_earlier_days")


def daily_csv(data: DigestData) -> bytes:
    """One row per local day; then one `<serial>_kwh` column per inverter (UTF-8)."""
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(data.tz_name)
    serials = sorted(i.serial for i in data.inverters)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow([*CSV_COLUMNS, *(f"{s}_kwh" for s in serials)])
    for d in data.days:
        writer.writerow([
            d.day.isoformat(), _num(d.production_kwh), _num(d.consumption_kwh),
            _num(d.import_kwh), _num(d.export_kwh), _num(d.peak_kw),
            d.peak_at.astimezone(tz).strftime("%H:%M") if d.peak_at else "",
            _num(d.cloud_cover_pct), d.polls, d.polls_ok,
            int(d.day in data.catch_up_days),
            *(_num(d.inverter_kwh.get(s)) for s in serials)])
    return buf.getvalue().encode("utf-8")


# --- formatting -----------------------------------------------------------------------


def _kwh(value: float | None) -> str:
    return "no data" if value is None else f"{value:,.1f} kWh"


def _pct(value: float | None, digits: int = 1, missing: str = "not reported") -> str:
    """A percentage, or why there is none: 'n/a' alone tells an owner nothing."""
    return missing if value is None else f"{value:.{digits}f}%"


def _mib(kib: float | None) -> str:
    return "not reported" if kib is None else f"{kib / 1024:,.1f} MiB"


def _self_share(data: DigestData) -> str:
    if data.self_consumption_pct is not None:
        return f"{data.self_consumption_pct:.1f}% of production used at home"
    if not data.production_kwh:
        return "no production to share"
    return "unknown: no grid export reading"


def _no_consumption(data: DigestData) -> str:
    if data.consumption_measured:
        return "measured, but too few polls yet to add up (it needs two in a day)"
    if not _monitored_during(data):
        return "not monitored yet"  # a fresh install: whether a meter exists is not known
    return "no consumption meter: not measured"


NOTHING_EXPECTED = "No poll expected yet: monitoring had not started."


def _chart_days(data: DigestData) -> list[DaySummary | str]:
    """The month's days for a chart, the days before monitoring started folded into one
    label ('Sun 01 - Mon 30'): a fresh install's digest is not a page of empty rows."""
    before = [d for d in data.days if d.production_kwh is None
              and (data.monitored_from is None or d.day < data.monitored_from)]
    if len(before) < 2 or before != list(data.days[:len(before)]):
        return list(data.days)
    span = f"{before[0].day:%a %d} - {before[-1].day:%a %d}"
    return [span, *data.days[len(before):]]


def _no_data(data: DigestData, day: DaySummary) -> str:
    before = data.monitored_from is None or day.day < data.monitored_from
    return "not monitored yet" if before else "no data"


def _reboots(h: PvsHealth) -> str:
    text = f"{h.reboots} unexpected"
    if h.nightly_hour is not None:
        text += f" (plus {h.nightly_restarts} nightly restarts at {h.nightly_hour:02d}:xx)"
    return text


def _records(value: float | None) -> str:
    return "not reported" if value is None else f"{value:,.0f} records"


def _num(value: float | None) -> str:
    return "" if value is None else str(round(value, 4))


def _median(inverters: tuple[InverterMonth, ...]) -> float | None:
    import statistics

    return statistics.median(i.kwh for i in inverters) if inverters else None
