"""share/ctools: the shipped configs parse (ours and C), match their names, and really run.

* every example conntrackd.conf parses with ctools and with the reference parser, and its
  mode/transport/family/links are the ones its name promises;
* the reference conntrackd, and ours, start with each of them in a throw-away namespace
  (interfaces eth1/eth2 with the example addresses), answer ``-s`` and stop with ``-k``;
* node A running an example and node B running its mirror image (addresses swapped, as the
  examples' header says) replicate a flow, with either daemon;
* primary-backup.sh calls conntrackd in the documented order (recorded with a fake binary),
  reads its defaults file, and drives a real daemon (reference and ours);
* keepalived.conf passes ``keepalived -t``; the systemd unit passes ``systemd-analyze verify``;
  the logrotate rules rotate with ``logrotate -f``;
* every ```conf block of docs/conntrackd.conf.md parses; the man page renders.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ctools.config import McastChannel, load, parse

ROOT = Path(__file__).resolve().parent.parent
SHARE = ROOT / "share" / "ctools"
EXAMPLES = sorted((SHARE / "conntrackd").glob("*.conf"))
SCRIPT = SHARE / "primary-backup.sh"
NAME = re.compile(r"(ftfw|alarm|notrack)-(udp|tcp|mcast)(-ipv6)?(-multichannel)?\.conf$")


def test_every_mode_and_transport_is_shipped():
    names = {p.name for p in EXAMPLES}
    for mode in ("ftfw", "alarm", "notrack"):
        for transport in ("udp", "tcp", "mcast"):
            assert f"{mode}-{transport}.conf" in names
    assert any("-ipv6" in n for n in names) and any("multichannel" in n for n in names)
    assert "stats.conf" in names
    for extra in ("keepalived.conf", "primary-backup.sh", "ctools-conntrackd.service",
                  "ctools-conntrackd.logrotate"):
        assert (SHARE / extra).is_file()
    assert os.access(SCRIPT, os.X_OK)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_parses_and_matches_its_name(path):
    cfg = load(path)
    assert [w for w in cfg.warnings if "does not exist" not in w.message] == []
    if path.name == "stats.conf":
        assert cfg.mode == "stats" and cfg.stats.log_file == "/var/log/conntrackd-stats.log"
        return
    mode, transport, v6, multi = NAME.search(path.name).groups()
    s = cfg.sync
    assert cfg.mode == "sync" and s.mode == mode and s.mode_explicit
    assert s.transport == {"udp": "UDP", "tcp": "TCP", "mcast": "Multicast"}[transport]
    assert len(s.channels) == (2 if multi else 1)
    assert s.default_channel is s.channels[0]
    ignored = set(cfg.general.filter.address.ipv4 + cfg.general.filter.address.ipv6)
    for ch in s.channels:
        assert ch.family == ("ipv6" if v6 else "ipv4") and ch.interface
        if isinstance(ch, McastChannel):
            assert ch.group > 0
        else:
            assert ch.port > 0
            # the link's own traffic must not be replicated
            assert {ch.address, ch.destination} <= ignored
    assert cfg.general.unix.path and cfg.general.lock_file


@pytest.mark.reference
def test_examples_accepted_by_reference_parser(ref_conntrackd):
    for path in EXAMPLES:
        proc = subprocess.run([ref_conntrackd, "-C", str(path), "-s"], capture_output=True,
                              text=True, timeout=10)
        out = proc.stdout + proc.stderr
        assert "can't connect" in out or proc.returncode == 0, (path, out)


def _prepare(text: str, tmp: Path) -> tuple[str, Path]:
    sock = tmp / "ctl"
    text = (text.replace("/var/lock/conntrackd.lock", str(tmp / "lock"))
            .replace("/var/run/conntrackd.ctl", str(sock)))
    return text, sock


def _links(ns, cfg) -> None:
    """Create the interfaces and addresses an example expects (veth pairs, peer side down)."""
    for i, ch in enumerate(cfg.sync.channels if cfg.sync else []):
        ns.run("ip", "link", "add", ch.interface, "type", "veth", "peer", "name", f"p{i}")
        if ch.family == "ipv6":
            addr = ch.ipv6_address if not isinstance(ch, McastChannel) else None
            if addr:
                ns.run("ip", "addr", "add", f"{addr}/64", "dev", ch.interface, "nodad")
        else:
            addr = ch.ipv4_interface if isinstance(ch, McastChannel) else ch.ipv4_address
            ns.run("ip", "addr", "add", f"{addr}/24", "dev", ch.interface)
        ns.run("ip", "link", "set", f"p{i}", "up")
        ns.run("ip", "link", "set", ch.interface, "up")


OURS = [sys.executable, "-m", "ctools.cli.conntrackd"]


@pytest.mark.root
@pytest.mark.parametrize("impl", ["reference", "ctools"])
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_daemon_runs_example(path, impl, netns_factory, tmp_path, request):
    """The reference conntrackd, and ours, start with the example, answer -s, stop on -k."""
    if impl == "reference":
        daemon = [request.getfixturevalue("ref_conntrackd")]
    else:
        daemon = OURS
    ns = netns_factory("ctcf")
    text, sock = _prepare(path.read_text(), tmp_path)
    conf = tmp_path / "conntrackd.conf"
    conf.write_text(text)
    cfg = load(conf)
    _links(ns, cfg)
    log = (tmp_path / "out").open("wb")
    proc = ns.spawn(*daemon, "-C", str(conf), stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while True:
        probe = ns.run(*daemon, "-C", str(conf), "-s", check=False, timeout=10)
        if probe.returncode == 0:
            break
        assert proc.poll() is None, (tmp_path / "out").read_text()
        assert time.monotonic() < deadline, "daemon did not come up"
        time.sleep(0.1)
    expected = b"cache stats" if cfg.mode == "stats" else b"cache internal"
    assert expected in probe.stdout
    ns.run(*daemon, "-C", str(conf), "-k", check=False, timeout=10)
    assert proc.wait(timeout=10) == 0
    assert b"shutdown received" in (tmp_path / "out").read_bytes()


# ----------------------------------------------------------------------------- the HA hook


@pytest.fixture
def fake(tmp_path):
    """A fake conntrackd that records its arguments and a fake logger, first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    (bin_dir / "conntrackd").write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {calls}\n'
        'flag=""; for a in "$@"; do flag="$a"; done\n'
        f'[ -f "{tmp_path}/rc$flag" ] && exit "$(cat "{tmp_path}/rc$flag")"\n'
        "exit 0\n")
    (bin_dir / "logger").write_text(f'#!/bin/sh\necho "$*" >> {tmp_path}/syslog\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)

    def run(state: str, **rcs: int) -> tuple[subprocess.CompletedProcess, list[str], str]:
        for flag, rc in rcs.items():
            (tmp_path / f"rc-{flag}").write_text(str(rc))
        env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}",
                   CONNTRACKD=str(bin_dir / "conntrackd"),
                   CONNTRACKD_CONFIG=str(tmp_path / "c.conf"),
                   CONNTRACKD_LOCK=str(tmp_path / "lock"),
                   CTOOLS_DEFAULTS=str(tmp_path / "none"))
        proc = subprocess.run([str(SCRIPT), state], capture_output=True, text=True, env=env,
                              timeout=30)
        lines = calls.read_text().splitlines() if calls.exists() else []
        prefix = f"-C {tmp_path / 'c.conf'} "
        assert all(line.startswith(prefix) for line in lines)
        logged = (tmp_path / "syslog").read_text() if (tmp_path / "syslog").exists() else ""
        return proc, [line[len(prefix):] for line in lines], logged

    run.tmp = tmp_path
    return run


