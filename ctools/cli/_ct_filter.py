"""Userspace filters of ``-L``/``-D``/``-U``/``-E`` (spec §5): pure predicates over entries."""

from __future__ import annotations

import socket
from collections.abc import Callable

from ctools.cli import _ct_proto as P
from ctools.cli._ct_args import NatFilter, Request
from ctools.format.save import is_dnat, is_dpat, is_snat, is_spat
from ctools.model import Entry, Tuple

_pton = socket.inet_pton
_from_bytes = int.from_bytes


def _addr_int(family: int, text: str) -> int:
    return _from_bytes(_pton(family, text), "big")


def _nat_side(e: Entry, nat: NatFilter, src: bool) -> bool:
    if src:
        natted, patted = is_snat(e), is_spat(e)
        addr, port = e.reply.dst, e.reply.dport
    else:
        natted, patted = is_dnat(e), is_dpat(e)
        addr, port = e.reply.src, e.reply.sport
    if nat.addr is None:
        return natted or patted
    if not natted:
        return False
    # 1.4.7 compares the address for IPv4 only (an IPv6 address is ignored)
    if nat.family == socket.AF_INET and addr != nat.addr:
        return False
    if nat.port is not None:
        return patted and port == nat.port
    return True


def nat_filter(req: Request) -> Callable[[Entry], bool] | None:
    t = req.tmpl
    if t.any_nat is not None:
        any_nat = t.any_nat
        return lambda e: _nat_side(e, any_nat, True) or _nat_side(e, any_nat, False)
    if t.src_nat is None and t.dst_nat is None:
        return None
    snat, dnat = t.src_nat, t.dst_nat

    def check(e: Entry) -> bool:
        if snat is not None and not _nat_side(e, snat, True):
            return False
        return dnat is None or _nat_side(e, dnat, False)
    return check


def network_filter(req: Request) -> Callable[[Entry], bool] | None:
    """CIDR / ``--mask-*``: masked comparison of the original source/destination."""
    t = req.tmpl
    checks = []
    family = req.family
    for given, mask, attr in ((t.ct.orig.src, t.mask.src, "src"),
                              (t.ct.orig.dst, t.mask.dst, "dst")):
        if mask is None or given is None or family is None:
            continue
        m = _addr_int(family, mask)
        want = _addr_int(family, given) & m
        checks.append((attr, m, want))
    if not checks:
        return None

    def check(e: Entry) -> bool:
        orig = e.orig
        if orig is None or orig.family != family:
            return False
        for attr, m, want in checks:
            value = getattr(orig, attr)
            if value is None or _from_bytes(_pton(family, value), "big") & m != want:
                return False
        return True
    return check


def _tuple_checks(tmpl: Tuple, skip: set[str]) -> list[str]:
    return [n for n in ("src", "dst", "proto", "sport", "dport", "icmp_type", "icmp_code",
                        "icmp_id") if n not in skip and getattr(tmpl, n) is not None]


def _tuple_match(t: Tuple | None, tmpl: Tuple, names: list[str]) -> bool:
    if t is None:
        return not names
    for n in names:
        if getattr(t, n) != getattr(tmpl, n):
            return False
    return True


def compare_filter(req: Request, with_timeout: bool = True) -> Callable[[Entry], bool] | None:
    """The tuple/meta comparison of §5.1 (only when a comparison option is present)."""
    if not req.comparing:
        return None
    t = req.tmpl
    ct = t.ct
    skip = set()
    if t.mask.src is not None:
        skip.add("src")
    if t.mask.dst is not None:
        skip.add("dst")
    orig_names = _tuple_checks(ct.orig, skip)
    reply_names = _tuple_checks(ct.reply, set())
    family = req.family if (ct.orig.src or ct.orig.dst or ct.reply.src or ct.reply.dst) else None
    status = t.status[0] if t.status is not None else None
    timeout = ct.timeout if with_timeout else None
    states = [(n, getattr(ct, n)) for n in ("tcp_state", "sctp_state", "dccp_state")
              if getattr(ct, n) is not None]
    ident = ct.id if "id" in req.options else None
    zone = ct.zone if "zone" in req.options else None
    ozone = ct.orig.zone if "orig-zone" in req.options else None
    rzone = ct.reply.zone if "reply-zone" in req.options else None
    mark = t.mark
    labels = t.label_filter

    def check(e: Entry) -> bool:
        if family is not None and (e.orig is None or e.orig.family != family):
            return False
        if not _tuple_match(e.orig, ct.orig, orig_names):
            return False
        if reply_names and not _tuple_match(e.reply, ct.reply, reply_names):
            return False
        for name, value in states:
            if getattr(e, name) != value:
                return False
        if status is not None and (e.status or 0) & status != status:
            return False
        if timeout is not None and e.timeout != timeout:
            return False
        if ident is not None and e.id != ident:
            return False
        if zone is not None and (e.zone or 0) != zone:
            return False
        if ozone is not None and ((e.orig.zone if e.orig else None) or 0) != ozone:
            return False
        if rzone is not None and ((e.reply.zone if e.reply else None) or 0) != rzone:
            return False
        if mark is not None and (e.mark is None or e.mark & mark[1] != mark[0]):
            return False
        for bits in labels:
            if e.labels is None or e.labels & bits != bits:
                return False
        return True
    return check


