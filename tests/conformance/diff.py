"""Run the reference ``conntrack`` and ours side by side inside network namespaces."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REF_PREFIX = b"(conntrack-tools): "
OUR_PREFIX = b"(ctools): "
# stderr lines that are worded differently on purpose (docs/compat-cli.md)
_IGNORED_STDERR = (b"nfct_labelmap_new:", b"label map ")


def our_conntrack() -> list[str]:
    """Command line of our conntrack (the venv's console script, else ``python -m``)."""
    script = Path(sys.executable).parent / "conntrack"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "ctools.cli.conntrack"]


def normalize_stderr(err: bytes) -> bytes:
    lines = [ln.replace(REF_PREFIX, OUR_PREFIX) for ln in err.split(b"\n")]
    return b"\n".join(ln for ln in lines if not ln.startswith(_IGNORED_STDERR))


def run(ns, tool: list[str], args: list[str], input: bytes | None = None,
        timeout: float = 30) -> tuple[int, bytes, bytes]:
    """(exit status, stdout, normalized stderr) of ``tool args`` inside ``ns``."""
    proc = subprocess.run(ns.cmd(*tool, *args), capture_output=True, input=input,
                          timeout=timeout)
    return proc.returncode, proc.stdout, normalize_stderr(proc.stderr)


_TEXT_TIMEOUT = re.compile(rb"^((?:\[\w+\]\s+)?(?:\w+\s+\d+ )?[a-z0-9]+\s+\d+ )\d+ ", re.M)
_SAVE_TIMEOUT = re.compile(rb"-t \d+ ")
_XML_TIMEOUT = re.compile(rb"<timeout>\d+</timeout>")
_DELTA = re.compile(rb"delta-time=\d+")
_XML_DELTA = re.compile(rb"<deltatime>\d+</deltatime>")


def mask_timeouts(out: bytes) -> bytes:
    """Replace remaining-timeout values (they tick between two namespaces' runs)."""
    out = _TEXT_TIMEOUT.sub(rb"\1T ", out)
    out = _SAVE_TIMEOUT.sub(b"-t T ", out)
    out = _XML_TIMEOUT.sub(b"<timeout>T</timeout>", out)
    out = _XML_DELTA.sub(b"<deltatime>D</deltatime>", out)
    return _DELTA.sub(b"delta-time=D", out)


_IDS = re.compile(rb"(<id>|\bid=)\d+(?=</id>| |\n|$)")


def mask_ids(out: bytes) -> bytes:
    """Entry ids differ between namespaces."""
    return _IDS.sub(rb"\1N", out)


def comparable(out: bytes) -> list[bytes]:
    """Output of two namespaces made comparable: timeouts and ids masked, lines sorted
    (each namespace hashes its entries, so dump order differs)."""
    out = _IDS.sub(rb"\1N", mask_timeouts(out))
    return sorted(out.splitlines())


def table(ns, ref: str) -> list[bytes]:
    """The namespace's conntrack table as sorted ``-o save`` lines, timeouts masked."""
    proc = subprocess.run(ns.cmd(ref, "-L", "-o", "save"), capture_output=True, timeout=30)
    return sorted(mask_timeouts(proc.stdout).splitlines())


def expectations(ns, ref: str) -> list[bytes]:
    lines = []
    for fam in ("ipv4", "ipv6"):
        proc = subprocess.run(ns.cmd(ref, "-L", "expect", "-f", fam), capture_output=True,
                              timeout=30)
        lines += proc.stdout.splitlines()
    return sorted(re.sub(rb"^\d+ ", b"T ", ln) for ln in lines)


def mask_delta(result: tuple[int, bytes, bytes]) -> tuple[int, bytes, bytes]:
    """Ages tick on the wall clock and each entry's timeout at its own phase: a run can fall
    between two runs of the reference and match neither, so both are compared by shape."""
    code, out, err = result
    return code, mask_timeouts(out), err


def same_second_run(ns, ref: str, ours: list[str], args: list[str], tries: int = 3):
    """Run both tools on the same table; retry when a second boundary made them differ."""
    for _ in range(tries):
        before = mask_delta(run(ns, [ref], args))
        o = mask_delta(run(ns, ours, args))
        if o == before:
            return before, o
        after = mask_delta(run(ns, [ref], args))
        if o == after:
            return after, o
    return before, o
