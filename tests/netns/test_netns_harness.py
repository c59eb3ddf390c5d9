"""The namespace harness itself: topology, routing, multicast scope, impairment, cleanup."""

from __future__ import annotations

import os
import subprocess

import netns_harness
import pytest
from netns_harness import Topology

pytestmark = pytest.mark.netns


def test_namespaces_exist_and_sites_reach_each_other(topology: Topology) -> None:
    existing = set(netns_harness.list_namespaces())
    assert set(topology.namespaces) <= existing
    assert all(ns.startswith(netns_harness.PREFIX) for ns in topology.namespaces)
    a1, a2, b1, b2 = (topology.hosts[r] for r in ("a1", "a2", "b1", "b2"))
    # Inside a site (through the bridge) ...
    assert topology.ping(a1.ns, a2.ip)
    assert topology.ping(b2.ns, b1.ip)
    # ... and across the router, both ways.
    assert topology.ping(a1.ns, b2.ip)
    assert topology.ping(b1.ns, a2.ip)
    # The host's own network is untouched: no address of ours exists outside.
    host_addrs = subprocess.run(
        ["ip", "-o", "addr"], capture_output=True, text=True, check=True
    ).stdout
    assert "10.201.1." not in host_addrs and "10.201.2." not in host_addrs


@pytest.mark.parametrize(
    ("group", "port", "ttl"),
    [("224.0.0.251", 5353, 255), ("239.255.77.1", 5999, 32)],
    ids=["mdns-group", "routable-ttl"],
)
def test_multicast_stays_inside_a_site(
    topology: Topology, group: str, port: int, ttl: int
) -> None:
    counts = topology.multicast_reach("a1", ["a2", "b1", "b2"], group, port, ttl=ttl)
    assert counts["a2"] == 5  # the bridge floods multicast to the whole site
    assert counts["b1"] == 0 and counts["b2"] == 0  # the router forwards none
    counts = topology.multicast_reach("b2", ["b1", "a1"], group, port, ttl=ttl)
    assert counts == {"b1": 5, "a1": 0}


def test_cut_partitions_sites_and_heal_restores(topology: Topology) -> None:
    a1, a2, b1 = (topology.hosts[r] for r in ("a1", "a2", "b1"))
    topology.cut()
    assert not topology.ping(a1.ns, b1.ip, timeout=0.5, attempts=1)
    assert not topology.ping(b1.ns, a1.ip, timeout=0.5, attempts=1)
    assert topology.ping(a1.ns, a2.ip)  # a site keeps working while cut off
    topology.heal()
    assert topology.ping(a1.ns, b1.ip)
    assert topology.ping(b1.ns, a2.ip)


def test_impairment_adds_latency_and_loss(topology: Topology) -> None:
    a1, b1 = topology.hosts["a1"], topology.hosts["b1"]
    topology.impair(delay_ms=60, loss=0.0)
    rtt = topology.ping_rtt(a1.ns, b1.ip)
    assert rtt is not None
    assert rtt >= 0.120  # 60 ms each way is a lower bound: never flaky
    topology.impair(delay_ms=0, loss=1.0)
    before = topology.wan_statistics()["dropped_loss"]
    assert not topology.ping(a1.ns, b1.ip, timeout=0.3, attempts=2)
    assert topology.wan_statistics()["dropped_loss"] > before
    topology.impair(delay_ms=0, loss=0.0)
    assert topology.ping(a1.ns, b1.ip)


def test_destroy_leaves_nothing_even_with_processes_inside() -> None:
    reason = netns_harness.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    topo = Topology()
    try:
        topo.build()
        sleeper = subprocess.Popen(
            [*topo.netns_exec(topo.hosts["a1"].ns), "sleep", "300"]
        )
    finally:
        topo.destroy()
    assert sleeper.wait(timeout=5) != 0  # killed by destroy, not finished
    left = [ns for ns in netns_harness.list_namespaces() if ns.startswith(topo.prefix)]
    assert left == []
    topo.destroy()  # idempotent


def test_sweep_removes_only_namespaces_of_dead_runs() -> None:
    reason = netns_harness.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    finished = subprocess.Popen(["true"])
    finished.wait()
    stale = f"{netns_harness.PREFIX}{finished.pid}-dead-x"
    live = f"{netns_harness.PREFIX}{os.getpid()}-live-x"
    try:
        subprocess.run(["ip", "netns", "add", stale], check=True)
        subprocess.run(["ip", "netns", "add", live], check=True)
        removed = netns_harness.sweep_stale()
        names = netns_harness.list_namespaces()
        assert stale in removed and stale not in names
        assert live in names and live not in removed
    finally:
        for ns in (stale, live):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)

