"""alarm mode (skeleton: being implemented)."""

from __future__ import annotations

from ctools.sync.core import SyncMode


class AlarmSync(SyncMode):
    """See ctools.sync."""

    mode = "alarm"
