"""Sender-side memory: the internal cache's compact FlowRecord must read, dump and encode
exactly like the Entry it replaces; the daemon loads no TLS library."""

from __future__ import annotations

import gc
import time
import tracemalloc

import pytest

from ctools.daemon import cache as cachemod
from ctools.daemon.cache import (
    CacheObject,
    FlowRecord,
    InternalCache,
    WideFlowRecord,
    compact,
    full_reply,
    merge_into,
    strip_volatile,
)
from ctools.daemon.dumpfmt import dump_cache
from ctools.daemon.kernel import inverse_tuple
from ctools.model import IPS_DST_NAT, IPS_DST_NAT_DONE, Entry, Tuple
from ctools.sync import wire


def _copy(e: Entry) -> Entry:
    c = Entry()
    for name in Entry.__slots__:
        value = getattr(e, name)
        if isinstance(value, Tuple):
            value = Tuple(**{n: getattr(value, n) for n in Tuple.__slots__})
        setattr(c, name, value)
    return c


def _tcp(i: int, **kw) -> Entry:
    o = Tuple(family=2, src=f"172.16.{i >> 8 & 255}.{i & 255}", dst="192.168.200.1", proto=6,
              sport=1024 + i, dport=443)
    fields = dict(orig=o, reply=inverse_tuple(o), status=14, timeout=3600, mark=0,
                  id=1000 + i, use=1, tcp_state=3, tcp_wscale_orig=7, tcp_wscale_reply=0,
                  tcp_flags_orig=(0x27, 0), tcp_flags_reply=(0x23, 0), synproxy=(0, 0, 0))
    fields.update(kw)
    return Entry(**fields)


def _shapes() -> list[Entry]:
    udp = Tuple(family=2, src="10.1.1.1", dst="10.2.2.2", proto=17, sport=5353, dport=53)
    icmp = Tuple(family=2, src="10.1.1.1", dst="10.2.2.2", proto=1, icmp_type=8, icmp_code=0,
                 icmp_id=77)
    v6 = Tuple(family=10, src="2001:db8::1", dst="2001:db8::2", proto=6, sport=40000,
               dport=22)
    nat_o = Tuple(family=2, src="10.1.1.1", dst="203.0.113.9", proto=6, sport=4000, dport=80)
    nat_r = Tuple(family=2, src="192.168.0.9", dst="10.1.1.1", proto=6, sport=8080, dport=4000)
    return [
        _tcp(1),
        _tcp(2, mark=5, zone=3, synproxy=None),
        _tcp(3, tcp_state=7, status=14 | (1 << 20), timeout=120),
        Entry(orig=udp, reply=inverse_tuple(udp), status=10, timeout=30, mark=0, id=9),
        Entry(orig=icmp, reply=inverse_tuple(icmp), status=8, timeout=29, id=10),
        Entry(orig=v6, reply=inverse_tuple(v6), status=14, timeout=431999, tcp_state=3, id=11,
              tcp_flags_orig=(0x27, 0), tcp_flags_reply=(0x27, 0), synproxy=(0, 0, 0)),
        Entry(orig=nat_o, reply=nat_r, status=14 | IPS_DST_NAT | IPS_DST_NAT_DONE,
              timeout=300, tcp_state=3, id=12),
        # attributes a record cannot hold: the cache keeps the Entry
        _tcp(20, helper="ftp"),
        _tcp(21, labels=1 << 5),
        _tcp(22, timestamp_start=1_700_000_000_000_000_000),
    ]


class _Listed:
    """A stand-in cache for dump_cache: the old storage, one CacheObject per Entry."""

    keep_reply = False

    def __init__(self, objs: list) -> None:
        self.objs = objs

    def __iter__(self):
        return iter(self.objs)


def _old_objects(entries: list[Entry], now: float) -> list[CacheObject]:
    return [CacheObject(compact(strip_volatile(_copy(e))), now) for e in entries]


@pytest.mark.parametrize("opts", [wire.EncodeOptions(),
                                  wire.EncodeOptions(tcp_window_tracking=True),
                                  wire.EncodeOptions(commit_timeout=60,
                                                     peer_version=(1, 4, 2))])
