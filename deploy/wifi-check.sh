#!/bin/bash
# solar-monitor-wifi-check: bring the Pi's Wi-Fi back when it has dropped.
#
# After a house power cut the access point often comes up after the Pi, and
# some Wi-Fi drivers then never retry; the Pi in the PVS box is unreachable
# until someone power-cycles it. Run every 2 minutes (systemd timer
# solar-monitor-wifi-check.timer, or cron). It also re-applies "power save off",
# because drivers can turn power saving back on when they reassociate.
#
# Messages go to stdout/stderr, which systemd (or cron's `| logger`) sends to
# the journal: nothing is written to the SD card.
#
# Usage: solar-monitor-wifi-check [IFACE]   (default wlan0)
set -euo pipefail

IFACE="${1:-wlan0}"
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# Associated with an access point and holding an IPv4 address. Deliberately no
# ping: many routers do not answer it, and a false "offline" would bounce a
# working link every 2 minutes.
online() {
    if command -v iw >/dev/null 2>&1; then
        iw dev "$IFACE" link 2>/dev/null | grep -q '^Connected to' || return 1
    else
        [[ "$(cat "/sys/class/net/$IFACE/operstate" 2>/dev/null)" == "up" ]] || return 1
    fi
    ip -4 -o addr show dev "$IFACE" 2>/dev/null | grep -q ' inet '
}

if [[ ! -e "/sys/class/net/$IFACE" ]]; then
    echo "no interface $IFACE; nothing to check" >&2
    exit 0
fi

if command -v iw >/dev/null 2>&1; then
    iw dev "$IFACE" set power_save off 2>/dev/null || true
fi

if online; then
    exit 0
fi

echo "Wi-Fi $IFACE is not connected; reconnecting"
if command -v nmcli >/dev/null 2>&1 && nmcli -t -f RUNNING general 2>/dev/null | grep -qx running; then
    # NetworkManager (Raspberry Pi OS Bookworm): ask it to reactivate the device.
    nmcli device connect "$IFACE" || true
else
    # dhcpcd + wpa_supplicant (Bullseye and older): bounce the link; both
    # notice and reassociate, as in the classic field guide's script.
    ip link set "$IFACE" down
    sleep 10
    ip link set "$IFACE" up
fi

sleep 20
if online; then
    echo "Wi-Fi $IFACE reconnected"
else
    echo "Wi-Fi $IFACE still not connected; will retry" >&2
    exit 1
fi
