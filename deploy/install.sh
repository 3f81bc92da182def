#!/bin/bash
# Install solar-monitor on a Raspberry Pi in the PVS box (Raspberry Pi OS / Debian).
#
# Idempotent: run it again after `git pull` to upgrade; it never overwrites an
# existing /etc/solar-monitor/config.yaml and never deletes data.
#
#   sudo deploy/install.sh                      # systemd timer, network, HAProxy bridge
#   sudo deploy/install.sh --replace-haproxy    # ... even over another HAProxy setup or
#                                               # a web server on ports 80/443
#   sudo deploy/install.sh --scheduler cron     # cron instead of the systemd timer
#   deploy/install.sh --root /tmp/x             # write every file under /tmp/x and only
#                                               # print the commands (tests, review)
#   deploy/install.sh --dry-run                 # write nothing, print what would happen
#   deploy/install.sh --root /tmp/x --arch armv6l   # the Pi Zero W / Pi 1 path, anywhere
#
# What it does, in order: a system user `solar-monitor`; a venv in /opt/solar-monitor
# with this checkout installed (on armv6l, its compiled dependencies from Debian);
# /etc/solar-monitor/config.yaml (0600, from
# config.example.yaml, only if absent) and /etc/solar-monitor/env (0600, root's: the
# secrets the config names as ${VAR}); /var/lib/solar-monitor for data; the units;
# logs that spare the SD card (journald in RAM, logrotate for cron); the Pi network
# from the field guide (static 172.27.153.10/24 on eth0 with no gateway, Wi-Fi power
# save off, a Wi-Fi reconnect check); the read-only HAProxy bridge (HTTP and HTTPS,
# with a self-signed certificate made once); last, the runs every 15 minutes (timer or
# crontab), started only once `solar-monitor check` passes. Before changing anything
# it stops if the bridge would replace someone else's HAProxy setup or take ports
# 80/443 from another server. See docs/raspberry-pi.md.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

USER_NAME=solar-monitor
OPT_DIR=/opt/solar-monitor
VENV="$OPT_DIR/venv"
ETC_DIR=/etc/solar-monitor
CONFIG="$ETC_DIR/config.yaml"
ENV_FILE="$ETC_DIR/env"
TIME_SYNC_MARKER="$OPT_DIR/enabled-time-wait-sync"  # uninstall.sh reads it
DATA_DIR=/var/lib/solar-monitor
LOG_DIR=/var/log/solar-monitor
UNIT_DIR=/etc/systemd/system
CRON_FILE=/etc/cron.d/solar-monitor
CRON_RUN=" /usr/local/bin/solar-monitor run "  # the runs' line of deploy/crontab
# cron_runs: the crontab in place starts the runs (not only the Wi-Fi check).
cron_runs() { grep -qsF "$CRON_RUN" "$ROOT$CRON_FILE"; }
# What `systemctl enable solar-monitor.timer` makes: the timer is on when it exists.
TIMER_WANTS="$UNIT_DIR/timers.target.wants/solar-monitor.timer"
HAPROXY_CFG=/etc/haproxy/haproxy.cfg
ETH=eth0
PI_PVS_ADDR=172.27.153.10/24
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROOT=""
DRY_RUN=""
SCHEDULER=systemd
NETWORK=auto
WITH_HAPROXY=yes
REPLACE_HAPROXY=""
PYTHON=python3
ARCH="$(uname -m)"

usage() {
    cat <<EOF
Usage: $0 [options]
  --scheduler systemd|cron   how runs are started (default: systemd)
  --network auto|networkmanager|dhcpcd|none
                             configure eth0/Wi-Fi for the PVS (default: auto-detect)
  --no-haproxy               do not install the HAProxy bridge
  --replace-haproxy          install the bridge even over another HAProxy config or a
                             web server on ports 80/443 (they stop otherwise)
  --python PATH              interpreter for the venv (Python >= 3.11; default python3)
  --arch ARCH                the machine to install for (default: uname -m, here $ARCH);
                             armv6l takes the compiled dependencies from Debian
  --root DIR                 write every file under DIR, print commands instead of running them
  --dry-run                  write nothing, print what would be done
  -h, --help                 this text
EOF
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --scheduler) SCHEDULER="${2:?--scheduler needs systemd or cron}"; shift 2 ;;
        --network) NETWORK="${2:?--network needs a value}"; shift 2 ;;
        --no-haproxy) WITH_HAPROXY=""; shift ;;
        --replace-haproxy) REPLACE_HAPROXY=1; shift ;;
        --python) PYTHON="${2:?--python needs a path}"; shift 2 ;;
        --arch) ARCH="${2:?--arch needs a machine name, e.g. armv6l}"; shift 2 ;;
        --root) ROOT="${2:?--root needs a directory}"; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
