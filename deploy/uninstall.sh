#!/bin/bash
# Remove solar-monitor from the Pi. Keeps the data and the config (config.yaml and the
# secrets in env) unless --purge, so a reinstall picks up where it left off.
#
#   sudo deploy/uninstall.sh                  # the app, its timers/cron, its log settings
#   sudo deploy/uninstall.sh --purge          # ... and the data, config.yaml, env, the user
#   sudo deploy/uninstall.sh --remove-bridge  # ... and the HAProxy bridge and its
#                                             # certificate, the eth0 and Wi-Fi settings
#                                             # (other LAN tools may use them)
#   deploy/uninstall.sh --root DIR | --dry-run   as for install.sh
set -euo pipefail

USER_NAME=solar-monitor
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROOT=""
DRY_RUN=""
PURGE=""
REMOVE_BRIDGE=""

usage() {
    cat <<USAGE
Usage: $0 [--purge] [--remove-bridge] [--root DIR] [--dry-run]
  --purge          also delete /var/lib/solar-monitor (readings, archive), /etc/solar-monitor
                   (config.yaml, the env file with its secrets) and the user
  --remove-bridge  also remove the HAProxy bridge config and its certificate, the eth0
                   settings and the Wi-Fi check
  --root DIR       act on files under DIR, print commands instead of running them
  --dry-run        change nothing, print what would be done
USAGE
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --purge) PURGE=1; shift ;;
        --remove-bridge) REMOVE_BRIDGE=1; shift ;;
        --root) ROOT="${2:?--root needs a directory}"; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
done
if [[ -n "$ROOT" ]]; then
    ROOT="$(cd "$ROOT" && pwd)"
fi

require_root_unless_simulating "$ROOT" "$DRY_RUN" ""

# remove PATH...: delete files or directory trees we installed, if present.
remove() {
    local path
    for path in "$@"; do
        if [[ -e "$ROOT$path" || -L "$ROOT$path" ]]; then
            if [[ -n "$DRY_RUN" ]]; then
                say "would remove $path"
            else
                rm -rf -- "$ROOT$path"
                say "removed $path"
            fi
        fi
    done
}

have_systemd() { [[ -n "$SIMULATE" || -d /run/systemd/system ]]; }

# Stop what runs first, so nothing starts while files disappear. `|| true`:
# units may already be gone, and removal should carry on regardless.
if have_systemd; then
    run systemctl disable --now solar-monitor.timer || true
    if [[ -n "$REMOVE_BRIDGE" ]]; then
        run systemctl disable --now solar-monitor-wifi-check.timer || true
    fi
fi

# systemd-time-wait-sync was off before install.sh enabled it (its marker says so)
if [[ -e "$ROOT/opt/solar-monitor/enabled-time-wait-sync" ]] && have_systemd; then
    run systemctl disable systemd-time-wait-sync.service || true
fi

say "removing the application"
remove /etc/cron.d/solar-monitor /etc/logrotate.d/solar-monitor \
    /etc/systemd/system/solar-monitor.service /etc/systemd/system/solar-monitor.timer \
    /etc/systemd/journald.conf.d/solar-monitor.conf \
    /usr/local/bin/solar-monitor /opt/solar-monitor

if [[ -n "$REMOVE_BRIDGE" ]]; then
    say "removing the bridge: Wi-Fi check, eth0 settings, HAProxy config"
    remove /etc/systemd/system/solar-monitor-wifi-check.service \
        /etc/systemd/system/solar-monitor-wifi-check.timer \
        /usr/local/sbin/solar-monitor-wifi-check \
        /etc/NetworkManager/system-connections/solar-monitor-pvs.nmconnection \
        /etc/NetworkManager/conf.d/solar-monitor-wifi-powersave.conf
    dhcpcd_conf="$ROOT/etc/dhcpcd.conf"
    if [[ -f "$dhcpcd_conf" ]] && grep -qxF "$MARK_BEGIN" "$dhcpcd_conf"; then
        if [[ -n "$DRY_RUN" ]]; then
            say "would remove the solar-monitor block from /etc/dhcpcd.conf"
        else
            tmp="$(mktemp)"
            awk -v b="$MARK_BEGIN" -v e="$MARK_END" \
                '$0 == b {skip = 1; next} $0 == e {skip = 0; next} !skip' "$dhcpcd_conf" >"$tmp"
            cat "$tmp" >"$dhcpcd_conf"
            rm -f "$tmp"
            say "removed the solar-monitor block from /etc/dhcpcd.conf"
        fi
    fi
    haproxy_cfg="$ROOT/etc/haproxy/haproxy.cfg"
    if [[ -f "$haproxy_cfg.before-solar-monitor" ]]; then
        if [[ -n "$DRY_RUN" ]]; then
            say "would restore /etc/haproxy/haproxy.cfg from haproxy.cfg.before-solar-monitor"
        else
            mv -f "$haproxy_cfg.before-solar-monitor" "$haproxy_cfg"
            say "restored /etc/haproxy/haproxy.cfg as it was before solar-monitor"
        fi
        # Only our config uses the bridge's certificate (kept while it is in place).
        remove /etc/haproxy/solar-monitor-bridge.pem
        run systemctl reload-or-restart haproxy || true
    elif [[ -f "$haproxy_cfg" ]] && head -n 1 "$haproxy_cfg" | grep -q '^# solar-monitor:'; then
        # Ours, with nothing saved to go back to: HAProxy served only the bridge.
        if have_systemd; then
            run systemctl disable --now haproxy || true
        fi
        remove /etc/haproxy/haproxy.cfg /etc/haproxy/solar-monitor-bridge.pem
        say "HAProxy stopped and disabled: it ran only the bridge (apt-get purge haproxy removes it)"
    else
        say "left /etc/haproxy/haproxy.cfg alone (not solar-monitor's); the bridge's" \
            "certificate goes with it: remove /etc/haproxy/solar-monitor-bridge.pem yourself"
    fi
fi

if have_systemd; then
    run systemctl daemon-reload
    run systemctl restart systemd-journald || true
fi

if [[ -n "$PURGE" ]]; then
    say "purging data, config and user"
    remove /var/lib/solar-monitor /var/log/solar-monitor /etc/solar-monitor
    if [[ -n "$SIMULATE" ]] || id "$USER_NAME" >/dev/null 2>&1; then
        run userdel "$USER_NAME" || true
    fi
else
    say "kept /var/lib/solar-monitor (data) and /etc/solar-monitor (config.yaml, env):" \
        "--purge removes them"
fi
