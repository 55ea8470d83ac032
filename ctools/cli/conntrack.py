"""``conntrack``: list, query and change the kernel connection tracking tables.

A behaviour-compatible rewrite of the conntrack-tools 1.4.7 command: same options, same
output bytes, same exit statuses (see docs/conntrack.md and docs/compat-cli.md), plus
``-o json``. ``main()`` is the console-script entry point.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import sys
import time

from ctools.cli import _ct_proto as P
from ctools.cli._ct_args import (
    O_EXT,
    O_ID,
    O_JSON,
    O_KTMS,
    O_LABELS,
    O_SAVE,
    O_TMS,
    O_XML,
    LabelMap,
    Request,
    parse,
)
from ctools.cli._ct_errors import OTHER_PROBLEM, PARAMETER_PROBLEM, CtError, ParamError
from ctools.cli._ct_fastline import fast_create
from ctools.cli._ct_filter import build_filter, dump_match, update_filter
from ctools.format import json as fjson
from ctools.format import save as fsave
from ctools.format import text as ftext
from ctools.format import xml as fxml
from ctools.model import TCP_STATE, Entry, Expect, NatRange, Tuple

VERSION = "1.4.7"
PROG = "conntrack"
PREFIX = f"{PROG} v{VERSION} (ctools): "
HINT = "Try `conntrack -h' or 'conntrack --help' for more information.\n"

AF_UNSPEC = socket.AF_UNSPEC
AF_INET = int(socket.AF_INET)
_FLUSH_AT = 1 << 16        # stdout chunk size for dumps


# ------------------------------------------------------------------------------------------
# kernel access (imported lazily so that parse errors never need the netlink layer)

def _netlink():
    from ctools.netlink import codec
    from ctools.netlink import constants as C
    from ctools.netlink.errors import NetlinkError
    from ctools.netlink.socket import CtnetlinkSocket
    return codec, C, NetlinkError, CtnetlinkSocket


_ERRTEXT = {
    # errno -> (commands it applies to or None for all, text)
    errno.EPERM: (None, "sorry, you must be root or get CAP_NET_ADMIN capability to do this"),
    524: ({P.CT_LIST}, "function not implemented"),
    errno.EEXIST: ({P.CT_CREATE}, "Such conntrack exists, try -U to update"),
    errno.ENOMEM: ({P.CT_CREATE, P.CT_GET, P.CT_ADD}, "not enough memory"),
    errno.EAFNOSUPPORT: ({P.CT_GET}, "protocol not supported"),
    errno.ETIME: ({P.CT_CREATE, P.CT_ADD}, "conntrack has expired"),
}


def err_text(err: int, command: str | None) -> str:
    """The reference's wording of a kernel error for ``command``."""
    if command == P.EXP_CREATE:
        if err == errno.ENOENT:
            return "master conntrack not found"
        if err == errno.EINVAL:
            return "invalid parameters"
    if err == errno.EINVAL and command not in (P.EXP_COUNT, P.CT_STATS, P.EXP_STATS, P.CT_ADD):
        return "invalid parameters"
    if err == errno.ENOENT and command in (P.CT_CREATE, P.CT_GET, P.CT_DELETE, P.CT_ADD):
        return "such conntrack doesn't exist"
    spec = _ERRTEXT.get(err)
    if spec is not None and (spec[0] is None or command in spec[0]):
        return spec[1]
    try:
        return os.strerror(err)
    except ValueError:
        return f"Unknown error {err}"


def op_failed(err: int, command: str | None) -> CtError:
    return CtError(f"Operation failed: {err_text(err, command)}", OTHER_PROBLEM)


class Output:
    """Buffered stdout: dumps write big chunks; events flush every line."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stdout
        self.parts: list[str] = []
        self.size = 0

    def write(self, text: str) -> None:
        self.parts.append(text)
        self.size += len(text)
        if self.size >= _FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        if self.parts:
            self.stream.write("".join(self.parts))
            self.parts.clear()
            self.size = 0
        self.stream.flush()


def summary(text: str) -> None:
    sys.stderr.write(f"{PREFIX}{text}\n")


# ------------------------------------------------------------------------------------------
# formatting glue

class Printer:
    """Chooses the formatter for a request's ``-o`` flags (pure formatters underneath)."""

    def __init__(self, req: Request, *, labels: bool, ktimestamp: bool) -> None:
        self.flags = req.output
        self.labelmap = req.labelmap.names if (req.labelmap is not None and labels) else None
        self.ktimestamp = ktimestamp
        self.text_flags = self.flags & (O_EXT | O_ID | (O_KTMS if ktimestamp else 0))

    def entry(self, e: Entry, event: str | None = None, save_op: str = "-A",
              suffix: str = "", when: float | None = None) -> str:
        flags = self.flags
        if flags & O_SAVE:
            if e.orig is None or e.orig.family not in (2, 10):
                fam = e.orig.family if e.orig is not None else 0
                sys.stderr.write(f"WARNING: unsupported l3proto {fam}, skipping.\n")
                return "\n"
            line = fsave.format_save(e, save_op)
            return line[:-1] + suffix + "\n" if suffix else line
        if flags & O_JSON:
            us = None
            if suffix:
                us = _userspace_dict(suffix)
            return fjson.format_entry_json(e, event, self.labelmap, None, us)
        if flags & O_XML:
            tm = time.localtime(when) if (when is not None and flags & O_TMS) else None
            line = fxml.format_entry_xml(e, self.ktimestamp and bool(flags & O_KTMS), event,
                                         self.labelmap, None, tm)
        else:
            line = ftext.format_entry(e, self.text_flags, event, self.labelmap)
        if when is not None and flags & O_TMS and not flags & O_XML:
            sec = int(when)
            line = ftext.event_timestamp(sec, int((when - sec) * 1e6)) + line
        return line[:-1] + suffix + "\n" if suffix else line


