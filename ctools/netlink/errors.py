"""The two error types of ctools.netlink."""

from __future__ import annotations

import os


class CodecError(ValueError):
    """Malformed netlink / ctnetlink bytes (or a value that cannot be encoded)."""


class NetlinkError(OSError):
    """The kernel answered a request with an error (NLMSG_ERROR) or a receive failed.

    ``errno`` is the positive error number; ``strerror`` its text; ``ext_ack`` the kernel's
    extended-ack message when it sent one.
    """

    def __init__(self, errno: int, message: str | None = None, ext_ack: str | None = None):
        super().__init__(errno, message or os.strerror(errno))
        self.ext_ack = ext_ack