done

case "$SCHEDULER" in systemd|cron) ;; *) echo "--scheduler must be systemd or cron" >&2; exit 2 ;; esac
case "$NETWORK" in auto|networkmanager|dhcpcd|none) ;; *) echo "bad --network: $NETWORK" >&2; exit 2 ;; esac
if [[ -n "$ROOT" ]]; then
    mkdir -p "$ROOT"
    ROOT="$(cd "$ROOT" && pwd)"
fi

require_root_unless_simulating "$ROOT" "$DRY_RUN" " to try it out"

# put SRC DEST MODE: install a file (DEST is the path on the target system).
# Rewrites only when the content differs, so a second run changes nothing.
put() {
    local src="$1" dest="$2" mode="$3" target="$ROOT$2"
    if [[ -n "$DRY_RUN" ]]; then
        say "would install $dest (mode $mode)"
        return
    fi
    mkdir -p "$(dirname "$target")"
    if [[ -f "$target" ]] && cmp -s "$src" "$target"; then
        chmod "$mode" "$target"
    else
        install -m "$mode" "$src" "$target"
        say "installed $dest"
    fi
}

# put_text DEST MODE < content: like put, for generated content.
put_text() {
    local tmp
    tmp="$(mktemp)"
    cat >"$tmp"
    put "$tmp" "$1" "$2"
    rm -f "$tmp"
}

# dir PATH MODE [OWNER]: create a directory; ownership via run (users may not exist under --root).
dir() {
    local path="$1" mode="$2" owner="${3:-}"
    if [[ -n "$DRY_RUN" ]]; then
        say "would create $path (mode $mode${owner:+, owner $owner})"
        return
    fi
    mkdir -p "$ROOT$path"
    chmod "$mode" "$ROOT$path"
    if [[ -n "$owner" ]]; then
        run chown "$owner" "$path"
    fi
}

# remove PATH: delete a file we installed earlier (e.g. when switching scheduler).
remove() {
    if [[ -e "$ROOT$1" ]]; then
        if [[ -n "$DRY_RUN" ]]; then
            say "would remove $1"
        else
            rm -f "$ROOT$1"
            say "removed $1"
        fi
    fi
}

have_systemd() { [[ -d /run/systemd/system ]]; }

