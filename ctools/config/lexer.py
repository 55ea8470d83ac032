"""conntrackd.conf tokenizer.

The token classes and their tie-breaking follow the C daemon's scanner exactly, because they
decide which files are accepted: at each position every class is tried, the longest match
wins and on equal length the class listed first wins (keywords, booleans, numbers, signed
numbers, IPv4, IPv6, paths, mode names, strings, then any single character).

Faithfully kept oddities of the C scanner (they are what 1.4.7 accepts):

* the boolean classes were written as ``[o|O][n|N]``, so ``|`` counts as a letter there
  (``o|`` and ``||`` are "on");
* a bare word of 1–4 hex digits (``beef``, ``add``) is an IPv6 address, not a string;
* ``persistent`` is only recognised with an upper-case final T (``persistenT``); ``nack`` and
  ``persistenT`` are old names of ``ftfw`` and ``alarm``;
* a path runs from ``/`` to the next space, ``"`` or newline, so it can swallow ``}``,
  ``#`` and tabs.

Deliberate differences: a comment on the last line without a final newline is a comment here
(the C scanner turns its ``#`` into a syntax error); a non-ASCII byte outside a path or a
comment is a syntax error here (the C scanner takes it for the end of the file and silently
ignores the rest).
"""

from __future__ import annotations

import re

# Token kinds
KEYWORD = "keyword"
ON = "on"
OFF = "off"
NUMBER = "number"
SIGNED = "signed number"
IP = "address"
PATH = "path"
MODE = "mode name"
STRING = "name"
CHAR = "character"
EOF = "end of file"

KEYWORDS = frozenset({
    "UNIX", "IPv4_address", "IPv6_address", "IPv4_Destination_Address",
    "IPv6_Destination_Address", "IPv4_interface", "IPv6_interface", "Interface", "Multicast",
    "UDP", "TCP", "HashSize", "RefreshTime", "CacheTimeout", "CommitTimeout", "HashLimit",
    "Path", "Backlog", "Group", "Port", "LogFile", "Syslog", "LockFile", "General", "Sync",
    "Stats", "SocketBufferSize", "SocketBufferSizeMaxGrown", "SocketBufferSizeMaxGrowth",
    "NetlinkBufferSize", "NetlinkBufferSizeMaxGrowth", "Mode", "ResendQueueSize", "Checksum",
    "ACKWindowSize", "for", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT",
    "LAST_ACK", "TIME_WAIT", "CLOSE", "CLOSED", "LISTEN", "SndSocketBuffer",
    "RcvSocketBuffer", "Filter", "Protocol", "Address", "State", "Accept", "Ignore",
    "PurgeTimeout", "From", "Userspace", "Kernelspace", "EventIterationLimit", "Default",
    "PollSecs", "NetlinkOverrunResync", "Nice", "Scheduler", "Type", "Priority",
    "NetlinkEventsReliable", "DisableInternalCache", "DisableExternalCache", "Options",
    "TCPWindowTracking", "ExpectationSync", "ErrorQueueLength", "Helper", "QueueNum",
    "QueueLen", "Policy", "ExpectMax", "ExpectTimeout", "Systemd", "StartupResync", "Setup",
})
# Keywords grouped by first character, longest first, for the prefix search.
_KW_BY_FIRST: dict[str, tuple[str, ...]] = {}
for _kw in sorted(KEYWORDS, key=len, reverse=True):
    _KW_BY_FIRST[_kw[0]] = _KW_BY_FIRST.get(_kw[0], ()) + (_kw,)

_BOOLS: tuple[tuple[str, tuple[str, ...]], ...] = (  # (kind, per-position char sets) in the C scanner's order
    (ON, ("o|O", "n|N")),
    (ON, ("y|Y", "e|E", "s|S")),
    (OFF, ("o|O", "f|F", "f|F")),
    (OFF, ("n|N", "o|O")),
)
_MODES: tuple[tuple[str, bool, tuple[str, ...]], ...] = (  # (mode, old name?, char sets)
    ("alarm", False, ("A|a", "L|l", "A|a", "R|r", "M|m")),
    ("alarm", True, ("P|p", "E|e", "R|r", "S|s", "I|i", "S|s", "T|t", "E|e", "N|n", "T|")),
    ("ftfw", False, ("F|f", "T|t", "F|f", "W|w")),
    ("ftfw", True, ("N|n", "A|a", "C|c", "K|k")),
    ("notrack", False, ("N|n", "O|o", "T|t", "R|r", "A|a", "C|c", "K|k")),
)

