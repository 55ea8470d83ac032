"""ctnetlink: our own lean codec (pure) and one thin socket module.

* :mod:`ctools.netlink.constants` -- protocol numbers
* :mod:`ctools.netlink.codec` -- bytes <-> Entry/Expect/stats, no I/O
* :mod:`ctools.netlink.socket` -- :class:`CtnetlinkSocket`, the only I/O
"""

from ctools.netlink.errors import CodecError, NetlinkError

__all__ = ["CodecError", "NetlinkError"]
