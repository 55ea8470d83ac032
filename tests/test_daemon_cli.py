"""conntrackd argument scanner and client side: same exit statuses and messages as the
reference daemon (differential where it is installed), control-socket client errors."""

from __future__ import annotations

import re
import subprocess

import pytest
from conftest import REF_CONNTRACKD

from ctools.cli import conntrackd as cli
from ctools.daemon.control import Req
from ctools.daemon.log import DaemonLog

_STAMP = re.compile(r"^\[[^\]]+\] \(pid=\d+\) ", re.M)

# argument vectors whose behaviour does not depend on a running daemon
CASES = [
    ["-x", "-i"], ["-i", "-x"], ["-s", "-x"], ["-c", "-x"], ["-d", "-s"], ["-s", "-d"],
    ["foo"], ["-i", "foo"], ["-f", "foo"], ["-s", "foo"], ["-s", "foo", "-d"], ["-s", "n"],
    ["-s", "multicast"], ["-C"], ["-"], ["-stats"], ["xs"], ["-ix"], ["-f", "i"],
    ["-e", "-x"], ["-s", "queue"], ["-t"], ["-k"], ["-B", "-n"], ["-R", "expect"],
    ["-F", "c"], ["-q"],
]


def _ours(argv: list[str], capsys) -> tuple[int, str, str]:
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    return rc, out, _STAMP.sub("", err)


def _ref(argv: list[str]) -> tuple[int, str, str]:
    p = subprocess.run([REF_CONNTRACKD, *argv], capture_output=True, text=True, timeout=10)
    return p.returncode, p.stdout, _STAMP.sub("", p.stderr)


@pytest.mark.parametrize("args", CASES, ids=" ".join)
def test_scanner_matches_reference(args, capsys, tmp_path):
    if REF_CONNTRACKD is None:
        pytest.skip("reference conntrackd is not installed")
    argv = ["-C", str(tmp_path / "missing.conf"), *args]
    rc, out, err = _ours(argv, capsys)
    ref_rc, ref_out, ref_err = _ref(argv)
    assert rc == ref_rc
    assert err == ref_err.replace(str(tmp_path), str(tmp_path))
    # usage texts differ on purpose; whether one was printed must not
    assert bool(out) == bool(ref_out)


def test_version_and_help_are_ours(capsys):
    assert cli.main(["-v", "-k"]) == 0
    out = capsys.readouterr().out
    assert "ctools" in out and "1.4.7" in out
    assert cli.main(["-h"]) == 0
    assert "ctools" in capsys.readouterr().out


@pytest.mark.parametrize("args,code", [
    (["-c"], Req.ALL_COMMIT), (["-c", "ct"], Req.CT_COMMIT), (["-c", "e"], Req.EXP_COMMIT),
    (["-f"], Req.ALL_FLUSH_CACHE), (["-f", "internal"], Req.CT_FLUSH_INT_CACHE),
    (["-f", "e"], Req.CT_FLUSH_EXT_CACHE), (["-F"], Req.ALL_FLUSH_MASTER),
    (["-i"], Req.CT_DUMP_INTERNAL), (["-i", "-x"], Req.CT_DUMP_INT_XML),
    (["-e", "expect", "-x"], Req.EXP_DUMP_EXT_XML), (["-s", "r"], Req.STATS_RUNTIME),
    (["-s", "rs"], Req.STATS_RSQUEUE), (["-s", "l"], Req.STATS_LINK),
    (["-s", "p"], Req.STATS_PROCESS), (["-s", "e"], Req.EXP_STATS), (["-s"], Req.STATS),
    (["-R"], Req.ALL_RESYNC_MASTER), (["-n"], Req.REQUEST_DUMP), (["-B"], Req.SEND_BULK),
    (["-t"], Req.RESET_TIMERS), (["-k"], Req.KILL), (["-s", "-k"], Req.KILL),
])
def test_request_codes(args, code):
    inv = cli.scan(args, DaemonLog())
    assert inv.request == code and not inv.daemon


def test_client_without_daemon_fails(tmp_path, capsys):
    conf = tmp_path / "c.conf"
    conf.write_text(f"General {{ UNIX {{ Path {tmp_path}/none.sock }} }}\n")
    assert cli.main(["-C", str(conf), "-s"]) == 1
    assert "can't connect: is conntrackd running?" in capsys.readouterr().err


def test_bad_config_is_an_error_not_a_traceback(tmp_path, capsys):
    conf = tmp_path / "c.conf"
    conf.write_text("General { HashSize abc }\n")
    assert cli.main(["-C", str(conf), "-s"]) == 1
    err = capsys.readouterr().err
    assert "[ERROR]" in err and "Traceback" not in err
