"""Run every fuzz harness with atheris for a fixed time and summarise executions and findings.

    .venv/bin/python fuzz/run.py                     # every harness, FUZZ_SECONDS (60) each
    .venv/bin/python fuzz/run.py -t 10 netlink_decode cli_args
    .venv/bin/python fuzz/run.py --smoke             # no atheris: seeded random mutations only

Known open findings (fuzzlib.KNOWN_OPEN) do not stop a run: they are counted in the log and
fuzzing goes on (FUZZ_STOP_AT_KNOWN=1 to stop at them). Each harness runs in its own child process (so a crash or hang in one does not stop the
others). libFuzzer writes new interesting inputs to fuzz/out/<harness>/corpus/ (the committed
seed corpus is only read) and crash/timeout/oom inputs to fuzz/out/<harness>/. Exit status 1
when anything was found, 2 on a usage problem.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fuzzlib  # noqa: E402

OUT_DIR = fuzzlib.FUZZ_DIR / "out"
_EXEC_RE = re.compile(r"stat::number_of_executed_units:\s*(\d+)")
_DONE_RE = re.compile(r"#(\d+)\s+(?:DONE|pulse|NEW|REDUCE|INITED)")
_ARTIFACT_PREFIXES = ("crash-", "timeout-", "oom-", "leak-", "slow-unit-")


def child(path: Path, libfuzzer_args: list[str]) -> None:
    """Inside the child: instrument ctools, import the harness and hand over to libFuzzer."""
    import atheris

    with atheris.instrument_imports(include=["ctools"]):
        module = fuzzlib.load(path)
    target = module.TestOneInput
    if os.environ.get("FUZZ_STOP_AT_KNOWN") != "1" and fuzzlib.KNOWN_OPEN.get(path.stem):
        hits = [0]

        def target(data: bytes) -> None:  # noqa: F811 - keep fuzzing past known findings
            try:
                module.TestOneInput(data)
            except Exception as exc:
                if not fuzzlib.is_known_open(path.stem, exc):
                    raise
                hits[0] += 1
                if hits[0] in (1, 10, 100, 1000, 10000):
                    print(f"known open finding hit {hits[0]}x: {exc!s:.100}", file=sys.stderr)
    atheris.Setup([sys.argv[0], *libfuzzer_args], target)
    atheris.Fuzz()


def run_one(path: Path, seconds: int, timeout: int) -> dict:
    """Fuzz one harness for ``seconds``; return its executions and the artifact files it left."""
    module = fuzzlib.load(path)
    out = OUT_DIR / path.stem
    work = out / "corpus"
    work.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / ".gitignore").write_text("*\n")  # fuzz/out/ is scratch space, never committed
    before = {p.name for p in out.iterdir()}
    corpora = [str(work)]
    seed_dir = fuzzlib.CORPUS_DIR / fuzzlib.corpus_name(module, path)
    if seed_dir.is_dir():
        corpora.append(str(seed_dir))
    reg_dir = fuzzlib.REGRESSION_DIR / path.stem
    if reg_dir.is_dir():
        corpora.append(str(reg_dir))
    args = [sys.executable, __file__, "--child", str(path),
            f"-max_total_time={seconds}", f"-timeout={timeout}", "-rss_limit_mb=2048",
            "-print_final_stats=1", f"-artifact_prefix={out}/", *corpora]
    started = time.monotonic()
    # Generous wall-clock guard: libFuzzer stops itself at max_total_time.
    try:
        proc = subprocess.run(args, capture_output=True, text=True, errors="replace",
                              timeout=seconds + timeout + 60)
        log, rc = proc.stderr + proc.stdout, proc.returncode
    except subprocess.TimeoutExpired as exc:
        log, rc = (exc.stderr or b"").decode(errors="replace"), -1
    (out / "last.log").write_text(log)
    m = _EXEC_RE.search(log)
    execs = int(m.group(1)) if m else max((int(x) for x in _DONE_RE.findall(log)), default=0)
    found = sorted(p.name for p in out.iterdir()
                   if p.name not in before and p.name.startswith(_ARTIFACT_PREFIXES))
    known = max((int(x) for x in re.findall(r"known open finding hit (\d+)x", log)), default=0)
    return {"name": path.stem, "execs": execs, "rc": rc, "found": found, "known": known,
            "seconds": time.monotonic() - started, "out": out}


def smoke_one(path: Path, seconds: float) -> dict:
    """The atheris-free variant: seeded random mutations of the corpus for ``seconds``."""
    module = fuzzlib.load(path)
    corpus = fuzzlib.seeds(fuzzlib.corpus_name(module, path)) + fuzzlib.regressions(path.stem)
    started = time.monotonic()
    found: list[str] = []
    try:
        execs = fuzzlib.smoke(module.TestOneInput, corpus, runs=10**9, seconds=seconds,
                              seed=int(time.time()))
    except fuzzlib.FuzzFailure as exc:
        out = OUT_DIR / path.stem
        out.mkdir(parents=True, exist_ok=True)
        crash = out / f"crash-smoke-{int(time.time())}"
        crash.write_bytes(exc.data)
        found.append(crash.name)
        execs = -1
        print(f"{path.stem}: {exc}", file=sys.stderr)
    return {"name": path.stem, "execs": execs, "rc": 1 if found else 0, "found": found,
            "seconds": time.monotonic() - started, "out": OUT_DIR / path.stem}


def select(names: list[str]) -> list[Path]:
    harnesses = fuzzlib.discover()
    if not names:
        return harnesses
    by_name = {p.stem: p for p in harnesses}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise SystemExit(f"run.py: unknown harness {', '.join(unknown)} "
                         f"(known: {', '.join(by_name) or 'none'})")
    return [by_name[n] for n in names]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        child(Path(argv[1]), argv[2:])
        return 0
    ap = argparse.ArgumentParser(prog="fuzz/run.py",
                                 description="Run the ctools fuzz harnesses for a fixed time each.")
    ap.add_argument("harness", nargs="*", help="harness names (file stems); default: all")
    ap.add_argument("-t", "--seconds", type=int,
                    default=int(os.environ.get("FUZZ_SECONDS", "60")),
                    help="time per harness (default: $FUZZ_SECONDS or 60)")
    ap.add_argument("--timeout", type=int, default=10,
                    help="seconds one input may take before it counts as a hang (default 10)")
    ap.add_argument("--smoke", action="store_true",
                    help="use the built-in random mutator instead of atheris")
    ap.add_argument("-l", "--list", action="store_true", help="list the harnesses and exit")
    ap.add_argument("--live", choices=["auto", "yes", "no"], default="auto",
                    help="also run the live fuzzer (fuzz/live.py) against a running daemon, "
                         "each sync mode over UDP and FT-FW over TCP, for the same time each; auto = when root and no "
                         "harness was named")
    opts = ap.parse_args(argv)
    paths = select(opts.harness)
    if opts.list:
        for p in paths:
            print(p.stem)
        return 0
    if not opts.smoke:
        try:
            import atheris  # noqa: F401
        except ImportError:
            print("run.py: atheris is not installed (.venv/bin/pip install atheris), "
                  "or use --smoke", file=sys.stderr)
            return 2
    results = []
    for path in paths:
        try:
            res = smoke_one(path, opts.seconds) if opts.smoke else \
                run_one(path, opts.seconds, opts.timeout)
        except ImportError as exc:
            print(f"{path.stem}: skipped, cannot import its target ({exc})")
            continue
        results.append(res)
        status = "FOUND " + " ".join(res["found"]) if res["found"] else "ok"
        if res.get("known"):
            status += f" (known open findings hit >= {res['known']} times)"
        print(f"{res['name']:<24} {res['execs']:>10} execs  {res['seconds']:6.1f}s  {status}",
              flush=True)
    live_on = opts.live == "yes" or (opts.live == "auto" and not opts.harness
                                     and os.geteuid() == 0)
    if live_on:
        import live

        for mode, transport in (("ftfw", "udp"), ("alarm", "udp"), ("notrack", "udp"),
                                ("ftfw", "tcp")):
            seed = int(time.time())
            started = time.monotonic()
            name = f"live_{mode}" + ("_tcp" if transport == "tcp" else "")
            try:
                res = live.run(opts.seconds, mode, seed, "ours", "ours", quiet=True,
                               transport=transport)
            except RuntimeError as exc:
                print(f"{name}: set-up failed: {exc}")
                continue
            found = [f"{f} (--seed {seed})" for f in res["findings"]]
            results.append({"name": name, "execs": res["sent"], "rc": 0,
                            "found": found, "seconds": time.monotonic() - started,
                            "out": OUT_DIR / "live"})
            status = "FOUND " + "; ".join(found) if found else "ok"
            print(f"{name:<24} {res['sent']:>10} dgrams "
                  f"{time.monotonic() - started:6.1f}s  {status}", flush=True)
    total = sum(max(r["execs"], 0) for r in results)
    findings = [(r["name"], f) for r in results for f in r["found"]]
    print(f"total: {len(results)} harnesses, {total} executions, {len(findings)} findings")
    for name, f in findings:
        if name.startswith("live_"):
            print(f"  {name}: {f}  (datagram logs in {OUT_DIR / 'live'})")
            continue
        print(f"  {OUT_DIR / name / f}  (replay: .venv/bin/python fuzz/run.py --replay "
              f"{name} {OUT_DIR / name / f})")
    return 1 if findings else 0


def replay(name: str, files: list[str]) -> int:
    """Feed saved inputs to one harness and show the first exception with its traceback."""
    module = fuzzlib.load(select([name])[0])
    for f in files:
        module.TestOneInput(Path(f).read_bytes())
        print(f"{f}: ok")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--replay"] and len(sys.argv) >= 4:
        sys.exit(replay(sys.argv[2], sys.argv[3:]))
    sys.exit(main())
