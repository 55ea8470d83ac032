"""The XML output of ``conntrack -o xml`` (one ``<flow>`` element per line). Pure."""

from __future__ import annotations

import time

from ctools.format.text import L3_NAMES, L4_NAMES, delta_time, label_names
from ctools.model import IPS_ASSURED, IPS_SEEN_REPLY, TCP_STATES, Entry, Expect, Tuple

CT_HEADER = '<?xml version="1.0" encoding="utf-8"?>\n<conntrack>\n'
CT_FOOTER = "</conntrack>\n"
EXP_HEADER = '<?xml version="1.0" encoding="utf-8"?>\n<expect>\n'
EXP_FOOTER = "</expect>\n"

_PORT_PROTOS = frozenset((6, 17, 136, 132, 33))
_EMPTY = Tuple()


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _l4(t: Tuple, proto: int | None) -> str:
    if proto in _PORT_PROTOS:
        if t.sport is None and proto != 33:
            return ""
        return f"<sport>{t.sport or 0}</sport><dport>{t.dport or 0}</dport>"
    if proto == 47:
        if t.sport is None and t.dport is None:
            return ""
        return f"<srckey>{t.sport or 0:#x}</srckey><dstkey>{t.dport or 0:#x}</dstkey>"
    return ""


_L3_OPEN = {fam: f'<layer3 protonum="{fam}" protoname="{name}">'
            for fam, name in ((2, "ipv4"), (10, "ipv6"))}
_L4_OPEN = {p: f'<layer4 protonum="{p}" protoname="{L4_NAMES.get(p, "unknown")}">'
            for p in range(256)}


def _layers(t: Tuple, proto: int | None) -> str:
    fam = t.family or 0
    l3 = _L3_OPEN.get(fam) or f'<layer3 protonum="{fam}" protoname="unknown">'
    p = proto if proto is not None else 0
    if p in _PORT_PROTOS and t.sport is not None:
        l4 = f"<sport>{t.sport}</sport><dport>{t.dport or 0}</dport>"
    else:
        l4 = _l4(t, proto)
    return (f"{l3}<src>{t.src}</src><dst>{t.dst}</dst></layer3>{_L4_OPEN[p & 0xFF]}"
            f"{l4}</layer4>")


def when_element(tm: time.struct_time) -> str:
    """``<when>`` of ``-o xml,timestamp`` events (local time)."""
    wday = (tm.tm_wday + 1) % 7 + 1          # 1 = Sunday
    return (f"<when><hour>{tm.tm_hour}</hour><min>{tm.tm_min:02d}</min>"
            f"<sec>{tm.tm_sec:02d}</sec><wday>{wday}</wday><day>{tm.tm_mday}</day>"
            f"<month>{tm.tm_mon}</month><year>{tm.tm_year}</year></when>")


