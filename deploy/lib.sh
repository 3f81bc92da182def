# Shared by install.sh and uninstall.sh (sourced, never run): the markers of the block
# they manage in /etc/dhcpcd.conf, and the one way they change the system.
# shellcheck shell=bash

# shellcheck disable=SC2034  # used by the scripts that source this file
MARK_BEGIN="# BEGIN solar-monitor (deploy/install.sh)"
# shellcheck disable=SC2034
MARK_END="# END solar-monitor"

# Changing the real system needs root; --root and --dry-run touch nothing outside DIR.
# Sets SIMULATE when either was given. $1 = ROOT, $2 = DRY_RUN, $3 = hint after the advice.
require_root_unless_simulating() {
    SIMULATE=""
    [[ -n "$1" || -n "$2" ]] && SIMULATE=1
    if [[ -z "$SIMULATE" && "$(id -u)" -ne 0 ]]; then
        echo "run as root (sudo $0), or use --root DIR / --dry-run$3" >&2
        exit 1
    fi
}

say() { printf '==> %s\n' "$*"; }

# Run a command that changes the system, or only print it when simulating.
run() {
    if [[ -n "$SIMULATE" ]]; then
        # %q quotes each word, so the printed line can be pasted into a shell.
        printf '+'
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}
