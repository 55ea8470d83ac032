"""Fuzz harness: conntrackd.conf parser.

Invariant: any bytes either parse into a ``Config`` or raise ``ConfigError`` whose position
points into the input; a parsed ``Config`` prints back (``dump``) to text that parses to an
equal ``Config``. Anything else escaping is a bug.
"""

from __future__ import annotations

from ctools.config import ConfigError, dump, parse

CORPUS = "config"


def TestOneInput(data: bytes) -> None:
    try:
        cfg = parse(data, filename="<fuzz>")
    except ConfigError as exc:
        assert str(exc).startswith("<fuzz>:"), str(exc)
        assert exc.line >= 1 and exc.col >= 1, str(exc)
        assert exc.line <= data.count(b"\n") + 1, str(exc)
        return
    again = parse(dump(cfg), filename="<dump>")
    assert again == cfg, "dump() does not round-trip"


if __name__ == "__main__":
    import sys

    import atheris

    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
