"""End to end through the messenger: three organisations, six devices, one relay.

Model (docs/api.md, "Deployment model"): every device is its own node (its node key
is its device key); organisation A also runs an always-on relay node (Role.NODE,
no room keys, SqliteStore in a temp dir). Devices connect only to the relay (a
star), so everything a device sees went through a node that holds ciphertext only.
The room topic is planned before the nodes open because the node fixes its topics
at open (docs/api.md, "Interest"). Policies are AllowAllPolicy: GovernancePolicy
needs sessions to re-ask for topics after a room appears (node change requested
in the report); its feeding is tested in tests/test_messenger.py.

Everything runs in virtual time (MockClock autojump).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio
import trio.testing
from node_helpers import has_entry, wait_until, wall

from p2pmsg.blobs import BlobStore
from p2pmsg.certs import DeviceCertificate, Role, issue_certificate
from p2pmsg.identity import Identity
from p2pmsg.messaging import (
    Edit,
    FhirCommunication,
    MemberSpec,
    MessageStatus,
    Reply,
    Text,
    UnknownContent,
    encrypt_for_entry,
)
from p2pmsg.messaging._codec import encode
from p2pmsg.messaging.room import Rejection
from p2pmsg.messenger import (
    Messenger,
    RoomPlan,
    messenger_topics,
    org_control_items,
    plan_room,
)
from p2pmsg.net.base import PeerHint
from p2pmsg.net.memory import MemoryNetwork
from p2pmsg.node import Node, NodeConfig, serve_node
from p2pmsg.policy import AllowAllPolicy
from p2pmsg.store.base import Store
from p2pmsg.store.memory import MemoryStore
from p2pmsg.store.sqlite import SqliteStore

T0 = 1_700_000_000_000
ORGS = ("a", "b", "c")
DEVICES = ("a1", "a2", "b1", "b2", "c1", "c2")


def ident(name: str) -> Identity:
    return Identity.from_seed(hashlib.blake2b(b"messenger-e2e/" + name.encode(),
                                             digest_size=32).digest())


@dataclass
class Federation:
    net: MemoryNetwork
    roots: dict[str, Identity]
    room: RoomPlan
    nodes: dict[str, Node] = field(default_factory=dict)
    m: dict[str, Messenger] = field(default_factory=dict)
    relay_store: SqliteStore | None = None

    def org(self, device: str) -> bytes:
        return self.roots[device[0]].public_key



async def build(nursery: trio.Nursery, tmp_path: Path, *, blobs: bool = False) -> Federation:
    """Certify everything, plan the room, open the relay and six device nodes
    (``blobs``: each device node gets a BlobStore under ``tmp_path``)."""
    net = MemoryNetwork(seed=7)
    roots = {o: ident("root-" + o) for o in ORGS}
    certs: dict[str, list[DeviceCertificate]] = {o: [] for o in ORGS}
    for name in DEVICES:
        role = Role.ADMIN if name.endswith("1") else Role.MEMBER
        certs[name[0]].append(issue_certificate(
            roots[name[0]], ident(name).public_key, role, f"device {name}", 0, 2**50))
    certs["a"].append(issue_certificate(roots["a"], ident("relay").public_key, Role.NODE,
                                        "relay", 0, 2**50))
    org_ids = [r.public_key for r in roots.values()]
    members = [MemberSpec(ident(n).public_key, roots[n[0]].public_key)
               for n in DEVICES if n != "a1"]
    plan = plan_room(ident("a1"), roots["a"].public_key, members, created_ms=T0)
    topics = messenger_topics(org_ids, [plan.topic])
    fed = Federation(net, roots, plan)

    def cfg(name: str, store: Store, peers: tuple[str, ...]) -> NodeConfig:
        identity = ident(name)
        return NodeConfig(
            identity=identity, store=store, topics=topics, policy=AllowAllPolicy(),
            transports=[net.transport(name, identity.public_key)],
            peers=[PeerHint(ident(p).public_key, f"memory://{p}") for p in peers],
            wall_clock=wall, reconnect_initial=0.1, reconnect_max=1.0, seed=1, name=name,
            blob_store=(BlobStore(tmp_path / f"blobs-{name}", durable=False)
                        if blobs and name != "relay" else None))

    fed.relay_store = SqliteStore(tmp_path / "relay.db")
    fed.nodes["relay"] = await nursery.start(serve_node, cfg("relay", fed.relay_store, ()))
    for name in DEVICES:
        store = MemoryStore()
        if name.endswith("1"):  # the org admin's node starts with the root-signed control log
            items = org_control_items(roots[name[0]], certs[name[0]], start_ms=T0 - 10_000)
            store.append([e for e, _ in items], {e.id: p for e, p in items})
        node: Node = await nursery.start(serve_node, cfg(name, store, ("relay",)))
        fed.nodes[name] = node
        fed.m[name] = Messenger(node, fed.org(name), orgs=org_ids)
    await wait_until(lambda: all(m.certificate() is not None for m in fed.m.values()))
    return fed




async def everywhere(fed: Federation, entry_id: bytes, names: tuple[str, ...] = DEVICES) -> None:
    await wait_until(lambda: all(has_entry(fed.nodes[n], fed.room.topic, entry_id)
                                 for n in names))


async def send_unknown_kind(m: Messenger, topic: bytes) -> bytes:
    """What a newer version would write: a sealed content of kind 200."""
    view = m.room(topic)
    state = m._room_state(topic)
    epoch = state.view.current_epoch
    assert epoch is not None and view.joined
    key = m._keys(state.view)[epoch.id]
    seq = m._next_seq(topic)
    payload = encrypt_for_entry(key, epoch.id, topic, m.device, seq,
                                encode(200, 1, "from the future"))
    entry = await m.node.append(topic, payload)
    assert entry.header.seq == seq
    return entry.id


FHIR = json.dumps({"resourceType": "Communication", "status": "completed",
                   "payload": [{"contentString": "Labor: CRP 12 mg/l"}]})


async def test_every_kind_round_trips_across_three_orgs(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with trio.open_nursery() as nursery:
        fed = await build(nursery, tmp_path)
        m = fed.m
        topic = fed.room.topic
        room = await m["a1"].create_room_from(fed.room, name="Station 3 / Reha")
        assert room.joined and room.epoch == 0 and room.name == "Station 3 / Reha"
        await wait_until(lambda: all(any(r.topic == topic for r in x.rooms())
                                     for x in m.values()))

        live_seen: list = []
        live_ready = trio.Event()

        async def follow() -> None:
            agen = m["b2"].live(topic)
            live_ready.set()
            async for msg in agen:
                live_seen.append(msg)

        nursery.start_soon(follow)
        await live_ready.wait()

        hello = await m["a1"].send_text(topic, "Übergabe Bett 4")
        await everywhere(fed, hello)
        reply = await m["b1"].send_reply(topic, hello, "Übernommen")
        edit = await m["a1"].send_edit(topic, hello, "Übergabe Bett 4, nüchtern")
        react = await m["c1"].react(topic, hello, "👍")
        fhir = await m["c2"].send_fhir(topic, FHIR, "CRP 12 mg/l")
        oops = await m["a2"].send_text(topic, "falscher Raum")
        redact = await m["a2"].redact(topic, oops)
        unknown = await send_unknown_kind(m["c1"], topic)
        for eid in (reply, edit, react, fhir, redact, unknown):
            await everywhere(fed, eid)
        receipt = await m["b2"].mark_read(topic)
        assert receipt is not None
        await everywhere(fed, receipt)

        views = {n: m[n].messages(topic) for n in DEVICES}
        reference = views["a1"]
        for n in DEVICES:  # deterministic: identical on every member device
            assert views[n] == reference, n
        by_id = {msg.id: msg for msg in reference}
        order = [msg.id for msg in reference]
        assert sorted(order) == sorted([hello, reply, fhir, oops, unknown])
        assert order.index(hello) < order.index(reply)  # causal: b1 had seen hello
        assert by_id[hello].content == Text("Übergabe Bett 4, nüchtern")
        assert by_id[hello].edited and by_id[hello].history == (Text("Übergabe Bett 4"),)
        assert by_id[hello].reactions == {"👍": [m["c1"].device]}
        assert by_id[hello].org == fed.org("a1")
        assert by_id[reply].content == Reply(hello, "Übernommen")
        assert by_id[fhir].content == FhirCommunication(FHIR, "CRP 12 mg/l")
        assert by_id[oops].status is MessageStatus.REDACTED and by_id[oops].content is None
        assert by_id[oops].redacted_by == m["a2"].device
        assert isinstance(by_id[unknown].content, UnknownContent)
        assert by_id[unknown].content.kind == 200
        assert m["a1"].timeline(topic).read_up_to[m["b2"].device] == order[-1]
        assert Edit(hello, "x") not in [msg.content for msg in reference]

        # live() on b2 saw every message, and its last version of each is the final one
        await wait_until(lambda: {x.id for x in live_seen} >= set(by_id))
        last = {x.id: x for x in live_seen}
        assert all(last[i] == by_id[i] for i in by_id)
        nursery.cancel_scope.cancel()


async def test_removed_and_revoked_devices_cannot_read_on(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with trio.open_nursery() as nursery:
        fed = await build(nursery, tmp_path)
        m = fed.m
        topic = fed.room.topic
        await m["a1"].create_room_from(fed.room)
        await wait_until(lambda: all(x.rooms() for x in m.values()))
        before = await m["a1"].send_text(topic, "für alle")
        await everywhere(fed, before)

        # removal: a2 still receives the room's ciphertext but cannot open what follows
        await m["a1"].remove_member(topic, m["a2"].device)
        after = await m["a1"].send_text(topic, "ohne a2")
        await everywhere(fed, after)
        epoch = m["a1"]._room_state(topic).view.current_epoch
        assert epoch is not None and m["a2"].device not in epoch.recipients
        seen_by_a2 = {x.id: x for x in m["a2"].messages(topic)}
        assert seen_by_a2[before].content == Text("für alle")
        assert seen_by_a2[after].status is MessageStatus.UNDECRYPTABLE
        assert seen_by_a2[after].content is None
        assert {x.id: x for x in m["b1"].messages(topic)}[after].content == Text("ohne a2")

        # revocation: b2 is cut off, its admin b1 revokes it, b2 (unaware) keeps writing
        fed.net.cut("b2", "relay")
        revocation = await m["b1"].revoke_device(m["b2"].device, "Gerät verloren")
        await wait_until(lambda: all(
            has_entry(fed.nodes[n], revocation_topic(fed), revocation)
            for n in DEVICES if n != "b2"))
        await trio.sleep(1)
        late = await m["b2"].send_text(topic, "nach dem Widerruf")
        fed.net.heal("b2", "relay")
        await everywhere(fed, late)
        for n in ("a1", "b1", "c1", "c2"):
            view = m[n]._room_state(topic).view
            assert view.rejected.get(late) is Rejection.NOT_CERTIFIED, n
            assert late not in {x.id for x in m[n].messages(topic)}
        # the next sender rekeys away from b2, which can no longer read
        secret = await m["c1"].send_text(topic, "ohne b2")
        await everywhere(fed, secret)
        epoch = m["c1"]._room_state(topic).view.current_epoch
        assert epoch is not None and m["b2"].device not in epoch.recipients
        assert m["c1"].device in epoch.recipients
        assert {x.id: x for x in m["b2"].messages(topic)}[secret].status \
            is MessageStatus.UNDECRYPTABLE
        assert {x.id: x for x in m["a1"].messages(topic)}[secret].content == Text("ohne b2")
        nursery.cancel_scope.cancel()


def revocation_topic(fed: Federation) -> bytes:
    from p2pmsg.messaging import control_topic
    return control_topic(fed.roots["b"].public_key)


async def test_relay_holds_ciphertext_only(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    marker = "MARKER-" + hashlib.blake2b(tmp_path.name.encode(), digest_size=8).hexdigest()
    async with trio.open_nursery() as nursery:
        fed = await build(nursery, tmp_path)
        m = fed.m
        topic = fed.room.topic
        await m["a1"].create_room_from(fed.room, name=marker)
        await wait_until(lambda: all(x.rooms() for x in m.values()))
        ids = [await m["a1"].send_text(topic, f"{marker} Text"),
               await m["c2"].send_fhir(topic, FHIR.replace("CRP", marker), marker)]
        ids.append(await m["b1"].send_reply(topic, ids[0], marker))
        for eid in ids:
            await everywhere(fed, eid, DEVICES)
        relay = fed.nodes["relay"]
        assert all(has_entry(relay, topic, eid) for eid in ids)  # it did carry them
        assert all(relay.payload(e) is not None for e in relay.read(topic))
        # members read the marker; the relay's messenger (no epoch sealed to it) cannot
        assert marker in str(m["b2"].messages(topic)[0].content)
        relay_view = Messenger(relay, fed.roots["a"].public_key,
                               orgs=[r.public_key for r in fed.roots.values()])
        assert all(x.status is MessageStatus.UNDECRYPTABLE
                   for x in relay_view.messages(topic))
        nursery.cancel_scope.cancel()
    assert fed.relay_store is not None
    fed.relay_store.close()
    needle = marker.encode()
    files = [p for p in tmp_path.iterdir() if p.name.startswith("relay.db")]
    assert files and sum(p.stat().st_size for p in files) > 0
    for path in files:
        assert needle not in path.read_bytes(), path.name
    # the scan would see plaintext: certificates' display names are stored in clear
    assert any(b"device c2" in path.read_bytes() for path in files)
    assert caplog.records  # the nodes did log (sessions, rekeys)
    assert marker not in caplog.text
