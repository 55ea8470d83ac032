"""The live fuzzer against our running conntrackd (root): a short session must find nothing.

fuzz/live.py sends mutated sync datagrams (good, zero and wrong UDP checksums) from the
peer's namespace into our daemon for a few seconds, then checks it is alive, holds no phantom
or resurrected entry and still replicates. Longer sessions: `fuzz/live.py -t 300`.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
from pathlib import Path

import pytest
from conftest import REF_CONNTRACK, need_root

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "fuzz"))

import live  # noqa: E402

SECONDS = float(os.environ.get("FUZZ_LIVE_SECONDS", "8"))


def test_udp_checksum_matches_the_kernel_rule() -> None:
    """Our checksum is the one the receiving kernel verifies (RFC 768, with pseudo-header)."""
    payload = b"\x1a\x10\x00\x08\x00\x00\x00\x01"
    header = struct.pack("!HHHH", 3780, 3780, 8 + len(payload), 0)
    csum = live.udp_checksum("10.78.0.1", "10.78.0.2", header + payload)
    pseudo = socket.inet_aton("10.78.0.1") + socket.inet_aton("10.78.0.2") + \
        struct.pack("!BBH", 0, 17, len(header + payload))
    data = pseudo + header[:6] + struct.pack("!H", csum) + payload
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    assert total == 0xFFFF


def test_flow_keys_of_a_cache_dump() -> None:
    text = ("tcp      6 ESTABLISHED src=192.168.9.1 dst=192.168.8.1 sport=1000 dport=80 "
            "[ASSURED] mark=0 [active since 3s]\n"
            "unknown  2 src=1.1.1.1 dst=224.0.0.1 mark=0 [active since 1s]\n")
    assert live.flow_keys(text) == {(6, "192.168.9.1", "192.168.8.1", 1000, 80),
                                    (2, "1.1.1.1", "224.0.0.1", None, None)}


@pytest.mark.root
def test_live_fuzz_ftfw_short() -> None:
    need_root()
    if REF_CONNTRACK is None:
        pytest.skip("the live fuzzer creates flows with the reference conntrack")
    res = live.run(SECONDS, "ftfw", seed=20261125, peer="ours", target="ours", quiet=True)
    assert res["sent"] > 1000, res
    assert not res["findings"], (res["findings"], res["stats"], res["daemon_logs"])
