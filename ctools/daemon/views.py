"""Text of the -s views, byte-identical to the reference daemon's where the content is the same.

Pure functions over plain values; the daemon collects the numbers and calls these.
"""

from __future__ import annotations

from collections.abc import Iterable

from ctools.daemon.stats import (
    BypassCounters,
    CacheCounters,
    InjectCounters,
    LinkCounters,
    RuntimeCounters,
)


def cache_block(name: str, active: int, c: CacheCounters) -> str:
    """``cache NAME:`` block of plain ``-s``."""
    return (
        f"cache {name}:\n"
        f"current active connections:\t{active:12d}\n"
        f"connections created:\t\t{c.created:12d}\tfailed:\t{c.create_failed:12d}\n"
        f"connections updated:\t\t{c.updated:12d}\tfailed:\t{c.update_failed:12d}\n"
        f"connections destroyed:\t\t{c.destroyed:12d}\tfailed:\t{c.destroy_failed:12d}\n"
        "\n"
    )


def cache_extended(name: str, objects: int, active: int, total: int, c: CacheCounters) -> str:
    """``-s cache`` block of one cache."""
    return (
        f"cache:{name}\tactive objects:\t\t{objects:12d}\n"
        f"\tactive/total entries:\t\t{active:12d}/{total:12d}\n"
        f"\tcreation OK/failed:\t\t{c.created:12d}/{c.create_failed:12d}\n"
        f"\t\tno memory available:\t{c.no_memory:12d}\n"
        f"\t\tno space left in cache:\t{c.no_space:12d}\n"
        f"\tupdate OK/failed:\t\t{c.updated:12d}/{c.update_failed:12d}\n"
        f"\t\tentry not found:\t{c.upd_not_found:12d}\n"
        f"\tdeletion created/failed:\t{c.destroyed:12d}/{c.destroy_failed:12d}\n"
        f"\t\tentry not found:\t{c.del_not_found:12d}\n"
        "\n"
    )


def bypass_block(b: BypassCounters) -> str:
    return (
        "internal bypass:\n"
        f"connections new:\t\t{b.new:12d}\n"
        f"connections updated:\t\t{b.updated:12d}\n"
        f"connections destroyed:\t\t{b.destroyed:12d}\n"
        "\n"
    )


def inject_block(c: InjectCounters) -> str:
    return (
        "external inject:\n"
        f"connections created:\t\t{c.created:12d}\tfailed:\t{c.create_failed:12d}\n"
        f"connections updated:\t\t{c.updated:12d}\tfailed:\t{c.update_failed:12d}\n"
        f"connections destroyed:\t\t{c.destroyed:12d}\tfailed:\t{c.destroy_failed:12d}\n"
        "\n"
    )


def traffic_block(nbytes: int, packets: int) -> str:
    return f"traffic processed:\n{nbytes:20d} Bytes      {packets:20d} Pckts\n\n"


def _link_numbers(c: LinkCounters) -> str:
    return (
        f"{c.bytes_sent:20d} Bytes sent {c.bytes_recv:20d} Bytes recv\n"
        f"{c.pkts_sent:20d} Pckts sent {c.pkts_recv:20d} Pckts recv\n"
        f"{c.error_sent:20d} Error send {c.error_recv:20d} Error recv\n"
        "\n"
    )


def active_link_block(transport: str, device: str, c: LinkCounters,
                      server: bool = False, client: bool = False) -> str:
    """Block of the active link in ``-s`` and ``-s network``.

    ``transport`` is ``multicast``, ``UDP`` or ``TCP``.
    """
    if transport == "TCP":
        head = (f"TCP traffic (active device={device}) "
                f"server={'connected' if server else 'disconnected'} "
                f"client={'connected' if client else 'disconnected'}:\n")
    else:
        head = f"{transport} traffic (active device={device}):\n"
    return head + _link_numbers(c)


def link_block(transport: str, device: str, status: str, active: bool, c: LinkCounters) -> str:
    """One link of ``-s link``; status is RUNNING, NO-CARRIER or DOWN."""
    role = "ACTIVE" if active else "BACKUP"
    return (f"{transport} traffic device={device} status={status} role={role}:\n"
            + _link_numbers(c))


def message_tracking(malformed: int, lost: int) -> str:
    return f"message tracking:\n{malformed:20d} Malformed msgs {lost:20d} Lost msgs\n\n"