def test_hook_primary_commits_flushes_resyncs_bulk_sends(fake):
    proc, calls, logged = fake("primary")
    assert proc.returncode == 0 and calls == ["-c", "-f", "-R", "-B"] and logged == ""


def test_hook_primary_logs_a_failed_step_and_goes_on(fake):
    proc, calls, logged = fake("primary", c=1)
    assert proc.returncode == 0 and calls == ["-c", "-f", "-R", "-B"]
    assert "-c" in logged and "ERROR" in logged


def test_hook_backup_with_running_daemon(fake):
    proc, calls, _ = fake("backup")
    assert proc.returncode == 0 and calls == ["-s", "-t", "-n"]


def test_hook_backup_restarts_dead_daemon_and_removes_stale_lock(fake):
    (fake.tmp / "lock").write_text("")
    proc, calls, logged = fake("backup", s=1)
    assert proc.returncode == 0 and calls == ["-s", "-d", "-t", "-n"]
    assert not (fake.tmp / "lock").exists() and "stale lock" in logged


def test_hook_backup_fails_when_daemon_cannot_start(fake):
    proc, calls, logged = fake("backup", s=1, d=1)
    assert proc.returncode == 1 and calls == ["-s", "-d"] and "cannot start" in logged


def test_hook_fault_and_unknown_state(fake):
    proc, calls, _ = fake("fault")
    assert proc.returncode == 0 and calls == ["-t"]
    proc, calls, logged = fake("sideways")
    assert proc.returncode == 1 and calls == ["-t"]   # nothing new was called
    assert proc.stdout == "Usage: primary-backup.sh {primary|backup|fault}\n"
    assert "unknown state" in logged