# --- 0. Would the bridge take something that is not ours? ----------------------
# An HAProxy config with proxies of its own (Debian's stock file has none), or
# another server on port 80 or 443 (Pi-hole's web interface, nginx, Apache):
# replacing it would break what the owner runs. Stop before changing anything.
bridge_conflicts() {
    local cfg="$ROOT$HAPROXY_CFG" holders
    if [[ -f "$cfg" ]] && ! head -n 1 "$cfg" | grep -q '^# solar-monitor:' \
            && grep -qE '^[[:space:]]*(frontend|listen|backend)[[:space:]]' "$cfg"; then
        echo "$HAPROXY_CFG already defines proxies of its own (not solar-monitor's);" \
            "the bridge would replace it (the original is kept as" \
            "haproxy.cfg.before-solar-monitor)."
    fi
    # Ports are the running machine's: not looked at under --root or --dry-run.
    if [[ -z "$SIMULATE" ]] && command -v ss >/dev/null 2>&1; then
        holders="$(ss -Hltnp '( sport = :80 or sport = :443 )' 2>/dev/null \
            | grep -o 'users:(("[^"]*"' | cut -d'"' -f2 | grep -vx haproxy | sort -u \
            | tr '\n' ' ' || true)"
        if [[ -n "$holders" ]]; then
            echo "ports 80/443 are taken by: ${holders% } (Pi-hole? nginx?); the bridge" \
                "needs them."
        fi
    fi
}
if [[ -n "$WITH_HAPROXY" && -z "$REPLACE_HAPROXY" ]]; then
    conflicts="$(bridge_conflicts)"
    if [[ -n "$conflicts" ]]; then
        printf 'solar-monitor: %s\n' "$conflicts" >&2
        echo "Nothing was changed. Install without the bridge (--no-haproxy), or let it" \
            "take over (--replace-haproxy)." >&2
        exit 1
    fi
fi

# --- 1. The user and the directories ------------------------------------------
say "system user $USER_NAME"
if [[ -n "$SIMULATE" ]] || ! id "$USER_NAME" >/dev/null 2>&1; then
    # A system account with no shell and no login; its home is the data dir.
    run useradd --system --user-group --home-dir "$DATA_DIR" --no-create-home \
        --shell /usr/sbin/nologin --comment "solar-monitor PVS watchdog" "$USER_NAME"
fi
dir "$OPT_DIR" 0755
dir "$ETC_DIR" 0750 "root:$USER_NAME"
dir "$DATA_DIR" 0750 "$USER_NAME:$USER_NAME"

# --- 1b. armv6l (Pi Zero W, Pi 1): the compiled dependencies from Debian ---------
# PyPI has no armv6l wheels for cryptography (google-auth, so gspread, needs it) or
# cffi, and building cryptography needs Rust and hours on a Zero. Debian builds them
# for armv6 (Raspberry Pi OS) and armel, in versions our dependency tree accepts
# (docs/raspberry-pi.md has the table): apt installs them and the venv sees them
# (--system-site-packages), so pip finds them satisfied. PyYAML (no armv6l wheel
# either) comes from Debian too, with its libyaml speedups. The rest of the tree is
# pure Python or has a pure-Python wheel (charset-normalizer).
# armv7l and aarch64 have wheels on PyPI: nothing changes there.
DEBIAN_COMPILED=(python3-cryptography python3-cffi python3-yaml)
# Should Debian's copy ever stop satisfying a pin, pip fails in seconds with the
# package's name instead of compiling it for hours (a piwheels wheel still counts).
DEBIAN_ONLY_BINARY=(--only-binary cryptography --only-binary cffi)

debian_compiled_deps() { [[ "$ARCH" == armv6l ]]; }

if debian_compiled_deps; then
    say "$ARCH: compiled dependencies from Debian (${DEBIAN_COMPILED[*]})"
    run apt-get install -y --no-install-recommends "${DEBIAN_COMPILED[@]}"
fi

# --- 2. The application in a venv -----------------------------------------------
say "venv $VENV"
if [[ -z "$SIMULATE" ]]; then
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "$PYTHON is not Python >= 3.11 (Raspberry Pi OS Bookworm has 3.11); use --python" >&2
        exit 1
    fi
    if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
        run apt-get install -y python3-venv
    fi
fi
venv_flags=()
pip_flags=()
if debian_compiled_deps; then
    venv_flags=(--system-site-packages)
    pip_flags=("${DEBIAN_ONLY_BINARY[@]}")
fi
# Rerunning venv over an existing one rewrites only its pyvenv.cfg: this is how a venv
# made before the armv6l path (without system site packages) gets them.
if [[ -n "$SIMULATE" || ! -x "$VENV/bin/python" ]] \
        || { debian_compiled_deps && ! grep -qx 'include-system-site-packages = true' "$VENV/pyvenv.cfg"; }; then
    run "$PYTHON" -m venv "${venv_flags[@]}" "$VENV"
fi
# A plain (not editable) install: the checkout can be moved or deleted afterwards.
# --upgrade upgrades solar-monitor only: a dependency already satisfied (Debian's
# cryptography on armv6l) is kept (pip's default upgrade strategy, only-if-needed).
run "$VENV/bin/pip" install --quiet --upgrade pip
run "$VENV/bin/pip" install --quiet --upgrade "${pip_flags[@]}" "$REPO"
put "$REPO/docs/raspberry-pi.md" "$OPT_DIR/docs/raspberry-pi.md" 0644

# `sudo solar-monitor check` runs as the service user with the installed config and
# the env file, so files in the data dir never end up owned by root.
put "$REPO/deploy/solar-monitor-wrapper.sh" /usr/local/bin/solar-monitor 0755

# --- 3. The config: copied once, never overwritten ------------------------------
if [[ -e "$ROOT$CONFIG" ]]; then
    say "keeping existing $CONFIG"
    # It holds passwords: make sure it is not readable by others.
    if [[ -z "$DRY_RUN" ]]; then
        chmod 0600 "$ROOT$CONFIG"
    fi
else
    put "$REPO/config.example.yaml" "$CONFIG" 0600
    say "edit $CONFIG (site, PVS serial, e-mail), then: sudo solar-monitor check"
fi
if [[ -z "$DRY_RUN" ]]; then
    run chown "$USER_NAME:$USER_NAME" "$CONFIG"
fi

# The secrets the config names as ${VAR} (docs/notifications.md): root's, mode 0600.
# systemd reads it for the unit before dropping privileges; the wrapper (sudo, and
# the cron line, which runs it as root) reads it as root and hands the variables on.
if [[ -e "$ROOT$ENV_FILE" ]]; then
    say "keeping existing $ENV_FILE"
    if [[ -z "$DRY_RUN" ]]; then
        chmod 0600 "$ROOT$ENV_FILE"
    fi
else
    put_text "$ENV_FILE" 0600 <<'EOF'
# /etc/solar-monitor/env: secrets for solar-monitor, one NAME=value a line, e.g.
#   GMAIL_APP_PASSWORD=abcdabcdabcdabcd
# and in config.yaml: mailtos://you:${GMAIL_APP_PASSWORD}@gmail.com?to=you@gmail.com
# Read by the systemd unit, by `sudo solar-monitor ...` and by the cron line.
# Root's, mode 0600: edit with `sudoedit /etc/solar-monitor/env`.
# A value is taken as written (spaces and $ need no quotes); one with a backslash goes
# in single quotes ('a\b'). In a URL, a password's @ : / # ? % must be %-encoded.
EOF
fi
if [[ -z "$DRY_RUN" ]]; then
    run chown root:root "$ENV_FILE"
fi

# --- 4. The scheduler ----------------------------------------------------------
say "scheduler: $SCHEDULER"
for unit in solar-monitor.service solar-monitor.timer \
        solar-monitor-wifi-check.service solar-monitor-wifi-check.timer; do
    put "$REPO/systemd/$unit" "$UNIT_DIR/$unit" 0644
done
put "$REPO/deploy/wifi-check.sh" /usr/local/sbin/solar-monitor-wifi-check 0755
# The runs themselves start last (step 8), once `solar-monitor check` passes.
if [[ "$SCHEDULER" == systemd ]]; then
    remove "$CRON_FILE"
    remove /etc/logrotate.d/solar-monitor
    run systemctl daemon-reload
    # Without this, time-sync.target is reached before the clock is actually set. The
    # marker says we enabled it (it was off), so uninstall.sh turns off only what we did.
    if [[ -n "$SIMULATE" ]] || ! systemctl is-enabled --quiet systemd-time-wait-sync.service; then
        run systemctl enable systemd-time-wait-sync.service
        echo systemd-time-wait-sync.service | put_text "$TIME_SYNC_MARKER" 0644
    fi
    run systemctl enable --now solar-monitor-wifi-check.timer
else
    if [[ -n "$SIMULATE" ]] || have_systemd; then
        run systemctl daemon-reload
        run systemctl disable --now solar-monitor.timer solar-monitor-wifi-check.timer
    fi
    # Root's shell appends to the cron log: a directory the service user could write
    # would let it plant a symlink there and have root append to any file.
    dir "$LOG_DIR" 0750 root:adm
    put "$REPO/deploy/logrotate" /etc/logrotate.d/solar-monitor 0644
    # The Wi-Fi check starts now, as its timer does; the runs' line joins it in step 8.
    if ! cron_runs; then
        grep -vF "$CRON_RUN" "$REPO/deploy/crontab" | put_text "$CRON_FILE" 0644
    fi
fi

# --- 5. Logs that spare the SD card --------------------------------------------
put "$REPO/deploy/journald.conf" /etc/systemd/journald.conf.d/solar-monitor.conf 0644
if [[ -n "$SIMULATE" ]] || have_systemd; then
    run systemctl restart systemd-journald
fi

# --- 6. The Pi's network (field guide): eth0 to the PVS, Wi-Fi to the home LAN --
if [[ "$NETWORK" == auto ]]; then
    if [[ -n "$ROOT" ]]; then
        if [[ -d "$ROOT/etc/NetworkManager" ]]; then NETWORK=networkmanager
        elif [[ -f "$ROOT/etc/dhcpcd.conf" ]]; then NETWORK=dhcpcd
        else NETWORK=none; fi
    elif have_systemd && systemctl is-active --quiet NetworkManager; then
        NETWORK=networkmanager    # Raspberry Pi OS Bookworm
    elif [[ -f /etc/dhcpcd.conf ]]; then
        NETWORK=dhcpcd            # Bullseye and older
    else
        NETWORK=none
        say "found neither NetworkManager nor dhcpcd: configure $ETH yourself" \
            "(docs/raspberry-pi.md, \"eth0 by hand\")"
    fi
fi
say "network: $NETWORK"

# eth0 gets a fixed address and no gateway: the PVS runs a DHCP server on LAN1,
# but newer firmware stops renewing leases, and its default route would steal the
# Pi's internet traffic from the Wi-Fi.
case "$NETWORK" in
    networkmanager)
        # A keyfile rather than `nmcli connection add`, so a rerun is a no-op.
        # NetworkManager ignores keyfiles readable by others: 0600.
        put_text /etc/NetworkManager/system-connections/solar-monitor-pvs.nmconnection 0600 <<EOF
