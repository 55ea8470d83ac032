"""Readable fail-over reports (rich) and the one-line JSON form."""

from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table

LINK_KEYS = ("received", "sent", "lost", "burst_lost", "reordered", "corrupted", "duplicated",
             "delayed", "rate_dropped", "partitioned", "overruns")


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def render(report: dict, console: Console) -> None:
    """Print the report as two tables and a verdict line."""
    imp = report.get("impairment", {})
    link_desc = ", ".join(f"{k} {v * 100:g}%" for k, v in imp.items()
                          if k in ("loss", "burst_loss", "reorder", "corrupt", "duplicate")
                          and v) or "clean"
    title = (f"ctlab {report.get('scenario', '')}: replicas {report.get('replicas')} "
             f"({', '.join(f'{k}={v}' for k, v in report.get('implementations', {}).items())}),"
             f" HA {report.get('ha')}, sync link {link_desc}, seed {report.get('seed')}")
    t = Table(title=title, show_header=True, header_style="bold")
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_column("meaning")
    rows = [
        ("flows_started", "established TCP flows before the fail-over"),
        ("flows_survived", "still echoing both ways afterwards"),
        ("tcp_resets", "flows that saw a reset or close"),
        ("stalls", "flows silent at the end"),
        ("gap_ms", "longest silence of a surviving flow"),
        ("udp_survived", f"of {report.get('udp_flows')} UDP flows answering afterwards"),
        ("sync_converged", "backup held every flow before the fail-over"),
        ("convergence_s", "traffic start -> backup holds every flow"),
        ("failover_ms", "trigger -> new master's hook finished"),
        ("commit_entries", "entries committed by the new master"),
        ("commit_seconds", "duration of conntrackd -c"),
        ("commit_window_ms", "new master held the VIPs before its commit ended"),
        ("window_drops", "packets dropped as invalid inside that window"),
        ("invalid_drops_after", "invalid drops on the new master since the fail-over"),
        ("bytes_c2s", "bytes the servers received"),
        ("bytes_s2c", "bytes echoed back to the clients"),
    ]
    for key, meaning in rows:
        if key in report:
            t.add_row(key, _fmt(report.get(key)), meaning)
    for key in ("resync_s", "heal_converge_s"):
        if key in report:
            t.add_row(key, _fmt(report[key]), "")
    console.print(t)
    link = report.get("link", {})
    console.print("sync link relay, frames both ways: "
                  + ", ".join(f"{k} {link.get(k, 0)}" for k in LINK_KEYS))
    if report.get("reset_reasons"):
        console.print(f"reset reasons: {', '.join(report['reset_reasons'])}")
    ok = report.get("ok")
    verdict = ("[bold green]PASS[/]: every established flow survived" if ok else
               f"[bold red]FAIL[/]: {report.get('flows_survived')}/"
               f"{report.get('flows_started')} flows survived")
    console.print(verdict)


def json_line(report: dict) -> str:
    """The report as one JSON object on one line."""
    return json.dumps(report, sort_keys=True, default=str)


def render_probe(result: dict, console: Console) -> None:
    """Print the crafted-packet probe as a table."""
    t = Table(title="crafted packets against the master's rule-set", header_style="bold")
    for col in ("probe", "expected", "reached the server", "ok"):
        t.add_column(col)
    for case in result["cases"]:
        t.add_row(case["name"], case["expect"], "yes" if case["arrived"] else "no",
                  "[green]ok[/]" if case["ok"] else "[red]WRONG[/]")
    console.print(t)
    console.print(f"dropped as ct invalid: {result['dropped_invalid']}, as bad new TCP: "
                  f"{result['dropped_bad_new_tcp']}")
