"""Shared machinery of the fuzz harnesses: discovery, corpora, a small mutator for smoke runs.

The harness convention (see fuzz/README.md):

* a harness is a file ``fuzz/<area>_<target>.py`` with a module-level
  ``TestOneInput(data: bytes) -> None`` that raises only when an invariant is broken;
* its seed corpus is ``fuzz/corpus/<CORPUS>/`` (every file below it, recursively), where
  ``CORPUS`` is a module attribute defaulting to ``<area>``;
* every input that once broke it is kept in ``fuzz/regressions/<harness>/`` and replayed
  by ``tests/test_fuzz.py``.

This module has no underscore in its name, so it is never taken for a harness.
"""

from __future__ import annotations

import ast
import importlib.util
import random
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType

FUZZ_DIR = Path(__file__).resolve().parent
ROOT = FUZZ_DIR.parent
CORPUS_DIR = FUZZ_DIR / "corpus"
REGRESSION_DIR = FUZZ_DIR / "regressions"

# So that harnesses can "import fuzzlib" and "import ctools" from a plain checkout.
for _p in (str(FUZZ_DIR), str(ROOT)):
    if _p not in sys.path:
        sys.path.insert(0, _p)


# Findings reported to their owners and not fixed yet: harness -> [(text of the failure,
# note)]. tests/test_fuzz.py turns a smoke failure with that text into an expected failure,
# and fuzz/run.py keeps fuzzing past it (counted) instead of stopping at the first hit.
KNOWN_OPEN: dict[str, list[tuple[str, str]]] = {}


def is_known_open(stem: str, exc: BaseException) -> bool:
    """True when ``exc`` of harness ``stem`` is one of the known open findings."""
    text = f"{type(exc).__name__}: {exc}"
    return any(sig in text for sig, _note in KNOWN_OPEN.get(stem, []))


def is_harness(path: Path) -> bool:
    """True when ``path`` follows the naming rule and defines ``TestOneInput`` at top level."""
    if path.suffix != ".py" or "_" not in path.stem or path.stem.startswith("_"):
        return False
    try:
        tree = ast.parse(path.read_text(), str(path))
    except (OSError, SyntaxError):
        return True  # let the import report the problem instead of hiding the file
    return any(isinstance(node, ast.FunctionDef) and node.name == "TestOneInput"
               for node in tree.body)


def discover(directory: Path | None = None) -> list[Path]:
    """Every harness file in ``directory`` (default: fuzz/), sorted by name."""
    return sorted(p for p in (directory or FUZZ_DIR).glob("*_*.py") if is_harness(p))


def load(path: Path) -> ModuleType:
    """Import a harness file as module ``fuzz_<stem>`` (harness files are not a package)."""
    name = f"fuzz_{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load harness {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def corpus_name(module: ModuleType, path: Path) -> str:
    """Name of the seed-corpus folder of a harness (``CORPUS`` attribute or the area prefix)."""
    return getattr(module, "CORPUS", path.stem.split("_", 1)[0])


def read_files(folder: Path) -> list[bytes]:
    """Contents of every regular file below ``folder`` (sorted by path); empty if absent."""
    if not folder.is_dir():
        return []
    return [p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.startswith(".") and p.name != "README.md"]


def seeds(name: str) -> list[bytes]:
    """The committed seed corpus ``fuzz/corpus/<name>/``."""
    return read_files(CORPUS_DIR / name)


def regressions(stem: str) -> list[bytes]:
    """Inputs that once broke harness ``stem`` (``fuzz/regressions/<stem>/``)."""
    return read_files(REGRESSION_DIR / stem)


_INTERESTING = (b"\x00", b"\xff", b"\x7f", b"\x80", b"\x00\x00", b"\xff\xff",
                b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x80\x00\x00\x00")


def mutate(data: bytes, rng: random.Random, others: list[bytes] | None = None) -> bytes:
    """One to four random edits of ``data``: the cheap libFuzzer moves, without coverage."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        move = rng.randrange(8)
        n = len(buf)
        if move == 0 and n:                      # flip one bit
            i = rng.randrange(n)
            buf[i] ^= 1 << rng.randrange(8)
        elif move == 1 and n:                    # overwrite one byte
            buf[rng.randrange(n)] = rng.randrange(256)
        elif move == 2:                          # insert random bytes
            i = rng.randint(0, n)
            buf[i:i] = rng.randbytes(rng.randint(1, 8))
        elif move == 3 and n:                    # delete a range
            i = rng.randrange(n)
            del buf[i:i + rng.randint(1, 16)]
        elif move == 4 and n:                    # duplicate a range
            i = rng.randrange(n)
            j = min(n, i + rng.randint(1, 32))
            buf[i:i] = buf[i:j]
        elif move == 5 and n:                    # overwrite with an interesting value
            val = rng.choice(_INTERESTING)
            i = rng.randrange(n)
            buf[i:i + len(val)] = val
        elif move == 6 and n:                    # truncate
            del buf[rng.randrange(n):]
        elif move == 7 and others:               # splice with another seed
            other = rng.choice(others)
            cut = rng.randint(0, n)
            buf = buf[:cut] + other[rng.randint(0, len(other)):]
    return bytes(buf)


class FuzzFailure(AssertionError):
    """A harness broke an invariant; carries the input so that it can be saved."""

    def __init__(self, data: bytes, exc: BaseException) -> None:
        super().__init__(f"{type(exc).__name__}: {exc} on input {data[:64].hex()}"
                         f"{'...' if len(data) > 64 else ''} ({len(data)} bytes)")
        self.data = data


def smoke(test_one_input: Callable[[bytes], None], corpus: Iterable[bytes], *,
          runs: int = 2000, seconds: float = 2.0, seed: int = 0) -> int:
    """Feed every seed, then mutated seeds, until ``runs`` or ``seconds`` is reached.

    Returns the number of executions. Raises ``FuzzFailure`` on the first exception.
    Deterministic for a given ``seed`` (apart from where the time budget cuts it).
    """
    pool = [bytes(s) for s in corpus] or [b""]
    rng = random.Random(seed)
    done = 0

    def one(data: bytes) -> None:
        try:
            test_one_input(data)
        except Exception as exc:
            raise FuzzFailure(data, exc) from exc

    for data in pool:
        one(data)
        done += 1
    deadline = time.monotonic() + seconds
    while done < runs and time.monotonic() < deadline:
        one(mutate(rng.choice(pool), rng, pool))
        done += 1
    return done
