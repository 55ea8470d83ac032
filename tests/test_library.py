"""ctools.Conntrack / ctools.Expectations: the library users call instead of a subprocess."""

from __future__ import annotations

import errno
import os
import time

import pytest

import ctools
from ctools.library import DESTROY, NEW, UPDATE, Event, inverse, with_reply
from ctools.model import Entry, Tuple

pytestmark = pytest.mark.root


def test_public_names():
    assert ctools.Expect is ctools.model.Expect  # the model class keeps its name
    for name in ("Conntrack", "Expectations", "Event", "Entry", "Tuple", "NatRange",
                 "NetlinkError", "CodecError"):
        assert getattr(ctools, name) is not None
    assert issubclass(ctools.NetlinkError, OSError)
    assert issubclass(ctools.CodecError, ValueError)


def test_inverse_and_with_reply():
    t = Tuple(2, "1.1.1.1", "2.2.2.2", 1, icmp_type=8, icmp_code=0, icmp_id=7)
    assert inverse(t) == Tuple(2, "2.2.2.2", "1.1.1.1", 1, icmp_type=0, icmp_code=0,
                               icmp_id=7)
    e = Entry(Tuple(2, "1.1.1.1", "2.2.2.2", 6, sport=1, dport=2), mark=3)
    r = with_reply(e)
    assert r is not e and e.reply is None
    assert (r.reply.src, r.reply.sport, r.mark) == ("2.2.2.2", 2, 3)


def test_crud_round_trip_through_the_kernel(netns_factory, ref_conntrack):
    ns = netns_factory("ctnl")
    with ctools.Conntrack(netns=ns.name) as ct:
        e = Entry(Tuple(2, "10.30.0.1", "10.30.0.2", 6, sport=1000, dport=443), timeout=300,
                  tcp_state=3, status=0x6, mark=0x42, zone=7)
        ct.create(e)
        got = ct.get(Entry(e.orig, zone=7))
        assert isinstance(got, Entry)
        assert (got.mark, got.zone, got.tcp_state, got.status & 0x6) == (0x42, 7, 3, 0x6)
        assert got.reply.src == "10.30.0.2" and got.reply.dport == 1000
        got.mark = 0x43
        ct.update(got)
        [listed] = list(ct.dump())
        assert listed.mark == 0x43 and listed.id == got.id
        out = ns.run(ref_conntrack, "-L").stdout.decode()
        assert "mark=67" in out and "zone=7" in out
        with pytest.raises(ctools.NetlinkError) as exc:
            ct.create(e)
        assert exc.value.errno == errno.EEXIST
        ct.create(e, exclusive=False)  # like `conntrack -A`: an update, no error
        ct.delete(listed)
        assert ct.count() == 0
        with pytest.raises(ValueError):
            list(ct.dump(table="nonsense"))
        with pytest.raises(ctools.NetlinkError):
            ct.update(e)  # gone: ENOENT


def test_zero_counters(netns_factory):
    ns = netns_factory("ctnl")
    ns.run("sysctl", "-qw", "net.netfilter.nf_conntrack_acct=1")
    ns.run("nft", "-f", "-", input=b"table ip ctnlt {\n chain o {\n"
           b"  type filter hook output priority 0\n  ct state new accept\n }\n}\n")
    ns.run("python3", "-c", "import socket; s = socket.socket(socket.AF_INET, "
           "socket.SOCK_DGRAM); [s.sendto(b'abcd', ('127.0.0.1', 9)) for _ in range(3)]")
    with ctools.Conntrack(netns=ns.name) as ct:
        [e] = [x for x in ct.dump() if x.orig.dport == 9]
        assert (e.orig_packets, e.orig_bytes) == (3, 3 * 32)  # 20 IP + 8 UDP + 4 data
        [z] = [x for x in ct.dump(zero=True) if x.orig.dport == 9]
        assert z.orig_packets == 3  # the values before the reset
        [after] = [x for x in ct.dump() if x.orig.dport == 9]
        assert after.orig_packets == 0


def test_events_iterator(netns_factory, ref_conntrack):
    ns = netns_factory("ctnl")
    got: list[Event] = []
    with ctools.Conntrack(netns=ns.name) as ct:
        it = ct.events(NEW | DESTROY)  # subscribed from here on
        ns.run(ref_conntrack, "-I", "-p", "udp", "-s", "10.31.0.1", "-d", "10.31.0.2",
               "--sport", "5", "--dport", "6", "-t", "30")
        ns.run(ref_conntrack, "-U", "-p", "udp", "-s", "10.31.0.1", "-m", "1")  # not asked for
        ns.run(ref_conntrack, "-D", "-p", "udp", "-s", "10.31.0.1")
        for ev in it:
            got.append(ev)
            if len(got) == 2:
                break
        it.close()
    assert [ev.type for ev in got] == ["NEW", "DESTROY"]
    assert all(ev.pid and ev.family == 2 for ev in got)
    assert got[0].entry.orig.src == "10.31.0.1" and got[0].entry.orig.dport == 6
    assert UPDATE == 2


def test_batched_updates_and_deletes(netns_factory):
    ns = netns_factory("ctnl")
    es = [Entry(Tuple(2, f"10.32.0.{i}", "10.32.1.1", 17, sport=i, dport=53), timeout=60)
          for i in range(1, 101)]
    with ctools.Conntrack(netns=ns.name) as ct:
        assert ct.create_many(es) == [0] * 100
        for e in es:
            e.mark = 5
        assert ct.update_many(es[:50]) == [0] * 50
        assert sorted(e.mark for e in ct.dump(mark=5)) == [5] * 50
        stale = list(ct.dump(mark=5))
        assert ct.delete_many(stale) == [0] * 50
        assert ct.delete_many(stale[:2]) == [errno.ENOENT] * 2
        assert ct.count() == 50


def test_namespace_by_proc_path(netns_factory):
    ns = netns_factory("ctnl")
    proc = ns.spawn("sleep", "30")
    path = f"/proc/{proc.pid}/ns/net"
    for _ in range(50):  # ip netns exec has exec'd sleep once the link differs from ours
        if os.readlink(path) != os.readlink("/proc/self/ns/net"):
            break
        time.sleep(0.05)
    with ctools.Conntrack(netns=path) as ct:
        ct.create(Entry(Tuple(2, "10.33.0.1", "10.33.0.2", 17, sport=1, dport=2), timeout=9))
    with ctools.Conntrack(netns=ns.name) as ct:
        assert [e.orig.src for e in ct.dump()] == ["10.33.0.1"]
    fd = os.open(f"/run/netns/{ns.name}", os.O_RDONLY)
    try:
        with ctools.Conntrack(netns=fd) as ct:
            assert ct.count() == 1
    finally:
        os.close(fd)
