"""``conntrack`` argument grammar: argv -> :class:`Request`, with the 1.4.7 diagnostics.

Checks happen in the same order as the reference tool: value errors while scanning (argv
order), then the NAT conflict, the generic option matrix (column order), the tuple rule and
the protocol's own matrix. Execution-time checks (``-z`` with filters, masks without
addresses) are left to the command runner.
"""

from __future__ import annotations

import os
import socket
import sys

from ctools.cli import _ct_proto as P
from ctools.cli._ct_errors import OTHER_PROBLEM, CtError, ParamError
from ctools.cli._ct_getopt import NO_ARG, OPTIONAL_ARG, REQUIRED_ARG, Getopt, LongOpt
from ctools.model import (
    IPS_ASSURED,
    IPS_EXPECTED,
    IPS_FIXED_TIMEOUT,
    IPS_HW_OFFLOAD,
    IPS_OFFLOAD,
    IPS_SEEN_REPLY,
    Entry,
    Tuple,
)

SHORTOPTS = ":L::I::U::D::G::E::F::A::hVs:d:r:q:p:t:u:e:a:z[:]:{:}:m:i:f:o:n::g::c:b:C::Sj::w:l:<:>::(:):"

LONGOPTS = (
    ("dump", OPTIONAL_ARG, "L"), ("create", OPTIONAL_ARG, "I"), ("add", OPTIONAL_ARG, "A"),
    ("delete", OPTIONAL_ARG, "D"), ("update", OPTIONAL_ARG, "U"), ("get", OPTIONAL_ARG, "G"),
    ("flush", OPTIONAL_ARG, "F"), ("event", OPTIONAL_ARG, "E"), ("counter", OPTIONAL_ARG, "C"),
    ("stats", NO_ARG, "S"), ("version", NO_ARG, "V"), ("help", NO_ARG, "h"),
    ("orig-src", REQUIRED_ARG, "s"), ("src", REQUIRED_ARG, "s"),
    ("orig-dst", REQUIRED_ARG, "d"), ("dst", REQUIRED_ARG, "d"),
    ("reply-src", REQUIRED_ARG, "r"), ("reply-dst", REQUIRED_ARG, "q"),
    ("protonum", REQUIRED_ARG, "p"), ("timeout", REQUIRED_ARG, "t"),
    ("status", REQUIRED_ARG, "u"), ("zero", NO_ARG, "z"),
    ("event-mask", REQUIRED_ARG, "e"), ("tuple-src", REQUIRED_ARG, "["),
    ("tuple-dst", REQUIRED_ARG, "]"), ("mask-src", REQUIRED_ARG, "{"),
    ("mask-dst", REQUIRED_ARG, "}"), ("nat-range", REQUIRED_ARG, "a"),
    ("mark", REQUIRED_ARG, "m"), ("secmark", REQUIRED_ARG, "c"), ("id", OPTIONAL_ARG, "i"),
    ("family", REQUIRED_ARG, "f"), ("src-nat", OPTIONAL_ARG, "n"),
    ("dst-nat", OPTIONAL_ARG, "g"), ("output", REQUIRED_ARG, "o"),
    ("buffer-size", REQUIRED_ARG, "b"), ("any-nat", OPTIONAL_ARG, "j"),
    ("zone", REQUIRED_ARG, "w"), ("label", REQUIRED_ARG, "l"),
    ("label-add", REQUIRED_ARG, "<"), ("label-del", OPTIONAL_ARG, ">"),
    ("orig-zone", REQUIRED_ARG, "("), ("reply-zone", REQUIRED_ARG, ")"),
)

_LONGOPT_OBJS = tuple(LongOpt(*o) for o in LONGOPTS)

# Generic option columns, in the order the matrix is checked (names used in messages).
OPT_NAMES = (
    "src", "dst", "reply-src", "reply-dst", "protonum", "timeout", "status", "zero",
    "event-mask", "tuple-src", "tuple-dst", "mask-src", "mask-dst", "nat-range", "mark", "id",
    "family", "src-nat", "dst-nat", "output", "secmark", "buffer-size", "any-nat", "zone",
    "label", "label-add", "label-del", "orig-zone", "reply-zone",
)
_OPT_OF_CHAR = {
    "s": "src", "d": "dst", "r": "reply-src", "q": "reply-dst", "p": "protonum",
    "t": "timeout", "u": "status", "z": "zero", "e": "event-mask", "[": "tuple-src",
    "]": "tuple-dst", "{": "mask-src", "}": "mask-dst", "m": "mark", "i": "id", "f": "family",
    "n": "src-nat", "g": "dst-nat", "o": "output", "c": "secmark", "b": "buffer-size",
    "j": "any-nat", "w": "zone", "l": "label", "<": "label-add", ">": "label-del",
    "(": "orig-zone", ")": "reply-zone",
}

