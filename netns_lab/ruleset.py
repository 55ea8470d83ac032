"""The replicas' stateful nftables rule-set, and the counters the lab reads from it.

Well-formed on purpose: only packets of known flows and proper new flows pass, so a flow
whose state did not reach the new master really breaks after fail-over. With
``nf_conntrack_tcp_loose`` off, a mid-stream packet of an unknown flow is ``ct state
invalid`` and dropped silently (no RST).
"""

from __future__ import annotations

import json
import shutil

from . import nsutil

TABLE = "ctlab"

RULESET = """\
table inet ctlab
delete table inet ctlab
table inet ctlab {
    counter invalid_drops { }
    counter bad_new_tcp { }
    counter new_flows { }
    counter established { }
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state established,related counter name established accept
        ct state invalid counter name invalid_drops drop
        meta l4proto tcp tcp flags & (fin|syn|rst|ack) != syn counter name bad_new_tcp drop
        meta l4proto { tcp, udp, icmp, ipv6-icmp } ct state new counter name new_flows accept
    }
}
"""

HOLD_BLOCK = """\
    counter held { }
    set holdifs { type ifname; }
    chain hold {
        # a replica taking over (gate set filled) queues forwarded TCP before conntrack sees
        # it, until its commit has finished (netns_lab.holder); bypass: no holder, no hold
        type filter hook prerouting priority -310; policy accept;
        iifname @holdifs meta l4proto tcp fib daddr type unicast counter name held queue num 7 bypass
    }
"""

COUNTERS = ("invalid_drops", "bad_new_tcp", "new_flows", "established", "held")
HOLD_QUEUE = 7


XT_RULE = ("-p tcp -m addrtype ! --dst-type LOCAL -j NFQUEUE --queue-num {queue} "
           "--queue-bypass")
XT_TOOLS = ("iptables-legacy", "ip6tables-legacy")


def xt_gate_commands(close: bool, queue: int = 7) -> list[str]:
    """Shell commands that open or close the take-over gate with legacy iptables (raw
    table, before conntrack) — for kernels without nft's queue expression."""
    cmds = []
    for tool in XT_TOOLS:
        cmds.append(f"{tool} -t raw -F CTLAB_HOLD")
        if close:
            cmds.append(f"{tool} -t raw -A CTLAB_HOLD {XT_RULE.format(queue=queue)}")
    return cmds


def load(ns: str, hold: bool = False) -> str:
    """Install the rule-set and the conntrack sysctls it depends on in namespace ``ns``.

    ``hold`` adds the take-over gate: with nft's ``queue`` expression when the kernel has
    it, else with legacy iptables (NFQUEUE target). Returns the gate's backend: ``"nft"``,
    ``"xt"`` or ``""`` (no gate).
    """
    backend = ""
    text = RULESET
    if hold:
        text = text.replace("    chain forward {", HOLD_BLOCK + "    chain forward {")
        backend = "nft"
    res = nsutil.nft(ns, text, check=False)
    if res.returncode != 0 and hold and "queue" in res.stderr.decode(errors="replace"):
        if not all(shutil.which(t) for t in XT_TOOLS):
            raise RuntimeError("--hold needs nftables' queue expression, which this kernel "
                               "lacks (CONFIG_NFT_QUEUE), or legacy iptables (Debian package "
                               "'iptables') for the NFQUEUE target")
        res = nsutil.nft(ns, RULESET, check=False)
        backend = "xt"
        if res.returncode == 0:
            for tool in XT_TOOLS:
                nsutil.run(ns, tool, "-t", "raw", "-N", "CTLAB_HOLD")
                for ifname in ("lan0", "lan1"):
                    nsutil.run(ns, tool, "-t", "raw", "-A", "PREROUTING", "-i", ifname, "-j",
                               "CTLAB_HOLD")
    if res.returncode != 0:
        raise RuntimeError("nft rejected the lab rule-set: "
                           + res.stderr.decode(errors="replace").strip())
    # the sysctl exists once the rule-set made the namespace use conntrack
    nsutil.sysctl(ns, {"net.netfilter.nf_conntrack_tcp_loose": 0,
                       "net.netfilter.nf_conntrack_tcp_be_liberal": 0})
    return backend


def counters(ns: str) -> dict[str, int]:
    """Packet counts of the rule-set's named counters."""
    res = nsutil.run(ns, "nft", "-j", "list", "counters", "table", "inet", TABLE, check=False)
    out = {name: 0 for name in COUNTERS}
    if res.returncode != 0:
        return out
    for item in json.loads(res.stdout).get("nftables", []):
        ctr = item.get("counter")
        if ctr and ctr.get("name") in out:
            out[ctr["name"]] = int(ctr.get("packets", 0))
    return out


def reset_counters(ns: str) -> None:
    """Zero the named counters (e.g. right before a fail-over)."""
    for name in COUNTERS:
        nsutil.run(ns, "nft", "reset", "counter", "inet", TABLE, name, check=False)
