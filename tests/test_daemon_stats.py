"""Statistics mode, ours and the reference side by side in one namespace (same events)."""

from __future__ import annotations

import re

import pytest
from conftest import REF_CONNTRACKD
from daemon_helpers import OURS, Replica, wait_for

pytestmark = [pytest.mark.root]

STATS = "  HashSize 8192\n}}\nStats {{ LogFile {log} }}\n"


@pytest.fixture
def pair(netns_factory, tmp_path):
    if REF_CONNTRACKD is None:
        pytest.skip("reference conntrackd is not installed")
    netns = netns_factory("ctd")
    netns.enable_conntrack()
    # two flows exist before the daemons start
    for sport in (1, 2):
        netns.run("conntrack", "-I", "-s", "1.1.1.1", "-d", "2.2.2.2", "-p", "udp",
                  "--sport", str(sport), "--dport", "53", "-t", "100")
    ref = Replica(netns, [REF_CONNTRACKD], tmp_path, "ref",
                  STATS.format(log=tmp_path / "ref-flows.log"))
    ours = Replica(netns, OURS, tmp_path, "ours", STATS.format(log=tmp_path / "ours-flows.log"))
    ref.start()
    ours.start()
    yield netns, ref, ours
    assert ours.stop() == 0
    ref.stop()
    assert not ours.lock.exists() and not ours.sock.exists()


def test_stats_views_identical(pair, tmp_path):
    ns, ref, ours = pair
    ns.run("conntrack", "-I", "-s", "1.1.1.1", "-d", "2.2.2.2", "-p", "udp", "--sport", "3",
           "--dport", "53", "-t", "100")
    ns.run("conntrack", "-D", "-p", "udp", "--sport", "3")
    assert wait_for(lambda: "destroyed:\t\t           1" in ours.out("-s"), 5), ours.out("-s")
    assert wait_for(lambda: "destroyed:\t\t           1" in ref.out("-s"), 5)
    for view in ([], ["cache"], ["runtime"], ["process"], ["network"], ["link"], ["queue"],
                 ["expect"], ["rsqueue"]):
        assert ours.out("-s", *view) == ref.out("-s", *view), view
    # the internal dump lists the same flows (order is the caches' own)
    strip = re.compile(r" \[active since \d+s\]")
    for args in (["-i"], ["-i", "-x"]):
        assert sorted(strip.sub("", ln) for ln in ours.out(*args).splitlines()) == \
            sorted(strip.sub("", ln) for ln in ref.out(*args).splitlines()), args
    # the flow log has the same entry text after the time stamp
    ours_log = (tmp_path / "ours-flows.log").read_text().split("\t", 1)[1]
    ref_log = (tmp_path / "ref-flows.log").read_text().split("\t", 1)[1]
    assert ours_log == ref_log


def test_second_instance_refused_and_kill(pair):
    ns, ref, ours = pair
    again = ours.ask(check=False)
    assert again.returncode == 1
    assert "perhaps conntrackd already running?" in again.stderr
    assert f"lockfile `{ours.lock}' exists" in again.stderr
