"""Fast `conntrack -L` text output: dump + format without building Entry objects.

Usage (the CLI's hot path)::

    from ctools.netlink import fast
    count = fast.dump_text(sock, C.CT_GET, family, attrs, flags, fallback, out.write)

``flags`` are the ``O_*`` bits of :mod:`ctools.format.text` (only O_EXT, O_ID, O_KTMS and
O_LABELS matter: pass O_LABELS when a label map is loaded).  ``fallback(payload) -> str |
None`` formats one payload the slow way -- typically
``format_entry(decode_entry(payload), flags, None, labelmap)``, returning None to skip an
entry.  With the C accelerator (:mod:`ctools._speedups._ctfast`) every entry it can render
byte-identically is formatted in C and only the rest reaches ``fallback``; without it (or
with ``CTOOLS_NO_SPEEDUPS=1`` in the environment) every payload goes to ``fallback``.  The
output is the same either way; tests check it byte for byte.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

from ctools._speedups import load_ctfast
from ctools.netlink import constants as C
from ctools.netlink.codec import iter_messages
from ctools.netlink.errors import CodecError, NetlinkError

_ctfast = load_ctfast()

__all__ = ["HAVE_SPEEDUPS", "delete_attrs", "dump_text", "format_payload", "event_line", "events_text",
           "EVENT_PREFIX", "O_EVENT"]

# `conntrack -E` line prefixes (same text as ctools.format.text.EVENT_PREFIX)
EVENT_PREFIX = {"NEW": "    [NEW] ", "UPDATE": " [UPDATE] ", "DESTROY": "[DESTROY] "}
O_EVENT = 1 << 16  # private flag of the C formatter: event line, no use= field

HAVE_SPEEDUPS = _ctfast is not None
_I32 = struct.Struct("=i")


def delete_attrs(payload, match: tuple | None = None) -> bytes | None:
    """The attributes of a CT_DELETE request for one dumped entry (its original tuple,
    zone and id, copied from ``payload``); ``b""`` when the entry fails ``match`` (see
    :func:`dump_text`); None: decode the entry and do it the slow way.  (This Python
    version always answers None; the C one replaces it when built.)"""
    return None


if getattr(_ctfast, "delete_attrs", None) is not None:
    delete_attrs = _ctfast.delete_attrs  # noqa: F811 -- one call per deleted entry


def format_payload(payload, flags: int, now: int | None = None) -> str | None:
    """One payload as a text line by the C formatter, or None (use the Python one)."""
    if _ctfast is None:
        return None
    return _ctfast.format_payload(payload, flags, int(time.time()) if now is None else now)


def event_line(payload, kind: str, flags: int, now: int | None = None,
               suffix: str = "") -> str | None:
    """One event as a ``conntrack -E`` text line by the C formatter, or None.

    Equal to ``format_entry(decode_entry(payload), flags, kind)`` with ``suffix`` (e.g.
    `` [USERSPACE] portid=N``) inserted before the newline.
    """
    if _ctfast is None:
        return None
    line = _ctfast.format_payload(payload, flags | O_EVENT,
                                  int(time.time()) if now is None else now)
    if line is None:
        return None
    prefix = EVENT_PREFIX[kind]
    if line == "\n":  # an empty entry: the prefix's blank is the trailing one
        prefix = prefix[:-1]
    return prefix + (line[:-1] + suffix + "\n" if suffix else line)


def events_text(sock, flags: int, fallback: Callable[[str, int, memoryview], str | None],
                *, now: int | None = None, max_bytes: int = 65536,
                use_speedups: bool = True) -> tuple[str, int, int]:
    """Format every event already queued on ``sock`` (never blocks).

    Returns ``(text, count, errno)``: the lines of the drained events, how many, and 0 or
    the receive error that stopped the drain (ENOBUFS: events were lost; the socket stays
    usable).  Wait for readability first (select/poll on ``sock``).  Events caused by a
    userspace process (portid != 0, they need a ``[USERSPACE]`` suffix) and entries the C
    formatter does not render go to ``fallback(kind, portid, payload) -> str | None``
    (None = filtered out); without the accelerator every event goes there.
    """
    if now is None:
        now = int(time.time())
    if _ctfast is not None and use_speedups:
        try:
            return _ctfast.format_events(sock.fileno(), flags, now, fallback, max_bytes)
        except ValueError as exc:
            raise CodecError(str(exc)) from None
    from ctools.library import event_type

    parts: list[str] = []
    size = count = err = 0
    try:
        for ty, mflags, pid, payload in sock.recv_events(nonblock=True):
            line = fallback(event_type(ty, mflags), pid, payload)
            if line is not None:
                parts.append(line)
                size += len(line)
                count += 1
            if size >= max_bytes:
                break
    except NetlinkError as exc:
        err = exc.errno
    return "".join(parts), count, err


def dump_text(sock, msg_type: int, family: int, attrs: bytes, flags: int,
              fallback: Callable[[memoryview], str | None], write: Callable[[str], object],
              *, now: int | None = None, use_speedups: bool = True,
              match: tuple | None = None) -> int:
    """Run a dump on ``sock`` (a CtnetlinkSocket) and ``write`` its entries as text.

    Returns the number of entries written.  Kernel errors raise NetlinkError, malformed
    messages CodecError (from the fallback's decoder).

    ``match`` (``(family, proto, src, smask, dst, dmask)``, see
    :func:`ctools.cli._ct_filter.dump_match`) lets the C formatter skip the entries that
    fail a plain address/protocol filter without building them in Python; ``fallback``
    still gets (and must filter) the payloads the C code leaves to it.  Without the
    accelerator ``match`` is ignored and ``fallback`` sees everything.
    """
    if now is None:
        now = int(time.time())
    seq = sock.next_seq()
    sock._send(sock._message(msg_type, C.NLM_F_DUMP, seq, family, attrs, 0))
    count = 0
    done = False
    try:
        if _ctfast is not None and use_speedups:
            fmt = _ctfast.format_dump
            while not done:
                try:
                    text, n, done, err = fmt(sock._recv(), seq, flags, now, fallback,
                                             match)
                except ValueError as exc:
                    if isinstance(exc, CodecError):
                        raise
                    raise CodecError(str(exc)) from None
                if text:
                    write(text)
                count += n
                if err:
                    done = True
                    raise NetlinkError(err)
            return count
        while not done:
            for ty, _flags, mseq, _pid, payload in iter_messages(sock._recv()):
                if mseq != seq:
                    continue
                if ty == C.NLMSG_DONE or ty == C.NLMSG_ERROR:
                    err = -_I32.unpack_from(payload, 0)[0] if len(payload) >= 4 else 0
                    if ty == C.NLMSG_DONE or err:
                        done = True
                    if err > 0:
                        raise NetlinkError(err)
                    if done:
                        break
                    continue
                if ty < 16:
                    continue
                line = fallback(payload)
                if line is not None:
                    write(line)
                    count += 1
        return count
    finally:
        if not done:
            sock._drain(seq)


def _list(flags: int) -> int:
    import sys

    from ctools.format.text import format_entry
    from ctools.netlink.codec import decode_entry
    from ctools.netlink.socket import CtnetlinkSocket

    now = int(time.time())
    out = sys.stdout
    with CtnetlinkSocket() as sock:
        count = dump_text(sock, C.CT_GET, 0, b"", flags,
                          lambda p: format_entry(decode_entry(p), flags, None, None, now),
                          out.write, now=now)
    out.flush()
    sys.stderr.write(f"conntrack v1.4.7 (ctools): {count} flow entries have been shown.\n")
    return 0


def _events(flags: int, rcvbuf: int | None) -> int:
    import errno
    import select
    import signal
    import sys

    from ctools.format.text import format_entry
    from ctools.netlink.codec import decode_entry
    from ctools.netlink.socket import CtnetlinkSocket

    def fallback(kind: str, pid: int, payload) -> str:
        line = format_entry(decode_entry(payload), flags, kind, None, int(time.time()))
        return line[:-1] + f" [USERSPACE] portid={pid}\n" if pid else line

    class Stop(Exception):
        pass

    def stop(_sig, _frame):
        raise Stop

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    out = sys.stdout
    count = 0
    with CtnetlinkSocket(C.CT_EVENT_GROUPS, rcvbuf=rcvbuf) as sock:
        try:
            while True:
                select.select([sock], [], [])
                text, n, err = events_text(sock, flags, fallback)
                if text:
                    out.write(text)
                    out.flush()
                count += n
                if err == errno.ENOBUFS:
                    sys.stderr.write("WARNING: We have hit ENOBUFS! We are losing events.\n")
                elif err:
                    raise NetlinkError(err)
        except Stop:
            pass
    sys.stderr.write(f"conntrack v1.4.7 (ctools): {count} flow events have been shown.\n")
    return 0


def _main(argv: list[str] | None = None) -> int:
    """``python -m ctools.netlink.fast [-E] [-b SIZE] [-o extended,id]``: list the table,
    or print events, through the fast path -- the reference for how ``conntrack -L``/``-E``
    use it, and a benchmark subject."""
    import argparse

    from ctools.format.text import O_EXT, O_ID

    ap = argparse.ArgumentParser(prog="python -m ctools.netlink.fast")
    ap.add_argument("-E", action="store_true", help="print events instead of listing")
    ap.add_argument("-b", type=int, help="receive buffer size for -E")
    ap.add_argument("-o", default="", help="extended,id")
    args = ap.parse_args(argv)
    flags = 0
    for word in filter(None, args.o.split(",")):
        flags |= {"extended": O_EXT, "id": O_ID}[word]
    return _events(flags, args.b) if args.E else _list(flags)


if __name__ == "__main__":
    raise SystemExit(_main())
