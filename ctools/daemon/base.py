"""What every running mode shares: start time, runtime counters, the control socket,
signal handling, kernel flush (-F), and the request dispatch skeleton."""

from __future__ import annotations

import asyncio
import signal
import time

from ctools.config import model as cfgm
from ctools.daemon import views
from ctools.daemon.control import Req
from ctools.daemon.filter import FlowFilter
from ctools.daemon.log import DaemonLog
from ctools.daemon.server import ControlServer
from ctools.daemon.stats import RuntimeCounters


class StartError(Exception):
    """Initialisation failed; ``lines`` are the ERROR messages to log (reference wording)."""

    def __init__(self, *lines: str) -> None:
        super().__init__(lines[0] if lines else "")
        self.lines = lines


class Daemon:
    """Base of the running modes. Subclasses add ``handle_<request>`` behaviour."""

    mode_name = "none"

    def __init__(self, cfg: cfgm.Config, log: DaemonLog) -> None:
        self.cfg = cfg
        self.log = log
        self.started = time.time()
        self.runtime = RuntimeCounters()
        self.filter = FlowFilter(cfg.general.filter)
        self.control: ControlServer | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopping: asyncio.Event | None = None
        self.children: list[tuple[int, str]] = []
        self.request_sock = None
        self.metrics = None

    # ---- life cycle
    def init(self) -> None:
        """Open sockets (synchronous, before a fork). Raise OSError/RuntimeError on failure."""

    async def start(self) -> None:
        """Register readers and timers on the running loop."""

    def shutdown(self) -> None:
        """Close everything the mode opened."""

    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.loop.add_signal_handler(sig, self.stop)
        self.loop.add_signal_handler(signal.SIGPIPE, lambda: None)
        if self.control is not None:
            await self.control.start()
        metrics = self.cfg.general.metrics
        if metrics is not None:
            from ctools.daemon.metrics import MetricsServer

            self.metrics = MetricsServer(self, metrics.address, metrics.port)
            try:
                await self.metrics.start()
            except OSError as exc:
                self.log.error(f"can't open metrics endpoint {metrics.address}:{metrics.port}: "
                               f"{exc.strerror}")
                self.metrics = None
        await self.start()
        await self.stopping.wait()

    def stop(self) -> None:
        if self.stopping is not None:
            self.stopping.set()

    # ---- requests
    def bad_request(self) -> None:
        self.runtime.local_read_failed += 1

    def request_failed(self, code: int, exc: Exception) -> None:
        self.log.error(f"request {code} failed: {type(exc).__name__}: {exc}")

    def handle(self, code: int, arg: int | None):
        """Dispatch one control request; returns text, None, or an awaitable."""
        if code == Req.KILL:
            self.stop()
            return None
        if code == Req.STATS_RUNTIME:
            return self.view_runtime()
        if code == Req.STATS_PROCESS:
            return views.process_block(self.children)
        if code == Req.JSON_VIEW:
            from ctools.daemon.jsonview import json_view

            return json_view(self, arg if arg is not None else int(Req.STATS))
        if code == Req.HEALTH:
            from ctools.daemon.health import health_reply

            return health_reply(self)
        return self.handle_mode(code)

    def handle_mode(self, code: int):
        return None

    def view_runtime(self) -> str:
        self.update_buffer_size()
        return views.runtime_block(time.time() - self.started, self.runtime)

    def update_buffer_size(self) -> None:
        pass

    # ---- kernel flush shared by -F and the -t alarm
    def flush_kernel(self, what: str = "ct") -> None:
        """Delete every kernel entry the Filter accepts (others are kept)."""
        if self.request_sock is None:
            return
        try:
            entries = [e for e in self.request_sock.dump() if self.filter.accepts(e)]
            self.request_sock.delete(entries)
        except OSError as exc:
            self.log.error(f"flush kernel table failed: {exc}")

    def peer_silence(self) -> float | None:
        return None