# One string per command, one cell per OPT_NAMES column ('.' illegal, o optional, R required,
# T tuple rule).
_MATRIX = {
    P.CT_LIST:    "ooooo.oo...oo.o.ooooo.ooo..oo",
    P.CT_CREATE:  "TTTTRRo......oo..oo....o.o.oo",
    P.CT_ADD:     "TTTTRRo......oo..oo....o.o.oo",
    P.CT_UPDATE:  "ooooooo....oo.oooooo....ooo..",
    P.CT_DELETE:  "ooooooo....oo.oooooo...oo..oo",   # -j is illegal here [obs]
    P.CT_GET:     "TTTTR..........o...o....o....",
    P.CT_FLUSH:   "................o............",
    P.CT_EVENT:   "ooooo...o..oo.o.ooooooooo..oo",
    P.CT_VERSION: ".............................",
    P.CT_HELP:    "....o........................",
    P.EXP_LIST:   "................o..o.........",
    P.EXP_CREATE: "RRooRRo..RRRR................",
    P.EXP_DELETE: "RRooR........................",
    P.EXP_GET:    "RRooR........................",
    P.EXP_FLUSH:  ".............................",
    P.EXP_EVENT:  "...................o.........",
    P.CT_COUNT:   ".............................",
    P.EXP_COUNT:  ".............................",
    P.CT_STATS:   ".............................",
    P.EXP_STATS:  ".............................",
}

TABLES = ("expect", "conntrack", "dying", "unconfirmed")

# command letter -> (conntrack-table command, expect-table command, long name)
_CMD = {
    "L": (P.CT_LIST, P.EXP_LIST, "dump"), "I": (P.CT_CREATE, P.EXP_CREATE, "create"),
    "U": (P.CT_UPDATE, None, "update"), "D": (P.CT_DELETE, P.EXP_DELETE, "delete"),
    "G": (P.CT_GET, P.EXP_GET, "get"), "F": (P.CT_FLUSH, P.EXP_FLUSH, "flush"),
    "E": (P.CT_EVENT, P.EXP_EVENT, "event"), "V": (P.CT_VERSION, P.CT_VERSION, "version"),
    "h": (P.CT_HELP, P.CT_HELP, "help"), "C": (P.CT_COUNT, P.EXP_COUNT, "counter"),
    "S": (P.CT_STATS, P.EXP_STATS, "stats"), "A": (P.CT_ADD, None, "add"),
}

STATUS_KEYWORDS = (("ASSURED", IPS_ASSURED), ("SEEN_REPLY", IPS_SEEN_REPLY), ("UNSET", 0),
                   ("FIXED_TIMEOUT", IPS_FIXED_TIMEOUT), ("EXPECTED", IPS_EXPECTED),
                   ("OFFLOAD", IPS_OFFLOAD), ("HW_OFFLOAD", IPS_HW_OFFLOAD))
EVENT_NEW, EVENT_UPDATE, EVENT_DESTROY = 1, 2, 4
EVENT_KEYWORDS = (("ALL", 7), ("NEW", EVENT_NEW), ("UPDATES", EVENT_UPDATE),
                  ("DESTROY", EVENT_DESTROY))
O_XML, O_EXT, O_TMS, O_ID, O_KTMS, O_LABELS, O_USERSPACE, O_SAVE = (
    1, 2, 4, 8, 16, 32, 64, 128)
OUTPUT_KEYWORDS = (("xml", O_XML), ("extended", O_EXT), ("timestamp", O_TMS), ("id", O_ID),
                   ("ktimestamp", O_KTMS), ("labels", O_LABELS), ("userspace", O_USERSPACE),
                   ("save", O_SAVE), ("json", 256))   # json is ours, not in 1.4.7
O_JSON = 256

LABEL_MAP_PATH = "/etc/xtables/connlabel.conf"


