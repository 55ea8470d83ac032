"""Queue items shared by the senders: cache objects (serialised at transmit time) and control
messages (ACK / NACK / RESYNC / ALIVE)."""

from __future__ import annotations

from collections import deque
from sys import getsizeof as _getsizeof

from ctools.model import Entry, Expect
from ctools.sync import wire

TX, RS = "tx", "rs"
_SHRINK_AT = 1 << 16        # bytes of an empty key table worth giving back


class ObjItem:
    """A cache object waiting in the tx or resend queue. ``kind`` decides the message type at
    transmit time ('new' | 'upd' | 'del'), like the C object's status does."""

    __slots__ = ("key", "kind", "obj", "seq", "where", "sent", "sent_at")

    def __init__(self, key: tuple, kind: str, obj: Entry | Expect) -> None:
        self.key = key
        self.kind = kind
        self.obj = obj
        self.seq = 0
        self.where: str | None = None
        self.sent = False
        self.sent_at = 0.0

    def describe(self) -> str:
        return f"{self.kind} {wire.obj_key(self.obj)}"


class CtlItem:
    """A control message; ``flags`` accumulates HELLO bits across retransmissions (as C)."""

    __slots__ = ("flags", "frm", "to", "seq", "where", "sent_at")

    def __init__(self, flags: int, frm: int = 0, to: int = 0) -> None:
        self.flags = flags
        self.frm = frm
        self.to = to
        self.seq = 0
        self.where: str | None = None
        self.sent_at = 0.0

    def describe(self) -> str:
        return f"control flags:{self.flags:#x} [{self.frm},{self.to}]"


class TxQueue:
    """FIFO of items to transmit with the C coalescing rule: an object already queued is not
    queued twice (its latest state and kind win)."""

    def __init__(self) -> None:
        self.fifo: deque = deque()
        self.objs: dict[tuple, ObjItem] = {}   # key -> item, for items in tx (or rs: FT-FW)

    def __len__(self) -> int:
        return len(self.fifo)

    def put_object(self, kind: str, obj: Entry | Expect, key: tuple | None = None) -> ObjItem:
        """Queue ``obj`` (``key``: its ``wire.obj_key``, when the caller has it already)."""
        if key is None:
            key = wire.obj_key(obj)
        objs = self.objs
        it = objs.get(key)
        if it is None:
            if not objs and _getsizeof(objs) > _SHRINK_AT:
                # a burst left its table behind (a dict never shrinks as items leave): a
                # 100k burst's is 5 MB, kept for good otherwise
                self.objs = objs = {}
            it = ObjItem(key, kind, obj)
            objs[key] = it
        else:
            it.kind = kind
            it.obj = obj
            if it.where == TX:
                return it
        it.where = TX
        self.fifo.append(it)
        return it

    def put_control(self, item: CtlItem) -> None:
        item.where = TX
        self.fifo.append(item)
