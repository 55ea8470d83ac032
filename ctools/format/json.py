"""``-o json`` (ctools only): one JSON object per line. The schema is in docs/conntrack.md.

Keys appear only when the kernel sent the attribute, like the text format; numbers stay
numbers, addresses are text, status bits are a list of names. Pure.
"""

from __future__ import annotations

import json

from ctools.format.text import L3_NAMES, L4_NAMES, delta_time, label_names, proto_state
from ctools.model import Entry, Expect, Tuple

STATUS_NAMES = ("EXPECTED", "SEEN_REPLY", "ASSURED", "CONFIRMED", "SRC_NAT", "DST_NAT",
                "SEQ_ADJUST", "SRC_NAT_DONE", "DST_NAT_DONE", "DYING", "FIXED_TIMEOUT",
                "TEMPLATE", "UNTRACKED", "HELPER", "OFFLOAD", "HW_OFFLOAD")
SCHEMA_VERSION = 1
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode


def status_names(status: int) -> list[str]:
    return [n for i, n in enumerate(STATUS_NAMES) if status >> i & 1] + [
        f"BIT{i}" for i in range(len(STATUS_NAMES), 32) if status >> i & 1]


def tuple_dict(t: Tuple, proto: int | None) -> dict:
    out: dict = {}
    if t.src is not None:
        out["src"] = t.src
    if t.dst is not None:
        out["dst"] = t.dst
    if proto == 47:
        if t.sport is not None:
            out["srckey"] = t.sport
        if t.dport is not None:
            out["dstkey"] = t.dport
    else:
        if t.sport is not None:
            out["sport"] = t.sport
        if t.dport is not None:
            out["dport"] = t.dport
    for key in ("icmp_type", "icmp_code", "icmp_id", "zone"):
        v = getattr(t, key)
        if v is not None:
            out[key.replace("icmp_", "")] = v
    return out


def entry_dict(e: Entry, event: str | None = None, labelmap: dict[int, str] | None = None,
               now: float | None = None, userspace: dict | None = None) -> dict:
    """The JSON object of a conntrack entry (see docs/conntrack.md, "JSON schema")."""
    orig = e.orig or Tuple()
    reply = e.reply or Tuple()
    out: dict = {}
    if event is not None:
        out["event"] = event.lower()
    fam = orig.family or 0
    out["family"] = L3_NAMES.get(fam, "unknown")
    proto = orig.proto if orig.proto is not None else 0
    out["proto"] = L4_NAMES.get(proto, "unknown")
    out["protonum"] = proto
    if e.timeout is not None:
        out["timeout"] = e.timeout
    state = proto_state(e)
    if state is not None:
        out["state"] = state
    o = tuple_dict(orig, proto)
    if e.orig_packets is not None:
        o["packets"] = e.orig_packets
    if e.orig_bytes is not None:
        o["bytes"] = e.orig_bytes
    out["orig"] = o
    r = tuple_dict(reply, reply.proto if reply.proto is not None else proto)
    if e.reply_packets is not None:
        r["packets"] = e.reply_packets
    if e.reply_bytes is not None:
        r["bytes"] = e.reply_bytes
    out["reply"] = r
    if e.status is not None:
        out["status"] = status_names(e.status)
    for key in ("mark", "secmark", "secctx", "zone", "use", "id", "helper"):
        v = getattr(e, key)
        if v is not None:
            out[key] = v
    if e.timestamp_start is not None:
        out["start_ns"] = e.timestamp_start
    if e.timestamp_stop is not None:
        out["stop_ns"] = e.timestamp_stop
    delta = delta_time(e, now)
    if delta is not None:
        out["delta_time"] = delta
    if e.labels is not None:
        out["labels"] = [i for i in range(e.labels.bit_length()) if e.labels >> i & 1]
        if labelmap is not None:
            out["label_names"] = label_names(e.labels, labelmap)
    if userspace is not None:
        out["userspace"] = userspace
    return out


