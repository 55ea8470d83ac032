"""The ``conntrackd`` program: argument scanner, client requests, or start the daemon.

The scanner keeps the reference tool's observable rules (only the second character of an
argument is looked at, optional parameter words matched by prefix, last command wins, exit
statuses); the help and version texts are ctools' own.
"""

from __future__ import annotations

import os
import sys

from ctools.daemon.control import XML_OF, ControlError, Req, request
from ctools.daemon.log import DaemonLog

DEFAULT_CONFIG = "/etc/conntrackd/conntrackd.conf"
PATH_MAX = 4096
VERSION = "0.1.0"

VERSION_TEXT = (
    f"conntrackd (ctools {VERSION}): connection tracking replication daemon, "
    "compatible with conntrack-tools 1.4.7. Licensed under GPLv2 or later.\n"
)

USAGE = """\
conntrackd (ctools {version}) - replicate connection tracking state between firewalls
Usage: conntrackd [-C FILE] [-d | COMMAND]

Start the daemon:
  -d                     detach and run in the background (otherwise stays in the console)
  -C FILE                read FILE instead of /etc/conntrackd/conntrackd.conf
  -v                     show the version
  -h                     show this text

Ask a running daemon (through the UNIX socket named in the configuration):
  -c [ct|expect]         write the external cache (peer states) into the kernel table
  -f [internal|external] empty one or both caches
  -F [ct|expect]         delete the kernel's entries (those the Filter accepts)
  -i [ct|expect]         list the internal cache (local states)
  -e [ct|expect]         list the external cache (peer states)
  -x                     with -i or -e: list as XML
  -k                     stop the daemon
  -s [network|cache|runtime|link|rsqueue|queue|process|ct|expect]
                         show statistics
  -R [ct|expect]         reload the internal cache from the kernel table
  -n                     ask the peer to send all its states (FT-FW, NOTRACK)
  -B                     send all our states to the peer
  -t                     purge the kernel table after PurgeTimeout seconds

ctools extensions:
  --json -s [VIEW]       the statistics view as one JSON object
  --health [--max-silence SECONDS]
                         exit 0 if the daemon runs and heard its peer recently, 1 if not

"""

_STATS_WORDS = (
    ("network", Req.STATS_NETWORK),
    ("cache", Req.STATS_CACHE),
    ("runtime", Req.STATS_RUNTIME),
    ("multicast", Req.STATS_LINK),
    ("link", Req.STATS_LINK),
    ("rsqueue", Req.STATS_RSQUEUE),
    ("process", Req.STATS_PROCESS),
    ("queue", Req.STATS_QUEUE),
    ("ct", Req.STATS),
    ("expect", Req.EXP_STATS),
)
_STATS_ORDER = tuple(name for name, _ in _STATS_WORDS)  # prefix matching tries this order
_STATS = dict(_STATS_WORDS)

# flag -> (code without word, code for "ct", code for "expect")
_CT_EXPECT = {
    "c": (Req.ALL_COMMIT, Req.CT_COMMIT, Req.EXP_COMMIT),
    "F": (Req.ALL_FLUSH_MASTER, Req.CT_FLUSH_MASTER, Req.EXP_FLUSH_MASTER),
    "R": (Req.ALL_RESYNC_MASTER, Req.CT_RESYNC_MASTER, Req.EXP_RESYNC_MASTER),
    "i": (Req.CT_DUMP_INTERNAL, Req.CT_DUMP_INTERNAL, Req.EXP_DUMP_INTERNAL),
    "e": (Req.CT_DUMP_EXTERNAL, Req.CT_DUMP_EXTERNAL, Req.EXP_DUMP_EXTERNAL),
}
_SIMPLE = {"k": Req.KILL, "n": Req.REQUEST_DUMP, "B": Req.SEND_BULK, "t": Req.RESET_TIMERS}


def _prefix(word: str, keyword: str) -> bool:
    return keyword.startswith(word)


class Invocation:
    """What the command line asked for."""

    def __init__(self) -> None:
        self.config = DEFAULT_CONFIG
        self.daemon = False
        self.request: int | None = None
        self.json = False
        self.health = False
        self.max_silence: float | None = None


