"""ctools.config against the reference conntrackd 1.4.7 parser: same files accepted/rejected.

The oracle is ``conntrackd -C FILE -s``: the C daemon parses the file first and exits 1 with
``parsing config file …``/another ERROR on a bad file; on a good file it goes on to client mode
and fails with ``can't connect`` (nothing listens on the corpus' socket paths). No daemon is
started, nothing is written. Tests needing the reference skip when it is not installed; the
corpus expectations (folder = verdict) are checked without it.
"""

from __future__ import annotations

import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ctools.config import ConfigError, parse
from ctools.config.lexer import tokenize

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "fuzz"))

import fuzzlib  # noqa: E402
from config_gen import generate  # noqa: E402

CORPUS = ROOT / "fuzz" / "corpus" / "config"
REF = shutil.which("conntrackd", path="/usr/sbin:/sbin:/usr/bin")
_SYNTAX = re.compile(r"parsing config file in line \((\d+)\), symbol '(.*)': syntax error", re.S)


def corpus(folder: str) -> list[Path]:
    return sorted((CORPUS / folder).glob("*.conf"))


def ours(data: bytes) -> ConfigError | None:
    try:
        parse(data, filename="f.conf")
    except ConfigError as exc:
        return exc
    return None


class Reference:
    """Runs the C parser on bytes; ``verdict`` -> (accepted, output)."""

    def __init__(self, binary: str, tmp: Path) -> None:
        self.binary = binary
        self.path = tmp / "ref.conf"

    def verdict(self, data: bytes) -> tuple[bool, str]:
        self.path.write_bytes(data)
        proc = subprocess.run([self.binary, "-C", str(self.path), "-s"], capture_output=True,
                              timeout=10)
        out = (proc.stdout + proc.stderr).decode("utf-8", "surrogateescape")
        return ("can't connect" in out or proc.returncode == 0), out


@pytest.fixture
def ref(ref_conntrackd, tmp_path) -> Reference:
    return Reference(ref_conntrackd, tmp_path)


def known_difference(data: bytes, c_accepts: bool, c_out: str, err: ConfigError | None) -> bool:
    """The deliberate differences of docs/compat-config.md."""
    if c_accepts and err is not None:
        # a NUL or non-ASCII byte at a token start: C takes it for the end of the file
        if "non-ASCII" in err.message or "'\\x00'" in err.message:
            return True
        # a 5th link block that C lets through when it is empty (then overflows its table)
        return "at most 4" in err.message
    if not c_accepts and err is None:
        return ("symbol '#'" in c_out and not data.endswith(b"\n")) or \
            b"Metrics" in data or b"AuthenticationKeyFile" in data
    return False


# ----------------------------------------------------------------------------- corpus


@pytest.mark.parametrize("path", corpus("accept") + corpus("ctools-only"), ids=lambda p: p.name)
def test_corpus_accepted(path):
    assert ours(path.read_bytes()) is None


@pytest.mark.parametrize("path", corpus("reject") + corpus("c-only"), ids=lambda p: p.name)
def test_corpus_rejected_with_position(path):
    data = path.read_bytes()
    exc = ours(data)
    assert exc is not None
    assert 1 <= exc.line <= data.count(b"\n") + 1 and exc.col >= 1 and exc.message


@pytest.mark.reference
def test_corpus_verdicts_match_reference(ref):
    folders = {"accept": True, "reject": False, "ctools-only": False, "c-only": True}
    checked = 0
    for folder, c_expected in folders.items():
        for path in corpus(folder):
            accepted, out = ref.verdict(path.read_bytes())
            assert accepted == c_expected, (path, out)
            checked += 1
    assert checked > 140


