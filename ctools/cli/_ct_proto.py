"""Layer-4 protocol extensions of the ``conntrack`` command line: one class per protocol.

Each handler declares its long options (they only exist after ``-p PROTO``), the per-command
option matrix, the value parsers and the "pair" rule that needs either the original or the
reply ports. Values land in a :class:`~ctools.cli._ct_args.Template`.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from ctools.cli._ct_errors import ParamError
from ctools.cli._ct_getopt import REQUIRED_ARG, LongOpt
from ctools.model import TCP_STATE

if TYPE_CHECKING:  # pragma: no cover
    from ctools.cli._ct_args import Template

# Command identifiers (shared with _ct_args)
CT_LIST, CT_CREATE, CT_UPDATE, CT_DELETE, CT_GET, CT_FLUSH, CT_EVENT = (
    "CT_LIST", "CT_CREATE", "CT_UPDATE", "CT_DELETE", "CT_GET", "CT_FLUSH", "CT_EVENT")
CT_VERSION, CT_HELP, CT_COUNT, CT_STATS, CT_ADD = (
    "CT_VERSION", "CT_HELP", "CT_COUNT", "CT_STATS", "CT_ADD")
EXP_LIST, EXP_CREATE, EXP_DELETE, EXP_GET, EXP_FLUSH, EXP_EVENT, EXP_COUNT, EXP_STATS = (
    "EXP_LIST", "EXP_CREATE", "EXP_DELETE", "EXP_GET", "EXP_FLUSH", "EXP_EVENT",
    "EXP_COUNT", "EXP_STATS")


def c_atoi(text: str) -> int:
    """C ``atoi``: optional blanks and sign, then decimal digits; garbage gives 0."""
    s = text.lstrip(" \t\n\r\f\v")
    sign = 1
    if s[:1] in ("+", "-"):
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    n = 0
    for ch in s:
        if not "0" <= ch <= "9":
            break
        n = n * 10 + ord(ch) - 48
    return sign * n


def c_strtoul(text: str, base: int = 0) -> tuple[int, str]:
    """C ``strtoul``: returns (value modulo 2**64, unparsed rest). Base 0 auto-detects."""
    s = text.lstrip(" \t\n\r\f\v")
    neg = False
    if s[:1] in ("+", "-"):
        neg = s[0] == "-"
        s = s[1:]
    if base in (0, 16) and s[:2].lower() == "0x" and len(s) > 2 and s[2] in "0123456789abcdefABCDEF":
        s, base = s[2:], 16
    elif base == 0:
        base = 8 if s.startswith("0") else 10
    n = 0
    i = 0
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"[:base]
    while i < len(s) and s[i].lower() in digits:
        n = n * base + digits.index(s[i].lower())
        i += 1
    if i == 0:
        return 0, text
    if neg:
        n = -n
    return n % (1 << 64), s[i:]


def ul(text: str, bits: int) -> int:
    """``strtoul(text, NULL, 0)`` truncated to ``bits`` bits (no error, like 1.4.7)."""
    return c_strtoul(text)[0] & ((1 << bits) - 1)


_LONGOPT_CACHE: dict[tuple, list[LongOpt]] = {}

# Matrix cells
NONE, OPT, MUST, PAIR = ".", "o", "R", "T"


class ProtoHandler:
    """Base class: a protocol without options (the generic "unknown" handler)."""

    name = "unknown"
    protonum = 0
    #: (long name, local index); local index selects ``msg_names``
    options: tuple[tuple[str, int], ...] = ()
    msg_names: tuple[str, ...] = ()
    #: command -> string of matrix cells, one per local index
    matrix: dict[str, str] = {}
    #: pair rule: (first-pair indexes, second-pair indexes, first msg, second msg)
    pairs: tuple | None = None
    help_lines: tuple[str, ...] = ("  no options (this protocol has none)",)

    def long_options(self, offset: int = 0) -> list[LongOpt]:
        """The options this protocol adds to the long-option table (cached per protocol)."""
        key = (self.name, self.options)
        opts = _LONGOPT_CACHE.get(key)
        if opts is None:
            opts = _LONGOPT_CACHE[key] = [LongOpt(name, REQUIRED_ARG, f"proto:{self.name}:{idx}")
                                          for name, idx in self.options]
        return opts

    def parse(self, idx: int, arg: str, tmpl: Template) -> None:  # pragma: no cover
        raise ParamError("parse error")

    def final_check(self, flags: set[int], command: str) -> None:
        """Apply the protocol's option matrix, then its pair rule (§3.3)."""
        cells = self.matrix.get(command, "")
        for idx, name in enumerate(self.msg_names):
            cell = cells[idx] if idx < len(cells) else NONE
            if cell == NONE and idx in flags:
                raise ParamError(f"Illegal option `--{name}' with this command")
            if cell == MUST and idx not in flags:
                raise ParamError(f"You need to supply the `--{name}' option for this command")
        if self.pairs is None or PAIR not in cells:
            return
        first, second, msg1, msg2 = self.pairs
        if all(i in flags for i in first) or all(i in flags for i in second):
            return
        if any(i in flags for i in first) or not any(i in flags for i in second):
            raise ParamError(msg1)
        raise ParamError(msg2)


