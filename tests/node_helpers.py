"""Shared helpers for node tests: identities, topics, node configs on a MemoryNetwork."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import trio

from p2pmsg.entry import Entry
from p2pmsg.identity import Identity
from p2pmsg.net.base import PeerHint
from p2pmsg.net.memory import MemoryNetwork
from p2pmsg.node import Node, NodeConfig, serve_node
from p2pmsg.policy import AllowAllPolicy, Policy
from p2pmsg.store.base import Store
from p2pmsg.store.memory import MemoryStore
from p2pmsg.validate import verify_run

T1 = hashlib.blake2b(b"topic-1", digest_size=32).digest()
T2 = hashlib.blake2b(b"topic-2", digest_size=32).digest()


WALL_T0 = 1_700_000_000_000
"""Wall-clock milliseconds at trio time 0 in the messenger tests (:func:`wall`)."""


def wall() -> int:
    """Wall-clock ms that follows trio's (virtual) clock: pass as a node's wall clock."""
    return WALL_T0 + int(trio.current_time() * 1000)


async def wait_until(predicate: Callable[[], bool], timeout: float = 60.0,
                     step: float = 0.05) -> None:
    """Poll until ``predicate()`` holds; TooSlowError after ``timeout`` (trio time)."""
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(step)


def has_entry(node: Node, topic: bytes, entry_id: bytes) -> bool:
    return any(e.id == entry_id for e in node.read(topic))


def ident(name: str) -> Identity:
    return Identity.from_seed(hashlib.blake2b(name.encode(), digest_size=32).digest())


def config(
    net: MemoryNetwork,
    name: str,
    *,
    peers: tuple[str, ...] = (),
    policy: Policy | None = None,
    topics: tuple[bytes, ...] = (T1,),
    store: Store | None = None,
    subscriber_buffer: int = 1024,
) -> NodeConfig:
    identity = ident(name)
    return NodeConfig(
        identity=identity,
        store=store if store is not None else MemoryStore(),
        transports=[net.transport(name, identity.public_key)],
        peers=[PeerHint(ident(p).public_key, f"memory://{p}") for p in peers],
        policy=policy if policy is not None else AllowAllPolicy(),
        topics=topics,
        wall_clock=lambda: 1_700_000_000_000 + int(trio.current_time() * 1000),
        reconnect_initial=0.1,
        reconnect_max=1.0,
        seed=1,
        subscriber_buffer=subscriber_buffer,
        name=name,
    )


async def start(nursery: trio.Nursery, cfg: NodeConfig) -> Node:
    node: Node = await nursery.start(serve_node, cfg)
    return node


def ids(entries: list[Entry]) -> list[bytes]:
    return [e.id for e in entries]


def assert_store_valid(store: Store) -> None:
    """Every log in the store verifies fully (all signatures, links, payloads)."""
    for topic in store.topics():
        for head in store.heads(topic):
            run = store.get_range(head.author, topic, 1, head.seq)
            assert len(run) == head.seq
            verify_run(None, run, full=True)