def test_records_encode_like_the_entries_they_replace(opts):
    shapes = _shapes()
    cache = InternalCache()
    for e in shapes:
        cache.add(strip_volatile(_copy(e)), 1.0)
    old = _old_objects(shapes, 1.0)
    got = list(cache)
    assert len(got) == len(old)
    for o, n in zip(old, got, strict=True):
        for kind in ("new", "upd", "del"):
            assert wire.encode_message(kind, n.entry, 7, 0, opts) == \
                wire.encode_message(kind, o.entry, 7, 0, opts)
        assert wire.obj_key(n.entry) == wire.obj_key(o.entry)


def test_ordinary_flows_are_records_others_keep_their_entry():
    cache = InternalCache()
    for e in _shapes():
        cache.add(strip_volatile(_copy(e)), 1.0)
    kinds = [type(o) for o in cache]
    assert kinds[:7] == [FlowRecord] * 7
    assert kinds[7:] == [CacheObject] * 3
    rec = cache.get(_shapes()[0].orig)
    assert rec.entry is rec and rec.reply is None and rec.helper is None
    assert full_reply(rec) == inverse_tuple(_shapes()[0].orig)
    assert rec == _shapes()[0].__class__(**{**_shapes()[0].as_dict(), "orig": rec.orig,
                                           "reply": None, "use": None})


@pytest.mark.parametrize("xml", [False, True])
def test_dumps_are_unchanged(xml):
    shapes = _shapes()
    cache = InternalCache()
    for e in shapes:
        cache.add(strip_volatile(_copy(e)), 1.0)
    old = _Listed(_old_objects(shapes, 1.0))
    before = [(o.entry.reply, o.entry.timeout) for o in cache]
    text = dump_cache(cache, 5.0, xml, False)
    assert text == dump_cache(old, 5.0, xml, False)
    assert text.count("\n") == len(shapes)
    # the dump restores what it changes for the moment
    assert [(o.entry.reply, o.entry.timeout) for o in cache] == before
    assert sum(o.entry.reply is None for o in cache) >= 5


def test_update_merges_into_a_record_and_widens_it_in_place():
    cache = InternalCache()
    first = cache.add(strip_volatile(_tcp(1)), 1.0)
    assert type(first) is FlowRecord
    obj = cache.update(strip_volatile(_tcp(1, tcp_state=4, timeout=119, mark=9)), 2.0)
    assert obj is first and obj.entry is obj
    assert (obj.tcp_state, obj.timeout, obj.mark, obj.last, obj.since) == (4, 119, 9, 2.0, 1.0)
    # a helper appears: the same object now holds it (a sync core may hold the record)
    obj = cache.update(strip_volatile(_tcp(1, helper="ftp", timeout=100)), 3.0)
    assert obj is first and obj.entry is obj and type(obj) is WideFlowRecord
    assert (obj.helper, obj.tcp_state, obj.mark, obj.timeout, obj.reply) == ("ftp", 3, 0, 100, None)
    assert obj.labels is None and obj.more == {"helper": "ftp"}
    assert cache.update(strip_volatile(_tcp(1, mark=1)), 4.0) is obj and obj.mark == 1
    assert obj.helper == "ftp"
    ref = compact(strip_volatile(_tcp(1, helper="ftp", mark=1)))
    for kind in ("new", "upd", "del"):
        assert wire.encode_message(kind, obj, 3) == wire.encode_message(kind, ref, 3)
    assert obj == ref and obj.to_entry() == ref
    assert len(cache) == 1 and cache.delete(_tcp(1).orig) is first


def test_destroy_merge_into_a_record_keeps_the_destroy_attributes():
    """The sync daemon merges a DESTROY event into ``obj.entry`` and sends ``obj.entry``."""
    cache = InternalCache()
    obj = cache.add(strip_volatile(_tcp(5)), 1.0)
    gone = strip_volatile(_tcp(5, tcp_state=7, labels=3, timestamp_stop=5, seq_adj_orig=(1, 2, 3),
                               seq_adj_reply=(4, 5, 6)))
    cache.delete(gone)
    merge_into(obj.entry, gone)
    sent = obj.entry
    assert sent is obj and type(sent) is WideFlowRecord
    assert (sent.labels, sent.tcp_state, sent.timestamp_stop) == (3, 7, 5)
    ref = compact(strip_volatile(_tcp(5)))
    merge_into(ref, gone)
    assert wire.encode_message("del", sent, 1) == wire.encode_message("del", ref, 1)
    assert dump_cache(_Listed([sent]), 2.0, True, False) == \
        dump_cache(_Listed([CacheObject(ref, 1.0)]), 2.0, True, False)
    # a plain destroy stays in the record
    obj = cache.add(strip_volatile(_tcp(6)), 1.0)
    merge_into(obj.entry, strip_volatile(_tcp(6, tcp_state=8)))
    assert obj.entry is obj and type(obj) is FlowRecord and obj.tcp_state == 8


