"""Every shell command shown in docs/ is exercised here; every conntrackd.conf shown parses.

The convention (also in docs/index.md, "How the examples in this manual are tested"):

* ```console blocks: lines starting with "# " (root) or "$ " (user) are commands, a trailing
  backslash continues a command on the next line, everything else is sample output;
* ```sh / ```bash / ```shell blocks: every non-comment line is a command;
* one block is one session, run in order in a fresh network namespace "ctdoc-*" (conntrack
  enabled, empty table) with .venv/bin first on PATH;
* the sample output shown under a ``conntrack`` command must be printed by ours (after
  blanking timeouts, ids, reference counts and times; the lines may come in any order
  because the summary goes to stderr);
* a block preceded by ``<!-- doc-test: tested-by tests/FILE.py -->`` is exercised by that
  test file instead (it must exist);
* ```conf blocks of docs/manual/ are conntrackd.conf files and must parse.

How each program is exercised (see HANDLERS):

* run for real in the session's namespace: conntrack, nft, sysctl, ip, ls, zgrep, sed,
  and pipelines of those (conntrack -E, which never ends by itself, runs for a second);
* conntrackd with the manual's configuration paths (/etc/conntrackd/conntrackd.conf,
  conntrackd-stats.conf): run for real on "fw1" of a two-namespace stage (DaemonStage: veth
  eth2 with the chapter's addresses, the chapter's own ```conf block with its lock, socket and
  log files moved to a temporary folder, the mirrored configuration running on "fw2");
  other conntrackd lines are parsed with our own argument scanner
  (``ctools.cli.conntrackd.scan``), -v/-h run for real.
* make: the target must exist in the Makefile; pip install: the extras must exist in
  pyproject.toml (running them would rebuild the environment under the tests);
* man -l: the page renders with man; source: bash loads the completion file and registers
  the completion; .venv/bin/PROGRAM: runs for real;
* ctlab: lab runs take minutes and build their own namespaces, so its command lines are
  parsed with the program's own parser (``build_parser``) and turned into its settings; the
  runs themselves are covered by tests/test_lab*.py;
* ctsim: parsed the same way; ``ctsim run`` and ``ctsim labcompare`` (a second or two each)
  also run for real and must exit 0; ``ctsim sweep`` (minutes) is parsed only.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
VENV_BIN = ROOT / ".venv" / "bin"
TESTED_BY = re.compile(r"<!--\s*doc-test:\s*tested-by\s+(\S+)\s*-->")
SHELL_LANGS = {"sh", "bash", "shell"}


@dataclass
class Block:
    file: Path
    line: int
    lang: str
    lines: list[str]
    tested_by: str | None = None
    commands: list[str] = field(default_factory=list)
    # sample output shown under each command of a console block (same order as commands)
    outputs: list[list[str]] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.file.relative_to(ROOT)}:{self.line}"


def _join_continuations(lines: list[str]) -> list[str]:
    out: list[str] = []
    buf = ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            buf += line.strip()[:-1].strip() + " "
            continue
        out.append((buf + line.strip()).strip())
        buf = ""
    if buf:
        out.append(buf.strip())
    return out


def _console_commands(lines: list[str]) -> tuple[list[str], list[list[str]]]:
    cmds: list[str] = []
    outputs: list[list[str]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith(("# ", "$ ")):
            parts = [line[2:]]
            while parts[-1].rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                parts.append(lines[i])
            cmds.extend(_join_continuations(parts))
            outputs.append([])
        elif outputs and line.strip():
            outputs[-1].append(line)
        i += 1
    return cmds, outputs


def parse_blocks(path: Path) -> list[Block]:
    blocks: list[Block] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)```(\S*)", lines[i])
        if not m:
            i += 1
            continue
        lang, start = m.group(2).lower(), i + 1
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].lstrip().startswith("```"):
            body.append(lines[i][len(m.group(1)):])
            i += 1
        i += 1
        tested_by = None
        for back in range(start - 2, max(start - 5, -1), -1):
            if lines[back].strip():
                t = TESTED_BY.search(lines[back])
                tested_by = t.group(1) if t else None
                break
        block = Block(path, start, lang, body, tested_by)
        if lang == "console":
            block.commands, block.outputs = _console_commands(body)
        elif lang in SHELL_LANGS:
            block.commands = _join_continuations(
                [x for x in body if x.strip() and not x.lstrip().startswith("#")])
        blocks.append(block)
    return blocks


DOC_FILES = sorted(DOCS.rglob("*.md"))
ALL_BLOCKS = [b for f in DOC_FILES for b in parse_blocks(f)]
SESSIONS = [b for b in ALL_BLOCKS if b.commands]
CONF_BLOCKS = [b for b in ALL_BLOCKS if b.lang == "conf" and b.file.parent.name == "manual"]


def words_of(command: str) -> list[str]:
    """Shell words of one simple command, inline ``# comments`` dropped."""
    return shlex.split(command, comments=True)


