"""The lab's namespaces, bridges, veths and addresses, built with pyroute2.

Layout (every box is a network namespace named ``<prefix>-<role>``)::

    c1..cN ──┐                 ┌── fw1 ──┐                 ┌── s1..sM
             ├─ lanc (bridge) ─┤         ├─ lans (bridge) ─┤
             │                 └── fw2 ──┘                 │
                          fw1:sync0 ── relay(a|b) ── fw2:sync0

Both replicas sit on both LANs; the virtual IPs (host number 1 of each LAN) belong to
whichever replica is master. The sync link crosses a relay namespace where a userspace
program impairs the frames.
"""

from __future__ import annotations

import contextlib
import os

from pyroute2 import NetNS, netns

from . import nsutil
from .config import LabConfig

FW_IFACES = ("lan0", "lan1", "sync0")   # client LAN, server LAN, sync link (inside fw1/fw2)


class Topology:
    """Create (``build``) and remove (``destroy``) the namespaces of one lab."""

    def __init__(self, cfg: LabConfig) -> None:
        self.cfg = cfg
        p = cfg.prefix
        self.clients = [f"{p}-c{i}" for i in range(1, cfg.clients + 1)]
        self.servers = [f"{p}-s{i}" for i in range(1, cfg.servers + 1)]
        self.fw = {1: f"{p}-fw1", 2: f"{p}-fw2"}
        self.lanc = f"{p}-lanc"
        self.lans = f"{p}-lans"
        self.relay = f"{p}-relay"

    @property
    def all_names(self) -> list[str]:
        return [*self.clients, *self.servers, self.fw[1], self.fw[2], self.lanc, self.lans,
                self.relay]

    # -- addresses ---------------------------------------------------------------------
    def client_addr(self, i: int, v6: bool = False) -> str:
        return self.cfg.client_lan.host(10 + i, v6)

    def server_addr(self, i: int, v6: bool = False) -> str:
        return self.cfg.server_lan.host(10 + i, v6)

    def fw_addr(self, lan: str, index: int, v6: bool = False) -> str:
        lan_cfg = self.cfg.client_lan if lan == "lan0" else self.cfg.server_lan
        return lan_cfg.host(1 + index, v6)

    def vips(self) -> list[tuple[str, str, int]]:
        """(interface, address, prefix length) of every virtual IP a master holds."""
        out = []
        for ifname, lan in (("lan0", self.cfg.client_lan), ("lan1", self.cfg.server_lan)):
            out.append((ifname, lan.host(1), lan.plen4))
            if self.cfg.ipv6:
                out.append((ifname, lan.host(1, True), lan.plen6))
        return out

    # -- build / destroy -----------------------------------------------------------------
    def build(self) -> None:
        """Create everything; on any error, remove what was made and re-raise."""
        try:
            self._build()
        except BaseException:
            self.destroy()
            raise

    def _build(self) -> None:
        cfg = self.cfg
        for name in self.all_names:
            netns.create(name)
        for name in self.all_names:
            with NetNS(name) as ipr:
                ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
            self._tune(name)
        # LAN bridges, with one port per replica and per host
        for br_ns, hosts, lan, fw_if in ((self.lanc, self.clients, cfg.client_lan, "lan0"),
                                         (self.lans, self.servers, cfg.server_lan, "lan1")):
            with NetNS(br_ns) as ipr:
                ipr.link("add", ifname="br0", kind="bridge", br_stp_state=0,
                         br_forward_delay=0, br_mcast_snooping=0)
                br = ipr.link_lookup(ifname="br0")[0]
                ports = [(f"fw{i}", self.fw[i], fw_if) for i in (1, 2)]
                ports += [(f"h{j}", h, "eth0") for j, h in enumerate(hosts, 1)]
                for port, peer_ns, peer_if in ports:
                    ipr.link("add", ifname=port, kind="veth",
                             peer={"ifname": peer_if, "net_ns_fd": peer_ns})
                    idx = ipr.link_lookup(ifname=port)[0]
                    ipr.link("set", index=idx, master=br, state="up")
                ipr.link("set", index=br, state="up")
            for j, host in enumerate(hosts, 1):
                self._address_host(host, "eth0", lan, 10 + j)
        # sync link: fw1:sync0 -- relay:a ... relay:b -- fw2:sync0
        with NetNS(self.relay) as ipr:
            for port, i in (("a", 1), ("b", 2)):
                ipr.link("add", ifname=port, kind="veth",
                         peer={"ifname": "sync0", "net_ns_fd": self.fw[i]})
                idx = ipr.link_lookup(ifname=port)[0]
                ipr.link("set", index=idx, state="up", promiscuity=1)
        for i in (1, 2):
            with NetNS(self.fw[i]) as ipr:
                for ifname, lan in (("lan0", cfg.client_lan), ("lan1", cfg.server_lan)):
                    idx = ipr.link_lookup(ifname=ifname)[0]
                    ipr.link("set", index=idx, state="up")
                    ipr.addr("add", index=idx, address=lan.host(1 + i), prefixlen=lan.plen4)
                    if cfg.ipv6:
                        ipr.addr("add", index=idx, address=lan.host(1 + i, True),
                                 prefixlen=lan.plen6)
                idx = ipr.link_lookup(ifname="sync0")[0]
                ipr.link("set", index=idx, state="up")
                ipr.addr("add", index=idx, address=cfg.sync_addr(i), prefixlen=30)
                if cfg.ipv6:
                    ipr.addr("add", index=idx, address=cfg.sync_addr(i, True), prefixlen=64)
            self._no_tx_checksum(self.fw[i], "sync0")

    def _address_host(self, host: str, ifname: str, lan, number: int) -> None:
        with NetNS(host) as ipr:
            idx = ipr.link_lookup(ifname=ifname)[0]
            ipr.link("set", index=idx, state="up")
            ipr.addr("add", index=idx, address=lan.host(number), prefixlen=lan.plen4)
            ipr.route("add", dst="0.0.0.0/0", gateway=lan.host(1))
            if self.cfg.ipv6:
                ipr.addr("add", index=idx, address=lan.host(number, True), prefixlen=lan.plen6)
                ipr.route("add", dst="::/0", gateway=lan.host(1, True), family=10)

    def _tune(self, name: str) -> None:
        values: dict[str, str | int] = {
            "net.ipv6.conf.all.accept_dad": 0, "net.ipv6.conf.default.accept_dad": 0,
            "net.ipv6.conf.default.accept_ra": 0,
        }
        if name in (self.lanc, self.lans):
            # bridged frames must not traverse netfilter in the bridge namespaces
            values.update({"net.bridge.bridge-nf-call-iptables": 0,
                           "net.bridge.bridge-nf-call-ip6tables": 0,
                           "net.bridge.bridge-nf-call-arptables": 0,
                           "net.ipv6.conf.default.disable_ipv6": 1})
        elif name == self.relay:
            values["net.ipv6.conf.default.disable_ipv6"] = 1  # the relay ports stay silent
        elif name in self.fw.values():
            values.update({"net.ipv4.ip_forward": 1, "net.ipv6.conf.all.forwarding": 1,
                           "net.ipv4.conf.all.arp_ignore": 1,
                           "net.ipv4.conf.all.arp_announce": 2,
                           "net.ipv4.conf.all.send_redirects": 0,
                           "net.ipv4.conf.default.send_redirects": 0,
                           "net.ipv4.conf.all.rp_filter": 0,
                           "net.ipv4.conf.default.rp_filter": 0})
        if not self.cfg.ipv6:
            values["net.ipv6.conf.default.disable_ipv6"] = 1
        with contextlib.suppress(FileNotFoundError):
            nsutil.sysctl(name, values)

    @staticmethod
    def _no_tx_checksum(ns: str, ifname: str) -> None:
        """Make the sender fill UDP checksums itself.

        A veth hands the peer half-done (offloaded) checksums; copied by the relay onto
        another veth they would be wrong, and every frame would look corrupted.
        """
        from pyroute2.ethtool import Ethtool

        with nsutil.inside(ns):
            eth = Ethtool()
            try:
                feats = eth.get_features(ifname)
                for key in ("tx-checksum-ip-generic", "tx-checksum-ipv4",
                            "tx-checksum-ipv6", "tx-generic-segmentation",
                            "tx-tcp-segmentation"):
                    if key in feats.features:
                        feats.features[key].enable = False
                eth.set_features(ifname, feats)
            finally:
                eth.close()

    def destroy(self) -> None:
        """Remove every namespace of this lab (and so every veth/bridge in them)."""
        for name in self.all_names:
            remove_namespace(name)


def remove_namespace(name: str) -> None:
    """Delete a named namespace; missing ones are fine."""
    if os.path.exists(os.path.join(nsutil.NETNS_DIR, name)):
        with contextlib.suppress(Exception):
            netns.remove(name)
