"""pytest fixtures for other projects' fail-over checks.

Enable in your ``conftest.py``::

    pytest_plugins = ["netns_lab.pytest_plugin"]

    @pytest.fixture
    def ctlab_config():                 # optional: shape the default lab
        return LabConfig(replicas="ours", impairment=Impairment(loss=0.1))

then::

    def test_my_failover(ctlab):
        ctlab.start_traffic(tcp_flows=10)
        assert ctlab.wait_synced()
        ctlab.failover()
        assert ctlab.verdict(observe_s=3).ok

Every lab is removed after the test, also when it fails. Tests skip without root.
"""

from __future__ import annotations

import os

import pytest

from .config import LabConfig
from .lab import Lab


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the fail-over lab needs root (network namespaces, nftables)")


@pytest.fixture
def ctlab_config() -> LabConfig:
    """The settings of the ``ctlab`` fixture; override it to change them."""
    return LabConfig()


@pytest.fixture
def ctlab(ctlab_config: LabConfig):
    """A running lab (``netns_lab.Lab``) built from ``ctlab_config``."""
    _need_root()
    with Lab(ctlab_config) as lab:
        yield lab


@pytest.fixture
def ctlab_factory():
    """Make labs on demand: ``ctlab_factory(replicas="c", impairment=...)``; all are
    removed at teardown."""
    _need_root()
    made: list[Lab] = []

    def make(cfg: LabConfig | None = None, **settings) -> Lab:
        lab = Lab(cfg, **settings)
        made.append(lab)
        return lab.up()

    yield make
    for lab in made:
        lab.down()