class NatFilter:
    """A ``--src-nat``/``--dst-nat``/``--any-nat`` value: optional address and port."""

    __slots__ = ("family", "addr", "port")

    def __init__(self, family: int | None = None, addr: str | None = None,
                 port: int | None = None) -> None:
        self.family = family
        self.addr = addr
        self.port = port


class Template:
    """Everything the command line specified, as the command runner needs it."""

    def __init__(self) -> None:
        self.ct = Entry(orig=Tuple(), reply=Tuple())
        self.exptuple = Tuple()
        self.mask = Tuple()              # expectation mask / CIDR masks for src, dst
        self.mark: tuple[int, int] | None = None       # (value, mask)
        self.status: tuple[int, int] | None = None     # (value, mask)
        self.src_nat: NatFilter | None = None
        self.dst_nat: NatFilter | None = None
        self.any_nat: NatFilter | None = None
        self.label_filter: list[int] = []   # one bitmap per -l option (all must match)
        self.label_add: int | None = None
        self.label_del: int | None = None   # 0 = delete all
        self.orig_cidr: int | None = None   # prefix lengths given with -s / -d
        self.dst_cidr: int | None = None
        self.buffer_size: int | None = None


class Request:
    """A parsed command line."""

    def __init__(self) -> None:
        self.command: str | None = None
        self.table = "conntrack"
        self.options: set[str] = set()
        self.family: int | None = None       # AF_INET / AF_INET6 / None (unspecified)
        self.proto: P.ProtoHandler | None = None
        self.proto_flags: set[int] = set()
        self.tmpl = Template()
        self.output = 0
        self.event_mask = 7
        self.labelmap: LabelMap | None = None
        self.warnings: list[str] = []

    @property
    def comparing(self) -> bool:
        """True when options that trigger the userspace tuple/meta comparison are present."""
        return bool(self.options & _COMPARE_OPTS)


_COMPARE_OPTS = {"protonum", "src", "dst", "reply-src", "reply-dst", "mark", "secmark",
                 "status", "id", "zone", "label", "orig-zone", "reply-zone"}


class LabelMap:
    """Label names <-> bit numbers, from ``connlabel.conf``."""

    def __init__(self, names: dict[str, int]) -> None:
        self.bits = names
        self.names = {}
        for name, bit in names.items():
            self.names.setdefault(bit, name)

    @classmethod
    def load(cls, path: str | None = None) -> LabelMap:
        path = path or os.environ.get("CTOOLS_CONNLABEL_CONF") or LABEL_MAP_PATH
        names: dict[str, int] = {}
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    words = line.split("#", 1)[0].split()
                    if len(words) >= 2 and words[0].isdigit() and int(words[0]) < 1024:
                        names.setdefault(words[1], int(words[0]))
        except OSError as exc:
            sys.stderr.write(f"label map {path}: {exc.strerror}\n")
        return cls(names)


def inet_aton(text: str) -> bytes | None:
    """glibc ``inet_aton`` (Python calls it): 1-4 parts, each decimal/octal/hex; a blank
    ends the address."""
    try:
        return socket.inet_aton(text)
    except (OSError, ValueError):
        return None


def parse_address(text: str) -> tuple[int, str, int | None] | None:
    """Address with optional ``/prefix`` -> (family, canonical text, prefix or None).

    Prefix ``-2`` signals an invalid netmask. ``None`` when the address is invalid.
    """
    buf = text[:45]
    addr, slash, suffix = buf.partition("/")
    raw = inet_aton(addr)
    if raw is not None:
        family, out = socket.AF_INET, socket.inet_ntop(socket.AF_INET, raw)
    else:
        try:
            out = socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, addr))
        except (OSError, ValueError):
            return None
        family = socket.AF_INET6
    if not slash:
        return family, out, None
    s = suffix.lstrip(" \t\n\r\f\v")
    sign = ""
    if s[:1] in "+-" and s:
        sign, s = s[0], s[1:]
    digits = ""
    while s and s[0].isdigit():
        digits, s = digits + s[0], s[1:]
    if s:
        return family, out, -2
    value = int(digits or "0")
    if sign == "-":
        value = -value
    top = 32 if family == socket.AF_INET else 128
    if value < 0 or value > top:
        return family, out, -2
    return family, out, value


