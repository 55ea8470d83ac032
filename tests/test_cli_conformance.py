"""The conformance cases (upstream testsuite format) give the same OK/BAD verdicts for our
conntrack as for the C tool, case by case; and every case passes for both."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from conformance.diff import our_conntrack
from conformance.runner import MalformedCase, netns_shell, parse_case_file, report, run_steps

pytestmark = [pytest.mark.root, pytest.mark.reference]

CASES = Path(__file__).parent / "conformance" / "cases"
FILES = sorted(p for p in CASES.iterdir() if not p.name.startswith("."))


def test_runner_parses_the_upstream_format():
    text = ("# comment\n ; skipped\n-I -s 1 ;\n\t-D ;\n-R - ; OK\n"
            "-L -o save ; |s/a/b/\n-R - ; BAD\n-L ; OK")
    steps = parse_case_file("x", text, "ct")
    assert [s.command for s in steps] == [
        'echo "-I -s 1 \n\t-D " | ct -R - ',
        'ct -L -o save  | sed "s/a/b/" | ct -R - ',
        "ct -L ",
    ]
    assert [s.expect_ok for s in steps] == [True, False, True]
    with pytest.raises(MalformedCase):
        parse_case_file("y", "-L\n", "ct")


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_conformance_verdicts_match_reference(path, netns_factory, ref_conntrack):
    text = path.read_text()
    verdicts = {}
    for who, tool in (("ref", ref_conntrack), ("ours", " ".join(map(shlex.quote,
                                                                      our_conntrack())))):
        ns = netns_factory("ctcli")
        steps = parse_case_file(path.name, text, tool)
        run_steps(steps, netns_shell(ns.name))
        verdicts[who] = steps
    ref, ours = verdicts["ref"], verdicts["ours"]
    differ = [f"line {r.line}: ref {r.passed} (exit {r.status}), ours {o.passed} "
              f"(exit {o.status}): {o.command}"
              for r, o in zip(ref, ours, strict=True) if r.passed != o.passed]
    assert not differ, "\n".join(differ)
    failed = [f"line {s.line} (exit {s.status}): {s.command}" for s in ours if not s.passed]
    assert not failed, report(ours) + "\n" + "\n".join(failed)
