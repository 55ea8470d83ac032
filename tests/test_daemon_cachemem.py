"""Memory-sharing in the internal cache: shared ints must not change what a flow holds."""

from ctools.daemon import cache as cachemod
from ctools.daemon.cache import InternalCache
from ctools.model import Entry, Tuple


def _flow(i: int, timeout: int = 432000, status: int = 14 | (1 << 20)) -> Entry:
    o = Tuple(family=2, src=f"10.0.{i >> 8}.{i & 255}", dst="192.168.1.1", proto=6,
              sport=1024 + i, dport=80)
    return Entry(orig=o, status=status, timeout=timeout, tcp_state=3)


def test_sharing_is_bounded_and_values_survive_past_the_bound():
    c = InternalCache()
    n = cachemod._INTS_MAX + 100
    for i in range(n):
        c.add(_flow(i % 60000, timeout=100000 + i), 1.0)
    assert len(cachemod._INTS) <= cachemod._INTS_MAX
    got = sorted(o.entry.timeout for o in c)
    assert got == [100000 + i for i in range(n)]


def test_internal_flows_share_equal_timeouts_and_keep_values():
    c = InternalCache()
    for i in range(50):
        c.add(_flow(i), 1.0)
    objs = list(c)
    assert len(objs) == 50
    assert all(o.entry.timeout == 432000 and o.entry.status == 14 | (1 << 20) for o in objs)
    # one shared object for each distinct large value, not one per flow
    assert len({id(o.entry.timeout) for o in objs}) == 1
    assert len({id(o.entry.status) for o in objs}) == 1
