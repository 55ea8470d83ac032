"""``ctlab``: run the fail-over lab from a shell.

    ctlab up | down | status
    ctlab failover [--replicas ours|c|mixed] [--loss P] [--reorder P] ... [--json]
    ctlab failback | restart | partition   (same options)
    ctlab sweep [--losses 0,10,20,30,40]
    ctlab probe

Impairment values are percentages (``--loss 30`` or ``--loss 30%``), like netem's.
Exit status: 0 when every established flow survived, 1 when some did not, 2 for usage
errors, 3 when the lab itself could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

from rich.console import Console

from . import report as report_mod
from .config import Impairment, LabConfig

EXIT_OK, EXIT_FLOWS_LOST, EXIT_USAGE, EXIT_LAB = 0, 1, 2, 3


def percent(text: str) -> float:
    """'30', '30%' or '2.5' -> fraction (0.30, 0.30, 0.025)."""
    value = text.strip().rstrip("%")
    try:
        p = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a percentage: {text!r}") from None
    if not 0.0 <= p <= 100.0:
        raise argparse.ArgumentTypeError(f"percentage out of 0..100: {text!r}")
    return p / 100.0


def nonneg(kind):
    def conv(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if v < 0:
            raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
        return v
    return conv


def _lab_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("replicas and HA")
    g.add_argument("--replicas", choices=("ours", "c", "mixed"), default="c",
                   help="conntrackd implementation: ours, c (Debian's), mixed (fw1 ours, "
                        "fw2 c); default c")
    g.add_argument("--mixed-first", choices=("ours", "c"), default="ours",
                   help="with --replicas mixed: the implementation on fw1 (first master)")
    g.add_argument("--ha", choices=("driver", "keepalived"), default="driver",
                   help="built-in deterministic fail-over driver (default) or real keepalived")
    g.add_argument("--trigger", choices=("cut", "stop"), default="cut",
                   help="cut: the master loses its LAN links; stop: keepalived stops on it")
    g.add_argument("--open-window", action="store_true",
                   help="let the VIPs go up before the commit (keepalived's own order), to "
                        "measure the window the lab otherwise closes")
    g.add_argument("--hold", action="store_true",
                   help="keep keepalived's order (VIPs first) but hold the packets of the "
                        "taking-over replica until its commit has finished")
    g.add_argument("--no-sync", action="store_true",
                   help="run no conntrackd at all: flows must die on fail-over")
    g.add_argument("--no-settle", action="store_true",
                   help="start traffic without waiting for the FT-FW HELLO handshake")
    g.add_argument("--checksum", choices=("on", "off"), default="on",
                   help="conntrackd's Checksum clause on the sync link")
    g.add_argument("--prefix", help="namespace prefix (default ctlab-<random>)")
    g.add_argument("--clients", type=int, default=1)
    g.add_argument("--servers", type=int, default=1)
    g.add_argument("--no-ipv6", action="store_true", help="IPv4 only")
    g.add_argument("--sync-v6", action="store_true", help="replicate over IPv6")
    g.add_argument("--advert-ms", type=int, default=1000, help="VRRP advert interval")
    i = p.add_argument_group("sync-link impairment (percentages)")
    i.add_argument("--loss", type=percent, default=0.0)
    i.add_argument("--burst-loss", type=percent, default=0.0,
                   help="share of frames lost in bursts (Gilbert-Elliott)")
    i.add_argument("--burst-len", type=float, default=4.0, help="mean burst length (frames)")
    i.add_argument("--reorder", type=percent, default=0.0)
    i.add_argument("--corrupt", type=percent, default=0.0)
    i.add_argument("--duplicate", type=percent, default=0.0)
    i.add_argument("--delay", type=nonneg(float), default=0.0, help="ms")
    i.add_argument("--jitter", type=nonneg(float), default=0.0, help="ms")
    i.add_argument("--rate", type=nonneg(int), default=0, help="kbit/s (0 = unlimited)")
    t = p.add_argument_group("traffic and report")
    t.add_argument("--flows", type=int, default=20, help="long-lived TCP flows")
    t.add_argument("--udp-flows", type=int, default=2)
    t.add_argument("--traffic-v6", action="store_true", help="run the flows over IPv6")
    t.add_argument("--seed", type=int, default=1)
    t.add_argument("--observe", type=float, help="seconds to watch after the fail-over")
    t.add_argument("--sync-timeout", type=float, default=15.0)
    t.add_argument("--json", action="store_true", help="end with one JSON line")


def config_from(args: argparse.Namespace) -> LabConfig:
    imp = Impairment(loss=args.loss, burst_loss=args.burst_loss, burst_len=args.burst_len,
                     reorder=args.reorder, corrupt=args.corrupt, duplicate=args.duplicate,
                     delay_ms=args.delay, jitter_ms=args.jitter, rate_kbit=args.rate)
    cfg = LabConfig(replicas=args.replicas, mixed_first=args.mixed_first, ha=args.ha, close_window=not args.open_window,
                    checksum=args.checksum == "on", replicate=not args.no_sync,
                    settle=not args.no_settle, hold=args.hold,
                    impairment=imp, seed=args.seed, clients=args.clients,
                    servers=args.servers, ipv6=not args.no_ipv6, sync_over_v6=args.sync_v6,
                    advert_ms=args.advert_ms)
    if args.prefix:
        cfg.prefix = args.prefix
    cfg.validate()
    if getattr(args, "trigger", "cut") == "stop" and args.ha != "keepalived":
        raise ValueError("--trigger stop needs --ha keepalived")
    if not 1 <= args.flows <= 1000 or not 0 <= args.udp_flows <= 1000:
        raise ValueError("--flows must be 1..1000 and --udp-flows 0..1000")
    return cfg


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="ctlab", description="ctools fail-over lab: two firewall replicas in network "
        "namespaces, an impaired sync link, real traffic, real fail-over.")
    sub = ap.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="build a lab and leave it running")
    _lab_options(up)
    down = sub.add_parser("down", help="remove labs (leftovers of crashed runs by default)")
    down.add_argument("--prefix")
    down.add_argument("--all", action="store_true", help="also labs whose owner still runs")
    st = sub.add_parser("status", help="list labs")
    st.add_argument("--json", action="store_true")
    for name, text in (("failover", "fail over under traffic and judge the flows"),
                       ("failback", "fail over, then fail back to the first replica"),
                       ("restart", "crash and restart the backup's daemon (resync), then "
                                   "fail over"),
                       ("partition", "partition the sync link, open flows, heal, fail over")):
        _lab_options(sub.add_parser(name, help=text))
    sw = sub.add_parser("sweep", help="loss sweep: convergence and survival, CSV + PNG")
    _lab_options(sw)
    sw.add_argument("--losses", default="0,10,20,30,40", help="percentages")
    sw.add_argument("--runs", type=int, default=1)
    sw.add_argument("--sets", default="ours,c",
                    help="replica kinds to compare, comma-separated (overrides --replicas)")
    sw.add_argument("--csv", default="docs/data/lab_sweep.csv")
    sw.add_argument("--png", default="docs/plots/lab_sweep.png")
    pr = sub.add_parser("probe", help="crafted packets against the rule-set (scapy)")
    _lab_options(pr)
    return ap


_MAIN_PID = os.getpid()


def _terminate(sig, _frame) -> None:
    if os.getpid() != _MAIN_PID:
        # a forked helper (pyroute2 forks to create namespaces): die the default way
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        return
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code not in (0, None) else EXIT_OK
    out = Console(stderr=bool(getattr(args, "json", False)))
    if os.geteuid() != 0:
        out.print("ctlab: needs root (network namespaces, nftables)")
        return EXIT_LAB
    global _MAIN_PID
    _MAIN_PID = os.getpid()
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return _dispatch(args, out)
    except ValueError as exc:
        out.print(f"ctlab: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        out.print("ctlab: interrupted; the lab was removed")
        return 130
    except (RuntimeError, TimeoutError, OSError) as exc:
        out.print(f"ctlab: the lab could not run: {exc}")
        return EXIT_LAB
    except subprocess.SubprocessError as exc:
        detail = getattr(exc, "stderr", b"") or b""
        out.print(f"ctlab: the lab could not run: {exc} "
                  f"{detail.decode(errors='replace').strip()}")
        return EXIT_LAB


def _dispatch(args: argparse.Namespace, out: Console) -> int:
    from . import scenarios
    from .lab import Lab, cleanup, list_labs

    if args.command == "down":
        removed = cleanup(prefix=args.prefix, include_owned=args.all)
        out.print(f"removed {len(removed)} namespaces" + (f": {' '.join(removed)}"
                                                         if removed else ""))
        return EXIT_OK
    if args.command == "status":
        labs = list_labs()
        if args.json:
            print(json.dumps(labs, default=str))
        elif not labs:
            out.print("no labs")
        for lab in labs:
            age = time.time() - lab.get("created", time.time())
            out.print(f"{lab['prefix']}: {len(lab.get('present_namespaces', []))} namespaces, "
                      f"{len(lab.get('alive_pids', []))} live processes, replicas "
                      f"{lab.get('replicas', '?')}, HA {lab.get('ha', '?')}, "
                      f"{'orphan' if lab.get('orphan') else f'up {age:.0f}s'}")
        return EXIT_OK
    cfg = config_from(args)
    if args.command == "up":
        lab = Lab(cfg, progress=lambda m: out.print(f"[dim]{m}[/]"))
        lab.up()
        lab.detach()
        out.print(f"lab {cfg.prefix} is up; namespaces: {' '.join(lab.topo.all_names)}")
        out.print(f"remove it with: ctlab down --prefix {cfg.prefix}")
        return EXIT_OK
    if args.command == "sweep":
        import dataclasses

        from .sweep import plot, run_sweep, write_csv
        losses = [percent(x) for x in args.losses.split(",") if x.strip()]
        rows = []
        for kind in [k.strip() for k in args.sets.split(",") if k.strip()]:
            kcfg = dataclasses.replace(cfg, replicas=kind)
            kcfg.validate()
            rows += run_sweep(kcfg, losses, runs=args.runs, flows=args.flows,
                              udp_flows=args.udp_flows,
                              progress=lambda m, k=kind: out.print(f"[dim]{k}: {m}[/]"))
        write_csv(rows, args.csv)
        plot(rows, args.png)
        out.print(f"wrote {args.csv} and {args.png}")
        for row in rows:
            out.print(row)
        if args.json:
            print(json.dumps({"sweep": rows}))
        return EXIT_OK if all(r["flows_survived"] == r["flows_started"] for r in rows) \
            else EXIT_FLOWS_LOST
    if args.command == "probe":
        from .probe import run_probe
        result = run_probe(cfg, progress=lambda m: out.print(f"[dim]{m}[/]"))
        report_mod.render_probe(result, out)
        if args.json:
            print(json.dumps(result))
        return EXIT_OK if result["ok"] else EXIT_FLOWS_LOST
    func = scenarios.SCENARIOS[args.command]
    kw = {"flows": args.flows, "udp_flows": args.udp_flows, "observe_s": args.observe,
          "sync_timeout": args.sync_timeout, "v6": args.traffic_v6}
    if args.command == "failover":
        kw["trigger"] = args.trigger
    with out.status(f"ctlab {args.command}") as status:
        def progress(msg: str) -> None:
            status.update(f"ctlab {args.command}: {msg}")
            out.print(f"[dim]{time.strftime('%H:%M:%S')} {msg}[/]")
        report = func(cfg, progress=progress, **kw)
    report_mod.render(report, out)
    if args.json:
        print(report_mod.json_line(report), flush=True)
    return EXIT_OK if report.get("ok") else EXIT_FLOWS_LOST


if __name__ == "__main__":
    sys.exit(main())