@pytest.mark.reference
def test_syntax_errors_point_at_the_same_token_as_reference(ref):
    """For C syntax errors: our line and offending token equal C's ``line (N), symbol 'X'``."""
    compared = 0
    for path in corpus("reject"):
        data = path.read_bytes()
        _, out = ref.verdict(data)
        m = _SYNTAX.search(out)
        if not m:
            continue
        exc = ours(data)
        assert exc is not None
        text = data.decode("utf-8", "surrogateescape")
        tok = next(t for t in tokenize(text) if (t.line, t.col) == (exc.line, exc.col))
        # C prints the token as a C string: it ends at a NUL byte
        assert (exc.line, tok.text.split("\0")[0]) == (int(m.group(1)), m.group(2)), (
            path, str(exc), out)
        compared += 1
    assert compared > 40


# ----------------------------------------------------------------------------- generated


@pytest.mark.reference
def test_generated_configs_same_verdict_and_error_token(ref):
    """600 grammar-aware near-miss configs (seeded): same accept/reject, same error token."""
    accepted = rejected = 0
    for seed in range(600):
        text = generate(random.Random(seed), (0.0, 0.03, 0.1, 0.3)[seed % 4])
        data = text.encode("utf-8", "surrogateescape")
        c_accepts, out = ref.verdict(data)
        exc = ours(data)
        if known_difference(data, c_accepts, out, exc):
            continue
        assert c_accepts == (exc is None), (seed, text, out, exc)
        accepted += c_accepts
        rejected += not c_accepts
        m = _SYNTAX.search(out)
        if m and exc is not None:
            tok = next(t for t in tokenize(text) if (t.line, t.col) == (exc.line, exc.col))
            assert (exc.line, tok.text.split("\0")[0]) == (int(m.group(1)), m.group(2)), (
                seed, text, out)
    assert accepted > 100 and rejected > 200


@pytest.mark.reference
def test_mutated_corpus_same_verdict(ref):
    """1000 byte-level mutations of the corpus (seeded): same accept/reject."""
    seeds = fuzzlib.seeds("config")
    rng = random.Random(2026)
    differ = []
    for i in range(1000):
        data = fuzzlib.mutate(rng.choice(seeds), rng, seeds)
        c_accepts, out = ref.verdict(data)
        exc = ours(data)
        if c_accepts != (exc is None) and not known_difference(data, c_accepts, out, exc):
            differ.append((i, data, out[-200:], str(exc)))
    assert not differ, differ[:3]


@pytest.mark.parametrize("depth, accepted", [(1665, True), (1666, False)])
def test_nested_helper_types_bounded_like_c_parser_stack(depth, accepted, request):
    """Type blocks nest; C's parser stack holds 1665 levels. No RecursionError here."""
    data = ("Helper { " + "Type ftp inet tcp { QueueNum 1 " * depth + "} " * depth
            + "}\n").encode()
    exc = ours(data)
    assert (exc is None) == accepted, exc
    if exc is not None:
        assert "nested too deeply" in exc.message
    if REF is not None:
        ref = Reference(REF, request.getfixturevalue("tmp_path"))
        assert ref.verdict(data)[0] == accepted


# Warnings that only ctools gives (conntrackd stays silent there) or that conntrackd gives
# after parsing (mode default, CommitTimeout evaluation).
_OUR_EXTRA_WARNINGS = ("does not fit in 32 bits", "is out of range", "NUL byte", "CommitTimeout")
_C_LATE_WARNINGS = ("No synchronization mode", "CommitTimeout")


@pytest.mark.reference
def test_same_number_of_warnings_as_reference(ref):
    """Every WARNING conntrackd logs while reading a file has one ConfigWarning, and back."""
    files = [p.read_bytes() for p in corpus("accept")]
    files += [generate(random.Random(seed), 0.0).encode() for seed in range(300)]
    compared = 0
    for data in files:
        accepted, out = ref.verdict(data)
        if not accepted:
            continue
        theirs = [line for line in out.splitlines() if "[warning]" in line
                  and not any(s in line for s in _C_LATE_WARNINGS)]
        cfg = parse(data)
        ours_ = [w for w in cfg.warnings
                 if not any(s in w.message for s in _OUR_EXTRA_WARNINGS)]
        assert len(ours_) == len(theirs), (data, theirs, [str(w) for w in ours_])
        compared += 1
    assert compared > 150
