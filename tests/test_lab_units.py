"""Pure parts of the lab (no root): shaper, relay settings, config texts, frame builders."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess

import pytest

from netns_lab.addrwatch import RTM_NEWADDR, parse_addr_events
from netns_lab.cli import build_parser, config_from, percent
from netns_lab.config import Impairment, LabConfig
from netns_lab.garp import garp_frame, una_frame
from netns_lab.keepalived import keepalived_conf
from netns_lab.lab import _log_lines
from netns_lab.relay import impairment_from
from netns_lab.replicas import conntrackd_conf
from netns_lab.shaper import Shaper
from netns_lab.topology import Topology

FRAME = bytes(range(256)) * 2


def run_shaper(imp: Impairment, n: int = 5000, seed: int = 3):
    sh = Shaper(imp, seed, "a>b")
    out = []
    for i in range(n):
        out.extend(sh.submit(FRAME, i * 0.001))
        out.extend(sh.release(i * 0.001))
    out.extend(sh.release(1e9))
    return sh, out


def test_shaper_same_seed_same_decisions():
    imp = Impairment(loss=0.2, reorder=0.1, corrupt=0.05, duplicate=0.05, burst_loss=0.1,
                     jitter_ms=3, delay_ms=5)
    a = run_shaper(imp)
    b = run_shaper(imp)
    assert a[0].counts == b[0].counts
    assert [(o.due, o.frame) for o in a[1]] == [(o.due, o.frame) for o in b[1]]
    c = run_shaper(imp, seed=4)
    assert c[0].counts != a[0].counts


def test_shaper_loss_rate_and_accounting():
    sh, out = run_shaper(Impairment(loss=0.3), n=10000)
    assert 0.27 < sh.counts["lost"] / 10000 < 0.33
    assert len(out) == 10000 - sh.counts["lost"]


def test_shaper_burst_loss_share_and_bursts():
    sh, _ = run_shaper(Impairment(burst_loss=0.2, burst_len=5), n=20000)
    share = sh.counts["burst_lost"] / 20000
    assert 0.14 < share < 0.26


def test_shaper_corrupts_one_byte_after_ethernet_header_keeping_length():
    sh, out = run_shaper(Impairment(corrupt=1.0), n=200)
    assert sh.counts["corrupted"] == 200
    for o in out:
        assert len(o.frame) == len(FRAME)
        diff = [i for i in range(len(FRAME)) if o.frame[i] != FRAME[i]]
        assert len(diff) == 1 and diff[0] >= 14
        assert bin(o.frame[diff[0]] ^ FRAME[diff[0]]).count("1") == 1


def test_shaper_duplicates_and_reorders():
    sh, out = run_shaper(Impairment(duplicate=0.1), n=1000)
    assert len(out) == 1000 + sh.counts["duplicated"] > 1000
    sh = Shaper(Impairment(reorder=1.0), 1, "x")
    first = sh.submit(b"1" * 20, 0.0)
    second = sh.submit(b"2" * 20, 0.001)
    assert first == [] and [o.frame[:1] for o in second] == [b"2", b"1"]
    assert sorted(second)[0].frame[:1] == b"2"          # the later frame leaves first
    assert sh.counts["reordered"] == 1


def test_shaper_reorder_hold_is_released_when_nothing_overtakes():
    sh = Shaper(Impairment(reorder=1.0), 1, "x")
    assert sh.submit(b"1" * 20, 0.0) == []
    assert sh.release(0.001) == []
    assert [o.frame[:1] for o in sh.release(0.5)] == [b"1"]


def test_shaper_partition_and_rate_limit():
    sh, out = run_shaper(Impairment(partition=True), n=100)
    assert out == [] and sh.counts["partitioned"] == 100
    sh = Shaper(Impairment(rate_kbit=8, queue_bytes=1000), 1, "x")   # 1000 bytes/s
    outs = [sh.submit(b"x" * 500, 0.0) for _ in range(4)]
    assert [len(o) for o in outs] == [1, 1, 0, 0]
    assert sh.counts["rate_dropped"] == 2
    assert outs[1][0].due == pytest.approx(1.0)


def test_impairment_settings_are_validated():
    with pytest.raises(ValueError, match="loss"):
        impairment_from({"loss": 1.5})
    with pytest.raises(ValueError, match="unknown impairment"):
        impairment_from({"lossy": 0.1})
    base = Impairment(loss=0.1)
    assert impairment_from({"partition": True}, base).loss == 0.1


def test_percent_arguments():
    assert percent("30") == pytest.approx(0.3)
    assert percent("2.5%") == pytest.approx(0.025)
    for bad in ("abc", "101", "-1"):
        with pytest.raises(Exception, match="percentage|not a"):
            percent(bad)


def test_cli_builds_config_and_rejects_bad_values():
    args = build_parser().parse_args(["failover", "--replicas", "mixed", "--loss", "30",
                                      "--reorder", "10", "--seed", "9"])
    cfg = config_from(args)
    assert cfg.replicas == "mixed" and cfg.impairment.loss == pytest.approx(0.3)
    assert cfg.replica_kind(1) == "ours" and cfg.replica_kind(2) == "c"
    from netns_lab.cli import main
    assert main(["failover", "--loss", "x"]) == 2
    assert main(["nonsense"]) == 2
    with pytest.raises(ValueError, match="replicas"):
        LabConfig(replicas="java").validate()


def test_conntrackd_conf_is_accepted_by_our_parser():
    config = pytest.importorskip("ctools.config")
    cfg = LabConfig(prefix="ctlab-unit")
    topo = Topology(cfg)
    from pathlib import Path
    text = conntrackd_conf(cfg, topo, 1, Path("/run/ctlab/ctlab-unit"))
    parse = getattr(config, "parse", None)
    if parse is None:
        pytest.skip("ctools.config has no parse()")
    parsed = parse(text)
    assert parsed is not None
    assert "10.13.0.2" in text and "Interface sync0" in text


@pytest.mark.skipif(shutil.which("keepalived", path="/usr/sbin:/sbin:/usr/bin") is None,
                    reason="keepalived (Debian package) is not installed")
def test_keepalived_conf_passes_keepalived_config_check(tmp_path, netns):
    netns.run("ip", "link", "add", "lan0", "type", "veth", "peer", "name", "lan1")
    cfg = LabConfig(prefix="ctlab-unit")
    topo = Topology(cfg)
    notify = tmp_path / "notify.sh"
    notify.write_text("#!/bin/sh\n")
    notify.chmod(0o755)
    for manage in (True, False):
        conf = tmp_path / f"k{manage}.conf"
        conf.write_text(keepalived_conf(cfg, topo, 1, notify, manage))
        res = subprocess.run(netns.cmd("keepalived", "-t", "-f", str(conf)),
                             capture_output=True, text=True, timeout=20)
        assert res.returncode == 0, res.stderr + res.stdout


def test_address_events_are_parsed():
    def msg(mtype, family, raw):
        attr = struct.pack("=HH", 4 + len(raw), 2) + raw
        body = struct.pack("=BBBBI", family, 24, 0, 0, 3) + attr
        return struct.pack("=IHHII", 16 + len(body), mtype, 0, 0, 0) + body
    data = msg(RTM_NEWADDR, socket.AF_INET, socket.inet_aton("10.11.0.1"))
    data += msg(21, socket.AF_INET6, socket.inet_pton(socket.AF_INET6, "fd00:11::1"))
    assert parse_addr_events(data) == [("new", "10.11.0.1"), ("del", "fd00:11::1")]
    assert parse_addr_events(b"\x01\x02") == []


def test_announcement_frames_are_well_formed():
    scapy_l2 = pytest.importorskip("scapy.layers.l2")
    from scapy.layers.inet6 import ICMPv6ND_NA, IPv6
    mac = bytes.fromhex("020000000001")
    arp = scapy_l2.Ether(garp_frame(mac, "10.11.0.1"))
    assert arp[scapy_l2.ARP].psrc == arp[scapy_l2.ARP].pdst == "10.11.0.1"
    assert arp.dst == "ff:ff:ff:ff:ff:ff"
    na = scapy_l2.Ether(una_frame(mac, "fd00:11::1"))
    sent_sum = na[ICMPv6ND_NA].cksum
    del na[ICMPv6ND_NA].cksum
    rebuilt = scapy_l2.Ether(bytes(na))
    assert rebuilt[ICMPv6ND_NA].cksum == sent_sum
    assert na[ICMPv6ND_NA].tgt == "fd00:11::1" and na[ICMPv6ND_NA].O == 1
    assert na[IPv6].hlim == 255


def test_hook_log_lines(tmp_path):
    log = tmp_path / "calls.log"
    log.write_text("call 100.5 -C /x.conf -c\ndone 100.7 rc=0 -C /x.conf -c\n"
                   "window_drops 3\ngarbage\n")
    lines = _log_lines(log)
    assert lines[0] == (100.5, "call", "-C /x.conf -c")
    assert lines[1] == (100.7, "done", "-C /x.conf -c")
    assert lines[2][:2] == (3.0, "window_drops")


def test_holder_speaks_nfnetlink_queue():
    from netns_lab import holder
    msg = holder.config_bind(7)
    length, mtype, flags, _seq, _pid = struct.unpack_from("=IHHII", msg)
    assert length == len(msg) and mtype == (3 << 8) | 2 and flags & 1
    assert struct.unpack_from("!H", msg, 18)[0] == 7          # res_id: the queue number
    # a queued-packet message carrying packet id 0x01020304
    hdr = struct.pack("=HH", 11, 1) + struct.pack("!IHB", 0x01020304, 0x0800, 0) + b"\0"
    body = struct.pack("=BBH", 2, 0, socket.htons(7)) + hdr
    pkt = struct.pack("=IHHII", 16 + len(body), 3 << 8, 0, 0, 0) + body
    assert holder.packet_ids(pkt + pkt) == [0x01020304, 0x01020304]
    assert holder.packet_ids(b"\x00" * 3) == []
    v = holder.verdict(7, 0x01020304, 5)
    assert v.endswith(struct.pack("!II", 1, 0x01020304))
