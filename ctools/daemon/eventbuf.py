"""The kernel event socket's receive buffer, sized and grown as the reference daemon does
(shared by the sync and stats modes; the daemon object brings ``cfg``, ``events``, ``runtime``,
``log``, ``loop``, ``warned_growth`` and ``resync_handle``)."""

from __future__ import annotations

from collections.abc import Callable

_GROWTH_LIMIT = (
    "netlink event socket buffer size cannot be doubled further since it will "
    "exceed NetlinkBufferSizeMaxGrowth. We are likely to be losing events, this "
    "may lead to unsynchronized replicas. Please, consider increasing netlink "
    "socket buffer size via NetlinkBufferSize and NetlinkBufferSizeMaxGrowth "
    "clauses in conntrackd.conf")


def size_event_buffer(d) -> None:
    """Apply NetlinkBufferSize (when within NetlinkBufferSizeMaxGrowth) and log the size."""
    g = d.cfg.general
    want = g.netlink_buffer_size
    if want and (not g.netlink_buffer_size_max_grow or want <= g.netlink_buffer_size_max_grow):
        # the kernel doubles what it is asked for; the reference's socket ends up with
        # exactly NetlinkBufferSize (seen with ss -m), so ask for half
        size = d.events.set_buffer_size(want // 2)
    else:
        d.log.notice("NetlinkBufferSize is either not set or is greater than "
                     "NetlinkBufferSizeMaxGrowth. Using current system buffer size")
        size = d.events.buffer_size
    d.runtime.buffer_size = size
    d.log.notice(f"netlink event socket buffer size has been set to {size} bytes")


def grow_event_buffer(d, resync: Callable[[], None]) -> None:
    """ENOBUFS, events were lost: count it, double the buffer within
    NetlinkBufferSizeMaxGrowth (warn once beyond), schedule ``resync`` after
    NetlinkOverrunResync seconds."""
    g = d.cfg.general
    rt = d.runtime
    rt.overrun += 1
    rt.catch_failed += 1
    size = d.events.buffer_size
    limit = g.netlink_buffer_size_max_grow
    if limit and size * 2 <= limit:
        rt.buffer_size = d.events.set_buffer_size(size)     # doubled by the kernel
        d.log.notice(f"netlink event socket buffer size has been doubled to {rt.buffer_size} bytes")
    elif not d.warned_growth:
        d.warned_growth = True
        d.log.warning(_GROWTH_LIMIT)
    delay = g.netlink_overrun_resync
    if delay is not None and d.resync_handle is None:
        d.resync_handle = d.loop.call_later(delay, resync)
