"""In-memory caches of one replica, with the C daemon's update rules (spec §7.1, §7.3)."""

from __future__ import annotations

from ctools.model import Entry

_FIELDS = Entry.__slots__


def merge_into(dst: Entry, src: Entry) -> None:
    """Copy the attributes ``src`` carries into ``dst`` (absent ones keep their old value)."""
    for name in _FIELDS:
        value = getattr(src, name)
        if value is not None:
            setattr(dst, name, value)


def copy_entry(src: Entry) -> Entry:
    """A fresh Entry object with the same attributes (tuples are shared; they are immutable)."""
    e = Entry()
    merge_into(e, src)
    return e


class InternalCache:
    """Mirror of the local kernel table. Objects are mutated in place on UPDATE, because the
    protocol core holds references to queued objects and serialises them at transmit time."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries: dict[tuple, Entry] = {}

    def new(self, event: Entry) -> Entry:
        obj = copy_entry(event)
        self.entries[obj.key()] = obj
        return obj

    def update(self, event: Entry) -> Entry:
        obj = self.entries.get(event.key())
        if obj is None:
            return self.new(event)
        merge_into(obj, event)
        return obj

    def destroy(self, event: Entry) -> Entry | None:
        return self.entries.pop(event.key(), None)

    def objects(self) -> list[Entry]:
        return list(self.entries.values())


class ExternalCache:
    """States received from peers. NEW replaces, UPD merges (or inserts), DEL removes.

    ``expiry_us`` (ALARM's CacheTimeout) makes entries expire unless refreshed; ``None`` keeps
    them forever (FT-FW, NOTRACK).
    """

    __slots__ = ("entries", "updated_us", "expiry_us")

    def __init__(self, expiry_us: int | None = None) -> None:
        self.entries: dict[tuple, Entry] = {}
        self.updated_us: dict[tuple, int] = {}
        self.expiry_us = expiry_us

    def apply(self, kind: str, obj: Entry, now_us: int) -> Entry | None:
        """Apply one received message; returns the stored entry (None after a delete)."""
        key = obj.key()
        if kind == "del":
            self.entries.pop(key, None)
            self.updated_us.pop(key, None)
            return None
        if kind == "new" or key not in self.entries:
            stored = copy_entry(obj)
            self.entries[key] = stored
        else:
            stored = self.entries[key]
            merge_into(stored, obj)
        self.updated_us[key] = now_us
        return stored

    def expire(self, key: tuple, now_us: int) -> bool:
        """Drop ``key`` if it was not refreshed for ``expiry_us``; True when it was dropped."""
        if self.expiry_us is None or key not in self.entries:
            return False
        if now_us - self.updated_us[key] >= self.expiry_us:
            del self.entries[key]
            del self.updated_us[key]
            return True
        return False

    def clear(self) -> None:
        self.entries.clear()
        self.updated_us.clear()
