#!/bin/sh
# keepalived notify script for an active-backup conntrackd pair (ctools manual, chapter 5).
#   primary-backup.sh primary|backup|fault
# Every step logs a line to syslog when it fails, and the script goes on: a half-done
# transition is better than none. Exit 0 after a handled transition, 1 otherwise.

CONNTRACKD=${CONNTRACKD:-conntrackd}
CONFIG=${CONFIG:-/etc/conntrackd/conntrackd.conf}
LOCKFILE=${LOCKFILE:-/var/lock/conntrackd.lock}    # must match LockFile in $CONFIG

ask() {
    # One request to the local daemon; exit status 1 means it could not be reached.
    "$CONNTRACKD" -C "$CONFIG" "$@"
    if [ $? -eq 1 ]; then
        logger -t primary-backup "conntrackd $* failed"
    fi
}

case "$1" in
primary)
    ask -c      # install the peer's flows into the kernel (returns when done)
    ask -f      # forget both caches ...
    ask -R      # ... and reload the internal one from the kernel
    ask -B      # tell the peer everything we now have
    ;;
backup)
    if ! "$CONNTRACKD" -C "$CONFIG" -s >/dev/null 2>&1; then
        # Not running. A lock file left by a crash would stop it from starting.
        if [ -e "$LOCKFILE" ]; then
            logger -t primary-backup "conntrackd was not stopped cleanly, removing $LOCKFILE"
            rm -f "$LOCKFILE"
        fi
        if ! "$CONNTRACKD" -C "$CONFIG" -d; then
            logger -t primary-backup "cannot start conntrackd"
            exit 1
        fi
    fi
    ask -t      # purge the kernel table after PurgeTimeout: those flows are the peer's now
    ask -n      # ask the new primary for all its flows
    ;;
fault)
    ask -t
    ;;
*)
    logger -t primary-backup "unknown transition '$1'"
    echo "usage: $0 primary|backup|fault" >&2
    exit 1
    ;;
esac
exit 0
