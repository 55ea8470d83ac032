"""Opt-in authenticated sync (HMAC-SHA256 frames with an epoch and a counter): nothing forged,
mutated or replayed creates, resurrects or alters an entry; restarts are recognised by the
epoch; a C daemon cannot take part (it counts our frames as a wrong protocol version)."""

from __future__ import annotations

import random
import socket
import struct
import time

import pytest
from test_sync_hardening import Attacker, run_storm  # noqa: E402  (same folder)

from ctools.model import Entry, Tuple
from ctools.sync import Apply, PeerRestarted, SyncParams, make_sync, wire
from ctools.sync.auth import AuthFramer
from ctools.sync.pair import Pair, diff

KEY = b"0123456789abcdef0123456789abcdef"
AF_INET = socket.AF_INET


def entry(i: int, timeout: int = 300) -> Entry:
    return Entry(orig=Tuple(AF_INET, f"10.2.{(i >> 8) & 255}.{i & 255}", "192.168.0.1", 6,
                            3000 + i, 22), status=0x18E, tcp_state=3, timeout=timeout)


def params(mode="ftfw", seq=1000, epoch=1, key=KEY, **kw):
    kw.setdefault("rng", random.Random(seq))
    return SyncParams(mode, initial_seq=seq, auth_key=key, epoch=epoch, **kw)


def test_frame_layout_and_round_trip():
    a = make_sync(params(), 0.0)
    b = make_sync(params(seq=7), 0.0)
    a.local_update("new", entry(1), 0.0)
    (frame,) = a.outgoing(0.0)
    magic, version, total, epoch, counter = struct.unpack_from(">BBHIQ", frame)
    assert (magic, version, total, epoch, counter) == (0xC7, 1, len(frame), 1, 1)
    assert len(frame) == 16 + len(wire.encode_message("new", entry(1), 1000, wire.F_HELLO)) + 32
    events = b.receive(frame, 0.0)
    assert [ev.obj for ev in events if isinstance(ev, Apply)] == [entry(1)] or \
        [wire.obj_key(ev.obj) for ev in events if isinstance(ev, Apply)] == \
        [wire.obj_key(entry(1))]


def test_buffer_size_leaves_room_for_the_frame():
    assert params().buffer_size == 1500 - 28 - 48
    a = make_sync(params(), 0.0)
    for i in range(300):
        a.local_update("new", entry(i), 0.0)
    assert max(len(f) for f in a.outgoing(0.0)) <= 1500 - 28 - 1


@pytest.mark.parametrize("where", [0, 5, 13, 20, 40, -1])
def test_any_flipped_bit_is_rejected(where):
    a = make_sync(params(), 0.0)
    b = make_sync(params(seq=7), 0.0)
    a.local_update("new", entry(1), 0.0)
    (frame,) = a.outgoing(0.0)
    bad = bytearray(frame)
    bad[where] ^= 0x01
    assert b.receive(bytes(bad), 0.0) == []
    assert b.stats.auth_failed == 1 and b.stats.rejected == 1


def test_wrong_key_truncation_and_plain_c_datagrams_are_rejected():
    a = make_sync(params(key=b"another key of 32 bytes........."), 0.0)
    b = make_sync(params(seq=7), 0.0)
    a.local_update("new", entry(1), 0.0)
    (frame,) = a.outgoing(0.0)
    assert b.receive(frame, 0.0) == []
    assert b.receive(frame[:30], 0.0) == []
    assert b.receive(wire.encode_message("new", entry(2), 5), 0.0) == []
    assert b.stats.auth_failed == 3


def test_replays_are_rejected_and_reordering_is_tolerated():
    a = make_sync(params(mtu=200), 0.0)
    b = make_sync(params(seq=7), 0.0)
    for i in range(10):
        a.local_update("new", entry(i), 0.0)
    frames = a.outgoing(0.0)
    assert len(frames) >= 3
    got = []
    for f in [frames[1], frames[0]] + frames[2:]:          # reordered
        got += b.receive(f, 0.0)
    assert b.stats.auth_failed == 0 and b.stats.replayed == 0
    for f in frames:                                       # every one replayed
        assert b.receive(f, 1.0) == []
    assert b.stats.replayed == len(frames)