def test_records_refuse_rare_attribute_writes_instead_of_losing_them():
    rec = InternalCache().add(strip_volatile(_tcp(1)), 1.0)
    with pytest.raises(AttributeError):
        rec.helper = "ftp"


def test_internal_flow_costs_at_most_about_450_bytes():
    n = 5000
    gc.collect()
    tracemalloc.start()
    try:
        cache = InternalCache()
        base = tracemalloc.get_traced_memory()[0]
        for i in range(n):
            cache.add(strip_volatile(_tcp(i, id=10**9 + i, timeout=3600 - i % 3)), 1.0)
        gc.collect()
        per_flow = (tracemalloc.get_traced_memory()[0] - base) / n
    finally:
        tracemalloc.stop()
    # record ~170, dict slot ~50-100, orig tuple 112, source address ~60, id and port 64
    # (an Entry per flow was ~690)
    assert per_flow < 520, per_flow
    assert len(cachemod._INTS) <= cachemod._INTS_MAX


# ---------------------------------------------------------------------------- real daemon

def test_idle_daemon_maps_no_tls_library(netns_factory, tmp_path):
    from daemon_helpers import OURS, Replica

    ns = netns_factory("cttx")
    ns.run("ip", "link", "set", "lo", "up")
    body = ("}\nSync {\n Mode FTFW { }\n"
            " UDP {\n  IPv4_address 127.0.0.1\n  IPv4_Destination_Address 127.0.0.2\n"
            "  Port 3791\n  Interface lo\n }\n}\n")
    r = Replica(ns, OURS, tmp_path, "tx", body)
    r.start()
    try:
        time.sleep(0.3)
        pid = r.proc.pid
        maps = open(f"/proc/{pid}/maps").read()
        assert "/usr/" in maps or "python" in maps        # really the daemon's map
        assert "libssl" not in maps
        assert "_ssl" not in maps
        assert r.ask("-s").returncode == 0
    finally:
        r.stop()


# ---------------------------------------------------------------------------- event stash

def test_event_stash_is_a_fifo_across_blocks_and_gives_blocks_back():
    from ctools.daemon.kernel import EventStash

    st = EventStash()
    sent = []
    got = []
    for i in range(12000):
        data = bytes([i & 255]) * (1 + (i * 7919) % 1500)
        v = st.room()
        assert len(v) >= st.ROOM
        v[:len(data)] = data
        st.commit(len(data))
        sent.append(data)
        if i % 3 == 0:          # a reader slower than the writer: blocks pile up
            got.append(bytes(st.popleft()))
    assert len(st) == len(sent) - len(got)
    assert len(st.blocks) > 3
    while len(st):
        got.append(bytes(st.popleft()))
    assert got == sent
    # drained: one block left, to be written again from its start
    assert len(st.blocks) == 1 and st.blocks[0].off == 0 and len(st.blocks[0].ends) == 0
    v = st.room()
    v[:3] = b"abc"
    st.commit(3)
    assert bytes(st.popleft()) == b"abc" and len(st) == 0 and not st


IGNORE_PORT = r"""
import json, time
from ctools.daemon.kernel import EventSocket, RequestSocket, inverse_tuple
from ctools.model import Entry, Tuple
ev = EventSocket()
mine, other = RequestSocket(), RequestSocket()
ok = ev.ignore_port(mine.portid)
def flows(base):
    out = []
    for j in range(base, base + 20):
        t = Tuple(family=2, src=f"10.9.0.{j}", dst="192.0.2.7", proto=6, sport=1000 + j,
                  dport=80)
        out.append(Entry(orig=t, reply=inverse_tuple(t), timeout=60, tcp_state=3, status=14))
    return out
assert not mine.create(flows(0)) and not other.create(flows(100))
time.sleep(0.2)
got = ev.read(1000)
print(json.dumps({"ok": ok, "srcs": sorted({e.orig.src for _k, e, _p in got}),
                  "dump": len(mine.dump())}))
"""