def prefix_mask(family: int, prefix: int) -> str:
    """Netmask text for a prefix length."""
    bits = 32 if family == socket.AF_INET else 128
    n = ((1 << bits) - 1) ^ ((1 << (bits - prefix)) - 1)
    return socket.inet_ntop(family, n.to_bytes(bits // 8, "big"))


def parse_keywords(arg: str, table: tuple, warnings: list[str],
                   status: bool = False) -> tuple[int, int]:
    """Comma list of prefix keywords -> (value, mask); see spec §2.2."""
    value = mask = 0
    pos = 0
    while True:
        comma = arg.find(",", pos)
        token = arg[pos:] if comma < 0 else arg[pos:comma]
        rest = arg[pos:]
        if not token:
            raise ParamError(f"Bad parameter `{rest}'")
        negate = status and token.startswith("!")
        word = token[1:] if negate else token
        low = word.lower()
        if low and "src_nat".startswith(low):
            warnings.append("WARNING: ignoring SRC_NAT, use --src-nat instead")
        elif low and "dst_nat".startswith(low):
            warnings.append("WARNING: ignoring DST_NAT, use --dst-nat instead")
        elif status and not negate and word.startswith("UNREPLIED"):
            mask |= IPS_SEEN_REPLY
        else:
            for name, bit in table:
                if low and name.lower().startswith(low):
                    if negate:
                        mask |= bit
                    else:
                        value |= bit
                    break
            else:
                # a negated token is reported without its "!"
                raise ParamError(f"Bad parameter `{rest[1:] if negate else rest}'")
        if comma < 0:
            break
        pos = comma + 1
    return value, mask


def _parse_output(arg: str, req: Request) -> None:
    value, _ = parse_keywords(arg, OUTPUT_KEYWORDS, req.warnings)
    req.output |= value
    if req.output & O_SAVE and req.output & ~O_SAVE:
        raise CtError("cannot combine save output with any other output type, use -o save only",
                      OTHER_PROBLEM)
    if req.output & O_JSON and req.output & (O_XML | O_SAVE | O_TMS):
        raise CtError("cannot combine json output with xml, save or timestamp output",
                      OTHER_PROBLEM)


def _parse_nat(arg: str, name: str) -> NatFilter:
    """``ADDR``, ``ADDR:PORT`` or ``[IPV6]:PORT`` (spec §2.3)."""
    port_text: str | None = None
    if "[" in arg:
        start = arg.index("[") + 1
        if arg[start:start + 1] == "]":
            raise ParamError("No IPv6 address specified")
        end = arg.find("]", start)
        if end < 0:
            raise ParamError("No closing ']' around IPv6 address")
        if arg[end + 1:end + 2] == ":":
            addr, port_text = arg[start:end], arg[end + 2:]
        else:
            addr = arg
    elif arg.count(":") == 1:
        addr, port_text = arg.split(":")
    else:
        addr = arg
    port = None
    if port_text is not None:
        if port_text == "":
            raise ParamError("No port specified after `:'")
        if not port_text.isdigit() or not port_text.isascii() or int(port_text) > 65535:
            raise ParamError(f"Invalid port `{port_text}'")
        port = int(port_text)
    parsed = parse_address(addr)
    if parsed is None:
        raise ParamError(f"Invalid IP address `{addr}'")
    if parsed[2] is not None:
        raise ParamError(f"CIDR notation unavailable for `--{name}'")
    return NatFilter(parsed[0], parsed[1], port)


def _parse_labels(arg: str, req: Request) -> int:
    if req.labelmap is None:
        req.labelmap = LabelMap.load()
    bits = 0
    for name in arg.split(","):
        bit = req.labelmap.bits.get(name)
        if bit is None:
            raise ParamError(f"unknown label '{name}'")
        bits |= 1 << bit
    return bits


def _take_optional(opt: Getopt, optarg: str | None) -> str | None:
    """Optional arguments come from the next word only; attached values are ignored."""
    if optarg is not None:
        return None
    argv = opt.argv
    if opt.optind < len(argv) and not argv[opt.optind].startswith(("-", "!")):
        word = argv[opt.optind]
        opt.optind += 1
        return word
    return None


def _table(opt: Getopt, optarg: str | None) -> str:
    word = _take_optional(opt, optarg)
    if word is None:
        return "conntrack"
    for name in TABLES:
        if name.startswith(word):
            return name
    raise ParamError(f"unknown type `{word}'")


def parse(argv: list[str], output: int = 0) -> Request:
    """Parse ``argv`` (``argv[0]`` = program name) into a checked :class:`Request`.

    ``output`` carries ``-o`` flags over from earlier lines of a ``-R`` file (1.4.7 keeps
    them global).
    """
    req = Request()
    req.output = output
    tmpl = req.tmpl
    longopts = list(_LONGOPT_OBJS)
    opt = Getopt(list(argv), SHORTOPTS, longopts)
    protos_merged: list[P.ProtoHandler] = []

    def set_family(family: int) -> None:
        if req.family is not None and req.family != family:
            raise ParamError("mismatched address family")
        req.family = family

    def address(arg: str, name: str, cidr: bool) -> tuple[int, str, int | None]:
        parsed = parse_address(arg)
        if parsed is None:
            raise ParamError(f"Invalid IP address `{arg[:45]}'")
        if parsed[2] is not None:
            if not cidr:
                raise ParamError(f"CIDR notation unavailable for `--{name}'")
            if parsed[2] == -2:
                raise ParamError("Invalid netmask")
        set_family(parsed[0])
        return parsed

    while True:
        got = opt.next()
        if got is None:
            break
        c, optarg = got
        if c == "?":
            raise ParamError(f"unknown option `{opt.last_word()}'")
        if c == ":":
            raise ParamError(f"option `{opt.last_word()}' requires an argument")
        if c in _CMD:
            table = _table(opt, optarg)
            ct_cmd, exp_cmd, long_name = _CMD[c]
            if table in ("dying", "unconfirmed"):
                if c != "L":
                    raise ParamError(
                        "Can't do that command with tables `dying' and `unconfirmed'")
                cmd = P.CT_LIST
            elif table == "expect":
                if exp_cmd is None:
                    raise ParamError(f"Can't do --{long_name} on expectations")
                cmd = exp_cmd
            else:
                cmd = ct_cmd
            if req.command is not None:
                raise ParamError("Invalid commands combination")
            req.command = cmd
            req.table = table
            continue
        if c.startswith("proto:"):
            _, pname, idx = c.split(":")
            handler = req.proto
            if handler is None or handler.name != pname:
                handler = next(h for h in protos_merged if h.name == pname)
            handler.parse(int(idx), optarg or "", tmpl)
            req.proto_flags.add(int(idx))
            continue
        if c == "a":
            req.warnings.append("WARNING: ignoring -a, deprecated option.")
            _flush_warnings(req)
            continue
        name = _OPT_OF_CHAR[c]
        if c in "ngj>i":
            optarg_attached = optarg
            optarg = _take_optional(opt, optarg)
            if c == "i" and optarg is None:
                optarg = optarg_attached
        req.options.add(name)
        if c == "s":
            fam, addr, prefix = address(optarg, name, True)
            tmpl.ct.orig.src = addr
            tmpl.ct.orig.family = fam
            if prefix is not None:
                tmpl.orig_cidr = prefix
                tmpl.mask.src = prefix_mask(fam, prefix)
                req.options.add("mask-src")
        elif c == "d":
            fam, addr, prefix = address(optarg, name, True)
            tmpl.ct.orig.dst = addr
            tmpl.ct.orig.family = fam
            if prefix is not None:
                tmpl.dst_cidr = prefix
                tmpl.mask.dst = prefix_mask(fam, prefix)
                req.options.add("mask-dst")
        elif c == "r":
            fam, addr, _ = address(optarg, name, False)
            tmpl.ct.reply.src = addr
            tmpl.ct.reply.family = fam
        elif c == "q":
            fam, addr, _ = address(optarg, name, False)
            tmpl.ct.reply.dst = addr
            tmpl.ct.reply.family = fam
        elif c in "[]":
            fam, addr, prefix = address(optarg, name, True)
            tmpl.exptuple.family = fam
            if c == "[":
                tmpl.exptuple.src = addr
            else:
                tmpl.exptuple.dst = addr
            if prefix is not None:
                req.options.add("mask-src" if c == "[" else "mask-dst")
                if c == "[":
                    tmpl.mask.src = prefix_mask(fam, prefix)
                else:
                    tmpl.mask.dst = prefix_mask(fam, prefix)
        elif c in "{}":
            fam, addr, _ = address(optarg, name, False)
            tmpl.mask.family = fam
            if c == "{":
                tmpl.mask.src = addr
            else:
                tmpl.mask.dst = addr
        elif c == "p":
            handler = P.find_proto(optarg)
            if handler is None:
                raise ParamError(f"`{optarg}' unsupported protocol")
            req.proto = handler
            protos_merged.append(handler)
            opt.add_longopts(handler.long_options())
            for t in (tmpl.ct.orig, tmpl.ct.reply, tmpl.exptuple, tmpl.mask):
                t.proto = handler.protonum
        elif c == "t":
            tmpl.ct.timeout = P.c_atoi(optarg) & 0xFFFFFFFF
        elif c == "u":
            value, mask = parse_keywords(optarg, STATUS_KEYWORDS, req.warnings, status=True)
            _flush_warnings(req)
            tmpl.status = (value, mask or value)
            tmpl.ct.status = value
        elif c == "z":
            pass
        elif c == "e":
            value, _ = parse_keywords(optarg, EVENT_KEYWORDS, req.warnings)
            _flush_warnings(req)
            req.event_mask = value
        elif c == "m":
            value_text, slash, mask_text = optarg.partition("/")
            value = P.ul(value_text, 32)
            mask = P.ul(mask_text, 32) if slash else 0xFFFFFFFF
            tmpl.mark = (value, mask)
            tmpl.ct.mark = value
        elif c == "c":
            tmpl.ct.secmark = P.ul(optarg, 32)
        elif c == "i":
            if optarg is None:
                raise ParamError(f"option `{opt.last_word()}' requires an argument")
            tmpl.ct.id = P.ul(optarg, 32)
        elif c == "f":
            if optarg.startswith("ipv4"):
                set_family(socket.AF_INET)
            elif optarg.startswith("ipv6"):
                set_family(socket.AF_INET6)
            else:
                raise ParamError(f"`{optarg}' unsupported protocol")
        elif c in "ngj":
            nat = NatFilter()
            if optarg is not None:
                nat = _parse_nat(optarg, name)
                set_family(nat.family)
            if c == "n":
                tmpl.src_nat = nat
            elif c == "g":
                tmpl.dst_nat = nat
            else:
                tmpl.any_nat = nat
        elif c == "o":
            _parse_output(optarg, req)
            _flush_warnings(req)
        elif c == "b":
            tmpl.buffer_size = P.c_atoi(optarg)
        elif c == "w":
            tmpl.ct.zone = P.ul(optarg, 16)
        elif c == "(":
            tmpl.ct.orig.zone = P.ul(optarg, 16)
        elif c == ")":
            tmpl.ct.reply.zone = P.ul(optarg, 16)
        elif c == "l":
            tmpl.label_filter.append(_parse_labels(optarg, req))
        elif c == "<":
            tmpl.label_add = _parse_labels(optarg, req)
            if "label-del" in req.options:
                raise CtError("cannot use --label-add and --label-del at the same time")
        elif c == ">":
            tmpl.label_del = _parse_labels(optarg, req) if optarg is not None else 0
            if req.labelmap is None:
                req.labelmap = LabelMap.load()
            if "label-add" in req.options:
                raise CtError("cannot use --label-add and --label-del at the same time")

    _check(req)
    return req


def _flush_warnings(req: Request) -> None:
    for line in req.warnings:
        sys.stderr.write(line + "\n")
    req.warnings.clear()


def _check(req: Request) -> None:
    if req.command is None:
        if req.options:
            first = next(n for n in OPT_NAMES if n in req.options)
            raise ParamError(f"Illegal option `--{first}' with this command")
        if req.proto is not None:
            raise ParamError("Illegal option `--protonum' with this command")
        return
    if "any-nat" in req.options and req.options & {"src-nat", "dst-nat"}:
        raise ParamError("cannot specify `--src-nat' or `--dst-nat' with `--any-nat'")
    cells = _MATRIX[req.command]
    for name, cell in zip(OPT_NAMES, cells, strict=False):
        if cell == "." and name in req.options:
            raise ParamError(f"Illegal option `--{name}' with this command")
        if cell == "R" and name not in req.options:
            raise ParamError(f"You need to supply the `--{name}' option for this command")
    if "T" in cells:
        o = req.options
        if not ({"src", "dst"} <= o or {"reply-src", "reply-dst"} <= o):
            if o & {"src", "dst"} or not o & {"reply-src", "reply-dst"}:
                raise ParamError("you have to specify `--src' and `--dst'")
            raise ParamError("you have to specify `--reply-src' and `--reply-dst'")
    if req.proto is not None and req.command != P.CT_HELP:
        req.proto.final_check(req.proto_flags, req.command)
