"""The ``Helper`` section: user-space conntrack helpers, which ctools does not run.

The C daemon registers each configured helper with the kernel (nfnetlink_cthelper) and then
inspects the packets the kernel queues to it (NFQUEUE).  When the kernel refuses the
registration -- as every kernel built without CONFIG_NF_CT_NETLINK_HELPER does -- it logs the
error and does not start.  ctools has no helper implementations, so it never starts with
helpers configured: it says why (the kernel lacks the subsystem, or ctools lacks the
helpers) and exits 1 like the reference does on such a kernel.  A ``Helper`` section
without any ``Type`` asks for nothing and is accepted.
"""

from __future__ import annotations

import errno
import socket
import struct

from ctools.config import model as cfgm
from ctools.daemon.base import StartError
from ctools.netlink import constants as C

NFNL_SUBSYS_CTHELPER = 9
NFNL_MSG_CTHELPER_GET = 1

_NLMSGHDR = struct.Struct("=IHHII")
_NFGENMSG = struct.Struct("=BBH")
_NLMSGERR = struct.Struct("=i")


def kernel_has_cthelper() -> bool | None:
    """Ask the kernel for its user-space helper list: True if the nfnetlink_cthelper
    subsystem answers, False if the kernel does not know it, None if we cannot tell."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                             C.NETLINK_NETFILTER)
    except OSError:
        return None
    try:
        sock.settimeout(2.0)
        sock.bind((0, 0))
        body = _NFGENMSG.pack(socket.AF_UNSPEC, 0, 0)
        head = _NLMSGHDR.pack(_NLMSGHDR.size + len(body),
                              (NFNL_SUBSYS_CTHELPER << 8) | NFNL_MSG_CTHELPER_GET,
                              C.NLM_F_REQUEST | C.NLM_F_DUMP | C.NLM_F_ACK, 1, 0)
        sock.send(head + body)
        while True:
            data = sock.recv(65536)
            off = 0
            while off + _NLMSGHDR.size <= len(data):
                length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, off)
                if kind == C.NLMSG_ERROR:
                    (code,) = _NLMSGERR.unpack_from(data, off + _NLMSGHDR.size)
                    if code == 0:
                        return True
                    # an unknown nfnetlink subsystem is refused with EINVAL (EOPNOTSUPP
                    # on some kernels)
                    return False if -code in (errno.EINVAL, errno.EOPNOTSUPP,
                                              errno.ENOENT) else None
                if kind == C.NLMSG_DONE or kind >> 8 == NFNL_SUBSYS_CTHELPER:
                    return True
                if length < _NLMSGHDR.size:
                    return None
                off += (length + 3) & ~3
    except OSError:
        return None
    finally:
        sock.close()


def check_helpers(cfg: cfgm.Config) -> None:
    """Refuse to start when the configuration asks for user-space helpers.

    Raises ``StartError`` (its lines are logged as errors, then the daemon exits 1).
    """
    helper = cfg.helper
    if helper is None or not helper.types:
        return
    names = ", ".join(f"{t.name} ({t.l3proto}/{t.l4proto}, queue {t.queue_num})"
                      for t in helper.types)
    if kernel_has_cthelper() is False:
        why = ("this kernel has no user-space helper support (nfnetlink_cthelper, "
               "CONFIG_NF_CT_NETLINK_HELPER)")
    else:
        why = "ctools' conntrackd does not implement user-space helpers"
    raise StartError(f"Helper section: cannot run the user-space conntrack helpers {names}: "
                     f"{why}; remove the Type blocks, or attach the kernel's own helpers "
                     "with nftables (ct helper)")
