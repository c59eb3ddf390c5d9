"""Run a :class:`~p2pmsg.sim.scenario.Scenario` in virtual time and measure it.

Theory of operation
-------------------
Every node is a real :func:`p2pmsg.open_node` with a :class:`~p2pmsg.MemoryStore`
on one shared :class:`~p2pmsg.net.memory.MemoryNetwork` whose links carry the
scenario's latency, jitter, loss and bandwidth. The run uses
``trio.testing.MockClock(autojump_threshold=0)``: whenever every task waits, the
clock jumps to the next deadline, so a minute of federation costs only the CPU its
protocol work takes, and the same seed gives the same result.

Node ``i`` belongs to an organisation; each topic lists the organisations that may
read it, and every node's :class:`~p2pmsg.policy.TopicPolicy` grants exactly those
nodes. Configured edges may join nodes that share no topic: they connect but
exchange nothing (the "no unauthorised leak" property is checked on that).

**Convergence** (checked every ``check_interval`` after the last append and the
last heal): for every topic, every authorised node holds exactly the logs, at
exactly the heights, appended by the authorised nodes reachable from it through
authorised nodes (a topic cannot cross a node that may not read it); no
unauthorised node holds any entry of it.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, field
from typing import Any

import trio
import trio.testing

from ..identity import Identity
from ..net.base import PeerHint
from ..net.memory import LinkConditions, MemoryNetwork
from ..node import Node, NodeConfig, serve_node
from ..policy import TopicPolicy
from ..store.memory import MemoryStore
from .scenario import Scenario

__all__ = [
    "SimResult",
    "Simulation",
    "run_simulation",
    "run_simulation_async",
    "seed_trio_scheduler",
]

_EPOCH_MS = 1_700_000_000_000


@dataclass
class SimResult:
    """What a run measured. ``to_json()`` for files; all times are virtual seconds."""

    converged: bool
    convergence_time: float | None
    """Seconds from the last event (append or heal) to convergence; None if not."""
    converged_at: float | None
    """Seconds from the start of the run to convergence."""
    last_event_at: float
    nodes: int
    edges: int
    topics: int
    entries_appended: int
    entries_delivered: int
    """Entries newly stored by receivers (each counted once per receiving node)."""
    duplicate_deliveries: int
    """Received entries a node already had (wasted transfers)."""
    entries_sent: int
    """Entries read from stores to answer range requests."""
    bytes_sent: int
    """Sync-protocol bytes written by all nodes."""
    wire_segments: int
    """Transport segments (the memory network's unit of delivery and loss)."""
    retransmissions: int
    connections: int
    duplicate_connections_closed: int
    protocol_errors: int
    leaks: int
    """Entries found on nodes not authorised for their topic (must be 0)."""
    seed: int
    scenario: dict[str, Any] = field(default_factory=dict)
    bytes_by_type: dict[str, int] = field(default_factory=dict)
    """Sync bytes per message type (``RUN_LIVE`` = live pushes), all nodes."""
    live_duplicates: int = 0
    """Entries pushed live to a node that already held them (the flooding cost)."""
    live_dropped: int = 0
    resync_rounds: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, indent=2)


def _node_identity(seed: int, i: int) -> Identity:
    return Identity.from_seed(hashlib.blake2b(f"sim/{seed}/{i}".encode(), digest_size=32).digest())


def _topic_id(seed: int, t: int) -> bytes:
    return hashlib.blake2b(f"sim-topic/{seed}/{t}".encode(), digest_size=32).digest()