def format_entry_xml(e: Entry, ktimestamp: bool = False, event: str | None = None,
                     labelmap: dict[int, str] | None = None, now: float | None = None,
                     when: time.struct_time | None = None) -> str:
    """One ``<flow>`` line (with newline) for a conntrack entry."""
    orig = e.orig or _EMPTY
    reply = e.reply or _EMPTY
    proto = orig.proto
    out = [f'<flow type="{event.lower()}">' if event else "<flow>"]
    add = out.append
    add('<meta direction="original">')
    add(_layers(orig, proto))
    if orig.zone is not None:
        add(f"<zone>{orig.zone}</zone>")
    has_counters = e.orig_packets is not None or e.orig_bytes is not None
    if has_counters:
        add(f"<counters><packets>{e.orig_packets or 0}</packets>"
            f"<bytes>{e.orig_bytes or 0}</bytes></counters>")
    add('</meta><meta direction="reply">')
    add(_layers(reply, reply.proto if reply.proto is not None else proto))
    if reply.zone is not None:
        add(f"<zone>{reply.zone}</zone>")
    if has_counters:
        add(f"<counters><packets>{e.reply_packets or 0}</packets>"
            f"<bytes>{e.reply_bytes or 0}</bytes></counters>")
    add("</meta>")

    state = e.tcp_state
    if state is None:
        state = e.sctp_state if e.sctp_state is not None else e.dccp_state
    show_labels = labelmap is not None and e.labels is not None
    if (state is not None or e.timeout is not None or e.mark is not None
            or e.secmark is not None or e.zone is not None or e.use is not None
            or e.status is not None or e.id is not None or show_labels
            or e.timestamp_start is not None or e.timestamp_stop is not None):
        add('<meta direction="independent">')
        if state is not None:
            # the reference looks SCTP/DCCP states up in the TCP table
            add(f"<state>{TCP_STATES[state] if state < len(TCP_STATES) else 'NONE'}</state>")
        if e.timeout is not None:
            add(f"<timeout>{e.timeout}</timeout>")
        if e.mark is not None:
            add(f"<mark>{e.mark}</mark>")
        if show_labels:
            add("<labels>" + "".join(f"<label>{_esc(n)}</label>"
                                     for n in label_names(e.labels, labelmap)) + "</labels>")
        if e.secmark is not None:
            add(f"<secmark>{e.secmark}</secmark>")
        if e.secctx is not None:
            add(f"<secctx>{_esc(e.secctx)}</secctx>")
        if e.zone is not None:
            add(f"<zone>{e.zone}</zone>")
        if e.use is not None:
            add(f"<use>{e.use}</use>")
        if e.id is not None:
            add(f"<id>{e.id}</id>")
        if e.status is not None:
            if e.status & IPS_ASSURED:
                add("<assured/>")
            if not e.status & IPS_SEEN_REPLY:
                add("<unreplied/>")
        if ktimestamp and (e.timestamp_start is not None or e.timestamp_stop is not None):
            add("<timestamp>")
            if e.timestamp_start is not None:
                add(f"<start>{e.timestamp_start}</start>")
            if e.timestamp_stop is not None:
                add(f"<stop>{e.timestamp_stop}</stop>")
            add("</timestamp>")
        delta = delta_time(e, now)
        if delta is not None:
            add(f"<deltatime>{delta}</deltatime>")
        add("</meta>")
    if when is not None:
        add(when_element(when))
    if e.helper is not None:
        add(f"<helper>{_esc(e.helper)}</helper>")
    add("</flow>\n")
    return "".join(out)


def format_expect_xml(x: Expect, event: str | None = None,
                      when: time.struct_time | None = None) -> str:
    """One ``<flow>`` line (with newline) for an expectation."""
    tup = x.tuple or _EMPTY
    mask = x.mask or _EMPTY
    master = x.master or _EMPTY
    fam = tup.family or 0
    proto = tup.proto if tup.proto is not None else 0
    out = [f'<flow type="{event.lower()}">' if event else "<flow>"]
    out.append(f'<layer3 protonum="{fam}" protoname="{L3_NAMES.get(fam, "unknown")}">')
    for tag, t in (("expected", tup), ("mask", mask), ("master", master)):
        out.append(f"<{tag}><src>{t.src}</src><dst>{t.dst}</dst></{tag}>")
    out.append(f'</layer3><layer4 protonum="{proto}" protoname="{L4_NAMES.get(proto, "unknown")}">')
    for tag, t in (("expected", tup), ("mask", mask), ("master", master)):
        out.append(f"<{tag}>{_l4(t, proto)}</{tag}>")
    out.append("</layer4><meta>")
    if x.helper is not None:
        out.append(f"<helper-name>{_esc(x.helper)}</helper-name>")
    if x.timeout is not None:
        out.append(f"<timeout>{x.timeout}</timeout>")
    if x.klass is not None:
        out.append(f"<class>{x.klass}</class>")
    if x.zone is not None:
        out.append(f"<zone>{x.zone}</zone>")
    if when is not None:
        out.append(when_element(when))
    flags = x.flags or 0
    if flags & 1:
        out.append("<permanent/>")
    if flags & 2:
        out.append("<inactive/>")
    if flags & 4:
        out.append("<userspace/>")
    out.append("</meta></flow>\n")
    return "".join(out)
