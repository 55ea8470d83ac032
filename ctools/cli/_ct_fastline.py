"""Fast path for the common ``-R`` line: an IPv4 tcp/udp ``-I``/``-A`` with plain values.

Parsing a batch line with the full getopt imitation (:mod:`ctools.cli._ct_args`) costs
about 0.1 ms; a 100k-line file spent most of its time there.  :func:`fast_create` accepts
only a strict subset of the grammar -- exactly what ``-o save`` and hand-written restore
files use: every option at most once, exact option names, values in canonical form
(dotted quads without leading zeros, decimal numbers without leading zeros, exact keyword
names) -- and encodes the create request straight into netlink attributes.  Anything else
returns ``None`` and the caller uses the full parser, so diagnostics stay those of 1.4.7.

For an accepted line the result is byte-for-byte the request the full parser + runner
would send (tests/test_cli_perfpaths.py checks that on generated lines).  The C
accelerator (``_ctfast.create_line``) implements the same grammar; :func:`fast_create`
uses it when built, :func:`fast_create_py` is the pure-Python reference.
"""

from __future__ import annotations

import re
import socket
import struct

from ctools._speedups import load_ctfast
from ctools.cli import _ct_proto as P
from ctools.model import TCP_STATE
from ctools.netlink import constants as C

_NESTED = C.NLA_F_NESTED

# option word -> key; values are validated per key below
_OPTS = {
    "-s": "s", "--src": "s", "--orig-src": "s",
    "-d": "d", "--dst": "d", "--orig-dst": "d",
    "-r": "r", "--reply-src": "r", "-q": "q", "--reply-dst": "q",
    "-p": "p", "--protonum": "p",
    "-t": "t", "--timeout": "t",
    "-u": "u", "--status": "u",
    "-m": "m", "--mark": "m",
    "-w": "w", "--zone": "w",
}
# protocol options: only known after -p (getopt adds them then)
_PORT_OPTS = {"--sport": "sp", "--orig-port-src": "sp", "--dport": "dp",
              "--orig-port-dst": "dp", "--reply-port-src": "rsp", "--reply-port-dst": "rdp"}
_TCP_OPTS = dict(_PORT_OPTS, **{"--state": "st"})
_PROTO_OPTS = {6: _TCP_OPTS, 17: _PORT_OPTS}
_COMMANDS = {"-I": P.CT_CREATE, "--create": P.CT_CREATE, "-A": P.CT_ADD, "--add": P.CT_ADD}
_PROTOS = {"tcp": 6, "udp": 17}

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}").fullmatch
_DEC = re.compile(r"0|[1-9][0-9]{0,9}").fullmatch
# the line may only hold what split_line splits on and printable ASCII without quotes
_PLAIN = re.compile(r"[ \t\n!#-~]*").fullmatch

_STATUS = {"ASSURED": 4, "SEEN_REPLY": 2, "UNSET": 0, "FIXED_TIMEOUT": 0x400,
           "EXPECTED": 1, "OFFLOAD": 0x4000, "HW_OFFLOAD": 0x8000}
_TCP_STATES = dict(TCP_STATE, LISTEN=TCP_STATE["SYN_SENT2"])
_TIME_WAIT = TCP_STATE["TIME_WAIT"]

# Both tuples of an IPv4 port flow in one pack: nest header, IP nest (src, dst), proto nest
# (num, sport, dport).  Lengths and types are native-endian, addresses/ports big-endian
# (ports and addresses are passed pre-swapped, see _be16).
_TUPLE = "HHHHHH4sHH4sHHHHBxxxHHHxxHHHxx"
_TWO_TUPLES = struct.Struct("=" + _TUPLE + _TUPLE).pack
_U32_ATTR = struct.Struct("=HHI").pack
_U16_ATTR = struct.Struct("=HHHxx").pack
# CTA_PROTOINFO { CTA_PROTOINFO_TCP { state, flags orig, flags reply } }
_TCP_PINFO = struct.Struct("=HHHHHHBxxxHHBBxxHHBBxx").pack
_TCP_HEAD = (32, C.CTA_PROTOINFO | _NESTED, 28, C.CTA_PROTOINFO_TCP | _NESTED, 5,
             C.CTA_PROTOINFO_TCP_STATE)

_htons = socket.htons
_htonl = socket.htonl
_aton = socket.inet_aton


def _tuple_args(ty: int, src: bytes, dst: bytes, proto: int, sport: int, dport: int) -> tuple:
    return (52, ty | _NESTED, 20, C.CTA_TUPLE_IP | _NESTED, 8, C.CTA_IP_V4_SRC, src, 8,
            C.CTA_IP_V4_DST, dst, 28, C.CTA_TUPLE_PROTO | _NESTED, 5, C.CTA_PROTO_NUM,
            proto, 6, C.CTA_PROTO_SRC_PORT, _htons(sport), 6, C.CTA_PROTO_DST_PORT,
            _htons(dport))