def _userspace_dict(suffix: str) -> dict:
    out: dict = {}
    for word in suffix.split():
        if "=" in word:
            k, v = word.split("=", 1)
            out[k] = int(v) if v.isdigit() else v
    return out


# ------------------------------------------------------------------------------------------
# commands

class Runner:
    """Executes one parsed request against the kernel."""

    def __init__(self, req: Request, batch: bool = False, out: Output | None = None,
                 sock=None) -> None:
        self.req = req
        self.batch = batch            # -R: no summaries, zero counts are fine
        self.out = out or Output()
        self._sock = sock
        self._own_sock = sock is None

    # -- plumbing ----------------------------------------------------------------------------
    @property
    def sock(self):
        if self._sock is None:
            _codec, _C, NetlinkError, CtnetlinkSocket = _netlink()
            try:
                self._sock = CtnetlinkSocket()
            except NetlinkError as exc:
                sys.stderr.write(f"netlink socket: {os.strerror(exc.errno)}\n")
                raise CtError("Can't open handler") from None
        return self._sock

    def close(self) -> None:
        if self._sock is not None and self._own_sock:
            self._sock.close()
        self._sock = None

    def request(self, msg_type: int, flags: int, family: int, attrs: bytes = b"",
                command: str | None = None) -> list:
        _codec, _C, NetlinkError, _S = _netlink()
        try:
            return self.sock.request(msg_type, flags, family, attrs)
        except NetlinkError as exc:
            raise op_failed(exc.errno, command or self.req.command) from None

    def dump(self, msg_type: int, family: int, attrs: bytes = b"", command: str | None = None):
        _codec, _C, NetlinkError, _S = _netlink()
        try:
            yield from self.sock.dump(msg_type, family, attrs)
        except NetlinkError as exc:
            raise op_failed(exc.errno, command or self.req.command) from None

    def summary(self, text: str) -> None:
        if not self.batch:
            self.out.flush()
            summary(text)

    def run(self) -> int:
        handler = getattr(self, "cmd_" + self.req.command.lower())
        return handler()

    def _load_labels_for_output(self) -> None:
        req = self.req
        if req.output & O_LABELS and req.labelmap is None:
            req.labelmap = LabelMap.load()

    def _pre_checks(self) -> None:
        req = self.req
        o = req.options
        if "mask-src" in o and "src" not in o:
            raise ParamError("Can't use --mask-src without --src")
        if "mask-dst" in o and "dst" not in o:
            raise ParamError("Can't use --mask-dst without --dst")

    # -- conntrack table ---------------------------------------------------------------------
    def cmd_ct_list(self) -> int:
        req = self.req
        codec, C, _E, _S = _netlink()
        if "zero" in req.options and req.options & {
                "src", "dst", "reply-src", "reply-dst", "protonum", "status", "mark",
                "secmark", "id", "zone", "label", "orig-zone", "reply-zone"}:
            raise ParamError("Can't use -z with filtering parameters")
        self._pre_checks()
        self._load_labels_for_output()
        printer = Printer(req, labels=True, ktimestamp=True)
        attrs = b""
        family = req.family or AF_UNSPEC
        if req.table == "dying":
            msg, family = C.CT_GET_DYING, AF_UNSPEC
        elif req.table == "unconfirmed":
            msg, family = C.CT_GET_UNCONFIRMED, AF_UNSPEC
        else:
            msg = C.CT_GET_CTRZERO if "zero" in req.options else C.CT_GET
            parts = []
            if req.tmpl.mark is not None:
                parts.append(codec.nla_be32(C.CTA_MARK, req.tmpl.mark[0]))
                parts.append(codec.nla_be32(C.CTA_MARK_MASK, req.tmpl.mark[1]))
            if req.tmpl.status is not None:
                parts.append(codec.nla_be32(C.CTA_STATUS, req.tmpl.status[0]))
                parts.append(codec.nla_be32(C.CTA_STATUS_MASK, req.tmpl.status[1]))
            attrs = b"".join(parts)
        keep = build_filter(req)
        decode = codec.decode_entry
        out = self.out
        count = 0
        xml = bool(req.output & O_XML)
        fast = printer.entry if (req.output & (O_SAVE | O_JSON | O_XML)) else None
        text_flags, labelmap = printer.text_flags, printer.labelmap
        if fast is None:
            count = self._list_text(msg, family, attrs, keep, text_flags, labelmap)
        else:
            for payload in self.dump(msg, family, attrs):
                e = decode(payload)
                if keep is not None and not keep(e):
                    continue
                if xml and count == 0:
                    out.write(fxml.CT_HEADER)
                count += 1
                out.write(fast(e))
        if xml and count and req.table == "conntrack":
            out.write(fxml.CT_FOOTER)
        self.summary(f"{count} flow entries have been shown.")
        return 0

    def _list_text(self, msg: int, family: int, attrs: bytes, keep, text_flags: int,
                   labelmap: dict | None) -> int:
        """The hot path of -L: dump + text format, through the C formatter when it is built
        and no userspace filter needs the decoded entries (same bytes either way)."""
        from ctools.netlink import fast
        codec, _C, NetlinkError, _S = _netlink()
        decode, fmt = codec.decode_entry, ftext.format_entry
        now = int(time.time())
        flags = text_flags | (O_LABELS if labelmap is not None else 0)

        c_format = fast.format_payload if fast.HAVE_SPEEDUPS else None

        def slow(payload) -> str | None:
            e = decode(payload)
            if keep is not None and not keep(e):
                return None
            if c_format is not None:   # same bytes as format_entry (tested by netlink)
                line = c_format(payload, flags, now)
                if line is not None:
                    return line
            return fmt(e, text_flags, None, labelmap, now)
        try:
            # a plain address/protocol filter runs in C too; others need decoded entries
            match = dump_match(self.req) if keep is not None else None
            return fast.dump_text(self.sock, msg, family, attrs, flags, slow, self.out.write,
                                  now=now, use_speedups=keep is None or match is not None,
                                  match=match)
        except NetlinkError as exc:
            raise op_failed(exc.errno, self.req.command) from None

    def cmd_ct_get(self) -> int:
        req = self.req
        codec, C, _E, _S = _netlink()
        t = req.tmpl.ct
        if t.orig.src is None or t.orig.dst is None:
            raise op_failed(errno.EINVAL, P.CT_GET)
        self._load_labels_for_output()
        attrs = codec.encode_tuple(_tuple_for_kernel(t.orig), C.CTA_TUPLE_ORIG)
        if req.options & {"id"}:
            attrs += codec.nla_be32(C.CTA_ID, t.id)
        replies = self.request(C.CT_GET, 0, t.orig.family, attrs)
        printer = Printer(req, labels=True, ktimestamp=True)
        count = 0
        for payload in replies:
            e = codec.decode_entry(payload)
            if req.output & O_XML and count == 0:
                self.out.write(fxml.CT_HEADER)
            self.out.write(printer.entry(e))
            count += 1
        self.summary(f"{count} flow entries have been shown.")
        return 0

    def cmd_ct_delete(self) -> int:
        req = self.req
        codec, C, NetlinkError, _S = _netlink()
        self._pre_checks()
        parts = []
        if req.tmpl.mark is not None:
            parts.append(codec.nla_be32(C.CTA_MARK, req.tmpl.mark[0]))
            parts.append(codec.nla_be32(C.CTA_MARK_MASK, req.tmpl.mark[1]))
        keep = build_filter(req)
        from ctools.netlink import fast
        c_format = (fast.format_payload if fast.HAVE_SPEEDUPS
                    and not req.output & (O_XML | O_SAVE | O_JSON) else None)
        # without a userspace filter (or with a plain address/protocol one) and with text
        # output, entries need no decoding: the filter runs in C, the request is copied
        # from the payload and the line formatted from it
        match = dump_match(req) if keep is not None else None
        raw = (fast.delete_attrs if c_format is not None and (keep is None or match is not None)
               else None)
        printer = Printer(req, labels=False, ktimestamp=False)
        text_flags = printer.text_flags
        now = int(time.time())
        victims: list[Entry | None] = []
        payloads: list = []     # the payload, or already its text line (frees the buffers)
        requests = []
        for payload in self.dump(C.CT_GET, req.family or AF_UNSPEC, b"".join(parts)):
            attrs = raw(payload, match) if raw is not None else None
            if attrs is not None:
                if not attrs:
                    continue            # fails the filter
                victims.append(None)
                line = c_format(payload, text_flags, now)
                payloads.append(line if line is not None else payload)
                requests.append((C.CT_DELETE, 0, payload[0], attrs))
                continue
            e = codec.decode_entry(payload)
            if keep is None or keep(e):
                victims.append(e)
                payloads.append(payload)
                attrs = codec.encode_tuple(e.orig, C.CTA_TUPLE_ORIG)
                if e.zone is not None:
                    attrs += codec.nla_be16(C.CTA_ZONE, e.zone)
                if e.id is not None:
                    attrs += codec.nla_be32(C.CTA_ID, e.id)
                requests.append((C.CT_DELETE, 0, e.orig.family, attrs))
        count = 0
        # sent in chunks with one ack each; results are walked in order and the first
        # refusal ends the command like in 1.4.7 (docs/compat-cli.md: chunked deletes)
        errors = self.sock.batch(requests) if len(requests) > 1 else None
        for i, e in enumerate(victims):
            if errors is None:
                try:
                    self.sock.request(*requests[i])
                    err = 0
                except NetlinkError as exc:
                    err = exc.errno
            else:
                err = errors[i]
            if err:
                self.out.flush()
                raise op_failed(err, P.CT_DELETE)
            item = payloads[i]
            if item.__class__ is str:
                line = item
            else:
                line = c_format(item, text_flags, now) if c_format else None
            if line is None:
                if e is None:
                    e = codec.decode_entry(payloads[i])
                line = printer.entry(e, save_op="-D")
            self.out.write(line)
            count += 1
        self.summary(f"{count} flow entries have been deleted.")
        return 0 if count or self.batch else 1

    def _new_entry(self) -> Entry:
        """The entry -I/-A create, from the template (reply derived from original)."""
        req = self.req
        t = req.tmpl.ct
        o = req.options
        if o & {"src", "dst"}:
            orig = _copy_tuple(t.orig)
            if orig.proto in (1, 58) and orig.icmp_id is None:
                orig.icmp_id = 0     # the kernel needs one; the C tool sends 0
            reply = _invert(orig)
        else:
            reply = _copy_tuple(t.reply)
            reply.proto = t.orig.proto
            orig = _invert(reply)
        orig.zone = t.orig.zone
        reply.zone = t.reply.zone
        e = Entry(orig=orig, reply=reply)
        for name in ("status", "timeout", "mark", "zone", "tcp_state", "sctp_state",
                     "sctp_vtag_orig", "sctp_vtag_reply", "dccp_state", "dccp_role"):
            setattr(e, name, getattr(t, name))
        for name in ("sctp_vtag_orig", "sctp_vtag_reply"):
            if getattr(e, name) is not None:
                setattr(e, name, fsave.host_vtag(getattr(e, name)))
        if e.tcp_state is not None:
            flags = 0x0A | (0x04 if e.tcp_state >= TCP_STATE["TIME_WAIT"] else 0)
            e.tcp_flags_orig = e.tcp_flags_reply = (flags, flags)
        tm = req.tmpl
        if tm.src_nat is not None and tm.src_nat.addr is not None:
            e.nat_src = NatRange(tm.src_nat.addr, tm.src_nat.addr, tm.src_nat.port,
                                 tm.src_nat.port)
        if tm.dst_nat is not None and tm.dst_nat.addr is not None:
            e.nat_dst = NatRange(tm.dst_nat.addr, tm.dst_nat.addr, tm.dst_nat.port,
                                 tm.dst_nat.port)
        if tm.label_add is not None:
            e.labels = tm.label_add
            e.labels_mask = tm.label_add
        return e

    def _create(self, exclusive_ok: bool) -> int:
        codec, C, NetlinkError, _S = _netlink()
        e = self._new_entry()
        try:
            self.sock.request(C.CT_NEW, C.NLM_F_CREATE | C.NLM_F_EXCL, e.orig.family,
                              codec.encode_entry(e))
        except NetlinkError as exc:
            if exc.errno == errno.EEXIST and exclusive_ok:
                self.summary("0 flow entries have been added.")
                return 0
            raise op_failed(exc.errno, self.req.command) from None
        return 1

    def cmd_ct_create(self) -> int:
        self._create(False)
        self.summary("1 flow entries have been created.")
        return 0

    def cmd_ct_add(self) -> int:
        if self._create(True):
            self.summary("1 flow entries have been added.")
        return 0

    def cmd_ct_update(self) -> int:
        req = self.req
        codec, C, NetlinkError, _S = _netlink()
        self._pre_checks()
        match = update_filter(req)
        entries = [e for e in map(codec.decode_entry,
                                  self.dump(C.CT_GET, req.family or AF_UNSPEC))
                   if match(e)]
        printer = Printer(req, labels=True, ktimestamp=False)
        count = 0
        for e in entries:
            new = _updated(req, e)
            if new is None:
                continue
            # 1.4.7 names the entry by its original tuple only (no zones): entries in a
            # zone answer ENOENT and are skipped, like the reference does
            lookup = _copy_tuple(e.orig)
            lookup.zone = None
            new.orig = lookup
            try:
                self.sock.request(C.CT_NEW, 0, e.orig.family,
                                  codec.encode_entry(new, for_update=True))
            except NetlinkError as exc:
                # 1.4.7 reports the refusal, then still re-reads and counts the entry
                self.out.flush()
                sys.stderr.write(f"Operation failed: {err_text(exc.errno, P.CT_UPDATE)}\n")
            attrs = codec.encode_tuple(lookup, C.CTA_TUPLE_ORIG)
            try:
                replies = self.sock.request(C.CT_GET, 0, e.orig.family, attrs)
            except NetlinkError as exc:
                if exc.errno == errno.ENOENT:
                    continue
                self.out.flush()
                raise op_failed(exc.errno, P.CT_UPDATE) from None
            for payload in replies:
                self.out.write(printer.entry(codec.decode_entry(payload)))
            count += 1
        self.summary(f"{count} flow entries have been updated.")
        return 0 if count or self.batch else 1

    def cmd_ct_flush(self) -> int:
        _codec, C, _E, _S = _netlink()
        summary("connection tracking table has been emptied.")
        self.request(C.CT_DELETE, 0, self.req.family or AF_INET)
        return 0

    def cmd_ct_count(self) -> int:
        codec, C, NetlinkError, _S = _netlink()
        try:
            replies = self.sock.request(C.CT_GET_STATS, 0, AF_UNSPEC)
            n = codec.decode_stats(replies[0], "global").get("entries", 0) if replies else 0
        except NetlinkError as exc:
            path = "/proc/sys/net/netfilter/nf_conntrack_count"
            try:
                with open(path) as fh:
                    text = fh.read()
            except FileNotFoundError:
                raise CtError(f"Can't open {path}") from None
            except OSError:
                raise CtError(f"Can't read {path}") from None
            self.out.write(f"{P.c_atoi(text)}\n")
            self.out.flush()
            raise op_failed(exc.errno, P.CT_COUNT) from None
        self.out.write(f"{n}\n")
        return 0

    def cmd_ct_stats(self) -> int:
        codec, C, NetlinkError, _S = _netlink()
        try:
            rows = [codec.decode_stats(p, "cpu") for p in self.sock.dump(C.CT_GET_STATS_CPU)]
        except NetlinkError as exc:
            self._proc_stats()
            raise op_failed(exc.errno, P.CT_STATS) from None
        for row in rows:
            self.out.write(_stats_line(row, {}))
        return 0

    def _proc_stats(self) -> None:
        try:
            with open("/proc/net/stat/nf_conntrack") as fh:
                lines = fh.read().split("\n")
        except OSError:
            raise CtError("Can't open /proc interface") from None
        names = lines[0].split()
        for cpu, line in enumerate(x for x in lines[1:] if x.strip()):
            values = [int(v, 16) for v in line.split()]
            self.out.write(f"cpu={cpu:<4}\t" + "".join(
                f"{n}={v} " for n, v in zip(names, values, strict=False)) + "\n")
        self.out.flush()

    def cmd_ct_event(self) -> int:
        return EventLoop(self, expect=False).run()

    def cmd_ct_version(self) -> int:
        self.out.write(f"{PROG} v{VERSION} (ctools)\n")
        return 0

    def cmd_ct_help(self) -> int:
        self.out.write(USAGE)
        proto = self.req.proto
        if proto is not None:
            self.out.write(f"Options of protocol `{proto.name}':\n")
            for line in proto.help_lines:
                self.out.write(line + "\n")
        return 0

    # -- expectation table -------------------------------------------------------------------
    def cmd_exp_list(self) -> int:
        req = self.req
        codec, C, _E, _S = _netlink()
        count = 0
        xml = bool(req.output & O_XML)
        for payload in self.dump(C.EXP_GET, req.family or AF_INET):
            x = codec.decode_expect(payload)
            if xml and count == 0:
                self.out.write(fxml.EXP_HEADER)
            count += 1
            self.out.write(_expect_line(x, req.output))
        if xml and count:
            self.out.write(fxml.EXP_FOOTER)
        self.summary(f"{count} expectations have been shown.")
        return 0

    def _exp_lookup_attrs(self) -> tuple[int, bytes]:
        codec, C, _E, _S = _netlink()
        t = _tuple_for_kernel(self.req.tmpl.ct.orig)
        return t.family, codec.encode_tuple(t, C.CTA_EXPECT_TUPLE)

    def cmd_exp_get(self) -> int:
        codec, C, _E, _S = _netlink()
        family, attrs = self._exp_lookup_attrs()
        for payload in self.request(C.EXP_GET, 0, family, attrs, P.EXP_GET):
            self.out.write(_expect_line(codec.decode_expect(payload), self.req.output))
        return 0

    def cmd_exp_delete(self) -> int:
        _codec, C, _E, _S = _netlink()
        family, attrs = self._exp_lookup_attrs()
        self.request(C.EXP_DELETE, 0, family, attrs, P.EXP_DELETE)
        # 1.4.7 reports "0 expectations" and fails even when the deletion worked
        self.summary("0 expectations have been shown.")
        return 1

    def cmd_exp_create(self) -> int:
        codec, C, _E, _S = _netlink()
        tm = self.req.tmpl
        master = _tuple_for_kernel(tm.ct.orig)
        exptuple = _copy_tuple(tm.exptuple)
        mask = _copy_tuple(tm.mask)
        if master.proto in (6, 17, 136, 132, 33, 47):
            exptuple.proto = mask.proto = master.proto
        else:
            # no --tuple-* options for these: the C tool sends protocol 0 for the expected
            # tuple and the mask (and a zero ICMP type/code/id in the master)
            exptuple.proto = mask.proto = 0
        mask.family = exptuple.family
        x = Expect(master=master, tuple=exptuple, mask=mask, timeout=tm.ct.timeout)
        if tm.ct.status is not None:
            x.flags = tm.ct.status
        self.request(C.EXP_NEW, C.NLM_F_CREATE | C.NLM_F_EXCL, master.family,
                     codec.encode_expect(x), P.EXP_CREATE)
        return 0

    def cmd_exp_flush(self) -> int:
        _codec, C, _E, _S = _netlink()
        summary("expectation table has been emptied.")   # before the result, like -F
        self.request(C.EXP_DELETE, 0, self.req.family or AF_INET, b"", P.EXP_FLUSH)
        return 0

    def cmd_exp_event(self) -> int:
        return EventLoop(self, expect=True).run()

    def cmd_exp_count(self) -> int:
        _codec, C, _E, _S = _netlink()
        n = sum(1 for _ in self.dump(C.EXP_GET, self.req.family or AF_INET, b"", P.EXP_COUNT))
        self.out.write(f"{n}\n")
        return 0

    def cmd_exp_stats(self) -> int:
        codec, C, NetlinkError, _S = _netlink()
        rows = [codec.decode_stats(p, "expect")
                for p in self.dump(C.EXP_GET_STATS_CPU, AF_UNSPEC, b"", P.EXP_STATS)]
        for row in rows:
            self.out.write(_stats_line(row, {"new": "expect_new", "create": "expect_create",
                                             "delete": "expect_delete"}))
        return 0


