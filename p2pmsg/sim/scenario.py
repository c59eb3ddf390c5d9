"""What a simulation runs: nodes, organisations, topology, topics, workload, faults.

A :class:`Scenario` is plain data, so it can be generated (hypothesis, parameter
sweeps), printed and stored next to its :class:`~p2pmsg.sim.runner.SimResult`.
Every random choice derives from ``Scenario.seed``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Append", "Partition", "Scenario", "random_topology"]


@dataclass(frozen=True, slots=True)
class Append:
    """Node ``node`` appends a ``size``-byte payload to topic number ``topic`` at ``time``."""

    time: float
    node: int
    topic: int
    size: int = 200


@dataclass(frozen=True, slots=True)
class Partition:
    """Nodes in ``a`` cannot reach nodes in ``b`` from ``start`` until ``end`` (seconds).

    Partitions are applied in time order; healing one re-joins its pairs even if an
    overlapping partition also cut them.
    """

    start: float
    end: float
    a: tuple[int, ...]
    b: tuple[int, ...]


@dataclass(frozen=True)
class Scenario:
    """A reproducible federation experiment. Defaults: 5 nodes, one org, one topic."""

    nodes: int = 5
    orgs: int = 1
    """Node ``i`` belongs to organisation ``i * orgs // nodes`` (contiguous blocks)."""
    edges: Sequence[tuple[int, int]] | None = None
    """Who is configured to dial whom (both ends get the hint); None = random."""
    degree: int = 3
    """Average degree of the random topology (ring plus random chords)."""
    topics: Sequence[frozenset[int]] | None = None
    """Per topic, the organisations allowed to read it; None = one topic for all."""
    workload: Sequence[Append] | None = None
    """Explicit appends; None = ``messages`` random appends spread over ``duration``."""
    messages: int = 50
    payload_size: int = 200
    duration: float = 5.0
    latency: float = 0.0
    jitter: float = 0.0
    loss: float = 0.0
    bandwidth: float | None = None
    partitions: Sequence[Partition] = ()
    seed: int = 0
    timeout: float = 600.0
    """Give up (``converged=False``) this many virtual seconds after the last event."""
    check_interval: float = 0.05
    """Virtual seconds between convergence checks."""
    reconnect_initial: float = 0.2
    reconnect_max: float = 2.0
    extra: dict[str, str] = field(default_factory=dict)
    """Free-form labels copied into the result (experiment name, ...)."""

    def org_of(self, node: int) -> int:
        return node * self.orgs // self.nodes

    def topic_orgs(self) -> list[frozenset[int]]:
        if self.topics is None:
            return [frozenset(range(self.orgs))]
        return [frozenset(t) for t in self.topics]

    def topology(self) -> list[tuple[int, int]]:
        if self.edges is not None:
            return sorted({(min(a, b), max(a, b)) for a, b in self.edges if a != b})
        return random_topology(self.nodes, self.degree, random.Random(f"topo/{self.seed}"))

    def appends(self) -> list[Append]:
        """The workload, explicit or generated, sorted by time."""
        if self.workload is not None:
            return sorted(self.workload, key=lambda a: (a.time, a.node, a.topic))
        rng = random.Random(f"workload/{self.seed}")
        topics = self.topic_orgs()
        result = []
        for _ in range(self.messages):
            t = rng.randrange(len(topics))
            writers = [n for n in range(self.nodes) if self.org_of(n) in topics[t]]
            if not writers:
                continue
            result.append(
                Append(rng.uniform(0, self.duration), rng.choice(writers), t, self.payload_size)
            )
        return sorted(result, key=lambda a: (a.time, a.node, a.topic))


def random_topology(nodes: int, degree: int, rng: random.Random) -> list[tuple[int, int]]:
    """A connected graph: a ring (so every node is reachable) plus random chords
    until the average degree reaches ``degree``."""
    if nodes < 2:
        return []
    edges = {(min(i, (i + 1) % nodes), max(i, (i + 1) % nodes)) for i in range(nodes)}
    target = min(nodes * degree // 2, nodes * (nodes - 1) // 2)
    while len(edges) < target:
        a, b = rng.sample(range(nodes), 2)
        edges.add((min(a, b), max(a, b)))
    return sorted(edges)