class PortProto(ProtoHandler):
    """tcp/udp/udplite/sctp/dccp share the port options."""

    base_options = (
        ("orig-port-src", 0), ("sport", 0), ("orig-port-dst", 1), ("dport", 1),
        ("reply-port-src", 2), ("reply-port-dst", 3), ("mask-port-src", 4),
        ("mask-port-dst", 5),
    )
    pairs = ((0, 1), (2, 3), "you have to specify `--sport' and `--dport'",
             "you have to specify `--reply-src-port' and `--reply-dst-port'")
    help_lines = (
        "  --orig-port-src PORT\t\tsource port, original direction",
        "  --orig-port-dst PORT\t\tdestination port, original direction",
        "  --reply-port-src PORT\t\tsource port, reply direction",
        "  --reply-port-dst PORT\t\tdestination port, reply direction",
        "  --mask-port-src PORT\t\tsource port mask (expectations)",
        "  --mask-port-dst PORT\t\tdestination port mask (expectations)",
        "  --tuple-port-src PORT\t\tsource port of the expected tuple",
        "  --tuple-port-dst PORT\t\tdestination port of the expected tuple",
    )
    #: local index of --tuple-port-src (the dst one follows)
    tuple_idx = 6

    def parse_port(self, idx: int, arg: str, tmpl: Template) -> bool:
        port = c_atoi(arg) & 0xFFFF
        if idx == 0:
            tmpl.ct.orig.sport = port
        elif idx == 1:
            tmpl.ct.orig.dport = port
        elif idx == 2:
            tmpl.ct.reply.sport = port
        elif idx == 3:
            tmpl.ct.reply.dport = port
        elif idx == 4:
            tmpl.mask.sport = port
        elif idx == 5:
            tmpl.mask.dport = port
        elif idx == self.tuple_idx:
            tmpl.exptuple.sport = port
        elif idx == self.tuple_idx + 1:
            tmpl.exptuple.dport = port
        else:
            return False
        return True

    def parse(self, idx: int, arg: str, tmpl: Template) -> None:
        self.parse_port(idx, arg, tmpl)


class Udp(PortProto):
    name, protonum = "udp", 17
    options = PortProto.base_options + (("tuple-port-src", 6), ("tuple-port-dst", 7))
    msg_names = ("sport", "dport", "reply-port-src", "reply-port-dst", "mask-port-src",
                 "mask-port-dst", "tuple-port-src", "tuple-port-dst")
    matrix = {
        CT_LIST: "oooo....", CT_UPDATE: "oooo....", CT_DELETE: "oooo....", CT_EVENT: "oooo....",
        CT_CREATE: "TTTT....", CT_ADD: "TTTT....", CT_GET: "TTTT....",
        EXP_CREATE: "RR..RRRR", EXP_DELETE: "RRRR....", EXP_GET: "RRRR....",
    }


class Udplite(Udp):
    name, protonum = "udplite", 136


class Tcp(PortProto):
    name, protonum = "tcp", 6
    options = PortProto.base_options + (("state", 6), ("tuple-port-src", 7),
                                        ("tuple-port-dst", 8))
    msg_names = ("sport", "dport", "reply-port-src", "reply-port-dst", "mask-port-src",
                 "mask-port-dst", "state", "tuple-port-src", "tuple-port-dst")
    matrix = {
        CT_LIST: "oooo..o..", CT_UPDATE: "oooo..o..", CT_DELETE: "oooo..o..",
        CT_EVENT: "oooo..o..", CT_CREATE: "TTTT..R..", CT_ADD: "TTTT..R..",
        CT_GET: "TTTT..o..", EXP_CREATE: "RR..RR.RR", EXP_DELETE: "RRRR.....",
        EXP_GET: "RRRR.....",
    }
    tuple_idx = 7
    help_lines = PortProto.help_lines + ("  --state STATE\t\t\tTCP state, e.g. ESTABLISHED",)
    states = dict(TCP_STATE, LISTEN=TCP_STATE["SYN_SENT2"])

    def parse(self, idx: int, arg: str, tmpl: Template) -> None:
        if idx == 6:
            if arg not in self.states:
                raise ParamError(f"unknown TCP state `{arg}'")
            tmpl.ct.tcp_state = self.states[arg]
            return
        self.parse_port(idx, arg, tmpl)


