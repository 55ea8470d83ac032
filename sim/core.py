"""The seam to the protocol core: builds ``ctools.sync`` cores for the simulator.

The simulator runs the real core. ``SyncParams`` grows fields over time; ``build_params`` passes
only the settings the installed core knows, so a new optional field never breaks the simulator.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

from ctools.sync import (
    Apply,
    PeerRestarted,
    ResyncRequested,
    SyncParams,
    make_sync,
)

REAL_CORE = True  # there is no stand-in: the simulator always runs ctools.sync

__all__ = ["Apply", "PeerRestarted", "REAL_CORE", "ResyncRequested", "build_core",
           "build_params", "param_names"]


def param_names() -> set[str]:
    """Names of the settings the installed ``SyncParams`` accepts."""
    if dataclasses.is_dataclass(SyncParams):
        return {f.name for f in dataclasses.fields(SyncParams)}
    return set(inspect.signature(SyncParams).parameters)


def build_params(**settings: Any) -> Any:
    """A ``SyncParams`` from ``settings``, dropping the ones this core does not have."""
    known = param_names()
    mode = settings.pop("mode")
    return SyncParams(mode, **{k: v for k, v in settings.items() if k in known})


def build_core(now: float, **settings: Any) -> Any:
    """A fresh protocol core (``make_sync``) started at ``now``."""
    return make_sync(build_params(**settings), now)
