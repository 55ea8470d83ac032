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