def program_of(command: str) -> str:
    words = words_of(command)
    return words[0] if words else ""


def statements(command: str) -> list[str]:
    """Split ``a; b`` into its statements, outside quotes (pipelines stay whole)."""
    parts, cur, quote = [], [], None
    for ch in command:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == ";":
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


# --- handlers: how one command is exercised -------------------------------------------------

RUN_IN_NETNS = {"conntrack", "nft", "sysctl", "ip", "ls", "zgrep", "sed"}


def _conntrackd_scan(argv: list[str]):
    from ctools.cli import conntrackd as ctd
    from ctools.daemon.log import DaemonLog

    try:
        return ctd.scan(argv, DaemonLog()), 0
    except ctd._Exit as done:
        return None, done.status


def check_conntrackd(command: str, _ns) -> None:
    argv = words_of(command)[1:]
    if any(a in ("-v", "-h") for a in argv):
        proc = subprocess.run([str(VENV_BIN / "conntrackd"), *argv], capture_output=True,
                              text=True, timeout=30)
        assert proc.returncode == 0 and proc.stdout, proc.stderr
        return
    inv, status = _conntrackd_scan(argv)
    assert inv is not None, f"conntrackd scanner rejected {command!r} (exit {status})"
    assert inv.config != "" and (inv.daemon or inv.request is not None or
                                 not any(a.startswith("-") and a != "-C" for a in argv)), command


def check_make(command: str, _ns) -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = words_of(command)[1:] or ["all"]
    for t in targets:
        assert re.search(rf"^{re.escape(t)}\s*:", makefile, re.M), f"no make target {t}"


def check_pip(command: str, _ns) -> None:
    words = words_of(command)
    assert words[1] == "install", command
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = meta["project"].get("optional-dependencies", {})
    for spec in words[2:]:
        m = re.fullmatch(r"\.(?:\[([\w,-]+)\])?", spec)
        assert m, f"unexpected pip argument {spec!r}"
        for extra in (m.group(1) or "").split(","):
            assert not extra or extra in extras, f"no extra {extra!r} in pyproject.toml"


def check_man(command: str, _ns) -> None:
    words = words_of(command)
    assert words[1] == "-l"
    page = ROOT / words[2]
    assert page.is_file(), page
    proc = subprocess.run(["man", "-l", str(page)], capture_output=True, text=True,
                          env=dict(os.environ, MANPAGER="cat", PAGER="cat", MANWIDTH="80"),
                          timeout=30)
    assert proc.returncode == 0 and "NAME" in proc.stdout, proc.stderr


