"""notrack mode (skeleton: being implemented)."""

from __future__ import annotations

from ctools.sync.core import SyncMode


class NotrackSync(SyncMode):
    """See ctools.sync."""

    mode = "notrack"
