"""``-o save``: each entry as a ``conntrack`` command line that ``-R`` can replay. Pure."""

from __future__ import annotations

import copy
import sys

from ctools.format.text import DCCP_STATES, L4_NAMES, SCTP_STATES
from ctools.model import (
    AF_INET6,
    IPS_ASSURED,
    IPS_DST_NAT_DONE,
    IPS_EXPECTED,
    IPS_FIXED_TIMEOUT,
    IPS_SEEN_REPLY,
    IPS_SRC_NAT_DONE,
    TCP_STATES,
    Entry,
    Tuple,
)

_SAVE_STATUS = ((IPS_EXPECTED, "EXPECTED"), (IPS_SEEN_REPLY, "SEEN_REPLY"),
                (IPS_ASSURED, "ASSURED"), (IPS_FIXED_TIMEOUT, "FIXED_TIMEOUT"))
OP_OF_EVENT = {None: "-A", "NEW": "-A", "UPDATE": "-U", "DESTROY": "-D"}


def nat_done(status: int | None, done_bit: int, before: object, after: object) -> bool:
    """One NAT predicate: a tuple field was rewritten (``after``, from the reply tuple, is not
    the mirror ``before`` of the original) and the kernel marks that NAT as done.  An entry
    without status (a damaged or hand-made one) is judged by the tuples alone."""
    return before != after and (status is None or bool(status & done_bit))


def is_snat(e: Entry) -> bool:
    """Source-NATed: reply destination differs from the original source."""
    return nat_done(e.status, IPS_SRC_NAT_DONE, e.orig.src, e.reply.dst)


def is_spat(e: Entry) -> bool:
    """Source port translated: reply destination port differs from the original source port."""
    return nat_done(e.status, IPS_SRC_NAT_DONE, e.orig.sport, e.reply.dport)


def is_dnat(e: Entry) -> bool:
    """Destination-NATed: reply source differs from the original destination."""
    return nat_done(e.status, IPS_DST_NAT_DONE, e.orig.dst, e.reply.src)


def is_dpat(e: Entry) -> bool:
    """Destination port translated: reply source port differs from the original one."""
    return nat_done(e.status, IPS_DST_NAT_DONE, e.orig.dport, e.reply.sport)


def host_vtag(value: int) -> int:
    """libnetfilter_conntrack moves SCTP vtags in host byte order (the kernel's attribute is
    big endian), so the C tool shows and sends them byte-swapped on little-endian hosts."""
    return int.from_bytes(value.to_bytes(4, "big"), sys.byteorder)


def _state_name(table: tuple, value: int) -> str:
    return table[value] if value < len(table) else "NONE"


_STATUS_WORDS: dict[int, str] = {}


def _status_words(status: int) -> str:
    bits = status & (IPS_EXPECTED | IPS_SEEN_REPLY | IPS_ASSURED | IPS_FIXED_TIMEOUT)
    words = _STATUS_WORDS.get(bits)
    if words is None:
        names = [n for bit, n in _SAVE_STATUS if bits & bit]
        words = _STATUS_WORDS[bits] = "-u " + (",".join(names) if names else "UNSET")
    return words


def _with_both_tuples(e: Entry) -> Entry:
    """The kernel always sends both tuples; a damaged message may lack one. Print the missing
    one as the zeroed tuple libnetfilter_conntrack would hold instead of failing."""
    known = e.orig or e.reply
    family = known.family if known is not None else None
    zero = "::" if family == AF_INET6 else "0.0.0.0"
    proto = known.proto if known is not None else None
    e = copy.copy(e)
    if e.orig is None:
        e.orig = Tuple(family, zero, zero, proto)
    if e.reply is None:
        e.reply = Tuple(family, zero, zero, proto)
    return e


def _add_set(add, options: tuple) -> None:
    """``add`` "OPTION VALUE" for each (option, value) pair whose value is set."""
    for option, value in options:
        if value is not None:
            add(f"{option} {value}")


def format_save(e: Entry, op: str = "-A") -> str:
    """The replayable command line (with newline). ``op`` is ``-A``, ``-U`` or ``-D``."""
    if e.orig is None or e.reply is None:
        e = _with_both_tuples(e)
    orig, reply = e.orig, e.reply
    out = [op]
    add = out.append
    if e.timeout is not None:
        add(f"-t {e.timeout}")
    status = e.status
    if status is not None:
        add(_status_words(status))
    if e.secmark is not None:
        add(f"-c {e.secmark}")
    if e.zone is not None:
        add(f"-w {e.zone}")
    if orig.zone is not None:
        add(f"--orig-zone {orig.zone}")
    if reply.zone is not None:
        add(f"--reply-zone {reply.zone}")
    dnat = nat_done(status, IPS_DST_NAT_DONE, orig.dst, reply.src)
    snat = nat_done(status, IPS_SRC_NAT_DONE, orig.src, reply.dst)
    add(f"-s {orig.src} -d {orig.dst} {'-g' if dnat else '-r'} {reply.src} "
        f"{'-n' if snat else '-q'} {reply.dst}")
    proto = orig.proto if orig.proto is not None else 0
    name = L4_NAMES.get(proto)
    add(f"-p {name}" if name else f"-p {proto}")
    if proto in _PORT_PROTOS:
        if (orig.sport is not None and orig.dport is not None and reply.sport is not None
                and reply.dport is not None):
            add(f"--sport {orig.sport} --dport {orig.dport} --reply-port-src {reply.sport} "
                f"--reply-port-dst {reply.dport}")
        else:
            _add_set(add, (("--sport", orig.sport), ("--dport", orig.dport),
                           ("--reply-port-src", reply.sport), ("--reply-port-dst", reply.dport)))
        if proto == 6:
            if e.tcp_state is not None:
                add(f"--state {_state_name(TCP_STATES, e.tcp_state)}")
        elif proto == 132:
            if e.sctp_state is not None:
                add(f"--state {_state_name(SCTP_STATES, e.sctp_state)}")
            if e.sctp_vtag_orig is not None:
                add(f"--orig-vtag {host_vtag(e.sctp_vtag_orig)}")
            if e.sctp_vtag_reply is not None:
                add(f"--reply-vtag {host_vtag(e.sctp_vtag_reply)}")
        elif proto == 33:
            if e.dccp_state is not None:
                add(f"--state {_state_name(DCCP_STATES, e.dccp_state)}")
            if e.dccp_role is not None:
                add("--role " + ("server" if e.dccp_role else "client"))
    elif proto in (1, 58):
        v = "icmp" if proto == 1 else "icmpv6"
        _add_set(add, ((f"--{v}-type", orig.icmp_type), (f"--{v}-code", orig.icmp_code),
                       (f"--{v}-id", orig.icmp_id)))
    elif proto == 47:
        # GRE keys travel in the port fields
        _add_set(add, (("--srckey", orig.sport), ("--dstkey", orig.dport),
                       ("--reply-key-src", reply.sport), ("--reply-key-dst", reply.dport)))
    return " ".join(out) + "\n"


_PORT_PROTOS = frozenset((6, 17, 136, 132, 33))