def _stats_line(row: dict, rename: dict) -> str:
    cpu = row.get("cpu", 0)
    fields = "".join(f"{rename.get(k, k)}={v} " for k, v in row.items()
                     if k != "cpu" and not (k.startswith("unknown") and int(k[7:] or 0) > 4))
    return f"cpu={cpu:<4}\t{fields}\n"


def _expect_line(x: Expect, flags: int, event: str | None = None,
                 when: float | None = None, suffix: str = "") -> str:
    if flags & O_JSON:
        return fjson.format_expect_json(x, event)
    if flags & O_XML:
        tm = time.localtime(when) if (when is not None and flags & O_TMS) else None
        line = fxml.format_expect_xml(x, event, tm)
    else:
        line = ftext.format_expect(x, event)
        if when is not None and flags & O_TMS:
            sec = int(when)
            line = ftext.expect_event_timestamp(sec, int((when - sec) * 1e6)) + line
    return line[:-1] + suffix + "\n" if suffix else line


_ICMP_INVERSE = {8: 0, 13: 14, 15: 16, 17: 18, 0: 8, 14: 13, 16: 15, 18: 17}
_ICMPV6_INVERSE = {128: 129, 129: 128, 139: 140, 140: 139}


def _copy_tuple(t: Tuple) -> Tuple:
    return Tuple(*(getattr(t, n) for n in Tuple.__slots__))