@pytest.mark.root
@pytest.mark.parametrize("impl", ["reference", "ctools"])
def test_hook_drives_daemon(impl, netns_factory, tmp_path, request):
    """backup (daemon down: the hook starts it), then primary: the daemon logs each step."""
    if impl == "reference":
        binary = request.getfixturevalue("ref_conntrackd")
    else:
        binary = str(ROOT / ".venv" / "bin" / "conntrackd")
        if not os.access(binary, os.X_OK):
            pytest.skip("ctools is not installed in .venv (run make)")
    ns = netns_factory("ctcf")
    text, _ = _prepare((SHARE / "conntrackd" / "ftfw-udp.conf").read_text(), tmp_path)
    log = tmp_path / "daemon.log"
    text = text.replace("LogFile off", f"LogFile {log}")
    conf = tmp_path / "conntrackd.conf"
    conf.write_text(text)
    _links(ns, load(conf))
    env = dict(os.environ, CONNTRACKD=binary, CONNTRACKD_CONFIG=str(conf),
               CONNTRACKD_LOCK=str(tmp_path / "lock"), CTOOLS_DEFAULTS=str(tmp_path / "none"))
    pid = None
    try:
        backup = subprocess.run(ns.cmd(str(SCRIPT), "backup"), env=env, capture_output=True,
                                text=True, timeout=60)
        assert backup.returncode == 0, backup.stderr
        m = re.search(r"\(pid=(\d+)\) \[notice\] -- starting in daemon mode --", log.read_text())
        assert m, log.read_text()
        pid = int(m.group(1))
        primary = subprocess.run(ns.cmd(str(SCRIPT), "primary"), env=env, capture_output=True,
                                 text=True, timeout=60)
        assert primary.returncode == 0, primary.stderr
        text = log.read_text()
        steps = ["flushing conntrack table in 60 secs", "resync requested",
                 "committing all external caches", "flushing caches",
                 "resync with master conntrack table", "sending bulk update"]
        pos = 0
        for step in steps:   # in this order (StartupResync adds an earlier "resync requested")
            pos = text.find(step, pos)
            assert pos >= 0, (step, text)
    finally:
        if pid is not None:
            try:
                os.kill(pid, 15)
            except ProcessLookupError:
                pass


# ----------------------------------------------------------------------------- other files


