"""The compact receive-guard structures evict exactly like the OrderedDict LRU they replace."""

import random

from ctools.sync.guard import _Lru, _LruSet


def test_lru_set_matches_ordered_dict_lru():
    rng = random.Random(7)
    for cap in (1, 3, 50):
        ref, new = _Lru(cap), _LruSet(cap)
        for _ in range(20_000):
            k = rng.randrange(cap * 3)
            if rng.random() < 0.5:
                assert (k in ref) == (k in new)
            else:
                ref.touch(k)
                new.touch(k)
            assert len(ref) == len(new)
        assert set(ref) == set(new._count)
        assert len(new._touches) <= 2 * cap + 64


def _fields(e):
    o = e.orig
    return (o.family, o.src, o.dst, o.proto, o.sport, o.dport, e.tcp_state, e.status, e.timeout,
            e.mark, e.helper, e.labels, e.zone, e.nat_src, e.nat_dst)


def test_inlined_ct_decode_agrees_with_the_generic_attribute_walk():
    """decode_ct_payload reads common attributes in place: on mutated payloads it must accept
    and reject exactly what iter_attrs does, with the same error, and read the same values."""
    from ctools.model import Entry, Tuple
    from ctools.sync import wire

    rng = random.Random(11)
    e = Entry(orig=Tuple(family=2, src="10.1.2.3", dst="192.168.7.9", proto=6, sport=40000,
                         dport=443), tcp_state=3, status=0x18E, timeout=120, mark=7,
              helper="ftp", labels=5, zone=3)
    base = wire.encode_message("new", e, 1)[wire.HDR_LEN:]
    assert _fields(wire.decode_ct_payload(base))[:10] == (2, "10.1.2.3", "192.168.7.9", 6, 40000,
                                                          443, 3, 0x18E, 120, 7)
    outcomes = set()
    for _ in range(3000):
        p = bytearray(base)
        for _ in range(rng.randint(1, 3)):
            p[rng.randrange(len(p))] = rng.randrange(256)
        p = bytes(p[:rng.randrange(len(p) + 1)] if rng.random() < 0.2 else p)
        try:
            walked = [(s.id, s.unpack(raw)) for s, raw in wire.iter_attrs(p, wire.CT_ATTRS)]
            want_err = None
        except wire.ProtocolError as exc:
            want_err = str(exc)
        try:
            got = wire.decode_ct_payload(p)
            got_err = None
        except wire.ProtocolError as exc:
            got_err = str(exc)
        assert got_err == want_err, p.hex()
        outcomes.add(want_err is None)
        if got_err is None:
            last = dict(walked)
            o = got.orig
            for i, value in ((2, o.proto), (4, got.tcp_state), (5, got.status),
                             (6, got.timeout), (7, got.mark)):
                assert last.get(i) == value
            if 0 in last and 1 not in last:
                assert (o.src, o.dst) == last[0]
            if 3 in last:
                assert (o.sport, o.dport) == last[3]
    assert outcomes == {True, False}
