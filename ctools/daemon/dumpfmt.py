"""Cache dump lines (-i/-e and their XML form) and the flow-log line of statistics mode."""

from __future__ import annotations

from collections.abc import Iterator

from ctools.model import Entry, Expect, Tuple

# (the formatters are imported on first use: a daemon nobody asks for a dump never loads them)

# what the reference prints for an entry received without reply tuple: an empty, unknown one
_NO_REPLY = Tuple(family=0, src="", dst="", proto=0)


def _without_timeout(fn, obj, *args, **kw) -> str:
    saved = obj.timeout
    obj.timeout = None      # dumps never show the timeout
    try:
        return fn(obj, *args, **kw)
    finally:
        obj.timeout = saved


def entry_text(e: Entry) -> str:
    """Default one-line format without timeout/id and without the newline."""
    from ctools.format.text import format_entry

    return _without_timeout(format_entry, e).rstrip("\n")


def cache_line(obj: Entry | Expect, active_secs: int, expires_in: int | None = None) -> str:
    """One ``-i``/``-e`` line: entry text, feature suffixes, ``[active since Ns]``."""
    if isinstance(obj, Expect):
        from ctools.format.text import format_expect

        text = _without_timeout(format_expect, obj).rstrip("\n")
    else:
        text = entry_text(obj)
    if expires_in is not None:
        text += f" [expires in {expires_in}s]"
    return f"{text} [active since {active_secs}s]\n"


def cache_xml(obj: Entry | Expect) -> str:
    """One ``-x`` line: the XML ``<flow>`` element without timeout."""
    from ctools.format.xml import format_entry_xml, format_expect_xml

    if isinstance(obj, Expect):
        return _without_timeout(format_expect_xml, obj)
    return _without_timeout(format_entry_xml, obj)


def dump_cache(cache, now: float, xml: bool, expiry: bool) -> str:
    """All lines of a cache dump (``-i``/``-e``); internal entries get their reply back."""
    return "".join(dump_chunks(cache, now, xml, expiry))


def dump_chunks(cache, now: float, xml: bool, expiry: bool,
                lines: int = 512) -> Iterator[str]:
    """``dump_cache`` in pieces of ``lines`` lines, made as they are consumed: the control
    server sends each before the next is formatted, so a 100k-flow dump never exists whole
    (and its 100k line strings are not all alive at once)."""
    from ctools.daemon.cache import full_reply

    out: list[str] = []
    rebuild = not cache.keep_reply
    for o in cache:
        e = o.entry
        placeholder = xml and not rebuild and isinstance(e, Entry) and e.reply is None
        saved = e.reply if rebuild else None
        if rebuild:
            e.reply = full_reply(e)
        elif placeholder:
            e.reply = _NO_REPLY
        try:
            if xml:
                out.append(cache_xml(e))
            else:
                exp = int(cache.lifetime - (now - o.last)) if expiry else None
                out.append(cache_line(e, int(now - o.since), exp))
        finally:
            if rebuild or placeholder:
                e.reply = saved
        if len(out) >= lines:
            yield "".join(out)
            out.clear()
    if out:
        yield "".join(out)