class _Exit(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


def _usage() -> None:
    sys.stdout.write(USAGE.format(version=VERSION))
    sys.stdout.flush()


def scan(argv: list[str], log: DaemonLog) -> Invocation:
    """Scan the arguments like the reference tool; raises _Exit for -v/-h/errors."""
    inv = Invocation()
    client = False

    def invalid() -> None:
        _usage()
        log.error("Invalid parameters")
        raise _Exit(1)

    def set_client(code: int) -> None:
        nonlocal client
        if inv.daemon:
            invalid()
        client = True
        inv.request = code

    i = 0
    n = len(argv)
    while i < n:
        arg = argv[i]
        nxt = argv[i + 1] if i + 1 < n else None
        word = nxt if nxt is not None and not nxt.startswith("-") else None
        if arg == "--json":
            inv.json = True
            i += 1
            continue
        if arg == "--health":
            inv.health = True
            i += 1
            continue
        if arg == "--max-silence":
            try:
                inv.max_silence = float(nxt if nxt is not None else "")
            except ValueError:
                log.error("--max-silence needs a number of seconds")
                raise _Exit(1) from None
            i += 2
            continue
        flag = arg[1] if len(arg) > 1 else "\0"
        if flag == "d":
            if client:
                invalid()
            inv.daemon = True
        elif flag == "C":
            if nxt is None:
                _usage()
                log.error("Missing config filename")
            else:
                path = nxt
                if len(path) > PATH_MAX:
                    log.warning("Path to config file to long. "
                                "Cutting it down to 4096 characters")
                    path = path[:PATH_MAX]
                inv.config = path
                i += 1
        elif flag == "v":
            sys.stdout.write(VERSION_TEXT)
            raise _Exit(0)
        elif flag == "h":
            _usage()
            raise _Exit(0)
        elif flag in _CT_EXPECT:
            plain, ct, exp = _CT_EXPECT[flag]
            if word is None:
                set_client(plain)
            elif _prefix(word, "ct"):
                set_client(ct)
                i += 1
            elif _prefix(word, "expect"):
                set_client(exp)
                i += 1
            # any other word is left for the next round (normally an unknown option)
        elif flag == "f":
            if word is None:
                set_client(Req.ALL_FLUSH_CACHE)
            elif _prefix(word, "internal"):
                set_client(Req.CT_FLUSH_INT_CACHE)
                i += 1
            elif _prefix(word, "external"):
                set_client(Req.CT_FLUSH_EXT_CACHE)
                i += 1
            else:
                log.error(f"unknown parameter `{word}' for option `-f'")
                raise _Exit(1)
        elif flag == "x":
            if inv.request in XML_OF:
                inv.request = XML_OF[inv.request]
            else:
                invalid()
        elif flag == "s":
            if word is None:
                set_client(Req.STATS)
            else:
                for name in _STATS_ORDER:
                    if _prefix(word, name):
                        if name == "multicast":
                            log.warning("use `link' instead of `multicast' as parameter.")
                        set_client(_STATS[name])
                        break
                else:
                    log.error(f"unknown parameter `{word}' for option `-s'")
                    raise _Exit(1)
                i += 1
        elif flag in _SIMPLE:
            set_client(_SIMPLE[flag])
        else:
            _usage()
            log.error(f"Unknown option: {arg}")
            raise _Exit(0)
        i += 1
    if inv.health and inv.request is None:
        if inv.daemon:      # a request and daemon mode at once: refused like -s -d
            invalid()
        inv.request = Req.HEALTH
    return inv


def _load_config(path: str, log: DaemonLog):
    from ctools import config as ctconfig

    if not os.path.exists(path) or not os.access(path, os.R_OK) or os.path.isdir(path):
        log.error(f"can't open config file `{path}'")
        raise _Exit(1)
    try:
        cfg = ctconfig.load(path)
    except ctconfig.ConfigError as exc:
        log.error(str(exc))
        raise _Exit(1) from None
    except OSError:
        log.error(f"can't open config file `{path}'")
        raise _Exit(1) from None
    for warning in cfg.warnings:
        log.warning(warning.message)
    return cfg


def _unix_path(cfg) -> str:
    unix = getattr(cfg.general, "unix", None)
    path = getattr(unix, "path", None) if unix is not None else None
    if path is None:
        path = getattr(cfg.general, "unix_path", None)
    return path or ""


def _client(inv: Invocation, cfg, log: DaemonLog) -> int:
    path = _unix_path(cfg)
    if inv.health:
        from ctools.daemon.health import check_health

        ok, line = check_health(path, inv.max_silence)
        sys.stdout.write(line + "\n")
        return 0 if ok else 1
    try:
        if inv.json:
            if inv.request is None:
                inv.request = Req.STATS
            request(path, Req.JSON_VIEW, int(inv.request), out=sys.stdout.buffer)
        else:
            request(path, int(inv.request), out=sys.stdout.buffer)
    except ControlError:
        log.error("can't connect: is conntrackd running? appropriate permissions?")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``conntrackd`` console script."""
    if argv is None:
        argv = sys.argv[1:]
    log = DaemonLog()
    try:
        inv = scan(argv, log)
        os.umask(0o177)
        cfg = _load_config(inv.config, log)
        if inv.request is not None:
            return _client(inv, cfg, log)
        from ctools.daemon.run import run_daemon

        return run_daemon(cfg, detach=inv.daemon, log=log)
    except _Exit as done:
        return done.status
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
