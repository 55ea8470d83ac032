"""Start-up sequence of the daemon (reference order: logs, lock, sockets, fork, loop)."""

from __future__ import annotations

import gc
import os
import sys
from typing import TYPE_CHECKING

from ctools.daemon.lockfile import LockExists, LockFile
from ctools.daemon.log import DaemonLog
from ctools.daemon.sdnotify import notify

if TYPE_CHECKING:
    from ctools.config import model as cfgm
    from ctools.daemon.base import Daemon

# (asyncio and what imports it are loaded by run_daemon, after _without_tls)

# The caches hold ~100k acyclic objects: with the default thresholds the cyclic collector
# walks them over and over during a burst (~40 % of the receive path's time, measured).
# A larger first generation keeps the rare asyncio cycles collected, just less often.
GC_THRESHOLDS = (100_000, 50, 100)


def tune_gc() -> None:
    """Move start-up objects out of the collector's sight and raise its thresholds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _install_memdump(prefix: str) -> None:
    """Performance work: on SIGUSR1 write ``prefix.PID`` with RSS/HWM, the loaded modules and,
    when tracemalloc runs (PYTHONTRACEMALLOC=N), the top allocation sites."""
    import signal

    def dump(_sig, _frame) -> None:
        import tracemalloc

        lines = []
        with open("/proc/self/status") as fh:
            lines += [ln.rstrip() for ln in fh if ln.startswith(("VmRSS", "VmHWM"))]
        if tracemalloc.is_tracing():
            cur, peak = tracemalloc.get_traced_memory()
            lines.append(f"traced {cur / 1e6:.1f} MB peak {peak / 1e6:.1f} MB")
            snap = tracemalloc.take_snapshot()
            for st in snap.statistics("lineno")[:40]:
                lines.append(f"{st.size / 1e3:10.1f} kB {st.count:8d} {st.traceback[0]}")
        lines.append(f"modules {len(sys.modules)}: " + " ".join(sorted(sys.modules)))
        with open(f"{prefix}.{os.getpid()}", "a") as fh:
            fh.write("\n".join(lines) + "\n\n")

    signal.signal(signal.SIGUSR1, dump)


def _without_tls(cfg: cfgm.Config) -> None:
    """Mark the ssl module missing, as in a Python built without it, unless already loaded.

    The daemon speaks no TLS, but asyncio imports ssl when it can, and libssl with the
    module costs ~1.5 MB of resident memory per daemon (more without libcrypto loaded).
    Called in the daemon process before asyncio is first imported; a no-op afterwards.
    The metrics endpoint's library needs the module: then it stays.
    """
    if "asyncio" not in sys.modules and cfg.general.metrics is None:
        sys.modules.setdefault("ssl", None)


def make_daemon(cfg: cfgm.Config, log: DaemonLog) -> Daemon:
    """The running mode the configuration selects."""
    from ctools.daemon.base import Daemon

    if cfg.sync is not None:
        from ctools.daemon.syncmode import SyncDaemon

        if not cfg.sync.mode_explicit:
            log.warning("No synchronization mode specified. Defaulting to FT-FW mode.")
        return SyncDaemon(cfg, log)
    if cfg.stats is not None:
        from ctools.daemon.statsmode import StatsDaemon

        return StatsDaemon(cfg, log)
    return Daemon(cfg, log)


def _detach(log: DaemonLog) -> bool:
    """Fork; the parent returns True (it exits 0), the child becomes the daemon."""
    try:
        pid = os.fork()
    except OSError as exc:
        log.error(f"fork has failed: {exc.strerror}")
        raise
    if pid:
        return True
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    return False


def run_daemon(cfg: cfgm.Config, detach: bool, log: DaemonLog) -> int:
    """Run the daemon until it is told to stop; returns the exit status."""
    _without_tls(cfg)
    import asyncio

    from ctools.daemon.base import StartError
    from ctools.daemon.cthelper import check_helpers
    from ctools.daemon.server import ControlServer, bind_control_socket

    g = cfg.general
    s = cfg.sync
    if s is not None and s.commit_timeout and s.disable_external_cache:
        log.warning("`CommitTimeout' can't be combined with `DisableExternalCache', "
                    "ignoring this option. Fix your configuration file.")
        s.commit_timeout = 0
    try:
        if g.log_file:
            log.open_file(g.log_file)
    except OSError as exc:
        sys.stderr.write(f"ERROR: can't open logfile `{g.log_file}'.Reason: {exc.strerror}\n")
        return 1
    if g.syslog_facility:
        log.open_syslog(g.syslog_facility)
    if detach:
        log.console = False
    lock = LockFile(g.lock_file)
    try:
        lock.acquire()
    except LockExists:
        log.error(f"lockfile `{g.lock_file}' exists, perhaps conntrackd already running?")
        return 1
    except OSError as exc:
        log.error(f"can't create lockfile `{g.lock_file}': {exc.strerror}")
        return 1
    daemon = make_daemon(cfg, log)
    try:
        try:
            sock = bind_control_socket(g.unix.path)
        except OSError:
            log.error("can't open unix socket!")
            raise
        daemon.control = ControlServer(sock, g.unix.path, daemon.handle, daemon.bad_request,
                                       daemon.request_failed)
        daemon.init()
        check_helpers(cfg)     # the reference sets its helpers up after the mode
    except Exception as exc:  # noqa: BLE001 - every start-up failure ends the same way
        if isinstance(exc, StartError):
            for line in exc.lines:
                log.error(line)
        elif daemon.control is not None:     # (a control-socket failure is logged above)
            log.error(f"{type(exc).__name__}: {exc}")
        log.error("conntrackd cannot start, please review your configuration")
        daemon.shutdown()
        lock.release()
        return 1
    log.notice("initialization completed")
    try:
        os.chdir("/")
    except OSError as exc:
        log.warning(f"Cannot change current directory to /: {exc.strerror}")
    if detach:
        if _detach(log):
            os._exit(0)
        log.notice("-- starting in daemon mode --")
    else:
        log.notice("-- starting in console mode --")
    if g.systemd:
        notify(f"READY=1\nMAINPID={os.getpid()}")
    tune_gc()
    memdump = os.environ.get("CTOOLS_DAEMON_MEMDUMP")    # performance work: memory report
    if memdump:
        _install_memdump(memdump)
    profile_to = os.environ.get("CTOOLS_DAEMON_PROFILE")   # performance work: cProfile dump
    try:
        if profile_to:
            import cProfile

            cProfile.runctx("asyncio.run(daemon.run())", globals(), {"daemon": daemon,
                                                                     "asyncio": asyncio},
                            f"{profile_to}.{os.getpid()}")
        else:
            asyncio.run(daemon.run())
    except KeyboardInterrupt:
        pass
    finally:
        if g.systemd:
            notify("STOPPING=1")
        if daemon.control is not None:
            daemon.control.close()
        daemon.shutdown()
        lock.release()
        log.notice("---- shutdown received ----")
    return 0
