"""Random conntrackd.conf texts, grammar-aware, for differential and property tests.

``generate(rng, noise=0.0)`` walks the conntrackd.conf grammar choosing sections, clauses and
values at random. With ``noise == 0`` the text is almost always valid (semantic clashes such
as Stats together with Sync stay possible); with ``noise > 0`` each value and each structural
step is, with that probability, replaced by something of the wrong class (another keyword, a
number where a name belongs, a dropped or doubled brace …), which is what a parser
differential needs: near-misses, not line noise.

Not a harness (no ``TestOneInput``); used by tests/test_config_*.py and fuzz/config_parse.py.
It never emits the ctools-only extensions or a comment on a last line without a newline.
"""

from __future__ import annotations

import random

_KEYWORDS = (
    "UNIX", "IPv4_address", "IPv6_address", "IPv4_Destination_Address", "Interface",
    "Multicast", "UDP", "TCP", "HashSize", "RefreshTime", "Path", "Group", "Port", "LogFile",
    "Syslog", "General", "Sync", "Stats", "Mode", "Checksum", "for", "ESTABLISHED", "CLOSED",
    "Filter", "Protocol", "Address", "State", "Accept", "Ignore", "From", "Userspace",
    "Default", "Nice", "Scheduler", "Type", "Options", "ExpectationSync", "Helper", "Policy",
)
_GARBAGE = (
    "abc", "beef", "add", "1.5", "-5", "+7", "0", "4294967296", "99999999999999999999",
    "/tmp/x", "/tmp/x}", "o|", "||", "maybe", "\"q\"", ";", "=", "{", "}", "::", "1::2::3",
    "1.2.3.4/40", "fe80::/64", "300.1.1.1", "eth0", "FTFW", "nack", "persistent", "persistenT",
    "for TCP", "tcp", "TCP", "UDP", "#c\n", "\t", "\r\n", "IPv6-ICMP", "local0", "on", "off",
)
_BOOLS = ("on", "off", "yes", "no", "On", "OFF", "Yes", "nO")
_FACILITIES = ("daemon", "local0", "local1", "local4", "local7", "kern", "user")
_PROTOCOLS = ("TCP", "UDP", "ICMP", "IPv6-ICMP", "SCTP", "DCCP", "igmp", "GRE", "nosuch")
_STATES = ("SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK",
           "TIME_WAIT", "CLOSE", "CLOSED", "LISTEN")
_IFACES = ("eth0", "eth1", "lo", "veth-a", "ctcf0", "br0.10")
_HELPERS = (("ftp", "tcp"), ("tftp", "udp"), ("rpc", "tcp"), ("rpc", "udp"), ("tns", "tcp"),
            ("ssdp", "udp"), ("amanda", "udp"), ("sane", "tcp"), ("slp", "udp"),
            ("mdns", "udp"), ("dhcpv6", "udp"))


