"""Shared body of the receiver harnesses (receiver_ftfw/alarm/notrack) and their seed writer.

A fuzz input is a *script* for one protocol core: a sequence of records

    op (1 byte) then
      op % 16 in 0..9   receive: length (2 bytes BE) + that many bytes = one datagram
      op % 16 == 10     tick: 1 byte, time advances by byte/10 seconds
      op % 16 == 11     local update: 1 byte = (kind, template entry) of our own table
      op % 16 == 12     drain: take the outgoing datagrams
      op % 16 == 13     bulk send of the template entries
      op % 16 == 14     request a resync from the peer
      op % 16 == 15     receive a datagram that the daemon says came from a wrong peer

Invariants checked after every step:
* nothing raises (bad input is counted, never an exception);
* no phantom entries: every ``Apply`` event is exactly the (kind, object) that a data message
  received earlier decodes to, and each received message is applied at most once; a datagram
  from a wrong peer produces no event at all;
* counters are consistent: non-negative, never decreasing, ``malformed`` equals the sum of the
  six C kinds, ``rejected`` the sum of ours, ``pkts_recv`` the number of accepted datagrams;
* what the core sends is well formed: every outgoing datagram splits into valid messages,
  no larger than the channel's buffer.

    .venv/bin/python fuzz/receivers.py --write-seeds    # (re)write fuzz/corpus/receiver/
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import fuzzlib  # also puts the checkout on sys.path

from ctools.model import IPPROTO_TCP, IPPROTO_UDP, Entry, Tuple
from ctools.sync import Apply, SyncParams, make_sync, wire
from ctools.sync.stats import C_RECV_COUNTERS, OUR_REJECT_COUNTERS

CORPUS = "receiver"
KINDS = ("new", "upd", "del")
_LEN = struct.Struct(">H")


def _entry(i: int) -> Entry:
    """Template entry number ``i`` of our own table (what local updates replicate)."""
    proto = IPPROTO_TCP if i % 2 == 0 else IPPROTO_UDP
    orig = Tuple(family=2, src=f"10.0.0.{i + 1}", dst="10.0.1.1", proto=proto,
                 sport=40000 + i, dport=80)
    reply = Tuple(family=2, src="10.0.1.1", dst=f"10.0.0.{i + 1}", proto=proto,
                  sport=80, dport=40000 + i)
    e = Entry(orig, reply)
    e.status = 0xE if proto == IPPROTO_TCP else 0xA
    e.timeout = 120
    e.mark = i
    if proto == IPPROTO_TCP:
        e.tcp_state = 3
    return e


TEMPLATES = [_entry(i) for i in range(8)]


def _data_messages(datagram: bytes) -> list[tuple[str, object]]:
    """Every data message of a datagram that decodes, as (kind, object)."""
    out = []
    for item in wire.split_messages(datagram):
        if isinstance(item, wire.ProtocolError):
            continue
        header, off = item
        if not header.is_data:
            continue
        try:
            out.append(wire.decode_data(header, datagram[off:off + header.length]))
        except wire.ProtocolError:
            pass
    return out


class Checker:
    """Drives one core through a script and checks the invariants after each step."""

    def __init__(self, mode: str) -> None:
        self.params = SyncParams(mode, initial_seq=1000)
        self.now = 100.0
        self.core = make_sync(self.params, self.now)
        self.last = self.core.stats.as_dict()
        self.accepted = 0
        self.external: dict = {}
        self.received: dict = {}

    def receive(self, datagram: bytes, peer_ok: bool = True) -> None:
        events = self.core.receive(datagram, self.now, peer_ok=peer_ok)
        if peer_ok:
            self.accepted += 1
            # FT-FW may hold a message back until a gap is filled, so an Apply can come
            # from any earlier datagram: compare against everything received so far.
            for kind, obj in _data_messages(datagram):
                item = (kind, repr(obj))  # entries are unhashable; repr shows every field
                self.received[item] = self.received.get(item, 0) + 1
        else:
            assert not events, f"events from a datagram of a wrong peer: {events}"
        for ev in events:
            if not isinstance(ev, Apply):
                continue
            assert ev.kind in KINDS, ev.kind
            item = (ev.kind, repr(ev.obj))
            assert self.received.get(item, 0) > 0, f"phantom {ev.kind} {ev.obj!r}"
            # Each received message is applied at most once.
            self.received[item] -= 1
            key = wire.obj_key(ev.obj)
            if ev.kind == "del":
                self.external.pop(key, None)
            else:
                self.external[key] = ev.obj
        self.check_counters()

    def check_counters(self) -> None:
        s = self.core.stats.as_dict()
        for name, value in s.items():
            assert isinstance(value, int) and value >= 0, f"{name}={value!r}"
            assert value >= self.last[name], f"{name} went down {self.last[name]} -> {value}"
        assert s["malformed"] == sum(s[k] for k in C_RECV_COUNTERS[1:]), s
        assert s["rejected"] == sum(s[k] for k in OUR_REJECT_COUNTERS), s
        assert s["pkts_recv"] == self.accepted, (s["pkts_recv"], self.accepted)
        self.last = s

    def drain(self) -> None:
        for dgram in self.core.outgoing(self.now):
            assert 0 < len(dgram) < self.params.buffer_size + wire.MAX_MESSAGE, len(dgram)
            for item in wire.split_messages(dgram):
                assert not isinstance(item, wire.ProtocolError), f"we sent garbage: {item}"
                header, off = item
                if header.is_data:
                    wire.decode_data(header, dgram[off:off + header.length])
        self.check_counters()

    def run(self, data: bytes) -> None:
        off, n = 0, len(data)
        while off < n:
            op = data[off] % 16
            off += 1
            if op <= 9 or op == 15:
                if off + 2 > n:
                    self.receive(data[off:])
                    break
                (length,) = _LEN.unpack_from(data, off)
                off += 2
                self.receive(data[off:off + length], peer_ok=(op != 15))
                off += length
            elif op == 10:
                self.now += (data[off] if off < n else 1) / 10
                off += 1
                self.core.tick(self.now)
                deadline = self.core.next_deadline()
                assert deadline is None or deadline == deadline  # not NaN
            elif op == 11:
                sel = data[off] if off < n else 0
                off += 1
                self.core.local_update(KINDS[sel % 3], TEMPLATES[(sel // 3) % len(TEMPLATES)],
                                       self.now)
            elif op == 12:
                self.drain()
            elif op == 13:
                self.core.bulk_send(TEMPLATES, self.now)
            elif op == 14:
                self.core.request_resync(self.now)
        self.drain()


def test_one_input(mode: str, data: bytes) -> None:
    Checker(mode).run(data)


# --- seeds ---------------------------------------------------------------------------------

def _record_receive(dgram: bytes) -> bytes:
    return b"\x00" + _LEN.pack(len(dgram)) + dgram


def seed_scripts(mode: str) -> list[bytes]:
    """Realistic scripts: a peer core's real output (new/upd/del, bulk, resync, ALIVE)."""
    peer = make_sync(SyncParams(mode, initial_seq=5000), 100.0)
    now = 100.0
    scripts = []
    for plan in ([("new", 0), ("new", 1), ("upd", 0), ("del", 1)],
                 [("new", i) for i in range(8)],
                 [("upd", 2), ("del", 2), ("new", 2)]):
        script = b""
        for kind, i in plan:
            peer.local_update(kind, TEMPLATES[i], now)
            for dgram in peer.outgoing(now):
                script += _record_receive(dgram) + b"\x0c"
        now += 2.0
        peer.tick(now)
        for dgram in peer.outgoing(now):
            script += b"\x0a\x14" + _record_receive(dgram)
        scripts.append(script + b"\x0b\x00\x0c")
    peer.request_resync(now)
    peer.bulk_send(TEMPLATES, now)
    scripts.append(b"".join(_record_receive(d) for d in peer.outgoing(now)) + b"\x0e\x0c")
    return scripts


def write_seeds(folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for mode in ("ftfw", "alarm", "notrack"):
        for i, script in enumerate(seed_scripts(mode)):
            (folder / f"{mode}-{i}.bin").write_bytes(script)
            count += 1
    # Real datagrams of the C daemon, when the sync corpus has them: one script each.
    for i, dgram in enumerate(fuzzlib.seeds("sync")[:64]):
        (folder / f"c-capture-{i:02d}.bin").write_bytes(_record_receive(dgram[:65535]))
        count += 1
    return count


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-seeds"]:
        print(write_seeds(fuzzlib.CORPUS_DIR / CORPUS), "seeds written")
    else:
        print(__doc__)
