"""ctools: netfilter's conntrack-tools rebuilt in Python.

Library entry points (imported lazily, so ``import ctools.model`` stays cheap)::

    from ctools import Conntrack, Expectations, Entry, Tuple, Expect
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "Conntrack": "ctools.library",
    "Expectations": "ctools.library",
    "Event": "ctools.library",
    "Entry": "ctools.model",
    "Tuple": "ctools.model",
    "NatRange": "ctools.model",
    "Expect": "ctools.model",
    "NetlinkError": "ctools.netlink.errors",
    "CodecError": "ctools.netlink.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ctools' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