def check_source(command: str, _ns) -> None:
    path = ROOT / words_of(command)[1]
    prog = path.name.split(".")[0]
    proc = subprocess.run(["bash", "-c", f"source {shlex.quote(str(path))} && complete -p {prog}"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and prog in proc.stdout, proc.stderr


def check_venv_program(command: str, _ns) -> None:
    words = words_of(command)
    proc = subprocess.run([str(ROOT / words[0]), *words[1:]], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr


def check_ctlab(command: str, _ns) -> None:
    """Lab runs take minutes and build their own namespaces: parse and build the settings."""
    from netns_lab import cli

    args = cli.build_parser().parse_args(words_of(command)[1:])
    if hasattr(args, "replicas") or hasattr(args, "loss"):
        try:
            cli.config_from(args)
        except (AttributeError, KeyError):
            pass  # subcommands without lab settings (status, down)


def check_ctsim(command: str, _ns) -> None:
    """Parse with the simulator's own parser; ``run`` and ``labcompare`` take a second or
    two, so they also run for real (in a scratch folder, for ``--trace FILE``) and must
    exit 0 (converged, no invariant violated). ``sweep`` takes minutes: parsed only."""
    from sim import cli

    argv = words_of(command)[1:]
    args = cli.build_parser().parse_args(argv)
    if getattr(args, "command", None) == "run":
        cli.config_from_args(args)
    if argv and argv[0] in ("run", "labcompare"):
        with tempfile.TemporaryDirectory(prefix="ctdoc-") as scratch:
            proc = subprocess.run([str(VENV_BIN / "ctsim"), *argv], capture_output=True,
                                  text=True, timeout=120, cwd=scratch)
        assert "Traceback" not in proc.stderr, proc.stderr
        assert proc.returncode == 0, f"{command!r} exited {proc.returncode}: {proc.stderr}"


def check_python(command: str, _ns) -> None:
    """Only ``python3 -m ctools.config FILE`` is shown (run on a stage, see DaemonStage)."""
    words = words_of(command)
    assert words[1:3] == ["-m", "ctools.config"], command


HANDLERS = {
    "python3": check_python,
    "ctlab": check_ctlab,
    "ctsim": check_ctsim,
    "conntrackd": check_conntrackd,
    "make": check_make,
    "pip": check_pip,
    "man": check_man,
    "source": check_source,
    ".venv/bin/conntrack": check_venv_program,
    ".venv/bin/conntrackd": check_venv_program,
}


def pipeline_programs(command: str) -> list[str]:
    """First word of every stage of a shell pipeline (quotes respected)."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars="|;&")
    lexer.whitespace_split = True
    programs, start = [], True
    for token in lexer:
        if token in ("|", ";", "&&", "||", "&"):
            start = True
        elif start:
            programs.append(token)
            start = False
    return programs


_VARYING = [
    (re.compile(r"^((?:ipv[46]\s+\d+\s+)?[a-z0-9]+\s+\d+ )\d+ "), r"\1T "),  # timeout
    (re.compile(r"-t \d+ "), "-t T "),
    (re.compile(r"\b(id|use|portid)=\d+"), r"\1=N"),
    (re.compile(r"^\[\d+\.\d+\]"), "[TIME]"),
]


def normalise(line: str) -> str:
    """Blank out what changes from run to run: timeouts, ids, reference counts, times."""
    for pattern, repl in _VARYING:
        line = pattern.sub(repl, line)
    return line.rstrip()


def check_output(command: str, shown: list[str], got: str) -> None:
    """Every sample line shown under a conntrack command is printed by ours (any order:
    the summary goes to stderr)."""
    if not shown or program_of(command) != "conntrack" or "|" in command:
        return
    actual = {normalise(x) for x in got.splitlines()}
    for line in shown:
        assert normalise(line) in actual, f"{command!r}: doc shows {line!r}, got:\n{got}"


def run_in_netns(command: str, ns, shown: list[str] | None = None) -> None:
    env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    argv = ns.cmd("sh", "-c", command)
    if re.search(r"\bconntrack\s+(-E|--event)\b", command):
        # Runs until interrupted: it must still be running (listening) after a second.
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=env, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=1.5)
            raise AssertionError(f"{command!r} ended early ({proc.returncode}): {err!r}")
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.communicate()
        return
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, f"{command!r} exited {proc.returncode}: {proc.stderr}"
    check_output(command, shown or [], proc.stdout + proc.stderr)


def needs_netns(block: Block) -> bool:
    return any(p in RUN_IN_NETNS for c in block.commands for p in pipeline_programs(c))


def test_doc_commands_were_found() -> None:
    assert len(SESSIONS) >= 20, [s.where for s in SESSIONS]
    assert sum(len(s.commands) for s in SESSIONS) >= 60


def test_every_documented_program_has_a_handler() -> None:
    missing = [(s.where, c) for s in SESSIONS if s.tested_by is None for c in s.commands
               for p in pipeline_programs(c)
               if p not in RUN_IN_NETNS and p not in HANDLERS]
    assert not missing, f"commands in docs/ that no test exercises: {missing}"


def test_tested_by_targets_exist() -> None:
    for s in ALL_BLOCKS:
        if s.tested_by:
            assert (ROOT / s.tested_by).is_file(), f"{s.where}: {s.tested_by} does not exist"



# --- conntrackd sessions run against real daemons -----------------------------------------

# The system paths the manual's conntrackd commands name -> the manual's configuration for it
# (first ```conf block of that chapter).
DOC_CONFIGS = {
    "/etc/conntrackd/conntrackd.conf": DOCS / "manual" / "sync.md",
    "/etc/conntrackd/conntrackd-stats.conf": DOCS / "manual" / "stats.md",
}
SYNC_ADDRS = ("192.168.100.1", "192.168.100.2")


def _doc_config(chapter: Path) -> str:
    return "\n".join(next(b for b in parse_blocks(chapter) if b.lang == "conf").lines)


def _relocate(text: str, tmp: Path, name: str) -> str:
    """The manual's configuration with its files moved into ``tmp`` (the test's own)."""
    text = re.sub(r"LockFile \S+", f"LockFile {tmp}/{name}.lock", text)
    text = re.sub(r"Path \S+", f"Path {tmp}/{name}.sock", text)
    logs = iter([f"{tmp}/{name}.log", f"{tmp}/{name}-flows.log"])
    return re.sub(r"LogFile on", lambda _m: f"LogFile {next(logs)}", text)


class DaemonStage:
    """fw1 and fw2 of the manual in two namespaces: a veth named eth2 between them with the
    chapter's addresses, the chapter's configuration (files moved to a temporary folder) on
    fw1, the mirrored one on fw2 with its daemon running. The manual's commands then run on
    fw1 with the configuration path replaced."""

    def __init__(self, netns_factory, tmp: Path, system_path: str) -> None:
        self.tmp = tmp
        self.system_path = system_path
        self.fw1, self.fw2 = netns_factory("ctdoc"), netns_factory("ctdoc")
        text = _doc_config(DOC_CONFIGS[system_path])
        self.conf = tmp / "fw1.conf"
        self.conf.write_text(_relocate(text, tmp, "fw1"))
        subprocess.run(["ip", "link", "add", "eth2", "netns", self.fw1.name, "type", "veth",
                        "peer", "name", "eth2", "netns", self.fw2.name], check=True)
        for ns, addr in ((self.fw1, SYNC_ADDRS[0]), (self.fw2, SYNC_ADDRS[1])):
            ns.enable_conntrack()
            ns.run("ip", "addr", "add", f"{addr}/24", "dev", "eth2")
            ns.run("ip", "link", "set", "eth2", "up")
        if "Sync" in text:
            mirrored = text.replace(SYNC_ADDRS[0], "@").replace(SYNC_ADDRS[1], SYNC_ADDRS[0])
            conf2 = tmp / "fw2.conf"
            conf2.write_text(_relocate(mirrored.replace("@", SYNC_ADDRS[1]), tmp, "fw2"))
            self._start(self.fw2, conf2)

    def _start(self, ns, conf: Path) -> None:
        proc = ns.spawn(str(VENV_BIN / "conntrackd"), "-C", str(conf),
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        sock = Path(re.search(r"Path (\S+)", conf.read_text()).group(1))
        deadline = time.monotonic() + 15
        while not sock.exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "daemon did not start"
            time.sleep(0.05)

    def prepare(self, commands: list[str]) -> None:
        """Start fw1's daemon unless the session starts it itself (-d)."""
        if not any(re.search(r"\s-d(\s|$)", c) for c in commands):
            self._start(self.fw1, self.conf)

    def run(self, command: str, shown: list[str] | None = None) -> None:
        command = command.replace(self.system_path, str(self.conf))
        env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}")
        env.pop("NOTIFY_SOCKET", None)
        deadline = time.monotonic() + 10
        while True:
            proc = subprocess.run(self.fw1.cmd("sh", "-c", command), capture_output=True,
                                  text=True, env=env, timeout=60)
            # --health needs the peer to have been heard once: give the link a moment.
            if proc.returncode == 0 or "--health" not in command or \
                    time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
        assert proc.returncode == 0, f"{command!r} exited {proc.returncode}: " \
            f"{proc.stdout}{proc.stderr}{self.log()}"
        if "-m ctools.config" in command:
            # The sample output names the system path; ours printed the test's copy.
            got = proc.stdout.replace(str(self.conf), self.system_path)
            for line in shown or []:
                assert line in got.splitlines(), f"doc shows {line!r}, got {got!r}"

    def log(self) -> str:
        log = self.tmp / "fw1.log"
        return log.read_text() if log.exists() else ""

    def close(self) -> None:
        # A daemon started with -d is not a child of ours: stop it by the pids the kernel
        # lists for this namespace (never by name).
        for ns in (self.fw1, self.fw2):
            pids = subprocess.run(["ip", "netns", "pids", ns.name], capture_output=True,
                                  text=True).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError):
                    pass


