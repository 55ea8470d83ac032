"""The seam to the protocol core: builds ``ctools.sync`` cores for the simulator.

The simulator runs the real core. ``SyncParams`` grows fields over time; ``build_params`` passes
only the settings the installed core knows, so a new optional field never breaks the simulator.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

try:  # the real core
    import ctools.sync.alarm  # noqa: F401
    import ctools.sync.ftfw  # noqa: F401
    import ctools.sync.notrack  # noqa: F401

    from ctools.sync import (  # type: ignore[attr-defined]
        Apply,
        PeerRestarted,
        ResyncRequested,
        SyncParams,
        make_sync,
    )
    REAL_CORE = True
except ImportError:  # pragma: no cover - only while ctools.sync is being written
    from sim._standin import (  # type: ignore[assignment]
        Apply,
        PeerRestarted,
        ResyncRequested,
        SyncParams,
        make_sync,
    )
    REAL_CORE = False

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
