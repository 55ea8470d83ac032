"""The pytest fixtures netns_lab offers to other projects, used as they would use them."""

from __future__ import annotations

import pytest

from netns_lab import LabConfig, nsutil

pytest_plugins = ["netns_lab.pytest_plugin"]


@pytest.fixture
def ctlab_config():
    return LabConfig(replicate=False, ipv6=False)


@pytest.fixture
def gone_after():
    """Set up before ``ctlab``, so its check runs after the lab's teardown."""
    seen: dict[str, str] = {}
    yield seen
    assert nsutil.list_names(seen["prefix"] + "-") == []


def test_ctlab_fixture_gives_a_running_lab_and_removes_it(gone_after, ctlab):
    gone_after["prefix"] = ctlab.cfg.prefix
    assert nsutil.exists(ctlab.topo.fw[1])
    assert ctlab.start_traffic(tcp_flows=2) == 2


def test_ctlab_factory_builds_labs_on_demand(ctlab_factory):
    a = ctlab_factory(replicate=False, ipv6=False)
    assert nsutil.exists(a.topo.relay)