@pytest.mark.root
@pytest.mark.skipif(shutil.which("keepalived") is None, reason="keepalived is not installed")
def test_keepalived_conf_is_valid(netns_factory):
    ns = netns_factory("ctcf")
    text = (SHARE / "keepalived.conf").read_text()
    for iface in sorted(set(re.findall(r"^\s*interface (\S+)", text, re.M))):
        ns.run("ip", "link", "add", iface, "type", "veth", "peer", "name", f"{iface}p")
    proc = ns.run("keepalived", "-t", "-f", str(SHARE / "keepalived.conf"), check=False)
    assert proc.returncode == 0, proc.stderr
    assert text.count(str(Path("/usr/local/share/ctools/primary-backup.sh"))) == 3


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_systemd_unit_verifies(tmp_path):
    text = (SHARE / "ctools-conntrackd.service").read_text()
    assert "Type=notify" in text and "ExecStart=/usr/local/bin/conntrackd -C " in text
    unit = tmp_path / "ctools-conntrackd.service"
    unit.write_text(text.replace("/usr/local/bin/conntrackd", "/bin/true"))
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr


def test_logrotate_rules_name_the_default_log_files():
    text = (SHARE / "ctools-conntrackd.logrotate").read_text()
    assert "/var/log/conntrackd.log /var/log/conntrackd-stats.log {" in text
    assert "copytruncate" in text


def test_reference_doc_conf_blocks_parse():
    text = (ROOT / "docs" / "conntrackd.conf.md").read_text()
    blocks = re.findall(r"```conf\n(.*?)```", text, re.S)
    assert len(blocks) >= 3
    for block in blocks[1:]:              # the first one is a layout sketch with "…"
        parse(block)