SCTP_STATES = ("NONE", "CLOSED", "COOKIE_WAIT", "COOKIE_ECHOED", "ESTABLISHED",
               "SHUTDOWN_SENT", "SHUTDOWN_RECD", "SHUTDOWN_ACK_SENT")
DCCP_STATES = ("NONE", "REQUEST", "RESPOND", "PARTOPEN", "OPEN", "CLOSEREQ", "CLOSING",
               "TIMEWAIT", "IGNORE", "INVALID")


class Sctp(Tcp):
    name, protonum = "sctp", 132
    options = Tcp.options + (("orig-vtag", 9), ("reply-vtag", 10))
    msg_names = Tcp.msg_names + ("orig-vtag", "reply-vtag")
    matrix = {
        CT_LIST: "oooo..o....", CT_DELETE: "oooo..o....", CT_EVENT: "oooo..o....",
        CT_UPDATE: "oooo..o..oo", CT_CREATE: "TTTT..R..RR", CT_ADD: "TTTT..R..RR",
        CT_GET: "TTTT..o..oo", EXP_CREATE: "RR..RR.RRRR", EXP_DELETE: "RRRR.......",
        EXP_GET: "RRRR.......",
    }
    help_lines = PortProto.help_lines + (
        "  --state STATE\t\t\tSCTP state, e.g. ESTABLISHED",
        "  --orig-vtag TAG\t\tverification tag, original direction",
        "  --reply-vtag TAG\t\tverification tag, reply direction",
    )

    def parse(self, idx: int, arg: str, tmpl: Template) -> None:
        if idx == 6:
            if arg not in SCTP_STATES:
                # 1.4.7 crashes here; we report it (docs/compat-cli.md)
                raise ParamError(f"unknown SCTP state `{arg}'")
            tmpl.ct.sctp_state = SCTP_STATES.index(arg)
        elif idx == 9:
            tmpl.ct.sctp_vtag_orig = c_atoi(arg) & 0xFFFFFFFF
        elif idx == 10:
            tmpl.ct.sctp_vtag_reply = c_atoi(arg) & 0xFFFFFFFF
        else:
            self.parse_port(idx, arg, tmpl)


class Dccp(Tcp):
    name, protonum = "dccp", 33
    options = Tcp.options + (("role", 9),)
    msg_names = Tcp.msg_names + ("role",)
    matrix = {
        CT_LIST: "oooo..o...", CT_UPDATE: "oooo..o...", CT_DELETE: "oooo..o...",
        CT_EVENT: "oooo..o...", CT_CREATE: "TTTT..R..R", CT_ADD: "TTTT..R..R",
        CT_GET: "TTTT..o...", EXP_CREATE: "RR..RR.RRR", EXP_DELETE: "RRRR......",
        EXP_GET: "RRRR......",
    }
    pairs = ((0, 1), (2, 3), "you have to specify `--sport' and `--dport'",
             "you have to specify `--reply-port-src' and `--report-port-dst'")
    help_lines = PortProto.help_lines + (
        "  --state STATE\t\t\tDCCP state, e.g. RESPOND",
        "  --role client|server\t\tDCCP role",
    )

    def parse(self, idx: int, arg: str, tmpl: Template) -> None:
        if idx == 6:
            if arg not in DCCP_STATES:
                raise ParamError(f"Unknown DCCP state `{arg}'")
            tmpl.ct.dccp_state = DCCP_STATES.index(arg)
        elif idx == 9:
            low = arg.lower()
            if low and "client".startswith(low):
                tmpl.ct.dccp_role = 0
            elif low and "server".startswith(low):
                tmpl.ct.dccp_role = 1
            else:
                raise ParamError(f"Unknown DCCP role `{arg}'")
        else:
            self.parse_port(idx, arg, tmpl)


class Icmp(ProtoHandler):
    name, protonum = "icmp", 1
    options = (("icmp-type", 0), ("icmp-code", 1), ("icmp-id", 2))
    msg_names = ("icmp-type", "icmp-code", "icmp-id")
    matrix = {
        CT_LIST: "ooo", CT_UPDATE: "ooo", CT_DELETE: "ooo", CT_EVENT: "ooo",
        CT_CREATE: "RRo", CT_ADD: "RRo", CT_GET: "RRo",
    }
    help_lines = ("  --icmp-type TYPE\t\tICMP type",
                  "  --icmp-code CODE\t\tICMP code",
                  "  --icmp-id ID\t\t\tICMP identifier")

    def parse(self, idx: int, arg: str, tmpl: Template) -> None:
        if idx == 0:
            tmpl.ct.orig.icmp_type = c_atoi(arg) & 0xFF
        elif idx == 1:
            tmpl.ct.orig.icmp_code = c_atoi(arg) & 0xFF
        else:
            tmpl.ct.orig.icmp_id = c_atoi(arg) & 0xFFFF


