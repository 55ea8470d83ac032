"""The one-line text formats of ``conntrack`` (default, extended, id, ktimestamp, labels).

Pure functions of an :class:`~ctools.model.Entry` / :class:`~ctools.model.Expect` and the
output options. A field appears only when the kernel sent the attribute, in the order of the
reference tool (libnetfilter_conntrack 1.0.9), so output is byte-identical to it.
"""

from __future__ import annotations

import time

from ctools.model import (
    IPS_ASSURED,
    IPS_HW_OFFLOAD,
    IPS_OFFLOAD,
    IPS_SEEN_REPLY,
    TCP_STATES,
    Entry,
    Expect,
    Tuple,
)

# output option bits (same values as the -o keyword parser)
O_XML, O_EXT, O_TMS, O_ID, O_KTMS, O_LABELS, O_USERSPACE, O_SAVE = (
    1, 2, 4, 8, 16, 32, 64, 128)
O_JSON = 256

L3_NAMES = {2: "ipv4", 10: "ipv6"}
L4_NAMES = {6: "tcp", 17: "udp", 136: "udplite", 1: "icmp", 58: "icmpv6", 132: "sctp",
            33: "dccp", 47: "gre"}
SCTP_STATES = ("NONE", "CLOSED", "COOKIE_WAIT", "COOKIE_ECHOED", "ESTABLISHED",
               "SHUTDOWN_SENT", "SHUTDOWN_RECD", "SHUTDOWN_ACK_SENT", "HEARTBEAT_SENT",
               "HEARTBEAT_ACKED")
DCCP_STATES = ("NONE", "REQUEST", "RESPOND", "PARTOPEN", "OPEN", "CLOSEREQ", "CLOSING",
               "TIMEWAIT", "IGNORE", "INVALID")
EVENT_PREFIX = {"NEW": "    [NEW] ", "UPDATE": " [UPDATE] ", "DESTROY": "[DESTROY] "}

_PORT_PROTOS = frozenset((6, 17, 136, 132, 33))
_ICMP_PROTOS = frozenset((1, 58))

# precomputed "%-8s %u " columns
_L4_COLUMN = {n: f"{L4_NAMES.get(n, 'unknown'):<8} {n} " for n in range(256)}
_L3_COLUMN = {2: "ipv4     2 ", 10: "ipv6     10 "}


def l3_column(family: int | None) -> str:
    fam = family or 0
    col = _L3_COLUMN.get(fam)
    return col if col is not None else f"{'unknown':<8} {fam} "


def l4_fields(t: Tuple, proto: int | None) -> str:
    """Protocol identifiers of a tuple (``sport=.. dport=..``, GRE keys, ICMP) + space."""
    if proto in _PORT_PROTOS:
        if t.sport is None and proto != 33:
            return ""
        return f"sport={t.sport or 0} dport={t.dport or 0} "
    if proto in _ICMP_PROTOS:
        if t.icmp_type is None and t.icmp_code is None and t.icmp_id is None:
            return ""
        return f"type={t.icmp_type or 0} code={t.icmp_code or 0} id={t.icmp_id or 0} "
    if proto == 47:
        if t.sport is None and t.dport is None:
            return ""
        return f"srckey={t.sport or 0:#x} dstkey={t.dport or 0:#x} "
    return ""


def proto_state(e: Entry) -> str | None:
    """Name of the TCP/SCTP/DCCP state, if the entry carries one."""
    if e.tcp_state is not None:
        s = e.tcp_state
        return TCP_STATES[s] if s < len(TCP_STATES) else "NONE"
    if e.sctp_state is not None:
        s = e.sctp_state
        return SCTP_STATES[s] if s < len(SCTP_STATES) else "NONE"
    if e.dccp_state is not None:
        s = e.dccp_state
        return DCCP_STATES[s] if s < len(DCCP_STATES) else "NONE"
    return None


def label_names(bits: int, names: dict[int, str]) -> list[str]:
    out = []
    bit = 0
    while bits:
        if bits & 1 and bit in names:
            out.append(names[bit])
        bits >>= 1
        bit += 1
    return out


def delta_time(e: Entry, now: float | None) -> int | None:
    """Age in seconds as the reference computes it (None without a start timestamp)."""
    start = e.timestamp_start
    if start is None:
        return None
    if e.timestamp_stop:
        return (e.timestamp_stop - start) // 1_000_000_000
    if now is None:
        now = time.time()
    return int(now) - start // 1_000_000_000