def test_event_filter_drops_only_the_ignored_ports_events(netns_factory):
    import json
    import sys

    ns = netns_factory("cttx")
    ns.enable_conntrack()
    res = json.loads(ns.run(sys.executable, "-c", IGNORE_PORT).stdout)
    assert res["ok"] is True
    assert res["srcs"] == sorted(f"10.9.0.{j}" for j in range(100, 120))
    assert res["dump"] == 40            # the shared receive buffer reads the whole table


def test_fits_record_checks_every_other_entry_attribute():
    assert cachemod.fits_record(Entry(orig=_tcp(1).orig, status=14, zone=2, synproxy=(0, 0, 0)))
    assert set(cachemod._RARE) | set(FlowRecord.__slots__) >= set(Entry.__slots__)
    for name in cachemod._RARE:
        e = strip_volatile(_tcp(1))
        setattr(e, name, 0)
        assert not cachemod.fits_record(e), name
        assert getattr(FlowRecord, name) is None


def test_event_stash_take_returns_batches_in_order():
    from ctools.daemon.kernel import EventStash

    st = EventStash()
    sent = [bytes([i & 255]) * (200 + i % 700) for i in range(9000)]
    got = []
    for i, data in enumerate(sent):
        v = st.room()
        v[:len(data)] = data
        st.commit(len(data))
        if i % 5 == 4:
            batch = st.take(3)
            assert len(batch) == 3
            got += [bytes(m) for m in batch]
    assert len(st.blocks) > 2
    while st:
        batch = st.take(1000)
        assert 0 < len(batch) <= 1000
        got += [bytes(m) for m in batch]
    assert got == sent and st.take(10) == [] and len(st.blocks) == 1


def test_tx_queue_gives_back_an_emptied_burst_table():
    import sys

    from ctools.sync.queues import TxQueue

    q = TxQueue()
    items = [q.put_object("new", strip_volatile(_tcp(i))) for i in range(5000)]
    big = sys.getsizeof(q.objs)
    for it in items:                    # what the FT-FW sender does as ACKs arrive
        q.objs.pop(it.key)
    q.fifo.clear()
    it = q.put_object("upd", strip_volatile(_tcp(7)))
    assert sys.getsizeof(q.objs) < big // 10
    assert q.objs == {it.key: it} and list(q.fifo) == [it]
    assert q.put_object("del", strip_volatile(_tcp(7))) is it and it.kind == "del"


# ---------------------------------------------------------------------------- control replies

def test_control_server_streams_text_bytes_chunks_and_awaitables(tmp_path):
    import asyncio

    from ctools.daemon.control import ControlError, request
    from ctools.daemon.server import ControlServer, bind_control_socket

    path = str(tmp_path / "ctl.sock")
    big = "".join(f"line {i}\n" for i in range(30000))

    def chunks():
        yield big[:100]
        yield big[100:].encode()

    def broken():
        yield "half"
        raise ValueError("formatter failed")

    async def later():
        return "done\n"

    replies = {1: lambda: big, 2: lambda: big.encode(), 3: chunks, 4: later, 5: broken,
               6: lambda: None, 7: lambda: iter(())}
    errors = []

    async def main():
        srv = ControlServer(bind_control_socket(path), path, lambda c, a: replies[c](),
                            lambda: None, lambda c, e: errors.append((c, str(e))))
        await srv.start()
        loop = asyncio.get_running_loop()
        got = {}
        for code in replies:
            try:
                got[code] = await loop.run_in_executor(None, lambda c=code: request(path, c,
                                                                                   timeout=5))
            except ControlError:
                got[code] = None
        srv.close()
        return got

    got = asyncio.run(main())
    assert got[1] == got[2] == got[3] == big.encode()
    assert got[4] == b"done\n" and got[6] == b"" and got[7] == b""
    assert got[5] == b"half" and errors == [(5, "formatter failed")]


def test_dump_chunks_join_to_the_whole_dump():
    from ctools.daemon.dumpfmt import dump_chunks

    cache = InternalCache()
    for i in range(1200):
        cache.add(strip_volatile(_tcp(i)), 1.0)
    for xml in (False, True):
        parts = list(dump_chunks(cache, 3.0, xml, False, lines=500))
        assert [p.count("\n") for p in parts] == [500, 500, 200]
        assert "".join(parts) == dump_cache(cache, 3.0, xml, False)