def _invert(t: Tuple) -> Tuple:
    """The other direction's tuple, as libnetfilter_conntrack derives it on create."""
    r = Tuple(t.family, t.dst, t.src, t.proto, t.dport, t.sport)
    if t.proto in (1, 58):
        table = _ICMP_INVERSE if t.proto == 1 else _ICMPV6_INVERSE
        r.icmp_type = table.get(t.icmp_type or 0, 255)
        r.icmp_code = t.icmp_code
        r.icmp_id = t.icmp_id
        r.sport = r.dport = None
    elif t.proto not in (6, 17, 136, 132, 33, 47):
        r.sport = r.dport = None
    elif r.sport is None or r.dport is None:
        r.sport = r.sport or 0
        r.dport = r.dport or 0
    return r


def _tuple_for_kernel(t: Tuple) -> Tuple:
    """A lookup tuple: ports (ICMP type/code/id) default to 0, as the C tool sends them."""
    k = _copy_tuple(t)
    k.zone = None
    if k.proto in (6, 17, 136, 132, 33, 47):
        k.sport = k.sport or 0
        k.dport = k.dport or 0
    elif k.proto in (1, 58):
        k.icmp_type = k.icmp_type or 0
        k.icmp_code = k.icmp_code or 0
        k.icmp_id = k.icmp_id or 0
    return k