class _Gen:
    def __init__(self, rng: random.Random, noise: float) -> None:
        self.rng = rng
        self.noise = noise
        self.out: list[str] = []

    def bad(self) -> bool:
        return self.noise > 0 and self.rng.random() < self.noise

    def emit(self, *words: str) -> None:
        self.out.extend(words)

    def value(self, good: str) -> str:
        if self.bad():
            return self.rng.choice(_GARBAGE + _KEYWORDS)
        return good

    # values
    def number(self, lo: int = 0, hi: int = 100000) -> str:
        r = self.rng.random()
        if r < 0.05:
            return "0"
        if r < 0.08:
            return str(self.rng.choice((4294967295, 4294967296, 2**31, 2**40)))
        return str(self.rng.randint(lo, hi))

    def boolean(self) -> str:
        return self.rng.choice(_BOOLS)

    def path(self, length: int | None = None) -> str:
        if length is None:
            length = self.rng.choice((8, 12, 20, 30))
        base = f"/tmp/ctcf-{self.rng.randrange(10**6)}"
        return (base + "x" * max(0, length - len(base)))[:max(length, 2)]

    def ipv4(self) -> str:
        return ".".join(str(self.rng.randint(0, 255)) for _ in range(4))

    def ipv6(self) -> str:
        return self.rng.choice(("::1", "fd00::1", "fd00::2", "fe80::1:2", "ff02::1:3",
                                "2001:db8::", "::", "1:2:3:4:5:6:7:8"))

    def block(self, head: list[str], body) -> None:
        self.emit(*head)
        if not self.bad():
            self.emit("{")
        body()
        if self.bad():
            self.emit(self.rng.choice(("", "}", "} }", "{")))
        else:
            self.emit("}")

    def repeat(self, fn, lo: int, hi: int) -> None:
        for _ in range(self.rng.randint(lo, hi)):
            fn()

    # General
    def general_clause(self) -> None:
        r = self.rng
        choice = r.randrange(20)
        if choice == 0:
            self.emit("HashSize", self.value(self.number(0, 200000)))
        elif choice == 1:
            self.emit("HashLimit", self.value(self.number(0, 500000)))
        elif choice == 2:
            self.emit("LogFile", self.value(r.choice((self.boolean(), self.path()))))
        elif choice == 3:
            self.emit("Syslog", self.value(r.choice((self.boolean(), r.choice(_FACILITIES)))))
        elif choice == 4:
            self.emit("LockFile", self.value(self.path(r.choice((20, 256, 257)))))
        elif choice == 5:
            def unix() -> None:
                if r.random() < 0.8:
                    self.emit("Path", self.value(self.path(r.choice((20, 107, 108)))))
                if r.random() < 0.3:
                    self.emit("Backlog", self.value(self.number(0, 100)))
            self.block(["UNIX"], unix)
        elif choice == 6:
            self.emit(r.choice(("NetlinkBufferSize", "SocketBufferSize")),
                      self.value(self.number(0, 10**7)))
        elif choice == 7:
            self.emit(r.choice(("NetlinkBufferSizeMaxGrowth", "SocketBufferSizeMaxGrowth",
                                "SocketBufferSizeMaxGrown")), self.value(self.number(0, 10**8)))
        elif choice == 8:
            self.emit("NetlinkOverrunResync",
                      self.value(r.choice((self.boolean(), self.number(0, 100)))))
        elif choice == 9:
            self.emit("NetlinkEventsReliable", self.value(self.boolean()))
        elif choice == 10:
            self.emit("PollSecs", self.value(self.number(1 if r.random() < 0.9 else 0, 60)))
        elif choice == 11:
            self.emit("EventIterationLimit", self.value(self.number(0, 1000)))
        elif choice == 12:
            self.emit("Nice", self.value(r.choice(("-5", "+3", "-19", "+0"))))
        elif choice == 13:
            def sched() -> None:
                if r.random() < 0.7:
                    self.emit("Type", self.value(r.choice(("RR", "FIFO", "rr", "Fifo"))))
                if r.random() < 0.7:
                    self.emit("Priority", self.value(str(r.randint(0, 99))))
            self.block(["Scheduler"], sched)
        elif choice == 14:
            self.emit("Systemd", self.value(self.boolean()))
        elif choice in (15, 16):
            self.filter()
        else:
            self.emit(self.rng.choice(("HashSize", "LogFile", "Syslog")),
                      self.value(r.choice((self.number(), self.boolean(), self.path()))))

    def filter(self) -> None:
        r = self.rng
        head = ["Filter"]
        if r.random() < 0.6:
            head += ["From", self.value(r.choice(("Userspace", "Kernelspace")))]

        def items() -> None:
            for _ in range(r.randint(0, 3)):
                kind = r.randrange(3)
                pol = self.value(r.choice(("Accept", "Ignore")))
                if kind == 0:
                    self.block(["Protocol", pol], lambda: self.repeat(
                        lambda: self.emit(self.value(r.choice(_PROTOCOLS))), 0, 4))
                elif kind == 1:
                    def addrs() -> None:
                        for _ in range(r.randint(0, 4)):
                            if r.random() < 0.6:
                                a = self.ipv4() + (f"/{r.choice((8, 16, 24, 32, 33))}"
                                                   if r.random() < 0.4 else "")
                                self.emit("IPv4_address", self.value(a))
                            else:
                                a = self.ipv6() + (f"/{r.choice((64, 128, 129))}"
                                                   if r.random() < 0.4 else "")
                                self.emit("IPv6_address", self.value(a))
                    self.block(["Address", pol], addrs)
                else:
                    def states() -> None:
                        for _ in range(r.randint(0, 2)):
                            self.repeat(lambda: self.emit(self.value(r.choice(_STATES))), 0, 4)
                            self.emit("for", self.value("TCP"))
                    self.block(["State", pol], states)
        self.block(head, items)

    # Sync
    def sync(self) -> None:
        r = self.rng
        transport = r.choice(("UDP", "TCP", "Multicast"))
        family = "ipv6" if r.random() < 0.25 else "ipv4"

        def body() -> None:
            for _ in range(r.randint(0, 7)):
                what = r.randrange(10)
                if what < 3:
                    self.mode()
                elif what < 6:
                    kind = transport if not self.bad() else r.choice(("UDP", "TCP", "Multicast"))
                    self.channel(kind, family)
                elif what < 8:
                    self.emit(r.choice(("RefreshTime", "CacheTimeout", "CommitTimeout",
                                        "PurgeTimeout")), self.value(self.number(0, 600)))
                else:
                    self.options()
        self.block(["Sync"], body)

    def mode(self) -> None:
        r = self.rng
        mode = r.choice(("FTFW", "ALARM", "NOTRACK", "ftfw", "Alarm", "nack", "persistenT"))
        allowed = {
            "ftfw": ("ResendQueueSize", "CommitTimeout", "PurgeTimeout", "ACKWindowSize",
                     "DisableExternalCache", "StartupResync"),
            "alarm": ("RefreshTime", "CacheTimeout", "CommitTimeout", "PurgeTimeout"),
            "notrack": ("CommitTimeout", "PurgeTimeout", "DisableInternalCache",
                        "DisableExternalCache", "StartupResync"),
        }[{"nack": "ftfw", "persistent": "alarm"}.get(mode.lower(), mode.lower())]

        def body() -> None:
            for _ in range(r.randint(0, 4)):
                clause = r.choice(allowed) if not self.bad() else r.choice(
                    ("RefreshTime", "ResendQueueSize", "DisableInternalCache", "ACKWindowSize"))
                if clause.startswith(("Disable", "Startup")):
                    self.emit(clause, self.value(self.boolean()))
                else:
                    self.emit(clause, self.value(self.number(0, 300000)))
        self.block(["Mode", self.value(mode)], body)

    def channel(self, kind: str, family: str) -> None:
        r = self.rng
        head = [kind] + (["Default"] if r.random() < 0.3 else [])
        v6 = family == "ipv6"

        def body() -> None:
            clauses: list[tuple[str, str]] = []
            if kind == "Multicast":
                if v6:
                    clauses.append(("IPv6_address", "ff02::1:3"))
                else:
                    clauses.append(("IPv4_address", f"225.0.0.{r.randint(1, 254)}"))
                    clauses.append(("IPv4_interface", self.ipv4()))
                clauses.append(("Group", str(r.randint(1, 65535))))
            else:
                if v6:
                    clauses.append(("IPv6_address", self.ipv6()))
                    clauses.append(("IPv6_Destination_Address", self.ipv6()))
                else:
                    clauses.append(("IPv4_address", self.ipv4()))
                    clauses.append(("IPv4_Destination_Address", self.ipv4()))
                clauses.append(("Port", str(r.randint(1, 70000))))
            clauses.append(("Interface", r.choice(_IFACES)))
            if r.random() < 0.4:
                clauses.append(("SndSocketBuffer", self.number(0, 10**7)))
                clauses.append(("RcvSocketBuffer", self.number(0, 10**7)))
            if r.random() < 0.4:
                clauses.append(("Checksum", self.boolean()))
            if kind == "TCP" and r.random() < 0.3:
                clauses.append(("ErrorQueueLength", self.number(0, 1000)))
            for name, val in clauses:
                if r.random() < 0.85:
                    self.emit(name, self.value(val))
        self.block(head, body)

    def options(self) -> None:
        r = self.rng

        def body() -> None:
            for _ in range(r.randint(0, 3)):
                if r.random() < 0.4:
                    self.emit("TCPWindowTracking", self.value(self.boolean()))
                elif r.random() < 0.5:
                    self.emit("ExpectationSync", self.value(self.boolean()))
                else:
                    self.block(["ExpectationSync"], lambda: self.repeat(
                        lambda: self.emit(self.value(r.choice(("ftp", "sip", "h323", "irc")))),
                        0, 3))
        self.block(["Options"], body)

    # Stats, Helper
    def stats(self) -> None:
        r = self.rng

        def body() -> None:
            for _ in range(r.randint(0, 3)):
                if r.random() < 0.5:
                    self.emit("LogFile", self.value(r.choice((self.boolean(), self.path()))))
                else:
                    self.emit("Syslog", self.value(r.choice((self.boolean(),
                                                             r.choice(_FACILITIES)))))
        self.block(["Stats"], body)

    def helper(self) -> None:
        r = self.rng

        def typ() -> None:
            name, l4 = r.choice(_HELPERS)

            def body() -> None:
                if r.random() < 0.5:
                    self.emit("QueueNum", self.value(self.number(0, 10)))
                if r.random() < 0.5:
                    self.emit("QueueLen", self.value(self.number(0, 10000)))
                if r.random() < 0.5:
                    def pol() -> None:
                        self.emit("ExpectMax", self.value(self.number(1, 10)))
                        if r.random() < 0.5:
                            self.emit("ExpectTimeout", self.value(self.number(0, 600)))
                    self.block(["Policy", self.value(name)], pol)
            self.block(["Type", self.value(name), self.value(r.choice(("inet", "inet6"))),
                        self.value(l4)], body)

        def body() -> None:
            if r.random() < 0.4:
                self.emit("Setup", self.value(self.boolean()))
            self.repeat(typ, 0, 2)
        self.block(["Helper"], body)

    def config(self) -> str:
        r = self.rng
        mode = r.choice(("sync", "stats", "none"))
        sections: list = [lambda: self.block(["General"], lambda: self.repeat(
            self.general_clause, 0, 8))]
        if mode == "sync":
            sections.append(self.sync)
        elif mode == "stats":
            sections.append(self.stats)
        if r.random() < 0.15:
            sections.append(self.helper)
        if self.bad():
            sections.append(r.choice((self.sync, self.stats)))
        r.shuffle(sections)
        for section in sections:
            section()
        sep = r.choice((" ", "\n", "\n", "\t", "\r\n", "\n# comment\n"))
        text = sep.join(w for w in self.out if w != "")
        if r.random() < 0.2:
            text = "# generated\n" + text
        return text + "\n"


def generate(rng: random.Random, noise: float = 0.0) -> str:
    """One random configuration text (see the module docstring)."""
    return _Gen(rng, noise).config()