def _stage_path(block: Block) -> str | None:
    for c in block.commands:
        for path in DOC_CONFIGS:
            if program_of(c) in ("conntrackd", "python3") and path in c:
                return path
    return None


@pytest.mark.parametrize("block", [s for s in SESSIONS if s.tested_by is None],
                         ids=lambda b: b.where)
def test_doc_session(block: Block, netns_factory, tmp_path: Path) -> None:
    """Run (or parse) every command of one documentation block, in order."""
    progs = {p.rsplit("/", 1)[-1] for c in block.commands for p in pipeline_programs(c)}
    if "conntrack" in progs:
        pytest.importorskip("ctools.cli.conntrack",
                            reason="our conntrack program is not in the tree yet")
    if "conntrackd" in progs:
        pytest.importorskip("ctools.cli.conntrackd",
                            reason="our conntrackd program is not in the tree yet")
    ns = stage = None
    if needs_netns(block):
        ns = netns_factory("ctdoc")
        ns.enable_conntrack()
    system_path = _stage_path(block)
    try:
        if system_path:
            stage = DaemonStage(netns_factory, tmp_path, system_path)
            stage.prepare(block.commands)
        for i, line in enumerate(block.commands):
            for command in statements(line):
                programs = pipeline_programs(command)
                if all(p in RUN_IN_NETNS for p in programs):
                    run_in_netns(command, ns, block.outputs[i] if block.outputs else None)
                elif stage is not None and system_path in command and \
                        programs[0] in ("conntrackd", "python3"):
                    stage.run(command, block.outputs[i] if block.outputs else None)
                else:
                    assert len(programs) == 1, f"{block.where}: pipeline with {programs}"
                    HANDLERS[programs[0]](command, ns)
    finally:
        if stage is not None:
            stage.close()