def _updated(req: Request, e: Entry) -> Entry | None:
    """The update request for ``e`` (original tuple + new meta values), or None if it would
    change nothing."""
    t = req.tmpl
    ct = t.ct
    new = Entry(orig=_copy_tuple(e.orig))
    new.orig.zone = e.orig.zone
    changed = False

    def put(name: str, value) -> None:
        nonlocal changed
        setattr(new, name, value)
        if getattr(e, name) != value:
            changed = True

    o = req.options
    if "timeout" in o:
        put("timeout", ct.timeout)
    if "status" in o:
        put("status", (e.status or 0) | (ct.status or 0))
    if "mark" in o and t.mark is not None:
        value, mask = t.mark
        put("mark", ((e.mark or 0) & ~mask & 0xFFFFFFFF) ^ value)
    for name in ("tcp_state", "sctp_state", "dccp_state", "sctp_vtag_orig", "sctp_vtag_reply",
                 "dccp_role"):
        value = getattr(ct, name)
        if value is not None:
            put(name, fsave.host_vtag(value) if "vtag" in name else value)
    if t.label_add is not None or t.label_del is not None:
        old = e.labels or 0
        if t.label_add is not None:
            labels, mask = old | t.label_add, t.label_add
        elif t.label_del:
            labels, mask = old & ~t.label_del, t.label_del
        else:
            labels, mask = 0, (1 << 128) - 1
        # the kernel computes (old & ~mask) ^ data: send only the bits under the mask
        new.labels_mask = mask
        new.labels = labels & mask
        if labels != old:
            changed = True
    if "id" in o:
        new.id = e.id
    return new if changed else None


