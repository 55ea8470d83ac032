"""The ``Helper`` section (user-space conntrack helpers) on a kernel without
nfnetlink_cthelper: the reference refuses to start in every mode (its helper registration
fails with EINVAL), and so do we, saying why. A ``Helper`` section without ``Type`` blocks
changes nothing. Each case starts ours and the reference with the same configuration."""

from __future__ import annotations

import gzip
import re
import subprocess
from pathlib import Path

import pytest
from conftest import REF_CONNTRACKD
from daemon_helpers import OURS, env, wait_for

from ctools.config import parse
from ctools.daemon import cthelper
from ctools.daemon.base import StartError

FTP = ("Helper {\n {setup} Type ftp inet tcp {\n  QueueNum 5\n  QueueLen 10240\n"
       "  Policy ftp {\n   ExpectMax 1\n   ExpectTimeout 300\n  }\n }\n}\n")
MODES = {
    "none": "",
    "stats": "Stats { LogFile off }\n",
    "sync": ("Sync {\n Mode FTFW { }\n UDP {\n  IPv4_address 127.0.0.1\n"
             "  IPv4_Destination_Address 127.0.0.2\n  Port 3780\n  Interface lo\n }\n}\n"),
}
CANNOT_START = "[ERROR] conntrackd cannot start, please review your configuration"
STAMP = re.compile(r"^\[[^]]*\] \(pid=\d+\) ")


def _kernel_lacks_cthelper() -> bool:
    try:
        with gzip.open("/proc/config.gz", "rt") as fh:
            return "CONFIG_NF_CT_NETLINK_HELPER=" not in fh.read()
    except OSError:
        return cthelper.kernel_has_cthelper() is False


def _conf(workdir: Path, name: str, mode: str, helper: str) -> Path:
    conf = workdir / f"{name}.conf"
    conf.write_text("General {\n"
                    f" LockFile {workdir / name}.lock\n LogFile {workdir / name}.log\n"
                    f" UNIX {{ Path {workdir / name}.sock }}\n Syslog off\n HashSize 8192\n}}\n"
                    + MODES[mode] + helper)
    return conf


def _run(ns, argv0: list[str], conf: Path, detach: bool) -> tuple[int | None, str]:
    """Start the daemon; (exit status, stderr) if it ends within 3 s, else (None, '')
    after checking that it answers and stopping it."""
    args = ["-C", str(conf)] + (["-d"] if detach else [])
    proc = ns.spawn(*argv0, *args, env=env())
    try:
        _out, err = proc.communicate(timeout=3)
        return proc.returncode, err.decode()
    except subprocess.TimeoutExpired:
        pass
    sock = conf.with_suffix(".sock")
    ask = [*argv0, "-C", str(conf), "-s"]
    assert wait_for(lambda: sock.exists() and subprocess.run(
        ns.cmd(*ask), capture_output=True, env=env()).returncode == 0, 10)
    subprocess.run(ns.cmd(*argv0, "-C", str(conf), "-k"), capture_output=True, env=env())
    proc.wait(10)
    return None, ""


def _messages(log: Path) -> list[str]:
    """The log lines without time stamp and pid."""
    if not log.exists():
        return []
    return [STAMP.sub("", ln) for ln in log.read_text().splitlines()]


@pytest.mark.root
@pytest.mark.parametrize("mode,setup,detach", [
    ("none", "Setup on\n", False),
    ("stats", "Setup off\n", False),
    ("sync", "", False),
    ("sync", "Setup on\n", True),
])
def test_helper_types_refused_like_reference(netns_factory, tmp_path, mode, setup, detach):
    if REF_CONNTRACKD is None:
        pytest.skip("reference conntrackd is not installed")
    if not _kernel_lacks_cthelper():
        pytest.skip("this kernel has nfnetlink_cthelper: the reference would run its helpers")
    ns = netns_factory("ctst")
    ns.enable_conntrack()
    helper = FTP.replace("{setup}", setup)
    results = {}
    for name, argv0 in (("ref", [REF_CONNTRACKD]), ("ours", OURS)):
        conf = _conf(tmp_path, name, mode, helper)
        results[name] = _run(ns, argv0, conf, detach)
    (ref_rc, ref_err), (rc, err) = results["ref"], results["ours"]
    assert ref_rc == 1, "the reference started with a Helper Type on a kernel without cthelper"
    assert rc == 1
    ours_log, ref_log = _messages(tmp_path / "ours.log"), _messages(tmp_path / "ref.log")
    assert ours_log[-1] == ref_log[-1] == CANNOT_START
    # what came before the helper step (the mode's own notices) is the same
    assert [ln for ln in ours_log if ln.startswith("[notice]")] == \
        [ln for ln in ref_log if ln.startswith("[notice]") and "helper" not in ln
         and "policy" not in ln]
    why = [ln for ln in ours_log if ln.startswith("[ERROR] Helper section")]
    assert len(why) == 1 and "ftp (inet/tcp, queue 5)" in why[0] and \
        "nfnetlink_cthelper" in why[0], ours_log
    # errors reach the terminal only in console mode, for both
    assert (CANNOT_START in err) == (CANNOT_START in ref_err) == (not detach)
    for name in ("ref", "ours"):
        assert not (tmp_path / f"{name}.lock").exists(), name


@pytest.mark.root
@pytest.mark.parametrize("mode", ["none", "sync"])
def test_empty_helper_section_starts_like_reference(netns_factory, tmp_path, mode):
    if REF_CONNTRACKD is None:
        pytest.skip("reference conntrackd is not installed")
    ns = netns_factory("ctst")
    ns.enable_conntrack()
    for name, argv0 in (("ref", [REF_CONNTRACKD]), ("ours", OURS)):
        conf = _conf(tmp_path, name, mode, "Helper {\n}\n")
        assert _run(ns, argv0, conf, False) == (None, ""), name
    assert _messages(tmp_path / "ours.log") == _messages(tmp_path / "ref.log")


def test_check_helpers_names_the_missing_piece(monkeypatch):
    cfg = parse("General {\n}\n" + FTP.replace("{setup}", ""))
    monkeypatch.setattr(cthelper, "kernel_has_cthelper", lambda: False)
    with pytest.raises(StartError, match=r"kernel has no user-space helper support"):
        cthelper.check_helpers(cfg)
    # a kernel that has the subsystem still gets no helpers from us: refused, other reason
    monkeypatch.setattr(cthelper, "kernel_has_cthelper", lambda: True)
    with pytest.raises(StartError, match=r"does not implement user-space helpers"):
        cthelper.check_helpers(cfg)
    cthelper.check_helpers(parse("General {\n}\nHelper {\n}\n"))
    cthelper.check_helpers(parse("General {\n}\n"))