class Icmpv6(Icmp):
    name, protonum = "icmpv6", 58
    options = (("icmpv6-type", 0), ("icmpv6-code", 1), ("icmpv6-id", 2))
    msg_names = ("icmpv6-type", "icmpv6-code", "icmpv6-id")
    help_lines = ("  --icmpv6-type TYPE\t\tICMPv6 type",
                  "  --icmpv6-code CODE\t\tICMPv6 code",
                  "  --icmpv6-id ID\t\tICMPv6 identifier")


class Gre(ProtoHandler):
    name, protonum = "gre", 47
    options = (("orig-key-src", 0), ("srckey", 0), ("orig-key-dst", 1), ("dstkey", 1),
               ("reply-key-src", 2), ("reply-key-dst", 3), ("mask-key-src", 4),
               ("mask-key-dst", 5), ("tuple-key-src", 6), ("tuple-key-dst", 7))
    msg_names = ("srckey", "dstkey", "reply-key-src", "reply-key-dst", "mask-key-src",
                 "mask-key-dst", "tuple-key-src", "tuple-key-dst")
    matrix = {
        CT_LIST: "oooo....", CT_UPDATE: "oooo....", CT_DELETE: "oooo....", CT_EVENT: "oooo....",
        CT_CREATE: "TTTT....", CT_ADD: "TTTT....", CT_GET: "TTTT....",
        EXP_CREATE: "RRRRRRRR", EXP_DELETE: "RRRR....", EXP_GET: "RRRR....",
    }
    pairs = ((0, 1), (2, 3), "you have to specify `--srckey' and `--dstkey'",
             "you have to specify `--reply-src-key' and `--reply-dst-key'")
    help_lines = ("  --orig-key-src KEY\t\tsource key, original direction",
                  "  --orig-key-dst KEY\t\tdestination key, original direction",
                  "  --reply-key-src KEY\t\tsource key, reply direction",
                  "  --reply-key-dst KEY\t\tdestination key, reply direction",
                  "  --mask-key-src KEY\t\tsource key mask (expectations)",
                  "  --mask-key-dst KEY\t\tdestination key mask (expectations)",
                  "  --tuple-key-src KEY\t\tsource key of the expected tuple",
                  "  --tuple-key-dst KEY\t\tdestination key of the expected tuple")

    def parse(self, idx: int, arg: str, tmpl: Template) -> None:
        key = ul(arg, 16)
        target = (tmpl.ct.orig, tmpl.ct.orig, tmpl.ct.reply, tmpl.ct.reply,
                  tmpl.mask, tmpl.mask, tmpl.exptuple, tmpl.exptuple)[idx]
        if idx % 2 == 0:
            target.sport = key
        else:
            target.dport = key


class Generic(ProtoHandler):
    """Any other protocol number: no options."""

    def __init__(self, protonum: int) -> None:
        self.protonum = protonum
        self.name = _proto_name(protonum)


def _proto_name(num: int) -> str:
    """Name of ``num`` in /etc/protocols, or ``unknown``."""
    try:
        with open("/etc/protocols", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                words = line.split("#", 1)[0].split()
                if len(words) >= 2 and words[1] == str(num):
                    return words[0]
    except OSError:
        pass
    return "unknown"


BUILTIN = {cls.name: cls for cls in (Tcp, Udp, Udplite, Sctp, Dccp, Icmp, Icmpv6, Gre)}
BY_NUMBER = {cls.protonum: cls for cls in BUILTIN.values()}


def find_proto(text: str) -> ProtoHandler | None:
    """``-p`` lookup: built-in name, /etc/protocols name, or a number 0..255."""
    cls = BUILTIN.get(text.lower())
    if cls is not None:
        return cls()
    try:
        num = socket.getprotobyname(text)
    except (OSError, UnicodeError):     # argv bytes that are not UTF-8 name no protocol
        num = None
    if num is None:
        value, rest = c_strtoul(text)
        digits_ok = text != "" and rest == "" and not text.lstrip().startswith(("-", "+"))
        if not digits_ok or value > 255 or text[:1].isspace():
            return None
        num = value
    cls = BY_NUMBER.get(num)
    if cls is not None:
        return cls()
    return Generic(num)
