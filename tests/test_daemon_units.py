"""Pieces of the daemon without a kernel: views, caches, lock file, control protocol,
systemd readiness of a daemon that has neither Sync nor Stats."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest
from daemon_helpers import OURS, env

from ctools.daemon import views
from ctools.daemon.cache import InternalCache, full_reply
from ctools.daemon.lockfile import LockExists, LockFile
from ctools.daemon.stats import CacheCounters
from ctools.model import IPS_SEEN_REPLY, Entry, Tuple


@pytest.mark.parametrize("secs,text", [(0, "0 min"), (59, "0 min"), (3900, "1 h 5 min"),
                                       (86400, "1 day 0 min"), (2 * 86400 + 7200 + 60,
                                                                "2 days 2 h 1 min")])
def test_uptime_text(secs, text):
    assert views.uptime_text(secs) == text


def test_cache_block_layout():
    c = CacheCounters()
    c.created = 5
    assert views.cache_block("stats", 1, c) == (
        "cache stats:\ncurrent active connections:\t           1\n"
        "connections created:\t\t           5\tfailed:\t           0\n"
        "connections updated:\t\t           0\tfailed:\t           0\n"
        "connections destroyed:\t\t           0\tfailed:\t           0\n\n")


def _entry(src: str, mark: int | None = None) -> Entry:
    o = Tuple(family=2, src=src, dst="10.0.0.1", proto=6, sport=1000, dport=80)
    r = Tuple(family=2, src="10.0.0.1", dst=src, proto=6, sport=80, dport=1000)
    return Entry(orig=o, reply=r, status=IPS_SEEN_REPLY, mark=mark, timeout=100,
                 orig_packets=3)


def test_internal_cache_merges_compacts_and_rebuilds_reply():
    cache = InternalCache()
    cache.add(_entry("1.1.1.1", mark=1), 0.0)
    obj = cache.get(_entry("1.1.1.1").orig)
    assert obj is not None and obj.entry.reply is None            # plain inverse: dropped
    assert full_reply(obj.entry) == _entry("1.1.1.1").reply
    cache.update(_entry("1.1.1.1"), 5.0)                          # mark absent: kept
    assert obj.entry.mark == 1 and obj.last == 5.0 and obj.since == 0.0
    assert cache.counters.created == 1 and cache.counters.updated == 1
    assert cache.delete(_entry("9.9.9.9")) is None
    assert cache.counters.del_not_found == 1


def test_lock_file(tmp_path):
    path = str(tmp_path / "x.lock")
    first = LockFile(path)
    first.acquire()
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    with pytest.raises(LockExists):
        LockFile(path).acquire()
    first.release()
    assert not os.path.exists(path)


def test_modeless_daemon_notifies_systemd_and_stops(tmp_path):
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(20)
    conf = tmp_path / "c.conf"
    conf.write_text(f"General {{ LockFile {tmp_path}/c.lock\n UNIX {{ Path {tmp_path}/c.sock }}"
                    " }\n")
    e = env()
    e["NOTIFY_SOCKET"] = str(tmp_path / "notify")
    proc = subprocess.Popen([*OURS, "-C", str(conf)], env=e, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert notify.recv(256).startswith(b"READY=1")
        ask = subprocess.run([*OURS, "-C", str(conf), "-s", "runtime"], env=env(),
                             capture_output=True, text=True, timeout=20)
        assert ask.returncode == 0 and ask.stdout.startswith("daemon uptime: 0 min\n")
        quiet = subprocess.run([*OURS, "-C", str(conf), "-s"], env=env(),
                               capture_output=True, text=True, timeout=20)
        assert quiet.returncode == 0 and quiet.stdout == ""
        subprocess.run([*OURS, "-C", str(conf), "-k"], env=env(), timeout=20, check=True)
        assert proc.wait(timeout=20) == 0
        assert notify.recv(256) == b"STOPPING=1"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()
    out = proc.stdout.read()
    assert "-- starting in console mode --" in out and "---- shutdown received ----" in out
    assert not (tmp_path / "c.lock").exists() and not (tmp_path / "c.sock").exists()


def test_commit_encoder_matches_the_codec():
    from ctools.daemon.commitfast import encode_for_create
    from ctools.daemon.kernel import inverse_tuple
    from ctools.netlink import codec

    for proto, extra in ((6, {"tcp_state": 3, "tcp_flags_orig": (8, 8),
                              "tcp_flags_reply": (8, 8), "tcp_wscale_orig": 7}),
                         (17, {}), (6, {"helper": "ftp"})):
        t = Tuple(family=2, src="172.16.1.2", dst="10.0.0.1", proto=proto, sport=1234,
                  dport=80)
        e = Entry(orig=t, status=14, timeout=100, mark=5, **extra)
        fast = encode_for_create(e)          # reply left out: sent as the inverse
        assert e.reply is None
        e.reply = inverse_tuple(t)
        assert fast == codec.encode_entry(e)
        assert encode_for_create(e) == codec.encode_entry(e)
