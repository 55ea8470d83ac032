"""Optional compiled accelerators.

``_ctfast`` (from ``_ctfast.c``) formats ctnetlink dumps as ``conntrack -L`` text lines.
It is built by the package's hatch build hook (``pip install -e .``) when a C compiler and
the Python headers are available; everything works without it (see ctools.netlink.fast).
Build it in place by hand with ``python -m ctools._speedups``.
"""

from __future__ import annotations

import os
import subprocess
import sysconfig

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = {"_ctfast": "_ctfast.c"}


def build(directory: str = HERE, quiet: bool = False) -> list[str]:
    """Compile every extension into ``directory``; returns the built file paths."""
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
