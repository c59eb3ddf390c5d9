"""Real nodes in namespaces: mDNS inside a site, QUIC across sites, partitions.

Each node is a separate process (tools/netns_node.py) with its own SqliteStore,
the QUIC transport on its namespace address, and optionally mDNS on its interface.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import trio
from netns_harness import Topology
from netns_nodes import TRANSPORT, NodeProcess, node_configs, run_nodes, wait_until_converged

pytestmark = pytest.mark.netns

# Generous: a loaded 2-core CI machine runs four Python nodes at once. Tests finish
# as soon as the nodes converge; these only bound a hang.
CONVERGE_TIMEOUT = 40.0


def _logs(nodes: dict[str, NodeProcess]) -> str:
    return "\n".join(f"--- {n.name} ---\n{n.log_tail(25)}" for n in nodes.values())


async def _converged(
    nodes: dict[str, NodeProcess], topic: bytes, count: int
) -> list[str]:
    ids = await wait_until_converged(nodes.values(), topic, count, timeout=CONVERGE_TIMEOUT)
    assert all(len(i) == count for i in ids), (
        f"counts {[len(i) for i in ids]} != {count}\n{_logs(nodes)}"
    )
    assert all(i == ids[0] for i in ids), "nodes read different entry orders"
    return ids[0]


async def _settle_on_one_session(
    nodes: dict[str, NodeProcess], a: NodeProcess, b: NodeProcess, topic: bytes
) -> None:
    """Both nodes dialed each other; the duplicate is dropped (one session per pair),
    after which both settle on exactly one session with each other. Polled, because
    at a single instant during the swap either side may briefly show none."""
    sa: dict[str, Any] = {}
    sb: dict[str, Any] = {}
    with trio.move_on_after(CONVERGE_TIMEOUT):
        while True:
            sa, sb = await a.status(topic), await b.status(topic)
            if sa["peers"] == [b.id] and sb["peers"] == [a.id]:
                break
            await trio.sleep(0.1)
    assert sa["peers"] == [b.id] and sb["peers"] == [a.id], _logs(nodes)


async def test_site_nodes_find_each_other_by_mdns_alone(
    topology: Topology, tmp_path: Path
) -> None:
    topic = os.urandom(32)
    configs = node_configs(topology, ["a1", "a2"], topic, mdns=True, cross_site=False)
    assert all(cfg["peers"] == [] for cfg in configs)  # no addresses configured
    async with run_nodes(configs, tmp_path) as nodes:
        a1, a2 = nodes["a1"], nodes["a2"]
        written = {await a1.append(topic, f"a1-{i}") for i in range(3)}
        written.add(await a2.append(topic, "a2-0"))
        ids = await _converged(nodes, topic, 4)
        assert set(ids) == written
        s1, s2 = await a1.status(topic), await a2.status(topic)
        assert a2.id in s1["mdns_peers"] and a1.id in s2["mdns_peers"]
        assert s1["heads"] == s2["heads"] == {a1.id: 3, a2.id: 1}
        await _settle_on_one_session(nodes, a1, a2, topic)


async def test_mdns_does_not_reach_the_other_site(
    topology: Topology, tmp_path: Path
) -> None:
    topic = os.urandom(32)
    configs = node_configs(topology, ["a1", "a2", "b1"], topic, mdns=True, cross_site=False)
    async with run_nodes(configs, tmp_path) as nodes:
        await nodes["a1"].append(topic, "hello site a")
        ids = await wait_until_converged(
            [nodes["a1"], nodes["a2"]], topic, 1, timeout=CONVERGE_TIMEOUT
        )
        assert [len(i) for i in ids] == [1, 1], _logs(nodes)
        # a1 and a2 found each other over mDNS in that time; b1 saw nobody.
        assert (await nodes["b1"].status(topic))["mdns_peers"] == []
        assert (await nodes["b1"].status(topic))["count"] == 0
        assert nodes["b1"].id not in (await nodes["a1"].status(topic))["mdns_peers"]


async def test_sites_replicate_over_quic_to_configured_addresses(
    topology: Topology, tmp_path: Path
) -> None:
    topic = os.urandom(32)
    configs = node_configs(topology, ["a1", "b1"], topic, mdns=False, cross_site=True)
    assert configs[0]["peers"][0]["address"] == f"{TRANSPORT}://{topology.hosts['b1'].ip}:4433"
    async with run_nodes(configs, tmp_path) as nodes:
        a1, b1 = nodes["a1"], nodes["b1"]
        assert a1.addresses == [f"{TRANSPORT}://{topology.hosts['a1'].ip}:4433"]
        written = {await a1.append(topic, f"a-{i}") for i in range(5)}
        written |= {await b1.append(topic, f"b-{i}") for i in range(5)}
        ids = await _converged(nodes, topic, 10)
        assert set(ids) == written
        await _settle_on_one_session(nodes, a1, b1, topic)


async def test_partition_with_loss_and_latency_then_heal_converges(
    topology: Topology, tmp_path: Path
) -> None:
    topic = os.urandom(32)
    configs = node_configs(
        topology, ["a1", "a2", "b1", "b2"], topic, mdns=True, cross_site=True
    )
    async with run_nodes(configs, tmp_path) as nodes:
        a1, a2, b1, b2 = (nodes[r] for r in ("a1", "a2", "b1", "b2"))
        written = {await n.append(topic, f"{n.name}-start") for n in nodes.values()}
        assert set(await _converged(nodes, topic, 4)) == written

        # A bad inter-site link: 5 % loss and 40 ms each way.
        topology.impair(delay_ms=40, loss=0.05)
        written |= {await n.append(topic, f"{n.name}-lossy") for n in nodes.values()}
        assert set(await _converged(nodes, topic, 8)) == written

        # Cut it and write on both sides; each site still replicates internally.
        topology.cut()
        side_a = {await a1.append(topic, f"a1-cut-{i}") for i in range(3)}
        side_a.add(await a2.append(topic, "a2-cut"))
        side_b = {await b1.append(topic, f"b1-cut-{i}") for i in range(3)}
        side_b.add(await b2.append(topic, "b2-cut"))
        site_a = await wait_until_converged([a1, a2], topic, 12, timeout=CONVERGE_TIMEOUT)
        site_b = await wait_until_converged([b1, b2], topic, 12, timeout=CONVERGE_TIMEOUT)
        for ids in site_a:
            assert set(ids) == written | side_a, _logs(nodes)
        for ids in site_b:
            assert set(ids) == written | side_b, _logs(nodes)
        await trio.sleep(1.0)  # nothing crosses a cut link, however long we wait
        assert not side_b & set(await a1.ids(topic))

        topology.heal()
        ids = await _converged(nodes, topic, 16)
        assert set(ids) == written | side_a | side_b
        stats = topology.wan_statistics()
        assert stats["dropped_loss"] > 0 or stats["write_errors"] > 0
