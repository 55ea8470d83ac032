"""Harness: the authenticated sync framing (ctools.sync.auth) and an authenticated receiver.

Invariants:
* arbitrary bytes never authenticate: ``AuthVerifier.open`` returns None (counted) and an
  authenticated FT-FW core fed them returns no event at all;
* a frame sealed from arbitrary payload bytes opens to exactly those bytes, once: the same
  frame again is a counted replay;
* any single flipped bit of a genuine frame is refused.

Runs without atheris: ``fuzzlib.smoke`` feeds it seeded mutations of fuzz/corpus/sync/.
"""

from __future__ import annotations

import fuzzlib  # noqa: F401  (puts the checkout on sys.path)

from ctools.sync import SyncParams, make_sync
from ctools.sync.auth import AuthFramer, AuthVerifier
from ctools.sync.stats import SyncStats

CORPUS = "sync"
KEY = b"fuzzing key, 32 bytes long......"


def TestOneInput(data: bytes) -> None:
    stats = SyncStats()
    # 1. raw bytes are not a frame
    assert AuthVerifier(KEY).open(data, stats) is None
    core = make_sync(SyncParams("ftfw", initial_seq=1, auth_key=KEY, epoch=1), 0.0)
    assert core.receive(data, 0.0) == []
    assert core.stats.rejected == 1
    # 2. sealing round trip, once only
    payload = data[:60000]
    frame = AuthFramer(KEY, 3).seal(payload)
    verifier = AuthVerifier(KEY)
    assert verifier.open(frame, stats) == payload
    assert verifier.open(frame, stats) is None and stats.replayed == 1
    # 3. one flipped bit (position chosen by the input) is refused
    if data:
        bit = int.from_bytes(data[:4].ljust(4, b"\0"), "big") % (len(frame) * 8)
        bad = bytearray(frame)
        bad[bit // 8] ^= 1 << (bit % 8)
        assert AuthVerifier(KEY).open(bytes(bad), stats) is None


if __name__ == "__main__":
    import sys

    n = fuzzlib.smoke(TestOneInput, fuzzlib.seeds(CORPUS), runs=3000, seconds=10)
    print("ok", n)
    sys.exit(0)