def _classes_rx(classes: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("".join(f"[{re.escape(cs)}]" for cs in classes))


_BOOL_RX = tuple((kind, _classes_rx(classes)) for kind, classes in _BOOLS)
_MODE_RX = tuple((mode, legacy, _classes_rx(classes)) for mode, legacy, classes in _MODES)
_BOOL_FIRST = frozenset("".join(classes[0] for _, classes in _BOOLS))
_MODE_FIRST = frozenset("".join(classes[0] for _, _, classes in _MODES))
_DIGITS = frozenset("0123456789")
_LETTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_HEX_OR_COLON = frozenset("0123456789ABCDEFabcdef:")

_INTEGER = re.compile(r"[0-9]+")
_SIGNED = re.compile(r"[-+][0-9]+")
_IPV4 = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+(?:/[0-9]+)?")
_HEX_COLON_RUN = re.compile(r"[0-9A-Fa-f:]{1,72}")  # 72 = longest IPv6 lexeme
_CIDR = re.compile(r"/[0-9]+")
_PATH = re.compile(r'/[^"\n ]*')
_STRING = re.compile(r"[A-Za-z][A-Za-z0-9._-]*")
_WS = re.compile(r"[ \t]+")


_LONG_MAX = (1 << 63) - 1


def c_long(text: str) -> int:
    """``strtol(text)``: the decimal value, saturated to the 64-bit range (any length)."""
    negative = text[0] == "-"
    digits = text.lstrip("+-").lstrip("0") or "0"
    if len(digits) > 19:
        return -_LONG_MAX - 1 if negative else _LONG_MAX
    value = int(digits)
    value = -value if negative else value
    return max(min(value, _LONG_MAX), -_LONG_MAX - 1)


class Token:
    """One lexeme: ``kind`` (module constants), ``text`` as written, 1-based position."""

    __slots__ = ("kind", "text", "line", "col", "value")

    def __init__(self, kind: str, text: str, line: int, col: int, value: object = None) -> None:
        self.kind = kind
        self.text = text
        self.line = line
        self.col = col
        self.value = value

    def __repr__(self) -> str:
        return f"Token({self.kind}, {self.text!r}, {self.line}:{self.col})"

    def describe(self) -> str:
        """How the token is named in an error message."""
        if self.kind == EOF:
            return "end of file"
        if self.kind == KEYWORD:
            return f"keyword '{self.text}'"
        if self.kind == CHAR:
            if not self.text.isascii():
                raw = self.text.encode("utf-8", "surrogateescape")
                return f"non-ASCII character (byte 0x{raw[0]:02x})"
            return f"'{self.text}'" if self.text.isprintable() else f"character {self.text!r}"
        return f"{self.kind} '{self.text}'"


def _hex_run(w: str, pos: int) -> int:
    end = pos
    while end < len(w) and w[end] != ":":
        end += 1
    return end - pos


def _pieces_ok(w: str) -> bool:
    """``w`` is up to 7 pieces of 1-4 hex digits, each optionally followed by one colon."""
    if not w:
        return True
    if w[0] == ":" or "::" in w:
        return False
    return sum((len(seg) + 3) // 4 for seg in w.split(":")) <= 7


def _pieces_prefix(w: str, pos: int) -> int:
    """End of the longest prefix of ``w[pos:]`` made of up to 7 such pieces."""
    used = 0
    while used < 7:
        m = _hex_run(w, pos)
        if m == 0:
            break
        take = min(m, 4 * (7 - used))
        if take < m:
            return pos + take
        used += (m + 3) // 4
        pos += m
        if pos < len(w) and w[pos] == ":":
            pos += 1
        else:
            break
    return pos


def _groups_prefix(w: str) -> int:
    """Length of the longest prefix of ``w`` made of 1-8 colon-joined groups of 1-4 hex."""
    pos = best = 0
    for _ in range(8):
        m = _hex_run(w, pos)
        if m == 0:
            break
        best = pos + min(m, 4)
        if m > 4 or best >= len(w) or w[best] != ":":
            break
        pos = best + 1
    return best


def _ipv6_len(text: str, pos: int) -> int:
    """Length of the longest IPv6 lexeme at ``pos`` (0 if none).

    The C scanner's two shapes: up to 7 pieces (1-4 hex digits, each optionally followed by
    a colon), "::", up to 7 pieces; or 1-8 groups of 1-4 hex digits joined by single colons;
    either optionally followed by /digits. Computed directly: the regular expression of the
    C scanner backtracks exponentially in Python's engine.
    """
    run = _HEX_COLON_RUN.match(text, pos)
    if run is None:
        return 0
    w = run.group()
    best = _groups_prefix(w)
    first = w.find("::")
    if first >= 0:
        # neither side may contain "::": only the first one (or, in ":::", the next) splits
        for i in (first, first + 1):
            if w.startswith("::", i) and _pieces_ok(w[:i]):
                best = max(best, _pieces_prefix(w, i + 2))
    if best:
        cidr = _CIDR.match(text, pos + best)
        if cidr is not None:
            best += len(cidr.group())
    return best


def _match_len(rx: re.Pattern[str], text: str, pos: int) -> int:
    m = rx.match(text, pos)
    return 0 if m is None else m.end() - pos


def tokenize(text: str) -> list[Token]:
    """Split a configuration text into tokens (ends with one EOF token). Never raises."""
    tokens: list[Token] = []
    pos, line, line_start, n = 0, 1, 0, len(text)
    append = tokens.append
    while pos < n:
        c = text[pos]
        if c == "\n":
            pos += 1
            line += 1
            line_start = pos
            continue
        if c == "\r":
            pos += 1
            continue
        if c == " " or c == "\t":
            pos += _match_len(_WS, text, pos)
            continue
        if c == "#":
            end = text.find("\n", pos)
            pos = n if end < 0 else end
            continue
        col = pos - line_start + 1
        # candidates: (length, kind, value), tried in the C scanner's rule order; a class
        # whose first character cannot match is skipped
        best_len, best_kind = 0, CHAR
        best_value: object = None
        for kw in _KW_BY_FIRST.get(c, ()):
            if text.startswith(kw, pos):
                best_len, best_kind, best_value = len(kw), KEYWORD, kw
                break
        if c in _BOOL_FIRST:
            for kind, rx in _BOOL_RX:
                m = rx.match(text, pos)
                if m is not None and m.end() - pos > best_len:
                    best_len, best_kind, best_value = m.end() - pos, kind, kind == ON
        if c in _DIGITS:
            length = _match_len(_INTEGER, text, pos)
            if length > best_len:
                best_len, best_kind, best_value = length, NUMBER, None
            length = _match_len(_IPV4, text, pos)
            if length > best_len:
                best_len, best_kind, best_value = length, IP, None
        elif c == "+" or c == "-":
            length = _match_len(_SIGNED, text, pos)
            if length > best_len:
                best_len, best_kind, best_value = length, SIGNED, None
        if c in _HEX_OR_COLON:
            length = _ipv6_len(text, pos)
            if length > best_len:
                best_len, best_kind, best_value = length, IP, None
        if c == "/":
            length = _match_len(_PATH, text, pos)
            if length > best_len:
                best_len, best_kind, best_value = length, PATH, None
        if c in _MODE_FIRST:
            for mode, legacy, rx in _MODE_RX:
                m = rx.match(text, pos)
                if m is not None and m.end() - pos > best_len:
                    best_len, best_kind, best_value = m.end() - pos, MODE, (mode, legacy)
        if c in _LETTERS:
            length = _match_len(_STRING, text, pos)
            if length > best_len:
                best_len, best_kind, best_value = length, STRING, None
        if best_len == 0:
            best_len = 1
        lexeme = text[pos:pos + best_len]
        if best_kind == NUMBER or best_kind == SIGNED:
            best_value = c_long(lexeme)
        append(Token(best_kind, lexeme, line, col, best_value))
        pos += best_len
    append(Token(EOF, "", line, pos - line_start + 1))
    return tokens