def test_man_page_renders():
    if shutil.which("groff") is None:
        pytest.skip("groff is not installed")
    proc = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z",
                           str(ROOT / "man" / "conntrackd.conf.5")],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_hook_reads_its_defaults_file(fake, tmp_path):
    """Settings in the defaults file (the shipped one, uncommented) are used."""
    shipped = (SHARE / "ctools-conntrackd.default").read_text()
    assert "#CONNTRACKD=/usr/local/bin/conntrackd" in shipped
    text = shipped.replace("#CONNTRACKD=/usr/local/bin/conntrackd",
                           f"CONNTRACKD={tmp_path / 'bin' / 'conntrackd'}")
    text = text.replace("#CONNTRACKD_CONFIG=/etc/conntrackd/conntrackd.conf",
                        f"CONNTRACKD_CONFIG={tmp_path / 'other.conf'}")
    defaults = tmp_path / "defaults"
    defaults.write_text(text)
    env = dict(os.environ, CTOOLS_DEFAULTS=str(defaults), PATH=f"{tmp_path / 'bin'}:/usr/bin:/bin")
    env.pop("CONNTRACKD", None)
    env.pop("CONNTRACKD_CONFIG", None)
    proc = subprocess.run([str(SCRIPT), "fault"], env=env, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0
    assert (tmp_path / "calls").read_text() == f"-C {tmp_path / 'other.conf'} -t\n"


@pytest.mark.skipif(shutil.which("logrotate") is None, reason="logrotate is not installed")
def test_logrotate_rules_rotate(tmp_path):
    rules = tmp_path / "rules"
    rules.write_text((SHARE / "ctools-conntrackd.logrotate").read_text()
                     .replace("/var/log/", f"{tmp_path}/"))
    (tmp_path / "conntrackd.log").write_text("line\n")
    proc = subprocess.run(["logrotate", "-f", "-s", str(tmp_path / "state"), str(rules)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "error" not in proc.stderr, proc.stderr
    # copied and truncated in place: the daemon keeps writing to the same open file
    assert (tmp_path / "conntrackd.log").read_text() == ""
    assert (tmp_path / "conntrackd.log.1").read_text() == "line\n"


# ----------------------------------------------------------------------------- a real pair


def _swap_sides(text: str) -> str:
    """Node B's file from node A's, as the examples' header says: swap local and peer."""
    text = re.sub(r"(192\.168\.\d00\.)([12])\b", lambda m: m.group(1) + "21"[int(m.group(2)) - 1],
                  text)
    return re.sub(r"(fd00:\d00::)([12])\b", lambda m: m.group(1) + "21"[int(m.group(2)) - 1], text)


@pytest.mark.root
@pytest.mark.reference
@pytest.mark.parametrize("impl", ["reference", "ctools"])
@pytest.mark.parametrize("name", ["ftfw-udp", "alarm-mcast", "notrack-tcp", "ftfw-udp-ipv6",
                                  "alarm-mcast-ipv6", "notrack-tcp-ipv6",
                                  "ftfw-udp-multichannel"])
def test_example_pair_replicates(name, impl, netns_factory, tmp_path, ref_conntrack, request):
    """Node A runs the example, node B its mirror image: a flow made on A reaches B."""
    daemon = [request.getfixturevalue("ref_conntrackd")] if impl == "reference" else OURS
    text = (SHARE / "conntrackd" / f"{name}.conf").read_text()
    nodes = {}
    for side, body in (("a", text), ("b", _swap_sides(text))):
        ns = netns_factory("ctcf")
        body = (body.replace("/var/lock/conntrackd.lock", str(tmp_path / f"{side}.lock"))
                .replace("/var/run/conntrackd.ctl", str(tmp_path / f"{side}.ctl")))
        conf = tmp_path / f"{side}.conf"
        conf.write_text(body)
        nodes[side] = (ns, conf)
    (a, conf_a), (b, conf_b) = nodes["a"], nodes["b"]
    cfg_a, cfg_b = load(conf_a), load(conf_b)
    for ch_a, ch_b in zip(cfg_a.sync.channels, cfg_b.sync.channels, strict=True):
        a.run("ip", "link", "add", ch_a.interface, "type", "veth", "peer", "name",
              ch_b.interface, "netns", b.name)
        for ns, ch in ((a, ch_a), (b, ch_b)):
            if isinstance(ch, McastChannel):
                addr = ch.ipv4_interface or ("fd00:100::1" if ns is a else "fd00:100::2")
            else:
                addr = ch.address
            plen = "64" if ":" in addr else "24"
            ns.run("ip", "addr", "add", f"{addr}/{plen}", "dev", ch.interface,
                   *(["nodad"] if ":" in addr else []))
            ns.run("ip", "link", "set", ch.interface, "up")
    # IPv6 link-local addresses stay tentative (DAD) for a moment after the link comes up: a
    # multicast datagram sent from one meanwhile is lost, and ALARM re-sends only after
    # RefreshTime (15 s in the examples)
    for ns in (a, b):
        deadline = time.monotonic() + 10
        while ns.run("ip", "-6", "addr", "show", "tentative", check=False).stdout.strip():
            assert time.monotonic() < deadline, "IPv6 addresses still tentative"
            time.sleep(0.1)
    procs = []
    for ns, conf in ((b, conf_b), (a, conf_a)):
        log = (tmp_path / f"{conf.stem}.out").open("wb")
        procs.append(ns.spawn(*daemon, "-C", str(conf), stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 20
        while ns.run(*daemon, "-C", str(conf), "-s", check=False, timeout=10).returncode:
            assert time.monotonic() < deadline, (tmp_path / f"{conf.stem}.out").read_text()
            time.sleep(0.1)
    a.run(ref_conntrack, "-I", "-p", "tcp", "-s", "10.99.0.1", "-d", "10.99.0.2", "--sport",
          "1000", "--dport", "80", "--state", "ESTABLISHED", "-t", "300", "-u",
          "SEEN_REPLY,ASSURED")
    deadline = time.monotonic() + 15
    while b"src=10.99.0.1" not in b.run(*daemon, "-C", str(conf_b), "-e", check=False,
                                         timeout=10).stdout:
        assert time.monotonic() < deadline, "flow did not reach node B:\n" + "\n".join(
            (tmp_path / f"{s}.out").read_text() for s in ("a", "b"))
        time.sleep(0.2)
    for ns, conf in ((a, conf_a), (b, conf_b)):
        ns.run(*daemon, "-C", str(conf), "-k", check=False, timeout=10)
    assert [p.wait(timeout=10) for p in procs] == [0, 0]
