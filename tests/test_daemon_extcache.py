"""The external cache keeps the peer's flows as checked sync payloads (ctools.daemon.extcache)."""

import gc
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_sync_wire import entries

from ctools._speedups import load_ctfast
from ctools.daemon.commitfast import encode_for_create
from ctools.daemon.extcache import ExternalCache, decode_payload
from ctools.daemon.syncmode import _prepare_in_place
from ctools.model import IPS_ASSURED, IPS_CONFIRMED, IPS_SEEN_REPLY, Entry, Tuple
from ctools.sync import Apply, make_sync, wire
from ctools.sync.core import SyncParams


def _flow(j: int, timeout: int = 3600, mark: int | None = 0) -> Entry:
    o = Tuple(family=2, src=f"172.{16 + (j >> 16 & 15)}.{j >> 8 & 255}.{j & 255}",
              dst="192.168.200.1", proto=6, sport=1024 + (j % 60000), dport=443)
    r = Tuple(family=2, src=o.dst, dst=o.src, proto=6, sport=o.dport, dport=o.sport)
    return Entry(orig=o, reply=r, timeout=timeout, tcp_state=3, mark=mark,
                 status=IPS_ASSURED | IPS_SEEN_REPLY | IPS_CONFIRMED, id=j + 1, use=1,
                 tcp_flags_orig=(0x27, 0), tcp_flags_reply=(0x27, 0),
                 tcp_wscale_orig=7, tcp_wscale_reply=7)


def _replicate(n: int, cache: ExternalCache, kind: str = "new", mark: int | None = 0):
    """n flows from a sender core, through a receiver core, into ``cache`` as the daemon does;
    returns the receiver core."""
    tx = make_sync(SyncParams("ftfw", initial_seq=1000), 0.0)
    rx = make_sync(SyncParams("ftfw", initial_seq=5000, max_seq_jump=1 << 20), 0.0)
    now = 1.0
    for k in range(0, n, 500):
        for j in range(k, min(n, k + 500)):
            tx.local_update(kind, _flow(j, mark=mark), now)
        for d in tx.outgoing(now):
            for ev in rx.receive(d, now):
                if isinstance(ev, Apply):
                    assert ev.payload is not None and isinstance(ev.key, bytes)
                    (cache.add if ev.kind == "new" else cache.update)(ev.key, ev.payload, now)
        for d in rx.outgoing(now):
            tx.receive(d, now)
        now += 0.01
    return rx


def test_cached_flows_read_back_as_the_decoded_wire_state():
    c = ExternalCache()
    _replicate(300, c)
    assert len(c) == 300
    got = sorted((o.entry for o in c), key=lambda e: e.orig.sport)
    for j, e in enumerate(got):
        sent = wire.decode_ct_payload(wire.encode_ct_payload(_flow(j)))
        assert wire.encode_ct_payload(e) == wire.encode_ct_payload(sent)
        assert e.id is None and e.reply is None and e.synproxy is None
    # each read is a fresh object: a commit may change it in place
    o = next(iter(c))
    assert o.entry is not o.entry


def test_update_merges_attributes_and_keeps_since():
    c = ExternalCache()
    e = _flow(7)
    key = wire.scan_ct_payload(wire.encode_ct_payload(e))
    c.add(key, wire.encode_ct_payload(e), 1.0)
    # an update without a mark keeps the cached one; the timeout is the new one
    c.update(key, wire.encode_ct_payload(_flow(7, timeout=300, mark=None)), 2.0)
    (o,) = list(c)
    assert (o.entry.timeout, o.entry.mark, o.since, o.last) == (300, 0, 1.0, 2.0)
    assert c.counters.created == 1 and c.counters.updated == 1
    assert c.delete(key) is o and c.delete(key) is None
    assert (c.counters.destroyed, c.counters.del_not_found) == (1, 1)


def test_limit_and_expiry_are_counted():
    c = ExternalCache(limit=2, lifetime=10.0)
    keys = []
    for j in range(3):
        p = wire.encode_ct_payload(_flow(j))
        keys.append(wire.scan_ct_payload(p))
        c.add(keys[-1], p, float(j))
    assert len(c) == 2 and c.counters.no_space == 1
    c.update(keys[0], wire.encode_ct_payload(_flow(0)), 9.0)
    assert c.expire(15.0) == 1 and [o.last for o in c] == [9.0]


def test_receiver_memory_per_flow_stays_compact():
    """Core + external cache retain well under half of what decoded entries took (~1190 B
    per flow traced before the payload form; ~470 B after, receive guard included)."""
    n = 20000
    c = ExternalCache()
    gc.collect()
    tracemalloc.start()
    try:
        rx = _replicate(n, c)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(c) == n and rx.stats.applied >= n
    assert held / n < 650, f"{held / n:.0f} B per flow"


_c_commit = getattr(load_ctfast(), "commit_attrs", None)


@pytest.mark.skipif(_c_commit is None, reason="C accelerator not built")
@settings(max_examples=400, deadline=None)
@given(st.integers(0, 300000).map(_flow) | entries(), st.sampled_from([0.0, 1.5, 59.9, 4000.0]),
       st.sampled_from([0, 180]), st.booleans(), st.booleans())
def test_c_commit_attributes_are_the_python_ones(e, age, commit_timeout, liberal, no_mark):
    if no_mark:
        e.mark = None
    payload = wire.encode_ct_payload(e)
    fast = _c_commit(payload, age, commit_timeout, liberal)
    slow = decode_payload(payload)
    _prepare_in_place(slow, age, commit_timeout, liberal)
    if fast is not None:
        assert fast == encode_for_create(slow)


@pytest.mark.skipif(_c_commit is None, reason="C accelerator not built")
def test_c_commit_takes_the_common_flows():
    for e in (_flow(5), _flow(6, mark=None)):
        e.orig.proto = e.reply.proto = 17
        assert _c_commit(wire.encode_ct_payload(e), 3.0, 0, True) is not None
    assert _c_commit(wire.encode_ct_payload(_flow(7)), 3.0, 0, False) is not None