# ------------------------------------------------------------------------------------------
# events

def _netlink_owner(portid: int) -> str | None:
    """Name of the process owning a netlink socket with this port id, if still found."""
    inode = None
    try:
        with open("/proc/net/netlink") as fh:
            next(fh)
            for line in fh:
                cols = line.split()
                if len(cols) >= 10 and cols[1] == "12" and cols[2] == str(portid):
                    inode = cols[9]
                    break
    except (OSError, StopIteration):
        return None
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        fd_dir = f"/proc/{pid}/fd"
        try:
            for fd in os.listdir(fd_dir):
                try:
                    if os.readlink(f"{fd_dir}/{fd}") == target:
                        with open(f"/proc/{pid}/comm") as fh:
                            return fh.read().strip()
                except OSError:
                    continue
        except OSError:
            continue
    return None


ENOBUFS_WARNING = (
    "WARNING: We have hit ENOBUFS! We are losing events.\n"
    "This message means that the current netlink socket buffer size is too small.\n"
    "Please, check --buffer-size in conntrack(8) manpage.\n")


class _Stop(Exception):
    pass


class EventLoop:
    """``-E``: print events until SIGINT/SIGTERM, then the footer and the summary."""

    def __init__(self, runner: Runner, expect: bool) -> None:
        self.runner = runner
        self.expect = expect

    def run(self) -> int:
        runner, req = self.runner, self.runner.req
        codec, C, NetlinkError, CtnetlinkSocket = _netlink()
        from ctools.library import event_type
        if not self.expect:
            runner._pre_checks()
            runner._load_labels_for_output()
        groups = C.EXP_EVENT_GROUPS if self.expect else (req.event_mask & C.CT_EVENT_GROUPS)
        try:
            sock = CtnetlinkSocket(groups)
        except NetlinkError as exc:
            sys.stderr.write(f"netlink socket bind: {os.strerror(exc.errno)}\n")
            raise CtError("Can't open netlink socket") from None
        if req.tmpl.buffer_size is not None:
            size = sock.set_rcvbuf(req.tmpl.buffer_size)
            sys.stderr.write(f"NOTICE: Netlink socket buffer size has been set to {size} bytes.\n")
        printer = Printer(req, labels=True, ktimestamp=True)
        keep = build_filter(req) if not self.expect else None
        out = runner.out
        flags = req.output
        count = 0
        owners: dict[int, str | None] = {}

        def stop(_sig, _frm):
            raise _Stop()
        old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
        plain = not (self.expect or flags & (O_XML | O_SAVE | O_JSON | O_TMS)
                     or keep is not None or req.family)

        def suffix_of(pid: int) -> str:
            if pid not in owners:
                owners[pid] = _netlink_owner(pid)
            name = owners[pid]
            return f" [USERSPACE] portid={pid}" + (f" progname={name}" if name else "")

        def fallback(kind: str, pid: int, payload) -> str:
            return printer.entry(codec.decode_entry(payload), kind, "-A",
                                 suffix_of(pid) if pid else "")
        try:
            if plain:
                # default text: drain queued events in blocks, C formatter when built
                from select import select

                from ctools.netlink import fast
                text_flags = printer.text_flags | (O_LABELS if printer.labelmap else 0)
                while True:
                    select([sock], [], [])
                    text, n, err = fast.events_text(sock, text_flags, fallback)
                    if text:
                        out.write(text)
                        out.flush()
                    count += n
                    if err == errno.ENOBUFS:
                        sys.stderr.write(ENOBUFS_WARNING)
                    elif err:
                        raise CtError("failed to received netlink event: "
                                      f"{os.strerror(err)}")
            while True:
                try:
                    for ty, mflags, pid, payload in sock.recv_events():
                        when = time.time()
                        kind = event_type(ty, mflags)
                        suffix = suffix_of(pid) if pid and not self.expect else ""
                        if self.expect:
                            x = codec.decode_expect(payload)
                            if flags & O_XML and count == 0:
                                out.write(fxml.EXP_HEADER)
                            # (the C tool adds no [USERSPACE] suffix to expectations)
                            out.write(_expect_line(x, flags, kind, when))
                        else:
                            if req.family and payload[0] != req.family:
                                continue
                            e = codec.decode_entry(payload)
                            if keep is not None and not keep(e):
                                continue
                            if flags & O_XML and count == 0:
                                out.write(fxml.CT_HEADER)
                            out.write(printer.entry(e, kind, fsave.OP_OF_EVENT[kind], suffix,
                                                    when))
                        count += 1
                        out.flush()
                except NetlinkError as exc:
                    if exc.errno != errno.ENOBUFS:
                        raise CtError("failed to received netlink event: "
                                      f"{os.strerror(exc.errno)}") from None
                    sys.stderr.write(ENOBUFS_WARNING)
        except _Stop:
            pass
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            sock.close()
        if flags & O_XML and count:
            out.write(fxml.EXP_FOOTER if self.expect else fxml.CT_FOOTER)
        out.flush()
        what = "expectation events" if self.expect else "flow events"
        summary(f"{count} {what} have been shown.")
        return 0


