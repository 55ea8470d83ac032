"""Long differential sweep: ctools.config against the reference conntrackd parser.

    .venv/bin/python fuzz/config_diff.py                 # 5000 generated + 5000 mutated files
    .venv/bin/python fuzz/config_diff.py -g 20000 -m 20000 --seed 7 --keep /tmp/diffs

Generated files come from fuzz/config_gen.py (grammar-aware near misses), mutated ones from
the seed corpus (fuzzlib.mutate). For each file the verdict of ``conntrackd -C FILE -s``
(a parse error exits before the client connects) is compared with ``ctools.config.parse``;
the deliberate differences of docs/compat-config.md are not counted. For syntax errors the
line and offending token must match too. Exit status 1 if anything differs.

Not a harness (no ``TestOneInput``): it runs the C binary, about 2 ms per file.
"""

from __future__ import annotations

import argparse
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fuzzlib  # noqa: E402
from config_gen import generate  # noqa: E402

from ctools.config import ConfigError, parse  # noqa: E402
from ctools.config.lexer import CHAR, tokenize  # noqa: E402

_SYNTAX = re.compile(r"parsing config file in line \((\d+)\), symbol '(.*)': syntax error", re.S)


def c_verdict(binary: str, path: Path, data: bytes) -> tuple[bool, str]:
    path.write_bytes(data)
    proc = subprocess.run([binary, "-C", str(path), "-s"], capture_output=True, timeout=10)
    out = (proc.stdout + proc.stderr).decode("utf-8", "surrogateescape")
    return ("can't connect" in out or proc.returncode == 0), out


def deliberate(data: bytes, c_ok: bool, out: str, err: ConfigError | None) -> bool:
    if c_ok and err is not None:
        return ("non-ASCII" in err.message or "'\\x00'" in err.message
                or "at most 4" in err.message)
    if not c_ok and err is None:
        return (("symbol '#'" in out and not data.endswith(b"\n"))
                or b"Metrics" in data or b"AuthenticationKeyFile" in data)
    return False


def compare(binary: str, path: Path, data: bytes) -> str | None:
    """None when both parsers agree (or differ on purpose), else a description."""
    c_ok, out = c_verdict(binary, path, data)
    try:
        parse(data, filename="f.conf")
        err = None
    except ConfigError as exc:
        err = exc
    if c_ok != (err is None):
        if deliberate(data, c_ok, out, err):
            return None
        return f"verdict: C {'accepts' if c_ok else 'rejects'}, ctools {err or 'accepts'}" \
               f" | C said: {out.strip()[-200:]}"
    m = _SYNTAX.search(out)
    # our extension words, and a final comment without newline, are where C stops; we
    # report whatever is wrong further on
    if m and m.group(2) == "#" and not data.endswith(b"\n"):
        return None
    if m and err is not None and m.group(2) not in ("Metrics", "AuthenticationKeyFile"):
        text = data.decode("utf-8", "surrogateescape")
        tok = next((t for t in tokenize(text) if (t.line, t.col) == (err.line, err.col)), None)
        # C prints its token as bytes up to a NUL; a non-ASCII character is one byte there
        raw = tok.text.split("\0")[0].encode("utf-8", "surrogateescape") if tok else b""
        want = m.group(2).encode("utf-8", "surrogateescape")
        if tok is not None and tok.kind == CHAR and not tok.text.isascii():
            raw = raw[:1]
        if (err.line, raw) != (int(m.group(1)), want):
            return f"error position: C line {m.group(1)} symbol {m.group(2)!r}, ctools {err}"
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-g", "--generated", type=int, default=5000)
    ap.add_argument("-m", "--mutated", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--binary", default="/usr/sbin/conntrackd")
    ap.add_argument("--keep", type=Path, help="save differing inputs into this folder")
    args = ap.parse_args(argv)
    if not Path(args.binary).exists():
        print(f"{args.binary} not found: nothing to compare against", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    seeds = fuzzlib.seeds("config")
    found = 0
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ctcf-diff-") as tmp:
        path = Path(tmp) / "f.conf"
        for i in range(args.generated + args.mutated):
            if i < args.generated:
                data = generate(rng, (0.0, 0.03, 0.1, 0.3)[i % 4]).encode("utf-8", "surrogateescape")
            else:
                data = fuzzlib.mutate(rng.choice(seeds), rng, seeds)
            problem = compare(args.binary, path, data)
            if problem:
                found += 1
                print(f"#{i}: {problem}")
                if args.keep:
                    args.keep.mkdir(parents=True, exist_ok=True)
                    (args.keep / f"diff-{args.seed}-{i}.conf").write_bytes(data)
    total = args.generated + args.mutated
    print(f"{total} files ({args.generated} generated, {args.mutated} mutated) in"
          f" {time.monotonic() - started:.1f}s: {found} unexplained differences")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
