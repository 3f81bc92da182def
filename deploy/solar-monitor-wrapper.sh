#!/bin/bash
# /usr/local/bin/solar-monitor, installed by deploy/install.sh: runs solar-monitor as
# its own user, with the installed config and the secrets in /etc/solar-monitor/env.
#
# The env file is root's (mode 0600), read three ways: systemd reads it for the unit
# (EnvironmentFile=, as root, before it drops to the service user); this wrapper reads
# it when run as root (`sudo solar-monitor ...`, and the cron line, which runs it as
# root) and hands the variables on to the service user; run as anyone else it cannot
# read the file and goes without. It is parsed, never sourced, so a value with spaces
# or `$` stays as written: one NAME=value a line, blank lines and lines starting with #
# or ; ignored, quotes around a value removed, as systemd does for simple lines.
set -euo pipefail

USER_NAME=solar-monitor
PROGRAM=/opt/solar-monitor/venv/bin/solar-monitor
CONFIG=/etc/solar-monitor/config.yaml
ENV_FILE=/etc/solar-monitor/env
DATA_DIR=/var/lib/solar-monitor

# load_env FILE: export each NAME=value line of FILE.
load_env() {
    local line name value
    while IFS= read -r line || [[ -n "$line" ]]; do
        line="${line#"${line%%[![:space:]]*}"}"        # leading blanks
        line="${line%"${line##*[![:space:]]}"}"        # trailing blanks
        [[ -z "$line" || "$line" == [\#\;]* ]] && continue
        if [[ ! "$line" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]]; then
            echo "solar-monitor: ignoring a line of $1 that is not NAME=value" >&2
            continue
        fi
        name="${line%%=*}"
        value="${line#*=}"
        if [[ ${#value} -ge 2 && ( "$value" == \"*\" || "$value" == \'*\' ) ]]; then
            value="${value:1:${#value}-2}"
        fi
        export "$name=$value"
    done <"$1"
}

# relative_path_given ARGS...: an argument names a file by a relative path (one that
# exists here, or the value of an option that takes a file).
relative_path_given() {
    local arg previous=""
    for arg in "$@"; do
        if [[ "$arg" != [-/]* && ( -e "$arg" || "$previous" == --@(config|out|events-out|weather) ) ]]; then
            return 0
        fi
        if [[ "$arg" == --@(config|out|events-out|weather)=[!/]* ]]; then
            return 0
        fi
        previous="$arg"
    done
    return 1
}

if [[ -r "$ENV_FILE" ]]; then
    load_env "$ENV_FILE"
fi
export SOLAR_MONITOR_CONFIG="${SOLAR_MONITOR_CONFIG:-$CONFIG}"
if [[ "$(id -u)" -eq 0 ]]; then
    # Stay in the caller's directory, so `sudo solar-monitor parse ./file.json` finds
    # the file, unless the service user cannot enter it (a home directory is 0700). Said
    # only when an argument is a relative path: `sudo solar-monitor check` from the
    # home directory needs none.
    if ! runuser -u "$USER_NAME" -- test -x "$PWD"; then
        if relative_path_given "$@"; then
            echo "solar-monitor: $USER_NAME cannot enter $PWD, so relative paths are" \
                "taken from /: give a file's full path, in a directory $USER_NAME can" \
                "read" >&2
        fi
        cd /
    fi
    # runuser keeps the environment (HOME, SHELL, USER and LOGNAME aside).
    # The caller's terminal must not reach the service user: holding it, a program
    # could type a command into the root shell that called us (the TIOCSTI ioctl),
    # to run once the program ends. On a terminal, runuser gives the program one of
    # its own (--pty); otherwise (cron, a pipe, a redirection) setsid takes it out of
    # the caller's session, so no terminal it may hold is its controlling one.
    if [[ -t 0 && -t 1 && -t 2 ]]; then
        exec runuser --pty -u "$USER_NAME" -- env HOME="$DATA_DIR" "$PROGRAM" "$@"
    fi
    exec runuser -u "$USER_NAME" -- setsid --wait env HOME="$DATA_DIR" "$PROGRAM" "$@"
fi
exec "$PROGRAM" "$@"
