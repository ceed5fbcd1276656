"""How a local cluster picks its daemons' ports: never a port already handed out.

Every daemon of a cluster is given its port before any of them listens, so a port handed
to one still looks free to a later pick. A CI run failed that way once: a store was given
a coordinator's port and could not start ("Address already in use"). These tests narrow
the range ports are drawn from to a few dozen, so that a pick that ignored the ports
already handed out would collide with them almost surely.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from paramstore.commands import _up
from paramstore.commands._up import LocalCluster, free_ports

RANGE = 40


@pytest.fixture
def narrow_range(monkeypatch: pytest.MonkeyPatch) -> Iterator[set[int]]:
    """Ports are drawn from [_PORTS_LOW, _PORTS_LOW + RANGE) only."""
    monkeypatch.setattr(_up, "_ephemeral_start", lambda: _up._PORTS_LOW + RANGE)
    yield set(range(_up._PORTS_LOW, _up._PORTS_LOW + RANGE))


def _port_set(addresses: dict[int, str]) -> set[int]:
    return {int(address.rpartition(":")[2]) for address in addresses.values()}


def test_free_ports_never_returns_an_excluded_port(narrow_range: set[int]) -> None:
    excluded = set(sorted(narrow_range)[: RANGE - 10])

    ports = free_ports(5, exclude=excluded)

    assert len(set(ports)) == 5
    assert not set(ports) & excluded, sorted(set(ports) & excluded)


def test_a_clusters_coordinators_and_stores_get_distinct_ports(
    tmp_path: Path, narrow_range: set[int]
) -> None:
    cluster = LocalCluster(tmp_path, groups=9, replicas=3)

    coordinators = _port_set(cluster.addresses)
    stores = [port for members in cluster.store_addresses.values() for port in _port_set(members)]
    assert len(coordinators) == 3 and len(set(stores)) == 27
    assert not coordinators & set(stores)
    assert coordinators | set(stores) <= narrow_range


def test_an_added_group_gets_ports_no_daemon_of_the_cluster_was_given(
    tmp_path: Path, narrow_range: set[int]
) -> None:
    cluster = LocalCluster(tmp_path, groups=8, replicas=3)
    given = _port_set(cluster.addresses) | {
        port for members in cluster.store_addresses.values() for port in _port_set(members)
    }
    try:
        group = cluster.add_store_group(replicas=3)
        added = _port_set(cluster.store_addresses[group])
    finally:
        cluster.stop()

    assert len(given) == 27 and len(added) == 3
    assert not added & given, sorted(added & given)
