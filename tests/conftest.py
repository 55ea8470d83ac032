"""Shared fixtures: namespaces that are always removed, and reference-tool detection."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).parent))

from netns import Netns, have_root  # noqa: E402

# make test is a regression gate on a loaded 2-core box: the same examples every run, no
# wall-clock deadlines. HYPOTHESIS_PROFILE=explore searches fresh examples (use it when hunting).
settings.register_profile("ci", derandomize=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("explore", deadline=None, max_examples=500,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REF_CONNTRACK = shutil.which("conntrack", path="/usr/sbin:/sbin:/usr/bin")
REF_CONNTRACKD = shutil.which("conntrackd", path="/usr/sbin:/sbin:/usr/bin")


def need_root() -> None:
    if not have_root():
        pytest.skip("needs root and iproute2 for network namespaces")


@pytest.fixture
def netns_factory():
    """Make namespaces on demand; every one is deleted at teardown, even on failure."""
    need_root()
    made: list[Netns] = []

    def make(prefix: str = "ctt") -> Netns:
        ns = Netns(prefix)
        made.append(ns)
        return ns

    yield make
    for ns in made:
        ns.close()


@pytest.fixture
def netns(netns_factory):
    return netns_factory()


@pytest.fixture
def ref_conntrack() -> str:
    if REF_CONNTRACK is None:
        pytest.skip("reference conntrack (Debian package 'conntrack') is not installed")
    return REF_CONNTRACK


@pytest.fixture
def ref_conntrackd() -> str:
    if REF_CONNTRACKD is None:
        pytest.skip("reference conntrackd (Debian package 'conntrackd') is not installed")
    return REF_CONNTRACKD