# ------------------------------------------------------------------------------------------
# batch mode (-R)

MAX_WORDS = 253
MAX_WORD = 1024


def split_line(line: str) -> list[str]:
    """Split one -R line into words (blanks separate; "..." groups, \\ escapes inside)."""
    if '"' not in line:   # the common case
        words = [w for w in line.replace("\t", " ").replace("\n", " ").split(" ") if w]
        if len(words) > MAX_WORDS:
            raise ParamError("too many arguments")
        if any(len(w) >= MAX_WORD for w in words):
            raise ParamError("Parameter too long!")
        return words
    words: list[str] = []
    cur: list[str] = []
    in_word = quoted = False
    i = 0
    while i < len(line):
        ch = line[i]
        if quoted:
            if ch == "\\" and i + 1 < len(line):
                i += 1
                cur.append(line[i])
            elif ch == '"':
                quoted = False
            else:
                cur.append(ch)
        elif ch == '"':
            quoted = in_word = True
        elif ch in " \t\n":
            if in_word:
                words.append("".join(cur))
                cur, in_word = [], False
        else:
            cur.append(ch)
            in_word = True
        i += 1
    if in_word:
        words.append("".join(cur))
    if len(words) > MAX_WORDS:
        raise ParamError("too many arguments")
    for w in words:
        if len(w) >= MAX_WORD:
            raise ParamError("Parameter too long!")
    return words


_BATCH_OK = {P.CT_CREATE, P.CT_ADD, P.CT_UPDATE, P.CT_DELETE, P.CT_FLUSH}
_BATCH_NAME = {
    P.CT_LIST: "-L", P.CT_GET: "-G", P.CT_EVENT: "-E", P.CT_VERSION: "-V", P.CT_HELP: "-h",
    P.EXP_LIST: "-L expect", P.EXP_CREATE: "-C expect", P.EXP_COUNT: "-C expect",
    P.EXP_DELETE: "-D expect", P.EXP_GET: "-G expect", P.EXP_FLUSH: "-F expect",
    P.EXP_EVENT: "-E expect", P.CT_COUNT: "-C", P.CT_STATS: "-S", P.EXP_STATS: "-S expect",
}


def load_file(path: str) -> int:
    """``-R FILE``: parse every line first, then run them in order."""
    name = "/dev/stdin" if path == "-" else path
    try:
        if path == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as fh:
                data = fh.read()
    except OSError:
        raise ParamError(f"Failed to open file {name} for reading") from None
    text = data.decode("utf-8", errors="surrogateescape")
    requests: list[Request] = []
    output = 0
    use_fast = os.environ.get("CTOOLS_NO_FASTLINE") != "1"
    lines = [ln + "\n" for ln in text.split("\n")]
    if lines and lines[-1] == "\n":
        lines.pop()            # the newline at the end of the file
    append = requests.append
    for raw in lines:
        if use_fast and len(raw) <= 10239:
            # the common line: the fast path takes it whole, or the loop below does
            fast = fast_create(raw)
            if fast is not None:
                append(PreparedCreate(*fast))
                continue
        # 1.4.7 reads in 10239-byte pieces: a longer line becomes several
        for start in range(0, max(len(raw), 1), 10239):
            line = raw[start:start + 10239].lstrip(" \t")
            if not line or line.startswith(("\n", "#")):
                continue
            argv = [PROG] + split_line(line)
            req = parse(argv, output)
            output = req.output
            requests.append(req)
    for req in requests:
        if req.command not in _BATCH_OK:
            raise ParamError(
                f"Cannot use command `{_BATCH_NAME.get(req.command, 'unknown')}' "
                "with --load-file")
    out = Output()
    shared = Runner(Request(), batch=True, out=out) if requests else None
    try:
        i = 0
        while i < len(requests):
            req = requests[i]
            if req.command in (P.CT_CREATE, P.CT_ADD):
                # runs of creations go to the kernel in batches (one ack each)
                j = i
                while j < len(requests) and requests[j].command in (P.CT_CREATE, P.CT_ADD):
                    j += 1
                _create_batch(requests[i:j], shared)
                i = j
                continue
            runner = Runner(req, batch=True, out=out, sock=shared.sock)
            try:
                runner.run()
            finally:
                out.flush()
            i += 1
    finally:
        out.flush()
        if shared is not None:
            shared.close()
    return 0


