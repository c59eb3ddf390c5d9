"""A relay declared in the room, end to end (memory transport, virtual time).

Every node enforces the signed federation list (:class:`GovernancePolicy`); nobody
calls ``declare_relay``. Org A's device a1 creates a DIRECT room with org B's b1;
org R's always-on node r (no device, no room keys) is told by its operator to
relay the room (``add_topics`` + ``expect_room``) but receives nothing until a1
declares it a relay through the Messenger (a RELAY_ADD entry, replicated). Then r
replicates the room, fetches an attachment's blob and serves it to b1 while a1 is
offline. Finally b1 (an admin: DIRECT room) removes the relay: b1's node closes
the relay's session and r receives nothing written after that.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import trio
import trio.testing
from node_helpers import WALL_T0, wait_until, wall

from p2pmsg.blobs import BlobStore
from p2pmsg.certs import Role, issue_certificate
from p2pmsg.daemon.governance import org_states, room_views
from p2pmsg.governance import GovernancePolicy
from p2pmsg.governance.federation import (
    FederationRegistry,
    Organisation,
    OrgKind,
    issue_federation_list,
)
from p2pmsg.identity import Identity
from p2pmsg.messaging import MemberSpec, MessageStatus, RoomKind
from p2pmsg.messenger import Messenger, messenger_topics, open_messenger, org_control_items
from p2pmsg.messenger.bootstrap import plan_room
from p2pmsg.net.base import PeerHint
from p2pmsg.net.memory import MemoryNetwork
from p2pmsg.node import Node, NodeConfig, open_node, serve_node
from p2pmsg.node.blobs import RelayBlobFetcher
from p2pmsg.store.memory import MemoryStore


def ident(name: str) -> Identity:
    return Identity.from_seed(hashlib.blake2b(b"relay-declared/" + name.encode(),
                                             digest_size=32).digest())


ROOTS = {o: ident("root-" + o) for o in "abr"}
ISSUER = ident("issuer")
ORG_IDS = [ROOTS[o].public_key for o in "abr"]


@asynccontextmanager
async def declared_setup(tmp_path: Path) -> AsyncIterator[
        tuple[Messenger, Messenger, Node, trio.CancelScope, bytes]]:
    """a1 dials b1 and r; b1 dials r. When a1 is gone, b1 reaches only r."""
    net = MemoryNetwork(seed=11)
    org_ids = [ROOTS[o].public_key for o in "ab"]
    flist = issue_federation_list(ISSUER, 1, WALL_T0, [
        Organisation(ROOTS[o].public_key, o, OrgKind.HOSPITAL, (ident(n).public_key,))
        for o, n in (("a", "a1"), ("b", "b1"), ("r", "r"))])
    plan = plan_room(ident("a1"), ROOTS["a"].public_key,
                     [MemberSpec(ident("b1").public_key, ROOTS["b"].public_key)],
                     kind=RoomKind.DIRECT, created_ms=WALL_T0)

    def cfg(name: str, peers: list[str]) -> NodeConfig:
        identity = ident(name)
        store = MemoryStore()
        if name != "r":
            cert = issue_certificate(ROOTS[name[0]], identity.public_key, Role.ADMIN, name,
                                     0, 2**50)
            items = org_control_items(ROOTS[name[0]], [cert], start_ms=WALL_T0 - 10_000)
            store.append([e for e, _ in items], {e.id: p for e, p in items})
        policy = GovernancePolicy(
            FederationRegistry(ISSUER.public_key, flist.raw, now_ms=WALL_T0), clock=wall)
        return NodeConfig(
            identity=identity, store=store, topics=messenger_topics(org_ids), policy=policy,
            transports=[net.transport(name, identity.public_key)],
            peers=[PeerHint(ident(p).public_key, f"memory://{p}") for p in peers],
            wall_clock=wall, reconnect_initial=0.1, reconnect_max=1.0, seed=1, name=name,
            blob_store=BlobStore(tmp_path / f"blobs-{name}", durable=False))

    a_scope = trio.CancelScope()

    async def run_a(*, task_status: trio.TaskStatus[Messenger]) -> None:
        with a_scope:
            async with (open_node(cfg("a1", ["b1", "r"])) as node,
                        open_messenger(node, ROOTS["a"].public_key, orgs=org_ids) as m):
                task_status.started(m)
                await trio.sleep_forever()

    async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
        relay: Node = await nursery.start(serve_node, cfg("r", []))
        b_node: Node = await nursery.start(serve_node, cfg("b1", ["r"]))
        b1 = await stack.enter_async_context(
            open_messenger(b_node, ROOTS["b"].public_key, orgs=org_ids))
        a1: Messenger = await nursery.start(run_a)
        await wait_until(lambda: a1.certificate() is not None and b1.certificate() is not None)
        await a1.wait_certified([ident("b1").public_key])
        await a1.create_room_from(plan)
        await wait_until(lambda: b1.room(plan.topic).joined
                         if plan.topic in b_node.store.topics() else False)
        yield a1, b1, relay, a_scope, plan.topic
        await stack.aclose()
        nursery.cancel_scope.cancel()


async def test_declared_relay_replicates_and_serves_while_the_sender_is_offline(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    r_key, r_org = ident("r").public_key, ROOTS["r"].public_key
    data = os.urandom(300_000)
    async with declared_setup(tmp_path) as (a1, b1, relay, a_scope, topic):
        assert isinstance(relay.policy, GovernancePolicy)
        # r's operator: "relay this room of A and B" (topic id and orgs, out of band)
        relay.add_topics([topic])
        relay.policy.expect_room(topic, [ROOTS["a"].public_key, ROOTS["b"].public_key])
        await trio.sleep(5)
        assert topic not in relay.store.topics()  # not declared in the room: refused

        add_id = await a1.add_relay(topic, r_key, r_org)
        assert a1.node.policy.room_relays(topic) == {r_key: r_org}  # type: ignore[attr-defined]
        await wait_until(lambda: isinstance(relay.store.get_payload(add_id), bytes))
        await wait_until(lambda: b1.node.policy.room_relays(topic)  # type: ignore[attr-defined]
                         == {r_key: r_org})
        assert r_key not in a1.room(topic).members  # a relay is no member
        # the relay resolves the room from what it replicated: it is a relay there,
        # and no epoch was ever sealed to it
        (view,) = [v for v in room_views(relay.store, org_states(relay.store, ORG_IDS))
                   if v.topic == topic]
        assert view.relays == {r_key: r_org} and r_key not in view.members
        assert view.epochs and all(r_key not in e.recipients for e in view.epochs)

        message_id = await a1.send_file(topic, data, mime="application/pdf", name="scan.pdf")
        await wait_until(lambda: isinstance(relay.store.get_payload(message_id), bytes))
        (root,) = (await RelayBlobFetcher(relay, [topic]).run_once()).fetched
        assert relay.blob_store is not None and relay.blob_store.is_complete(root)

        a_scope.cancel()  # the sender goes offline for good
        await wait_until(lambda: a1.device not in relay.connected_peers()
                         and a1.device not in b1.node.connected_peers())
        msg = {m.id: m for m in b1.messages(topic)}[message_id]
        assert msg.status is MessageStatus.OK
        out = io.BytesIO()
        with trio.fail_after(60):
            assert await b1.download(msg, out) == len(data)
        assert out.getvalue() == data
        assert b1.node.connected_peers() == [relay.id]  # only the relay was reachable
        assert relay.statistics().blob_objects_served > 0

        # b1 (admin of the DIRECT room) removes the relay: b1's node closes its session
        revoked = b1.node.statistics().sessions_revoked
        await b1.remove_relay(topic, r_key)
        assert b1.node.policy.room_relays(topic) == {}  # type: ignore[attr-defined]
        await wait_until(lambda: b1.node.statistics().sessions_revoked > revoked)
        after = await b1.send_text(topic, "MARKER-after-removal")
        await trio.sleep(10)  # reconnects happen; the room is no longer granted to r
        assert relay.store.get_entry(after) is None
        assert after in {m.id for m in b1.messages(topic)}