# Installed by solar-monitor's deploy/install.sh: $ETH is cabled to the PVS LAN1 port.
[connection]
id=solar-monitor-pvs
type=ethernet
interface-name=$ETH
autoconnect=true
# Wins over the default "Wired connection 1" (DHCP from the PVS, with a gateway).
autoconnect-priority=100

[ipv4]
method=manual
address1=$PI_PVS_ADDR
never-default=true

[ipv6]
method=disabled
EOF
        put_text /etc/NetworkManager/conf.d/solar-monitor-wifi-powersave.conf 0644 <<'EOF'
# Installed by solar-monitor's deploy/install.sh. Wi-Fi power saving makes the
# Pi drop off the network ("carrier lost"); 2 = disabled.
[connection]
wifi.powersave = 2
EOF
        run nmcli connection reload
        # Fails harmlessly when eth0 is not cabled to the PVS yet.
        run nmcli connection up solar-monitor-pvs || say "eth0 not up yet: it will be once cabled to the PVS"
        ;;
    dhcpcd)
        # Replace our marked block (if any) and append the current one.
        target="$ROOT/etc/dhcpcd.conf"
        tmp="$(mktemp)"
        if [[ -f "$target" ]]; then
            awk -v b="$MARK_BEGIN" -v e="$MARK_END" \
                '$0 == b {skip = 1; next} $0 == e {skip = 0; next} !skip' "$target" >"$tmp"
        fi
        cat >>"$tmp" <<EOF