class PreparedCreate:
    """A -R create line already encoded by the fast path (:mod:`ctools.cli._ct_fastline`)."""

    __slots__ = ("command", "family", "attrs")

    def __init__(self, command: str, family: int, attrs: bytes) -> None:
        self.command = command
        self.family = family
        self.attrs = attrs


def _create_batch(requests: list, shared: Runner) -> None:
    """-I/-A lines of a batch file: sent in chunks, results checked in order.

    The first refusal stops the batch with its message, like the C tool; unlike it, the
    lines after it in the same chunk (at most 256) were already sent (docs/compat-cli.md).
    """
    codec, C, _E, _S = _netlink()
    msgs = []
    flags = C.NLM_F_CREATE | C.NLM_F_EXCL
    for req in requests:
        if req.__class__ is PreparedCreate:
            msgs.append((C.CT_NEW, flags, req.family, req.attrs))
            continue
        e = Runner(req, batch=True, sock=shared.sock)._new_entry()
        msgs.append((C.CT_NEW, flags, e.orig.family, codec.encode_entry(e)))
    results = shared.sock.batch(msgs)
    for req, err in zip(requests, results, strict=True):
        if err and not (err == errno.EEXIST and req.command == P.CT_ADD):
            raise op_failed(err, req.command)


# ------------------------------------------------------------------------------------------

USAGE = """\
conntrack (ctools) -- inspect and change the kernel's connection tracking tables.

Usage: conntrack COMMAND [TABLE] [OPTIONS]

Commands:
  -L, --dump [TABLE]        list the entries (TABLE: conntrack, expect, dying, unconfirmed)
  -G, --get [TABLE]         show the one entry with the given tuple
  -D, --delete [TABLE]      delete the matching entries
  -I, --create [TABLE]      create an entry (fails if it exists)
  -A, --add                 create an entry, an existing one is not an error
  -U, --update              change the matching entries (mark, status, labels, ...)
  -E, --event [TABLE]       print events as they happen, until interrupted
  -F, --flush [TABLE]       empty the table
  -C, --counter [TABLE]     print the number of entries
  -S, --stats [TABLE]       print the per-CPU statistics
  -R, --load-file FILE      run the -I/-A/-U/-D/-F lines of FILE ("-" = stdin)
  -h, --help                this text (with -p PROTO: that protocol's options too)
  -V, --version             print the version

Selecting entries (original direction unless stated):
  -s, --src, --orig-src ADDR[/LEN]    source address (with CIDR prefix)
  -d, --dst, --orig-dst ADDR[/LEN]    destination address
  -r, --reply-src ADDR                source address of the reply direction
  -q, --reply-dst ADDR                destination address of the reply direction
  -p, --protonum PROTO                layer-4 protocol, by name or number
  -f, --family ipv4|ipv6              address family
  -u, --status FLAG[,FLAG]            status flags (ASSURED, SEEN_REPLY, UNSET, ...)
  -m, --mark VALUE[/MASK]             connection mark
  -c, --secmark VALUE                 security mark
  -w, --zone ZONE                     conntrack zone
  --orig-zone ZONE, --reply-zone ZONE zone of one direction
  -l, --label NAME[,NAME]             connection labels (all must be set)
  -n, --src-nat [ADDR[:PORT]]         source-NATed entries
  -g, --dst-nat [ADDR[:PORT]]         destination-NATed entries
  -j, --any-nat [ADDR[:PORT]]         source- or destination-NATed entries
  --mask-src ADDR, --mask-dst ADDR    address masks for --src/--dst
  -t, --timeout SECONDS               timeout
  -i, --id ID                         entry id

Changing entries:
  --label-add NAME, --label-del [NAME] set or clear labels (-U, -I)
  --tuple-src ADDR, --tuple-dst ADDR  expected tuple of a new expectation

Output:
  -o, --output FMT[,FMT]    extended, id, timestamp, ktimestamp, labels, xml, save, json
  -z, --zero                reset the counters while listing
  -e, --event-mask EV[,EV]  events to show: ALL, NEW, UPDATES, DESTROY
  -b, --buffer-size BYTES   receive buffer of the event socket

Protocol options (--sport, --state, --icmp-type, ...) exist after -p PROTO;
see `conntrack -h -p PROTO'.
"""


def _report(exc: CtError) -> int:
    sys.stdout.flush()
    sys.stderr.write(f"{PREFIX}{exc.msg}\n")
    if exc.status == PARAMETER_PROBLEM:
        sys.stderr.write(HINT)
    return exc.status


def main(argv: list[str] | None = None) -> int:
    """Console entry point: returns (and exits with) the reference's exit status."""
    argv = list(sys.argv if argv is None else argv)
    if not argv:
        argv = [PROG]
    if hasattr(signal, "SIGPIPE"):
        # a closed pipe ends us quietly by SIGPIPE, like the C tool (`conntrack -L | head`)
        try:
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        except ValueError:   # not the main thread (embedded use)
            pass
    try:
        status = _main(argv)
    except CtError as exc:
        status = _report(exc)
    except BrokenPipeError:
        try:
            sys.stdout = None  # type: ignore[assignment]
        finally:
            status = 1
    except KeyboardInterrupt:
        status = 130
    except Exception as exc:  # noqa: BLE001 - last resort: one line, never a traceback
        sys.stdout.flush()
        sys.stderr.write(f"{PREFIX}internal error: {type(exc).__name__}: {exc}\n")
        status = OTHER_PROBLEM
    return status


def _main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[1] in ("-R", "--load-file"):
        return load_file(argv[2])
    req = parse(argv)
    if req.command is None:
        sys.stdout.write(USAGE)
        return 0
    runner = Runner(req)
    try:
        return runner.run()
    finally:
        runner.out.flush()
        runner.close()


__all__ = ["main", "Runner", "Printer", "err_text", "split_line", "load_file", "USAGE"]

if __name__ == "__main__":
    sys.exit(main())
