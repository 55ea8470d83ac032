"""A GNU ``getopt_long`` work-alike, because ``conntrack``'s observable behaviour depends on it.

The C tool relies on GNU argument permutation (stray words are skipped), unique-prefix
abbreviation of long options, optional arguments that only attach (``-Lexpect``), and on its
own code advancing ``optind`` to swallow a table name. Error messages quote
``argv[optind - 1]`` *after* permutation, so we permute the list exactly like GNU does.

Written from the documented GNU semantics; no code copied.
"""

from __future__ import annotations

NO_ARG, REQUIRED_ARG, OPTIONAL_ARG = 0, 1, 2


class LongOpt:
    """One entry of the long-option table: name, argument kind and the value returned."""

    __slots__ = ("name", "has_arg", "val")

    def __init__(self, name: str, has_arg: int, val: str) -> None:
        self.name = name
        self.has_arg = has_arg
        self.val = val


_SHORT_CACHE: dict[str, dict[str, int]] = {}
_EXACT_CACHE: dict[tuple, dict[str, LongOpt]] = {}


class Getopt:
    """Scanner state over a mutable argv list (``argv[0]`` is the program name).

    ``next()`` returns ``(code, optarg)`` or ``None`` at the end. ``code`` is the option's
    value, ``'?'`` for an unknown/ambiguous option and ``':'`` for a missing argument (the
    option string starts with ``:``, so GNU reports those separately and prints nothing).
    """

    def __init__(self, argv: list[str], shortopts: str, longopts: list[LongOpt]) -> None:
        self.argv = argv
        self.longopts = longopts          # callers may append to it between calls
        short = _SHORT_CACHE.get(shortopts)
        if short is None:
            short = _SHORT_CACHE[shortopts] = self._parse_short(shortopts)
        self._short = short
        key = tuple(map(id, longopts))
        exact = _EXACT_CACHE.get(key)
        if exact is None:
            exact = {}
            for opt in longopts:
                exact.setdefault(opt.name, opt)
            if len(_EXACT_CACHE) < 16:
                _EXACT_CACHE[key] = exact
        self._exact = dict(exact)
        self.optind = 1
        self._nextchar = ""
        self._first_nonopt = 1
        self._last_nonopt = 1

    @staticmethod
    def _parse_short(spec: str) -> dict[str, int]:
        out: dict[str, int] = {}
        i = 1 if spec.startswith(":") else 0
        while i < len(spec):
            c = spec[i]
            kind = NO_ARG
            if spec[i + 1:i + 3] == "::":
                kind, i = OPTIONAL_ARG, i + 2
            elif spec[i + 1:i + 2] == ":":
                kind, i = REQUIRED_ARG, i + 1
            out[c] = kind
            i += 1
        return out

    def add_longopts(self, opts: list[LongOpt]) -> None:
        """Extend the long-option table (conntrack adds a protocol's options at ``-p``)."""
        self.longopts.extend(opts)
        for opt in opts:
            self._exact.setdefault(opt.name, opt)

    def _is_nonoption(self, i: int) -> bool:
        word = self.argv[i]
        return not word.startswith("-") or word == "-"

    def _exchange(self) -> None:
        """Move the skipped non-options after the options processed since."""
        a, b, c = self._first_nonopt, self._last_nonopt, self.optind
        self.argv[a:c] = self.argv[b:c] + self.argv[a:b]
        self._first_nonopt += c - b
        self._last_nonopt = c

    def next(self) -> tuple[str, str | None] | None:
        argv = self.argv
        argc = len(argv)
        if not self._nextchar:
            # the caller may have moved optind (conntrack swallows table names)
            if self._last_nonopt > self.optind:
                self._last_nonopt = self.optind
            if self._first_nonopt > self.optind:
                self._first_nonopt = self.optind
            if self._first_nonopt != self._last_nonopt and self._last_nonopt != self.optind:
                self._exchange()
            elif self._last_nonopt != self.optind:
                self._first_nonopt = self.optind
            while self.optind < argc and self._is_nonoption(self.optind):
                self.optind += 1
            self._last_nonopt = self.optind

            if self.optind != argc and argv[self.optind] == "--":
                self.optind += 1
                if self._first_nonopt != self._last_nonopt and self._last_nonopt != self.optind:
                    self._exchange()
                elif self._first_nonopt == self._last_nonopt:
                    self._first_nonopt = self.optind
                self._last_nonopt = argc
                self.optind = argc

            if self.optind == argc:
                if self._first_nonopt != self._last_nonopt:
                    self.optind = self._first_nonopt
                return None

            word = argv[self.optind]
            if word.startswith("--"):
                return self._long(word[2:])
            self._nextchar = word[1:]

        return self._short_opt()

    def _long(self, body: str) -> tuple[str, str | None]:
        name, eq, value = body.partition("=")
        self.optind += 1
        found: LongOpt | None = self._exact.get(name)
        ambiguous = False
        for opt in () if found is not None else self.longopts:
            if opt.name == name:
                found, ambiguous = opt, False
                break
            if opt.name.startswith(name):
                if found is None:
                    found = opt
                elif (found.has_arg, found.val) != (opt.has_arg, opt.val):
                    ambiguous = True
        if found is None or ambiguous:
            return "?", None
        if found.has_arg == NO_ARG:
            if eq:
                return "?", None
            return found.val, None
        if eq:
            return found.val, value
        if found.has_arg == REQUIRED_ARG:
            if self.optind < len(self.argv):
                arg = self.argv[self.optind]
                self.optind += 1
                return found.val, arg
            return ":", None
        return found.val, None

    def _short_opt(self) -> tuple[str, str | None]:
        c = self._nextchar[0]
        self._nextchar = self._nextchar[1:]
        if not self._nextchar:
            self.optind += 1
        kind = self._short.get(c)
        if kind is None or c in ":;":
            return "?", None
        if kind == NO_ARG:
            return c, None
        if kind == OPTIONAL_ARG:
            if self._nextchar:
                arg, self._nextchar = self._nextchar, ""
                self.optind += 1
                return c, arg
            return c, None
        if self._nextchar:
            arg, self._nextchar = self._nextchar, ""
            self.optind += 1
            return c, arg
        if self.optind >= len(self.argv):
            return ":", None
        arg = self.argv[self.optind]
        self.optind += 1
        return c, arg

    def last_word(self) -> str:
        """``argv[optind - 1]``: the word GNU-based tools quote in their messages."""
        return self.argv[self.optind - 1]