def format_entry_json(e: Entry, event: str | None = None,
                      labelmap: dict[int, str] | None = None, now: float | None = None,
                      userspace: dict | None = None) -> str:
    """One line of ``-o json`` for a conntrack entry (with newline).

    Same text as encoding :func:`entry_dict`; the common shape (no labels, no userspace
    details) is written directly, which is several times faster.
    """
    if (labelmap is not None and e.labels is not None) or userspace is not None \
            or e.secctx is not None or e.helper is not None or e.orig is None \
            or e.reply is None:
        return _dumps(entry_dict(e, event, labelmap, now, userspace)) + "\n"
    orig, reply = e.orig, e.reply
    proto = orig.proto if orig.proto is not None else 0
    parts = [f'"event": "{event.lower()}"'] if event is not None else []
    add = parts.append
    add(_HEAD.get((orig.family or 0, proto)) or _head(orig.family or 0, proto))
    if e.timeout is not None:
        add(f'"timeout": {e.timeout}')
    state = proto_state(e)
    if state is not None:
        add(f'"state": "{state}"')
    add('"orig": ' + _tuple_json(orig, proto, e.orig_packets, e.orig_bytes))
    add('"reply": ' + _tuple_json(reply, reply.proto if reply.proto is not None else proto,
                                   e.reply_packets, e.reply_bytes))
    if e.status is not None:
        add('"status": ' + _status_json(e.status))
    for key in ("mark", "secmark", "zone", "use", "id"):
        v = getattr(e, key)
        if v is not None:
            add(f'"{key}": {v}')
    if e.timestamp_start is not None:
        add(f'"start_ns": {e.timestamp_start}')
    if e.timestamp_stop is not None:
        add(f'"stop_ns": {e.timestamp_stop}')
    delta = delta_time(e, now)
    if delta is not None:
        add(f'"delta_time": {delta}')
    if e.labels is not None:
        add('"labels": [' + ", ".join(str(i) for i in range(e.labels.bit_length())
                                      if e.labels >> i & 1) + "]")
    return "{" + ", ".join(parts) + "}\n"


_HEAD: dict[tuple[int, int], str] = {}
_STATUS_JSON: dict[int, str] = {}


def _head(family: int, proto: int) -> str:
    text = (f'"family": "{L3_NAMES.get(family, "unknown")}", '
            f'"proto": "{L4_NAMES.get(proto, "unknown")}", "protonum": {proto}')
    _HEAD[(family, proto)] = text
    return text


def _status_json(status: int) -> str:
    text = _STATUS_JSON.get(status)
    if text is None:
        text = _STATUS_JSON[status] = _dumps(status_names(status))
    return text


def _tuple_json(t: Tuple, proto: int | None, packets: int | None, nbytes: int | None) -> str:
    # addresses are inet_ntop text: nothing to escape
    out = []
    if t.src is not None:
        out.append(f'"src": "{t.src}"')
    if t.dst is not None:
        out.append(f'"dst": "{t.dst}"')
    sport, dport = ("srckey", "dstkey") if proto == 47 else ("sport", "dport")
    if t.sport is not None:
        out.append(f'"{sport}": {t.sport}')
    if t.dport is not None:
        out.append(f'"{dport}": {t.dport}')
    if t.icmp_type is not None:
        out.append(f'"type": {t.icmp_type}')
    if t.icmp_code is not None:
        out.append(f'"code": {t.icmp_code}')
    if t.icmp_id is not None:
        out.append(f'"id": {t.icmp_id}')
    if t.zone is not None:
        out.append(f'"zone": {t.zone}')
    if packets is not None:
        out.append(f'"packets": {packets}')
    if nbytes is not None:
        out.append(f'"bytes": {nbytes}')
    return "{" + ", ".join(out) + "}"


def expect_dict(x: Expect, event: str | None = None) -> dict:
    """The JSON object of an expectation."""
    tup = x.tuple or Tuple()
    proto = tup.proto if tup.proto is not None else 0
    out: dict = {}
    if event is not None:
        out["event"] = event.lower()
    out["family"] = L3_NAMES.get(tup.family or 0, "unknown")
    out["proto"] = L4_NAMES.get(proto, "unknown")
    out["protonum"] = proto
    if x.timeout is not None:
        out["timeout"] = x.timeout
    out["expected"] = tuple_dict(tup, proto)
    if x.mask is not None:
        out["mask"] = tuple_dict(x.mask, proto)
    if x.master is not None:
        out["master"] = tuple_dict(x.master, x.master.proto)
    for key, name in (("zone", "zone"), ("klass", "class"), ("helper", "helper"),
                      ("id", "id"), ("fn", "fn")):
        v = getattr(x, key)
        if v is not None:
            out[name] = v
    if x.flags is not None:
        out["flags"] = [n for b, n in ((1, "PERMANENT"), (2, "INACTIVE"), (4, "USERSPACE"))
                        if x.flags & b]
    return out


def format_expect_json(x: Expect, event: str | None = None) -> str:
    return _dumps(expect_dict(x, event)) + "\n"