@pytest.mark.parametrize("block", CONF_BLOCKS, ids=lambda b: b.where)
def test_doc_config_parses(block: Block) -> None:
    config = pytest.importorskip("ctools.config")
    config.parse("\n".join(block.lines), filename=block.where)


def test_convention_parser() -> None:
    text = ("x\n```console\n# conntrack -L \\\n    -p tcp\nout # not a command\n$ ls\n```\n"
            "<!-- doc-test: tested-by tests/test_docs.py -->\n```sh\n# comment\nmake test\n```\n")
    path = ROOT / "docs" / "_probe.md"
    try:
        path.write_text(text)
        blocks = parse_blocks(path)
    finally:
        path.unlink()
    assert blocks[0].commands == ["conntrack -L -p tcp", "ls"]
    assert blocks[1].commands == ["make test"] and blocks[1].tested_by == "tests/test_docs.py"


if __name__ == "__main__":
    for s in SESSIONS:
        print(s.where, s.tested_by or "", *s.commands, sep="\n  ")
    sys.exit(0)


def _complete(script: str, func: str, words: list[str]) -> list[str]:
    """Run a bash completion function on ``words`` (the last one is being completed)."""
    arr = " ".join(shlex.quote(w) for w in words)
    proc = subprocess.run(
        ["bash", "-c", f"source {shlex.quote(str(ROOT / 'completion' / script))}; "
         f"COMP_WORDS=({arr}); COMP_CWORD={len(words) - 1}; {func}; "
         "printf '%s\\n' \"${COMPREPLY[@]}\""],
        capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_conntrack_completion() -> None:
    f = "_ctools_conntrack"
    assert "-L" in _complete("conntrack.bash", f, ["conntrack", ""])
    assert _complete("conntrack.bash", f, ["conntrack", "-L", "ex"]) == ["expect"]
    # Protocol options appear only after -p PROTO, as in the program.
    assert "--sport" not in _complete("conntrack.bash", f, ["conntrack", "-L", "--s"])
    assert {"--sport", "--state"} <= set(
        _complete("conntrack.bash", f, ["conntrack", "-L", "-p", "tcp", "--s"]))
    assert _complete("conntrack.bash", f, ["conntrack", "-L", "-o", "extended,x"]) == \
        ["extended,xml"]
    assert "ESTABLISHED" in _complete("conntrack.bash", f,
                                      ["conntrack", "-L", "-p", "tcp", "--state", "E"])


def test_conntrackd_completion() -> None:
    f = "_ctools_conntrackd"
    assert _complete("conntrackd.bash", f, ["conntrackd", "-s", "ne"]) == ["network"]
    assert _complete("conntrackd.bash", f, ["conntrackd", "-f", ""]) == ["internal", "external"]
    assert "-k" in _complete("conntrackd.bash", f, ["conntrackd", "-"])


@pytest.mark.parametrize("page", ["conntrack.8", "conntrackd.8", "conntrackd.conf.5"])
def test_man_page_renders_cleanly(page: str) -> None:
    path = ROOT / "man" / page
    if not path.exists():
        pytest.skip(f"man/{page} is not in the tree yet")
    proc = subprocess.run(["man", "--warnings", "-l", str(path)], capture_output=True,
                          text=True, env=dict(os.environ, MANPAGER="cat", MANWIDTH="80"),
                          timeout=30)
    assert proc.returncode == 0 and "SYNOPSIS" in proc.stdout
    assert not proc.stderr.strip(), proc.stderr


def test_man_pages_and_completion_are_packaged() -> None:
    """pyproject's shared-data installs every man page and completion file we ship."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    shared = meta["tool"]["hatch"]["build"]["targets"]["wheel"]["shared-data"]
    shipped = {str(p.relative_to(ROOT)) for p in (ROOT / "man").glob("*.[58]")}
    shipped |= {str(p.relative_to(ROOT)) for p in (ROOT / "completion").glob("*.bash")}
    assert shipped <= set(shared), shipped - set(shared)
    for src, dst in shared.items():
        if not src.startswith(("man/", "completion/")):
            continue
        if src.startswith("man/"):
            section = src.rsplit(".", 1)[1]
            assert dst == f"share/man/man{section}/{Path(src).name}"
        else:
            assert dst == f"share/bash-completion/completions/{Path(src).stem}"


LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_relative_links_resolve() -> None:
    """Every relative link in docs/ points to a file of the tree."""
    broken = []
    for f in DOC_FILES:
        for target in LINK.findall(f.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (f.parent / target).exists():
                broken.append(f"{f.relative_to(ROOT)} -> {target}")
    assert not broken, broken


def test_compat_links_every_part() -> None:
    """docs/compat.md is the merge point: it links every docs/compat-<part>.md."""
    text = (DOCS / "compat.md").read_text()
    for part in sorted(DOCS.glob("compat-*.md")):
        assert f"]({part.name})" in text, f"docs/compat.md does not link {part.name}"


@pytest.mark.slow
def test_wheel_installs_man_pages_and_completion(tmp_path: Path) -> None:
    """A real wheel of the tree carries the man pages and completions under share/."""
    import zipfile

    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                           str(tmp_path), str(ROOT)], capture_output=True, text=True,
                          timeout=300)
    if proc.returncode != 0:
        pytest.skip(f"cannot build a wheel here (no build backend?): {proc.stderr[-300:]}")
    wheel = next(tmp_path.glob("ctools-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for want in ("share/man/man8/conntrack.8", "share/man/man8/conntrackd.8",
                 "share/bash-completion/completions/conntrack",
                 "share/bash-completion/completions/conntrackd"):
        assert any(n.endswith(f".data/data/{want}") for n in names), want


def _completion_words(program: str) -> set[str]:
    """The option words a completion file offers (in its compgen -W lists and variables)."""
    script = (ROOT / "completion" / f"{program}.bash").read_text()
    words: set[str] = set()
    for chunk in re.findall(r'(?:options\+?=|commands=|-W )"([^"$]*)"', script, re.S):
        words |= {w for w in chunk.split() if w.startswith("-")}
    return words


def test_conntrack_completion_offers_only_real_options() -> None:
    """Every option the conntrack completion offers is known to our parser (with -p PROTO
    for the protocol ones): at worst illegal with -L, never an unknown option."""
    args = pytest.importorskip("ctools.cli._ct_args",
                               reason="our conntrack is not in the tree yet")
    from ctools.cli._ct_errors import CtError

    words = _completion_words("conntrack")
    assert {"-L", "--dump", "--sport", "--state", "--icmp-type", "--srckey"} <= words
    unknown = []
    # -R/--load-file is not a getopt option: conntrack takes it only as the first argument.
    for word in sorted(words - {"-R", "--load-file"}):
        known = False
        for proto in ("tcp", "sctp", "dccp", "icmp", "icmpv6", "gre"):
            try:
                args.parse(["conntrack", "-p", proto, word, "1"])
                known = True
            except CtError as exc:
                known = not exc.msg.startswith("unknown option")
            if known:
                break
        if not known:
            unknown.append(word)
    assert not unknown, f"the completion offers options our conntrack does not know: {unknown}"


def test_conntrackd_completion_offers_only_real_options() -> None:
    """Every option the conntrackd completion offers is accepted by our scanner."""
    ctd = pytest.importorskip("ctools.cli.conntrackd", reason="not in the tree yet")
    from ctools.daemon.log import DaemonLog

    bad = []
    for word in sorted(_completion_words("conntrackd")):
        argv = {"-C": ["-C", "/x"], "-x": ["-i", "-x"], "--max-silence": ["--max-silence", "1"]
                }.get(word, [word])
        try:
            ctd.scan(argv, DaemonLog())
        except ctd._Exit as done:
            if done.status != 0 or word not in ("-v", "-h"):
                bad.append(word)
    assert not bad, f"the completion offers options our conntrackd refuses: {bad}"


def test_conntrack_man_page_names_only_real_options() -> None:
    """Every long option conntrack(8) names is known to our parser (as in the completion)."""
    args = pytest.importorskip("ctools.cli._ct_args",
                               reason="our conntrack is not in the tree yet")
    from ctools.cli._ct_errors import CtError

    page = (ROOT / "man" / "conntrack.8").read_text().replace("\\-", "-")
    named = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", page))
    assert {"--dump", "--sport", "--state", "--label-add"} <= named
    unknown = []
    for word in sorted(named - {"--load-file"}):
        known = False
        for proto in ("tcp", "sctp", "dccp", "icmp", "icmpv6", "gre"):
            try:
                args.parse(["conntrack", "-p", proto, word, "1"])
                known = True
            except CtError as exc:
                known = not exc.msg.startswith("unknown option")
            if known:
                break
        if not known:
            unknown.append(word)
    assert not unknown, f"conntrack(8) names options our conntrack does not know: {unknown}"