class Simulation:
    """A scenario wired up: identities, policies, network. Call :meth:`run` in trio."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = s = scenario
        self.identities = [_node_identity(s.seed, i) for i in range(s.nodes)]
        self.ids = [ident.public_key for ident in self.identities]
        self.topic_orgs = s.topic_orgs()
        self.topic_ids = [_topic_id(s.seed, t) for t in range(len(self.topic_orgs))]
        self.edges = s.topology()
        self.readers = [
            frozenset(n for n in range(s.nodes) if s.org_of(n) in orgs)
            for orgs in self.topic_orgs
        ]
        self.network = MemoryNetwork(
            LinkConditions(
                latency=s.latency, jitter=s.jitter, loss=s.loss, bandwidth=s.bandwidth
            ),
            seed=s.seed,
        )
        self.nodes: list[Node] = []
        self.appended = [[0] * len(self.topic_ids) for _ in range(s.nodes)]
        self._components = [self._reader_components(t) for t in range(len(self.topic_ids))]

    def _reader_components(self, t: int) -> dict[int, frozenset[int]]:
        readers = self.readers[t]
        parent = {n: n for n in readers}

        def find(x: int) -> int:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for a, b in self.edges:
            if a in readers and b in readers:
                parent[find(a)] = find(b)
        groups: dict[int, set[int]] = {}
        for n in readers:
            groups.setdefault(find(n), set()).add(n)
        return {n: frozenset(groups[find(n)]) for n in readers}

    def config(self, i: int) -> NodeConfig:
        s = self.scenario
        neighbours = {b for a, b in self.edges if a == i} | {a for a, b in self.edges if b == i}
        readers = {
            topic: [self.ids[n] for n in self.readers[t]] for t, topic in enumerate(self.topic_ids)
        }
        policy = TopicPolicy(
            readers,
            peers=[self.ids[n] for n in neighbours],
        )
        return NodeConfig(
            identity=self.identities[i],
            store=MemoryStore(),
            transports=[self.network.transport(f"n{i}", self.ids[i])],
            peers=[PeerHint(self.ids[n], f"memory://n{n}", "sim") for n in sorted(neighbours)],
            policy=policy,
            topics=[topic for t, topic in enumerate(self.topic_ids) if i in self.readers[t]],
            wall_clock=lambda: _EPOCH_MS + int(trio.current_time() * 1000),
            reconnect_initial=s.reconnect_initial,
            reconnect_max=s.reconnect_max,
            seed=hash((s.seed, i)) & 0xFFFFFFFF,
            name=f"n{i}",
        )

    def leaks(self) -> int:
        """Entries stored on nodes that may not read their topic."""
        count = 0
        for i, node in enumerate(self.nodes):
            for t, topic in enumerate(self.topic_ids):
                if i not in self.readers[t]:
                    count += sum(h.seq for h in node.store.heads(topic))
        return count

    def converged(self) -> bool:
        """True when every node holds exactly what it should (see module docstring)."""
        if self.leaks():
            return False
        for t, topic in enumerate(self.topic_ids):
            for i, component in self._components[t].items():
                expected = {
                    self.ids[n]: self.appended[n][t] for n in component if self.appended[n][t]
                }
                have = {h.author: h.seq for h in self.nodes[i].store.heads(topic)}
                if have != expected:
                    return False
        return True

    async def run(self) -> SimResult:
        """Start all nodes, play workload and partitions, wait for convergence."""
        s = self.scenario
        rng = random.Random(f"payloads/{s.seed}")
        start = trio.current_time()
        appends = s.appends()
        last_event = max([a.time for a in appends] + [p.end for p in s.partitions] + [0.0])
        converged_at: float | None = None
        async with trio.open_nursery() as nursery:
            for i in range(s.nodes):
                self.nodes.append(await nursery.start(serve_node, self.config(i)))
            nursery.start_soon(self._partitions, start)
            for a in appends:
                await trio.sleep_until(start + a.time)
                payload = rng.randbytes(a.size)
                await self.nodes[a.node].append(self.topic_ids[a.topic], payload)
                self.appended[a.node][a.topic] += 1
            await trio.sleep_until(start + last_event)
            deadline = start + last_event + s.timeout
            while trio.current_time() <= deadline:
                if self.converged():
                    converged_at = trio.current_time() - start
                    break
                await trio.sleep(s.check_interval)
            nursery.cancel_scope.cancel()
        return self._result(converged_at, last_event)

    async def _partitions(self, start: float) -> None:
        timeline: list[tuple[float, int, Any]] = []
        for p in self.scenario.partitions:
            timeline.append((p.start, 1, p))
            timeline.append((p.end, 0, p))
        timeline.sort(key=lambda x: (x[0], x[1]))
        for at, is_cut, p in timeline:
            await trio.sleep_until(start + at)
            for a in p.a:
                for b in p.b:
                    if is_cut:
                        self.network.cut(f"n{a}", f"n{b}")
                    else:
                        self.network.heal(f"n{a}", f"n{b}")

    def _result(self, converged_at: float | None, last_event: float) -> SimResult:
        stats = [n.statistics() for n in self.nodes]
        net = self.network.statistics()
        scenario = asdict(self.scenario)
        scenario["topics"] = [sorted(t) for t in self.topic_orgs]
        scenario.pop("workload", None)
        return SimResult(
            converged=converged_at is not None,
            convergence_time=None if converged_at is None else converged_at - last_event,
            converged_at=converged_at,
            last_event_at=last_event,
            nodes=self.scenario.nodes,
            edges=len(self.edges),
            topics=len(self.topic_ids),
            entries_appended=sum(x.entries_appended for x in stats),
            entries_delivered=sum(x.entries_received for x in stats),
            duplicate_deliveries=sum(x.duplicate_entries for x in stats),
            entries_sent=sum(x.entries_sent for x in stats),
            bytes_sent=sum(x.bytes_sent for x in stats),
            wire_segments=net.segments,
            retransmissions=net.retransmissions,
            connections=net.connections,
            duplicate_connections_closed=sum(x.duplicate_connections_closed for x in stats),
            protocol_errors=sum(x.protocol_errors for x in stats),
            leaks=self.leaks(),
            bytes_by_type=_sum_tables([x.sent_by_type for x in stats]),
            live_duplicates=sum(x.live_duplicates for x in stats),
            live_dropped=sum(x.live_dropped for x in stats),
            resync_rounds=sum(x.resync_rounds for x in stats),
            seed=self.scenario.seed,
            scenario=scenario,
        )


def _sum_tables(tables: list[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for table in tables:
        for name, size in table.items():
            out[name] = out.get(name, 0) + size
    return dict(sorted(out.items()))


async def run_simulation_async(scenario: Scenario) -> tuple[SimResult, Simulation]:
    """Run inside an existing trio run (which should use a MockClock)."""
    sim = Simulation(scenario)
    return await sim.run(), sim


def seed_trio_scheduler(seed: int) -> None:
    """Seed trio's scheduler RNG so task order, and with it the whole run, repeats.

    trio shuffles each batch of runnable tasks with a private module-level
    ``random.Random`` (``trio._core._run._r``). That is not public API: this
    raises RuntimeError if it disappears (tests/test_sim.py checks it), rather than
    silently giving up reproducibility. Use only for simulations, before
    ``trio.run``; production nodes keep trio's randomised scheduling.
    """
    import trio._core._run as trio_run

    rng = getattr(trio_run, "_r", None)
    if not isinstance(rng, random.Random):
        raise RuntimeError("trio._core._run._r is gone: cannot seed trio's scheduler")
    rng.seed(f"trio-scheduler/{seed}")


def run_simulation(scenario: Scenario) -> SimResult:
    """Run ``scenario`` in a fresh trio run on a mock clock (autojump) and return the result.

    Seeds trio's scheduler from ``scenario.seed`` (:func:`seed_trio_scheduler`), so
    the same scenario gives a byte-identical result within one Python version.
    """
    seed_trio_scheduler(scenario.seed)
    clock = trio.testing.MockClock(autojump_threshold=0)
    result, _ = trio.run(run_simulation_async, scenario, clock=clock)
    return result