def network_block(recv_malformed: int, wrong_version: int, bad_header: int,
                  bad_payload: int, bad_type: int, truncated: int, bad_size: int,
                  send_malformed: int, lost: int, before: int) -> str:
    """``-s network`` (without the trailing link block)."""
    return (
        "network statistics:\n"
        "\trecv:\n"
        f"\t\tMalformed messages:\t{recv_malformed:20d}\n"
        f"\t\tWrong protocol version:\t{wrong_version:20d}\n"
        f"\t\tMalformed header:\t{bad_header:20d}\n"
        f"\t\tMalformed payload:\t{bad_payload:20d}\n"
        f"\t\tBad message type:\t{bad_type:20d}\n"
        f"\t\tTruncated message:\t{truncated:20d}\n"
        f"\t\tBad message size:\t{bad_size:20d}\n"
        "\tsend:\n"
        f"\t\tMalformed messages:\t{send_malformed:20d}\n"
        "\n"
        "sequence tracking statistics:\n"
        "\trecv:\n"
        f"\t\tPackets lost:\t\t{lost:20d}\n"
        f"\t\tPackets before:\t\t{before:20d}\n"
        "\n"
    )


def uptime_text(seconds: float) -> str:
    """Uptime as the reference prints it: ``[D day[s] ][H h ]M min``."""
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    out = ""
    if days:
        out += f"{days} day{'s' if days > 1 else ''} "
    if hours:
        out += f"{hours} h "
    return out + f"{minutes} min"


def runtime_block(uptime: float, r: RuntimeCounters) -> str:
    return (
        f"daemon uptime: {uptime_text(uptime)}\n"
        "\n"
        "netlink stats:\n"
        f"\tevents received:\t{r.events_received:20d}\n"
        f"\tevents filtered:\t{r.events_filtered:20d}\n"
        f"\tevents unknown type:\t\t{r.events_unknown:12d}\n"
        f"\tcatch event failed:\t\t{r.catch_failed:12d}\n"
        f"\tdump unknown type:\t\t{r.dump_unknown:12d}\n"
        f"\tnetlink overrun:\t\t{r.overrun:12d}\n"
        f"\tflush kernel table:\t\t{r.flush_kernel:12d}\n"
        f"\tresync with kernel table:\t{r.resync_kernel:12d}\n"
        f"\tcurrent buffer size (in bytes):\t{r.buffer_size:12d}\n"
        "\n"
        "runtime stats:\n"
        f"\tchild process failed:\t\t{r.child_failed:12d}\n"
        f"\t\tchild process segfault:\t{r.child_segfault:12d}\n"
        f"\t\tchild process termsig:\t{r.child_termsig:12d}\n"
        f"\tselect failed:\t\t\t{r.select_failed:12d}\n"
        f"\twait failed:\t\t\t{r.wait_failed:12d}\n"
        f"\tlocal read failed:\t\t{r.local_read_failed:12d}\n"
        f"\tlocal unknown request:\t\t{r.local_unknown:12d}\n"
        "\n"
    )


def rsqueue_block(items: Iterable[tuple[str, int, int]]) -> str:
    """``-s rsqueue``: items are (kind, seq, flags), kind ``control`` or ``object``."""
    items = list(items)
    out = [f"resent queue (len={len(items)})\n"]
    for kind, seq, flags in items:
        if kind == "control":
            out.append(f"control -> seq:{seq} flags:{flags}\n")
        else:
            out.append(f"object -> seq:{seq}\n")
    return "".join(out)


def queue_block(allocated: int, queues: Iterable[tuple[str, int, int, int]]) -> str:
    """``-s queue``: queues are (name, current, maximum, no-space errors)."""
    out = [f"allocated queue nodes:\t\t{allocated:12d}\n\n"]
    for name, current, maximum, nospace in queues:
        out.append(
            f"queue {name}:\n"
            f"current elements:\t\t{current:12d}\n"
            f"maximum elements:\t\t{maximum:12d}\n"
            f"not enough space errors:\t{nospace:12d}\n"
            "\n"
        )
    return "".join(out)


def process_block(children: Iterable[tuple[int, str]]) -> str:
    return "".join(f"PID={pid} type={kind}\n" for pid, kind in children)
