"""ftfw mode (skeleton: being implemented)."""

from __future__ import annotations

from ctools.sync.core import SyncMode


class FtfwSync(SyncMode):
    """See ctools.sync."""

    mode = "ftfw"
