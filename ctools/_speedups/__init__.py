"""Optional compiled accelerators.

``_ctfast`` (from ``_ctfast.c``) formats ctnetlink dumps as ``conntrack -L`` text lines.
It is built by the package's hatch build hook (``pip install -e .``) when a C compiler and
the Python headers are available; everything works without it (see ctools.netlink.fast).
Build it in place by hand with ``python -m ctools._speedups``.
"""

from __future__ import annotations

import os

HERE = os.path.dirname(os.path.abspath(__file__))
# the _ctfast.ABI this Python code expects; an older build in place is ignored
CTFAST_ABI = 2
SOURCES = {"_ctfast": "_ctfast.c"}


def load_ctfast():
    """The ``_ctfast`` module, or None if it is not built, disabled by
    ``CTOOLS_NO_SPEEDUPS`` or stale (built from an older ``_ctfast.c``)."""
    if os.environ.get("CTOOLS_NO_SPEEDUPS"):
        return None
    try:
        from ctools._speedups import _ctfast
    except ImportError:
        return None
    return _ctfast if getattr(_ctfast, "ABI", None) == CTFAST_ABI else None


def build(directory: str = HERE, quiet: bool = False) -> list[str]:
    """Compile every extension into ``directory``; returns the built file paths."""
    import subprocess
    import sysconfig

    include = sysconfig.get_paths()["include"]
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    cc = (sysconfig.get_config_var("CC") or "cc").split()
    built = []
    for name, source in SOURCES.items():
        out = os.path.join(directory, name + suffix)
        tmp = f"{out}.{os.getpid()}.tmp"
        cmd = [*cc, "-O2", "-shared", "-fPIC", "-fno-strict-aliasing", f"-I{include}",
               os.path.join(HERE, source), "-o", tmp]
        try:
            subprocess.run(cmd, check=True, capture_output=quiet)
            # atomic: processes that already mapped the old file keep it intact
            os.replace(tmp, out)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        built.append(out)
    return built
