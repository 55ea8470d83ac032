"""``conntrackd --json -s [VIEW]``: every statistics view as one JSON object.

Same numbers as the text views, with names instead of column positions; ctools-only
counters (rejections, retransmissions, commit timing) are included where they belong.
"""

from __future__ import annotations

import json
import time

from ctools.daemon.control import Req


def _cache(cache) -> dict:
    return {"name": cache.name, "active": len(cache), **cache.counters.as_dict()}


def _link(ch, active) -> dict:
    from ctools.daemon.channel import TcpChannel

    out = {"transport": ch.transport, "device": ch.device, "status": ch.status(),
           "role": "ACTIVE" if ch is active else "BACKUP", **ch.counters.as_dict()}
    if isinstance(ch, TcpChannel):
        out["server_connected"] = ch.server_connected
        out["client_connected"] = ch.client_connected
        out["error_queue"] = len(ch.errorq)
    return out


def _sync_view(d, code: int) -> dict:
    core = d.core
    st = core.stats.as_dict()
    active = d.channels.active
    if code in (Req.STATS, Req.EXP_STATS):
        out = {
            "internal": _cache(d.internal) if d.internal is not None
            else {"bypass": d.bypass.as_dict()},
            "external": _cache(d.external) if d.external is not None
            else {"inject": d.inject.as_dict()},
            "traffic": {"bytes": 0, "packets": 0},
            "link": _link(active, active),
            "message_tracking": {"malformed": st["malformed"], "lost": st["seq_lost"]},
        }
        if code == Req.EXP_STATS:
            out["expectations"] = {"internal": len(d.exp_internal),
                                   "external": len(d.exp_external)}
        return out
    if code == Req.STATS_NETWORK:
        return {"recv": {k: st[k] for k in ("malformed", "bad_version", "bad_header",
                                             "bad_payload", "bad_type", "truncated",
                                             "bad_size", "rejected", "wrong_peer",
                                             "auth_failed", "replayed", "stale_content",
                                             "seq_implausible", "stale_epoch")},
                "send": {"malformed": st["send_malformed"],
                         "retransmitted": st["retransmitted"]},
                "sequence": {"lost": st["seq_lost"], "before": st["seq_before"]},
                "link": _link(active, active)}
    if code == Req.STATS_CACHE:
        return {"caches": [_cache(c) for c in (d.internal, d.external) if c is not None]}
    if code == Req.STATS_LINK:
        return {"links": [_link(ch, active) for ch in d.channels.channels]}
    if code == Req.STATS_RSQUEUE:
        return {"rsqueue": [{"seq": seq, "what": what} for seq, what in d.rsqueue_items()]}
    if code == Req.STATS_QUEUE:
        tx, rs = d._queue_depths()
        return {"txqueue": tx, "rsqueue": rs, "resend_queue_size": d.sconf.resend_queue_size,
                "errorq": sum(len(getattr(ch, "errorq", ())) for ch in d.channels.channels)}
    return {}


def view_data(d, code: int) -> dict:
    """The numbers behind one ``-s`` view as a dict."""
    out: dict = {"mode": d.mode_name}
    if d.mode_name == "sync":
        out["sync_mode"] = d.sconf.mode
    if code == Req.STATS_RUNTIME:
        out["uptime_seconds"] = int(time.time() - d.started)
        d.update_buffer_size()
        out["runtime"] = d.runtime.as_dict()
        return out
    if code == Req.STATS_PROCESS:
        out["children"] = [{"pid": p, "type": t} for p, t in d.children]
        return out
    if d.mode_name == "sync":
        out.update(_sync_view(d, code))
        out["commit"] = {"count": d.commit_count, "last_seconds": d.commit_seconds,
                         "running": d.commit_running}
        peer = d.peer_silence()
        out["peer_silence_seconds"] = None if peer is None else round(peer, 3)
    elif d.mode_name == "stats":
        if code == Req.STATS:
            out["cache"] = _cache(d.cache)
            out["traffic"] = {"bytes": d.traffic.bytes, "packets": d.traffic.packets}
        elif code == Req.STATS_CACHE:
            out["caches"] = [_cache(d.cache)]
    return out


def json_view(d, code: int) -> str:
    """One JSON object and a newline."""
    return json.dumps(view_data(d, code), sort_keys=False) + "\n"