def test_epoch_survives_restarts_old_epochs_are_refused_new_ones_mean_restart():
    b = make_sync(params(seq=7), 0.0)
    old = make_sync(params(epoch=5), 0.0)
    old.local_update("new", entry(1), 0.0)
    (old_frame,) = old.outgoing(0.0)
    assert b.receive(old_frame, 0.0)
    new = make_sync(params(epoch=6, seq=10), 1.0)          # restarted, lower sequence base
    new.local_update("new", entry(2), 1.0)
    (new_frame,) = new.outgoing(1.0)
    events = b.receive(new_frame, 1.0)
    assert any(isinstance(ev, PeerRestarted) for ev in events)
    assert any(isinstance(ev, Apply) for ev in events)
    old.local_update("del", entry(1), 2.0)                 # the old incarnation's frames
    (stale,) = old.outgoing(2.0)
    assert b.receive(stale, 2.0) == [] and b.stats.stale_epoch == 1


@pytest.mark.parametrize("mode", ["ftfw", "notrack", "alarm"])
def test_mutation_storm_in_authenticated_mode_changes_nothing(mode):
    """1-3 bit flips, truncations, splices and replays: every one is refused before it reaches
    the protocol; zero phantoms, zero resurrections, replication goes on."""
    attacker = Attacker(seed=11, rate=4, max_flips=3)
    p = Pair(params(mode, seq=1795607000, refresh_time=5), params(mode, seq=5, epoch=9),
             seed=2, tamper=attacker)
    p.run(1.5)
    violations = run_storm(p, attacker, rounds=500, seed=4)
    assert attacker.sent >= 1500
    assert violations == []
    s = p.b.core.stats
    # (an exact copy of a datagram still in flight can arrive first: then the original is
    # the "replay" — same bytes, harmless)
    assert s.auth_failed + s.replayed >= 0.98 * attacker.sent
    attacker.active = False
    for i in range(2000, 2050):
        p.a.update("new", entry(i), p.now)
    p.run(p.now + (4.0 if mode != "alarm" else 12.0))
    assert diff(p.a.internal, p.b.external) == (set(), set(), set())


def test_authenticated_pair_converges_under_loss():
    p = Pair(params(seq=3), params(seq=4, epoch=2), seed=6, loss_ab=0.1, loss_ba=0.1)
    p.run(1.5)
    for i in range(3000):
        p.a.update("new", entry(i), p.now)
    p.run(p.now + 5.0)
    assert p.converged()


def test_key_too_short_is_refused():
    with pytest.raises(ValueError):
        SyncParams(auth_key=b"short")


@pytest.mark.root
@pytest.mark.reference
def test_a_c_daemon_counts_our_frames_as_wrong_protocol_version(netns, ref_conntrackd, tmp_path):
    """Live: a real conntrackd (NOTRACK, UDP) receives one authenticated frame and counts it
    under 'Wrong protocol version'; it cannot join an authenticated cluster."""
    netns.run("ip", "addr", "add", "127.0.0.2/8", "dev", "lo")
    conf = tmp_path / "c.conf"
    conf.write_text(f"""General {{
    LogFile {tmp_path}/log
    Syslog off
    LockFile {tmp_path}/lock
    UNIX {{ Path {tmp_path}/ctl }}
}}
Sync {{
    Mode NOTRACK {{ }}
    UDP {{
        IPv4_address 127.0.0.1
        IPv4_Destination_Address 127.0.0.2
        Port 3799
        Interface lo
    }}
}}
""")
    netns.spawn(ref_conntrackd, "-C", str(conf))
    deadline = time.time() + 5
    while not (tmp_path / "ctl").exists() and time.time() < deadline:
        time.sleep(0.1)
    framer = AuthFramer(KEY, 1)
    frame = framer.seal(wire.encode_message("new", entry(1), 5))
    sender = ("import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM);"
              "s.sendto(bytes.fromhex(sys.argv[1]), ('127.0.0.1', 3799))")
    netns.run("python3", "-c", sender, frame.hex())
    time.sleep(0.5)
    out = netns.run(ref_conntrackd, "-C", str(conf), "-s", "network").stdout.decode()
    line = next(x for x in out.splitlines() if "Wrong protocol version" in x)
    assert int(line.split(":")[1].split()[0]) >= 1, out
    ext = netns.run(ref_conntrackd, "-C", str(conf), "-e").stdout.decode()
    assert "10.2.0.1" not in ext