$MARK_BEGIN
# $ETH is cabled to the PVS installer port (LAN1).
interface $ETH
static ip_address=$PI_PVS_ADDR
nogateway
$MARK_END
EOF
        put "$tmp" /etc/dhcpcd.conf 0644
        rm -f "$tmp"
        # Rebind eth0 only: restarting dhcpcd would also renew the Wi-Fi we may be
        # logged in through. Wi-Fi power save: the reconnect check turns it off.
        run dhcpcd -n "$ETH" || say "dhcpcd could not rebind $ETH yet: it will at the next boot"
        ;;
esac

# --- 7a. The bridge's TLS certificate -------------------------------------------
BRIDGE_CERT=/etc/haproxy/solar-monitor-bridge.pem

# bridge_certificate: a self-signed certificate and its key in one PEM (HAProxy's
# `crt` format), made once: an upgrade keeps it, so a client that accepted it
# (Home Assistant, a browser exception) keeps working. ECDSA P-256, because a TLS
# handshake with it costs a Pi Zero a fraction of an RSA one. Mode 0640, group
# haproxy: root and HAProxy read the key, nobody else. Under --root the file is
# really made (openssl only writes it); ownership goes through `run` like the rest.
bridge_certificate() {
    local target="$ROOT$BRIDGE_CERT" host tmp
    if [[ -e "$target" ]]; then
        say "keeping existing $BRIDGE_CERT"
    elif [[ -n "$DRY_RUN" ]]; then
        say "would create $BRIDGE_CERT (self-signed, mode 0640, group haproxy)"
        return
    else
        if [[ -z "$SIMULATE" ]] && ! command -v openssl >/dev/null 2>&1; then
            run apt-get install -y openssl
        fi
        host="$(cat "$ROOT/etc/hostname" 2>/dev/null || hostname)"
        host="${host//[^A-Za-z0-9-]/}"
        host="${host:-raspberrypi}"
        tmp="$(mktemp -d)"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -days 3650 -subj "/CN=$host solar-monitor bridge" \
            -addext "subjectAltName=DNS:$host,DNS:$host.local" \
            -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>"$tmp/openssl.log" \
            || { cat "$tmp/openssl.log" >&2; rm -rf "$tmp"; exit 1; }
        cat "$tmp/cert.pem" "$tmp/key.pem" >"$tmp/bridge.pem"
        mkdir -p "$(dirname "$target")"
        install -m 0640 "$tmp/bridge.pem" "$target"
        rm -rf "$tmp"
        say "created $BRIDGE_CERT (self-signed for $host, $host.local; 10 years)"
    fi
    if [[ -z "$DRY_RUN" ]]; then
        chmod 0640 "$target"
    fi
    run chown root:haproxy "$BRIDGE_CERT"
}

