#!/bin/sh
# primary-backup.sh - keepalived notify hook that moves conntrack state on fail-over.
#
# Part of ctools. keepalived calls it with the new VRRP state of the sync group:
#
#   notify_master "/usr/local/share/ctools/primary-backup.sh primary"
#   notify_backup "/usr/local/share/ctools/primary-backup.sh backup"
#   notify_fault  "/usr/local/share/ctools/primary-backup.sh fault"
#
# Settings (environment, or shell assignments in $CTOOLS_DEFAULTS, by default
# /etc/default/ctools-conntrackd):
#   CONNTRACKD         daemon/client binary; ctools' conntrackd by default. The C daemon
#                      (/usr/sbin/conntrackd) understands the same commands.
#   CONNTRACKD_CONFIG  configuration file shared by daemon and client commands
#   CONNTRACKD_LOCK    the LockFile of that configuration
#
# Exit status: 0 after a handled transition (a failed step is logged, not fatal), 1 when
# the daemon could not be started or the state is unknown.

CTOOLS_DEFAULTS="${CTOOLS_DEFAULTS:-/etc/default/ctools-conntrackd}"
# shellcheck disable=SC1090
[ -r "$CTOOLS_DEFAULTS" ] && . "$CTOOLS_DEFAULTS"

CONNTRACKD="${CONNTRACKD:-/usr/local/bin/conntrackd}"
CONNTRACKD_CONFIG="${CONNTRACKD_CONFIG:-/etc/conntrackd/conntrackd.conf}"
CONNTRACKD_LOCK="${CONNTRACKD_LOCK:-/var/lock/conntrackd.lock}"

log() {
    logger -t ctools-primary-backup -- "$*" 2>/dev/null || echo "$*" >&2
}

# Run one client command; only exit status 1 (daemon unreachable or refused) is an error.
step() {
    "$CONNTRACKD" -C "$CONNTRACKD_CONFIG" "$@"
    if [ $? -eq 1 ]; then
        log "ERROR: 'conntrackd $*' failed"
    fi
}

case "$1" in
primary)
    # We now own the traffic: put the peer's flows into the kernel, start caching afresh
    # from the kernel table, and hand our complete state to the new backup.
    step -c     # commit the external cache into the kernel table
    step -f     # flush the internal and external caches
    step -R     # resynchronise the internal cache with the kernel table
    step -B     # bulk-send our state to the peer
    ;;
backup)
    # Make sure a daemon runs (it may have died with the former role).
    "$CONNTRACKD" -C "$CONNTRACKD_CONFIG" -s >/dev/null 2>&1
    if [ $? -eq 1 ]; then
        if [ -e "$CONNTRACKD_LOCK" ]; then
            log "WARNING: conntrackd did not stop cleanly (stale lock $CONNTRACKD_LOCK)."
            log "If it crashed, enable core dumps, reproduce the problem and report it"
            log "with the core dump; removing the lock file to restart it now."
            rm -f "$CONNTRACKD_LOCK"
        fi
        "$CONNTRACKD" -C "$CONNTRACKD_CONFIG" -d
        if [ $? -eq 1 ]; then
            log "ERROR: cannot start conntrackd"
            exit 1
        fi
    fi
    step -t     # purge the flows we owned as primary after PurgeTimeout
    step -n     # ask the new primary for a full resync (nothing to do in ALARM mode)
    ;;
fault)
    step -t     # our flows are stale: purge them after PurgeTimeout
    ;;
*)
    log "ERROR: unknown state transition '$1'"
    echo "Usage: primary-backup.sh {primary|backup|fault}"
    exit 1
    ;;
esac

exit 0
