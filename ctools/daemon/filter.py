"""The user-space Filter of General { Filter … }: which local flows the daemon cares about."""

from __future__ import annotations

import ipaddress
import socket

from ctools.config import model as cfgm
from ctools.model import IPPROTO_TCP, TCP_STATES, Entry


class FlowFilter:
    """``accepts(entry)`` is True when every configured filter kind lets the flow pass."""

    def __init__(self, conf: cfgm.Filter | None) -> None:
        self.conf = conf
        self.protocols: set[int] | None = None
        self.proto_accept = True
        self.networks: list = []
        # (family, network as int, mask as int): matching is two integer operations
        self.masks: list[tuple[int, int, int]] = []
        self.addr_accept = True
        self.has_addr = False
        self.states: set[str] | None = None
        self.state_accept = True
        if conf is None:
            return
        if conf.protocol is not None:
            self.protocols = set(conf.protocol.protocols)
            self.proto_accept = conf.protocol.policy == "accept"
        if conf.address is not None:
            self.has_addr = True
            self.addr_accept = conf.address.policy == "accept"
            for text in conf.address.ipv4 + conf.address.ipv6:
                try:
                    net = ipaddress.ip_network(text, strict=False)
                except ValueError:
                    continue
                self.networks.append(net)
                fam = socket.AF_INET if net.version == 4 else socket.AF_INET6
                self.masks.append((fam, int(net.network_address), int(net.netmask)))
        if conf.state is not None:
            self.states = set(conf.state.states)
            self.state_accept = conf.state.policy == "accept"

    @property
    def active(self) -> bool:
        return self.conf is not None

    def _addr_match(self, addr: str | None) -> bool:
        if addr is None:
            return False
        fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
        try:
            value = int.from_bytes(socket.inet_pton(fam, addr), "big")
        except OSError:
            return False
        for f, net, mask in self.masks:
            if f == fam and value & mask == net:
                return True
        return False

    def accepts(self, e: Entry) -> bool:
        orig = e.orig
        if orig is None or orig.family is None or orig.src is None:
            return False        # sanity check of the reference: no addresses, no sync
        if self.conf is None:
            return True
        if self.protocols is not None:
            if (orig.proto in self.protocols) != self.proto_accept:
                return False
        if self.has_addr:
            reply_src = e.reply.src if e.reply is not None else orig.dst
            hit = self._addr_match(orig.src) or self._addr_match(reply_src)
            if hit != self.addr_accept:
                return False
        if self.states is not None and orig.proto == IPPROTO_TCP and e.tcp_state is not None:
            name = TCP_STATES[e.tcp_state] if e.tcp_state < len(TCP_STATES) else ""
            if (name in self.states) != self.state_accept:
                return False
        return True