_MATCHABLE = frozenset({"src", "dst", "mask-src", "mask-dst", "protonum", "output"})


def dump_match(req: Request) -> tuple | None:
    """``build_filter(req)`` as a C dump match ``(family, proto, src, smask, dst, dmask)``
    (see :func:`ctools.netlink.fast.dump_text`), or None when it does more than compare
    the original addresses (exact or masked) and the protocol of both tuples."""
    if not req.options <= _MATCHABLE or req.proto_flags:
        return None
    t = req.tmpl
    if (t.status is not None or t.mark is not None or t.label_filter
            or t.ct.timeout is not None):
        return None
    orig = t.ct.orig
    family = req.family if (orig.src is not None or orig.dst is not None) else 0
    if family is None:
        return None
    parts: list[bytes] = []
    for given, mask in ((orig.src, t.mask.src), (orig.dst, t.mask.dst)):
        if given is None:
            parts += (b"", b"")
            continue
        n = 4 if family == socket.AF_INET else 16
        m = _addr_int(family, mask) if mask is not None else (1 << (8 * n)) - 1
        parts += ((_addr_int(family, given) & m).to_bytes(n, "big"), m.to_bytes(n, "big"))
    proto = orig.proto if "protonum" in req.options else -1
    if proto is None or (proto != -1 and t.ct.reply.proto != proto):
        return None
    return (family, proto, *parts)


def build_filter(req: Request, with_timeout: bool = True) -> Callable[[Entry], bool] | None:
    """All filters of -L/-D/-E combined (AND), or None when nothing filters."""
    parts = [f for f in (nat_filter(req), network_filter(req),
                         compare_filter(req, with_timeout)) if f is not None]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        first, second = parts
        return lambda e: first(e) and second(e)
    first, second, third = parts
    return lambda e: first(e) and second(e) and third(e)


def update_filter(req: Request) -> Callable[[Entry], bool]:
    """Which entries ``-U`` touches (§6.5): NAT, labels, CIDR, id, orig/reply tuples."""
    t = req.tmpl
    ct = t.ct
    parts = [f for f in (nat_filter(req), network_filter(req)) if f is not None]
    o = req.options
    skip = set()
    if t.mask.src is not None:
        skip.add("src")
    if t.mask.dst is not None:
        skip.add("dst")
    orig_names = _tuple_checks(ct.orig, skip) if o & {"src", "dst", "protonum"} else []
    reply_names = _tuple_checks(ct.reply, set()) if o & {"reply-src", "reply-dst",
                                                         "protonum"} else []
    family = req.family
    ident = ct.id if "id" in o else None
    labels = t.label_filter

    def check(e: Entry) -> bool:
        if family is not None and (e.orig is None or e.orig.family != family):
            return False
        if ident is not None and e.id != ident:
            return False
        if orig_names and not _tuple_match(e.orig, ct.orig, orig_names):
            return False
        if reply_names and not _tuple_match(e.reply, ct.reply, reply_names):
            return False
        for bits in labels:
            if e.labels is None or e.labels & bits != bits:
                return False
        return all(f(e) for f in parts)
    return check


__all__ = ["build_filter", "dump_match", "update_filter", "P"]