# --- 7. The read-only HAProxy bridge -------------------------------------------
if [[ -n "$WITH_HAPROXY" ]]; then
    say "HAProxy bridge"
    if [[ -n "$SIMULATE" ]] || ! command -v haproxy >/dev/null 2>&1; then
        run apt-get install -y haproxy
    fi
    # Keep Debian's original once, for uninstall --remove-bridge.
    cfg="$ROOT$HAPROXY_CFG"
    if [[ -z "$DRY_RUN" && -f "$cfg" && ! -e "$cfg.before-solar-monitor" ]] \
            && ! cmp -s "$cfg" "$REPO/haproxy/haproxy.cfg"; then
        cp -p "$cfg" "$cfg.before-solar-monitor"
        say "kept the previous $HAPROXY_CFG as haproxy.cfg.before-solar-monitor"
    fi
    bridge_certificate
    put "$REPO/haproxy/haproxy.cfg" "$HAPROXY_CFG" 0644
    run haproxy -c -q -f "$HAPROXY_CFG"
    run systemctl enable haproxy
    run systemctl reload-or-restart haproxy
fi

# --- 8. The runs: only once the config checks out --------------------------------
# Started before the owner has edited the example config, runs would poll as the
# example's Boston site. An upgrade keeps runs that are already on.
if [[ "$SCHEDULER" == systemd ]]; then
    start_command="sudo systemctl enable --now solar-monitor.timer"
    scheduled() { [[ -L "$ROOT$TIMER_WANTS" ]]; }
    start_runs() { run systemctl enable --now solar-monitor.timer; }
else
    start_command="sudo deploy/install.sh --scheduler cron"
    scheduled() { cron_runs; }
    start_runs() { put "$REPO/deploy/crontab" "$CRON_FILE" 0644; }
fi
not_yet="runs are NOT started yet: edit $CONFIG (and $ENV_FILE for passwords)
    until 'sudo solar-monitor check' passes, then start them: $start_command
    (docs/raspberry-pi.md, steps 6 to 8)"
if scheduled; then
    say "runs every 15 minutes ($SCHEDULER): already on, kept"
    start_runs
elif [[ -z "$DRY_RUN" ]] && cmp -s "$ROOT$CONFIG" "$REPO/config.example.yaml"; then
    # Still the example: nothing to check yet (and no poll of the example's PVS address).
    say "$not_yet"
elif [[ -n "$SIMULATE" ]]; then
    run /usr/local/bin/solar-monitor check
    say "$not_yet"
elif /usr/local/bin/solar-monitor check; then
    start_runs
    say "check passed: runs every 15 minutes ($SCHEDULER) started"
else
    say "$not_yet"
fi
say "done (docs/raspberry-pi.md)"