def _u32(text: str) -> int | None:
    if _DEC(text) is None:
        return None
    v = int(text)
    return v if v <= 0xFFFFFFFF else None


def _u16(text: str) -> int | None:
    if _DEC(text) is None:
        return None
    v = int(text)
    return v if v <= 0xFFFF else None


_c_create_line = getattr(load_ctfast(), "create_line", None)
_COMMAND_OF_ADD = (P.CT_CREATE, P.CT_ADD)
_AF_INET = int(socket.AF_INET)


def fast_create(line: str) -> tuple[str, int, bytes] | None:
    """``(command, family, attrs)`` of a plain IPv4 tcp/udp create line, else ``None``.

    ``line`` is one line of a ``-R`` file without the program name; ``None`` means "use
    the full parser".  In C when the accelerator is built, else :func:`fast_create_py`.
    """
    if _c_create_line is None:
        return fast_create_py(line)
    got = _c_create_line(line)
    if got is None:
        return None
    return _COMMAND_OF_ADD[got[0]], _AF_INET, got[1]


def fast_create_py(line: str) -> tuple[str, int, bytes] | None:
    """The pure-Python :func:`fast_create`.

    ``line`` is one line of a ``-R`` file without the program name; ``None`` means "use
    the full parser" (the line may still be valid, or be wrong in a way that needs 1.4.7's
    exact message).
    """
    if _PLAIN(line) is None:
        return None
    words = line.split()
    n = len(words)
    if n < 2 or n > 60:
        return None
    command = _COMMANDS.get(words[0])
    if command is None:
        return None
    seen: dict[str, str] = {}
    proto_opts: dict[str, str] | None = None
    i = 1
    while i < n:
        key = _OPTS.get(words[i])
        if key is None:
            key = proto_opts.get(words[i]) if proto_opts is not None else None
            if key is None:
                return None
        if key in seen or i + 1 >= n:
            return None
        value = words[i + 1]
        seen[key] = value
        if key == "p":
            proto = _PROTOS.get(value)
            if proto is None:
                return None
            proto_opts = _PROTO_OPTS[proto]
        i += 2
    # what the full parser requires for -I/-A: -p, -t, -s and -d (we do not take the
    # reply-only form), --sport/--dport, and --state for tcp
    try:
        src = seen["s"]
        dst = seen["d"]
        sport = _u16(seen["sp"])
        dport = _u16(seen["dp"])
        timeout = _u32(seen["t"])
    except KeyError:
        return None
    proto = _PROTOS[seen["p"]]
    if (sport is None or dport is None or timeout is None or _IPV4(src) is None
            or _IPV4(dst) is None):
        return None
    for key in ("r", "q"):   # checked by the parser, unused: the reply comes from -s/-d
        if key in seen and _IPV4(seen[key]) is None:
            return None
    for key in ("rsp", "rdp"):
        if key in seen and _u16(seen[key]) is None:
            return None
    s, d = _aton(src), _aton(dst)
    out = [_TWO_TUPLES(*_tuple_args(C.CTA_TUPLE_ORIG, s, d, proto, sport, dport),
                       *_tuple_args(C.CTA_TUPLE_REPLY, d, s, proto, dport, sport))]
    if "u" in seen:
        status = 0
        for word in seen["u"].split(","):
            bit = _STATUS.get(word)
            if bit is None:
                return None
            status |= bit
        out.append(_U32_ATTR(8, C.CTA_STATUS, _htonl(status | 8)))
    if proto == 6:
        state = _TCP_STATES.get(seen.get("st", ""))
        if state is None:
            return None
        flags = 0x0E if state >= _TIME_WAIT else 0x0A
        out.append(_TCP_PINFO(*_TCP_HEAD, state, 6, C.CTA_PROTOINFO_TCP_FLAGS_ORIGINAL,
                              flags, flags, 6, C.CTA_PROTOINFO_TCP_FLAGS_REPLY, flags,
                              flags))
    out.append(_U32_ATTR(8, C.CTA_TIMEOUT, _htonl(timeout)))
    if "m" in seen:
        mark = _u32(seen["m"])
        if mark is None:
            return None
        out.append(_U32_ATTR(8, C.CTA_MARK, _htonl(mark)))
    if "w" in seen:
        zone = _u16(seen["w"])
        if zone is None:
            return None
        out.append(_U16_ATTR(6, C.CTA_ZONE, _htons(zone)))
    return command, _AF_INET, b"".join(out)


__all__ = ["fast_create", "fast_create_py"]