def format_entry(e: Entry, flags: int = 0, event: str | None = None,
                 labelmap: dict[int, str] | None = None, now: float | None = None) -> str:
    """One conntrack entry in the default text format, with the trailing newline.

    ``flags`` are ``O_*`` bits (extended, id, ktimestamp); ``event`` is ``'NEW'``,
    ``'UPDATE'`` or ``'DESTROY'`` for event lines; ``labelmap`` (bit -> name) enables the
    ``labels=`` field; ``now`` (seconds) fixes the clock for ``delta-time``.
    """
    parts = []
    add = parts.append
    if event is not None:
        add(EVENT_PREFIX[event])
    orig = e.orig or _EMPTY
    reply = e.reply or _EMPTY
    if flags & O_EXT:
        add(l3_column(orig.family))
    proto = orig.proto
    if proto is not None:
        add(_L4_COLUMN[proto & 0xFF])
    if e.timeout is not None:
        add(f"{e.timeout} ")
    state = proto_state(e)
    if state is not None:
        add(state + " ")
    if orig.src is not None:
        add(f"src={orig.src} dst={orig.dst} ")
    add(l4_fields(orig, proto))
    if orig.zone is not None:
        add(f"zone-orig={orig.zone} ")
    if e.orig_packets is not None and e.orig_bytes is not None:
        add(f"packets={e.orig_packets} bytes={e.orig_bytes} ")
    status = e.status
    if status is not None and not status & IPS_SEEN_REPLY:
        add("[UNREPLIED] ")
    if reply.src is not None:
        add(f"src={reply.src} dst={reply.dst} ")
    add(l4_fields(reply, reply.proto if reply.proto is not None else proto))
    if reply.zone is not None:
        add(f"zone-reply={reply.zone} ")
    if e.reply_packets is not None and e.reply_bytes is not None:
        add(f"packets={e.reply_packets} bytes={e.reply_bytes} ")
    if status is not None:
        if status & IPS_HW_OFFLOAD:
            add("[HW_OFFLOAD] ")
        elif status & IPS_OFFLOAD:
            add("[OFFLOAD] ")
        elif status & IPS_ASSURED:
            add("[ASSURED] ")
    if e.mark is not None:
        add(f"mark={e.mark} ")
    if e.secmark is not None:
        add(f"secmark={e.secmark} ")
    if e.secctx is not None:
        add(f"secctx={e.secctx} ")
    if e.zone is not None:
        add(f"zone={e.zone} ")
    delta = delta_time(e, now)
    if delta is not None:
        add(f"delta-time={delta} ")
    if flags & O_KTMS:
        if e.timestamp_start is not None:
            add(f"[start={time.ctime(e.timestamp_start // 1_000_000_000)}] ")
        if e.timestamp_stop is not None:
            add(f"[stop={time.ctime(e.timestamp_stop // 1_000_000_000)}] ")
    if e.helper is not None:
        add(f"helper={e.helper} ")
    if e.use is not None and event is None:
        add(f"use={e.use} ")
    if flags & O_ID and e.id is not None:
        add(f"id={e.id} ")
    if labelmap is not None and e.labels is not None:
        names = label_names(e.labels, labelmap)
        add(f"labels={','.join(names)} " if names else "labels ")
    line = "".join(parts)
    return line[:-1] + "\n" if line.endswith(" ") else line + "\n"


_EMPTY = Tuple()


def event_timestamp(sec: int, usec: int) -> str:
    """Prefix of ``-E -o timestamp`` lines for conntrack events."""
    return f"[{sec:08d}.{usec:06d}]\t"


def expect_event_timestamp(sec: int, usec: int) -> str:
    """Prefix of ``-E expect -o timestamp`` lines (left-justified, space padded)."""
    return f"[{sec:<8d}.{usec:<6d}]\t"


def format_expect(x: Expect, event: str | None = None) -> str:
    """One expectation in the reference's text layout, with the trailing newline."""
    parts = []
    add = parts.append
    if event is not None:
        add(EVENT_PREFIX[event])
    if x.timeout is not None:
        add(f"{x.timeout} ")
    tup = x.tuple or _EMPTY
    if tup.proto is not None:
        add(f"proto={tup.proto} ")
    if tup.src is not None:
        add(f"src={tup.src} dst={tup.dst} ")
        add(l4_fields(tup, tup.proto))
    mask = x.mask
    if mask is not None and mask.src is not None:
        add(f"mask-src={mask.src} mask-dst={mask.dst} ")
        add(l4_fields(mask, mask.proto if mask.proto is not None else tup.proto))
    master = x.master
    if master is not None and master.src is not None:
        add(f"master-src={master.src} master-dst={master.dst} ")
        add(l4_fields(master, master.proto))
    if x.zone is not None:
        add(f"zone={x.zone} ")
    if x.flags:
        names = [n for bit, n in ((1, "PERMANENT"), (2, "INACTIVE"), (4, "USERSPACE"))
                 if x.flags & bit]
        if names:
            add(",".join(names) + " ")
    if x.klass is not None:
        add(f"class={x.klass} ")
    if x.helper is not None:
        add(f"helper={x.helper}")
    line = "".join(parts)
    return line[:-1] + "\n" if line.endswith(" ") else line + "\n"
