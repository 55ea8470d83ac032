"""Counters the daemon keeps; the -s views (views.py) and JSON/metrics read them."""

from __future__ import annotations


class CacheCounters:
    """Per-cache counters (the reference daemon's cache statistics)."""

    __slots__ = ("created", "create_failed", "no_memory", "no_space",
                 "updated", "update_failed", "upd_not_found",
                 "destroyed", "destroy_failed", "del_not_found")

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}


class BypassCounters:
    """Internal-cache bypass (DisableInternalCache): what was forwarded straight on."""

    __slots__ = ("new", "updated", "destroyed")

    def __init__(self) -> None:
        self.new = self.updated = self.destroyed = 0

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}


class InjectCounters:
    """External-cache bypass (DisableExternalCache): direct kernel injection results."""

    __slots__ = ("created", "create_failed", "updated", "update_failed",
                 "destroyed", "destroy_failed")

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}


class RuntimeCounters:
    """Netlink and runtime counters (``-s runtime``)."""

    __slots__ = ("events_received", "events_filtered", "events_unknown", "catch_failed",
                 "dump_unknown", "overrun", "flush_kernel", "resync_kernel", "buffer_size",
                 "child_failed", "child_segfault", "child_termsig", "select_failed",
                 "wait_failed", "local_read_failed", "local_unknown")

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}


class LinkCounters:
    """Byte/packet/error counters of one dedicated link."""

    __slots__ = ("bytes_sent", "bytes_recv", "pkts_sent", "pkts_recv",
                 "error_sent", "error_recv")

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}


class TrafficCounters:
    """Traffic of the flows whose end was logged (statistics mode)."""

    __slots__ = ("bytes", "packets")

    def __init__(self) -> None:
        self.bytes = 0
        self.packets = 0
