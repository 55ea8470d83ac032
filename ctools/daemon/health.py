"""``conntrackd --health``: is the daemon running, and has it heard its peer recently?"""

from __future__ import annotations

import json
import os

from ctools.daemon.control import ControlError, Req, request


def health_reply(d) -> str:
    """Daemon side: the facts the client needs, as JSON."""
    out = {"mode": d.mode_name, "pid": os.getpid()}
    if d.mode_name == "sync":
        silence = d.peer_silence()
        out["sync_mode"] = d.sconf.mode
        out["peer_silence_seconds"] = silence
        out["default_max_silence"] = d.default_max_silence()
    return json.dumps(out) + "\n"


def check_health(path: str, max_silence: float | None) -> tuple[bool, str]:
    """Client side: (healthy, one line saying why)."""
    try:
        raw = request(path, Req.HEALTH, timeout=5)
    except ControlError as exc:
        return False, f"unhealthy: conntrackd is not running (control socket `{path}': {exc})"
    try:
        facts = json.loads(raw.decode() or "null")
    except ValueError:
        facts = None
    if not isinstance(facts, dict):
        return False, "unhealthy: the daemon at this socket does not answer health requests"
    if facts.get("mode") != "sync":
        return True, f"healthy: running in {facts.get('mode')} mode (no peer to hear)"
    limit = max_silence if max_silence is not None else facts.get("default_max_silence", 3.0)
    silence = facts.get("peer_silence_seconds")
    if silence is None:
        return False, "unhealthy: running, but the peer has never been heard"
    if silence > limit:
        return False, (f"unhealthy: peer silent for {silence:.1f} s "
                       f"(limit {limit:g} s)")
    return True, f"healthy: peer heard {silence:.1f} s ago (limit {limit:g} s)"
