"""Persons with several devices, end to end through the messenger (memory transport).

Org A: admin device ``a1`` and person P with devices ``p1`` and ``p2`` (and ``p3``,
whose node runs from the start but whose certificate is published only later).
Org B: admin device ``b1``, which creates a room with P's first device only. Every
device is its own node and connects to one relay (a star), as in
tests/test_messenger_e2e.py. Virtual time (MockClock autojump).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from node_helpers import has_entry, wait_until, wall

from p2pmsg.certs import DeviceCertificate, Role, issue_certificate, person_id
from p2pmsg.identity import Identity
from p2pmsg.messaging import MemberSpec, MessageStatus, Text, control_topic
from p2pmsg.messaging.room import Rejection
from p2pmsg.messenger import (
    Messenger,
    RoomPlan,
    UnknownDevice,
    messenger_topics,
    open_messenger,
    org_control_items,
    plan_room,
)
from p2pmsg.messenger.history import compose_history_share
from p2pmsg.net.base import PeerHint
from p2pmsg.net.memory import MemoryNetwork
from p2pmsg.node import Node, NodeConfig, serve_node
from p2pmsg.policy import AllowAllPolicy
from p2pmsg.store.memory import MemoryStore

T0 = 1_700_000_000_000
DEVICES = ("a1", "p1", "p2", "p3", "b1")
HANDLE = "staff-4711"


def ident(name: str) -> Identity:
    return Identity.from_seed(hashlib.blake2b(b"messenger-person/" + name.encode(),
                                             digest_size=32).digest())


ROOTS = {"a": ident("root-a"), "b": ident("root-b")}
PERSON = person_id(ROOTS["a"], HANDLE)


def org_of(name: str) -> Identity:
    return ROOTS["b"] if name.startswith("b") else ROOTS["a"]


def cert(name: str) -> DeviceCertificate:
    role = Role.ADMIN if name.endswith("1") and not name.startswith("p") else Role.MEMBER
    return issue_certificate(org_of(name), ident(name).public_key, role, f"device {name}",
                             0, 2**50, person=PERSON if name.startswith("p") else None)


@dataclass
class Fed:
    net: MemoryNetwork
    room: RoomPlan
    nodes: dict[str, Node] = field(default_factory=dict)
    m: dict[str, Messenger] = field(default_factory=dict)





async def build(nursery: trio.Nursery, *, watch: bool = False,
                without_room: tuple[str, ...] = ()) -> Fed:
    """The federation; ``watch`` runs every messenger under :func:`open_messenger`;
    the nodes named in ``without_room`` do not start with the room topic."""
    net = MemoryNetwork(seed=11)
    initial = {"a": [cert(n) for n in ("a1", "p1", "p2")], "b": [cert("b1")]}
    org_ids = [r.public_key for r in ROOTS.values()]
    plan = plan_room(ident("b1"), ROOTS["b"].public_key,
                     [MemberSpec(ident("p1").public_key, ROOTS["a"].public_key)],
                     created_ms=T0)
    topics = messenger_topics(org_ids, [plan.topic])
    fed = Fed(net, plan)

    def cfg(name: str, peers: tuple[str, ...]) -> NodeConfig:
        identity = ident(name)
        store = MemoryStore()
        if name in ("a1", "b1"):  # the admins' nodes start with the control logs
            items = org_control_items(org_of(name), initial[name[0]], start_ms=T0 - 10_000)
            store.append([e for e, _ in items], {e.id: p for e, p in items})
        mine = messenger_topics(org_ids, []) if name in without_room else topics
        return NodeConfig(
            identity=identity, store=store, topics=mine, policy=AllowAllPolicy(),
            transports=[net.transport(name, identity.public_key)],
            peers=[PeerHint(ident(p).public_key, f"memory://{p}") for p in peers],
            wall_clock=wall, reconnect_initial=0.1, reconnect_max=1.0, seed=1, name=name)

    fed.nodes["relay"] = await nursery.start(serve_node, cfg("relay", ()))
    for name in DEVICES:
        fed.nodes[name] = await nursery.start(serve_node, cfg(name, ("relay",)))
        org = org_of(name).public_key
        if watch:
            fed.m[name] = await nursery.start(_watched, fed.nodes[name], org, org_ids)
        else:
            fed.m[name] = Messenger(fed.nodes[name], org, orgs=org_ids)
    await wait_until(lambda: all(fed.m[n].certificate() is not None
                                 for n in DEVICES if n != "p3"))
    return fed


async def _watched(node: Node, org: bytes, orgs: list[bytes], *,
                   task_status: trio.TaskStatus[Messenger] = trio.TASK_STATUS_IGNORED) -> None:
    async with open_messenger(node, org, orgs=orgs) as messenger:
        task_status.started(messenger)
        await trio.sleep_forever()


async def everywhere(fed: Fed, topic: bytes, entry_id: bytes, names: tuple[str, ...]) -> None:
    await wait_until(lambda: all(has_entry(fed.nodes[n], topic, entry_id) for n in names))


def by_id(m: Messenger, topic: bytes) -> dict[bytes, object]:
    return {x.id: x for x in m.messages(topic)}


async def test_a_person_reads_and_writes_from_any_device_and_survives_a_lost_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        fed = await build(nursery)
        m = fed.m
        topic = fed.room.topic
        assert m["p1"].person == m["p2"].person == PERSON
        assert m["b1"].person is None and m["a1"].person is None
        assert set(m["p2"].my_devices()) == {m["p1"].device, m["p2"].device}

        # b1 adds P's phone (p1) only: the person is the member, with every device
        room = await m["b1"].create_room_from(fed.room)
        assert set(room.members) == {m["b1"].device, m["p1"].device, m["p2"].device}
        assert room.members[m["p2"].device].person == PERSON
        await wait_until(lambda: all(any(r.topic == topic for r in m[n].rooms())
                                     for n in ("p1", "p2")))

        # the laptop (p2), never named in the room, writes; B sees it as P's, from p2
        hello = await m["p2"].send_text(topic, "Befund kommt")
        await everywhere(fed, topic, hello, ("b1", "p1"))
        seen = m["b1"].messages(topic)
        assert [x.id for x in seen] == [hello]
        assert seen[0].content == Text("Befund kommt")
        assert seen[0].author == m["p2"].device and seen[0].person == PERSON
        assert seen[0].org == ROOTS["a"].public_key
        assert by_id(m["p1"], topic)[hello] == seen[0]  # the other device reads it too

        # P loses p1: the org admin revokes it; the room is not lost for p2
        revocation = await m["a1"].revoke_device(m["p1"].device, "Telefon verloren")
        await wait_until(lambda: all(has_entry(fed.nodes[n], control_topic(
            ROOTS["a"].public_key), revocation) for n in ("p2", "b1")))
        assert set(m["p2"].my_devices()) == {m["p2"].device}
        after = await m["p2"].send_text(topic, "vom Laptop")  # rekeys away from p1
        await everywhere(fed, topic, after, ("b1", "p1"))
        epoch = m["b1"]._room_state(topic).view.current_epoch
        assert epoch is not None
        assert set(epoch.recipients) == {m["b1"].device, m["p2"].device}
        reply = await m["b1"].send_text(topic, "Danke")
        await everywhere(fed, topic, reply, ("p2", "p1"))
        p2_view = by_id(m["p2"], topic)
        assert p2_view[reply].content == Text("Danke")  # type: ignore[attr-defined]
        b1_view = by_id(m["b1"], topic)
        assert b1_view[after].content == Text("vom Laptop")  # type: ignore[attr-defined]
        assert b1_view[after].person == PERSON  # type: ignore[attr-defined]
        p1_view = by_id(m["p1"], topic)
        assert p1_view[hello].content == Text("Befund kommt")  # type: ignore[attr-defined]
        for eid in (after, reply):  # nothing sealed after the revocation opens on p1
            assert p1_view[eid].status is MessageStatus.UNDECRYPTABLE  # type: ignore[attr-defined]
        nursery.cancel_scope.cancel()


async def test_a_new_device_of_a_member_person_reads_what_is_sent_after_it_is_certified(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        fed = await build(nursery)
        m = fed.m
        topic = fed.room.topic
        await m["b1"].create_room_from(fed.room)
        await wait_until(lambda: any(r.topic == topic for r in m["p2"].rooms()))
        before = await m["b1"].send_text(topic, "vorher")
        await everywhere(fed, topic, before, ("p2", "p3"))

        # P gets a third device: the org admin publishes its certificate
        published = await m["a1"].publish_certificate(cert("p3"))
        await wait_until(lambda: all(has_entry(fed.nodes[n], control_topic(
            ROOTS["a"].public_key), published) for n in ("b1", "p3", "p2")))
        await wait_until(lambda: m["p3"].certificate() is not None)
        assert m["p3"].person == PERSON
        assert m["p3"].device in m["b1"].room(topic).members
        assert m["p3"].device in {r.topic: r for r in m["p3"].rooms()}[topic].members
        later = await m["b1"].send_text(topic, "nachher")  # MEMBERSHIP_CHANGED: rekeys
        await everywhere(fed, topic, later, ("p3", "p2"))
        p3_view = by_id(m["p3"], topic)
        assert p3_view[later].content == Text("nachher")  # type: ignore[attr-defined]
        # history from before the device was certified is not re-shared by itself
        assert p3_view[before].status is MessageStatus.UNDECRYPTABLE  # type: ignore[attr-defined]

        # ... until the person approves the new device from one they hold (p2). A share
        # written by anyone else (a1: same org, not the person) is ignored.
        ctrl = control_topic(ROOTS["a"].public_key)
        epochs = m["b1"]._room_state(topic).view.epochs
        forged_keys = {e.id: bytes(32) for e in epochs}
        forged = (await m["a1"].node.append(ctrl, compose_history_share(
            m["p3"].device, topic, forged_keys))).id
        with pytest.raises(UnknownDevice):
            await m["b1"].share_history(topic, m["p3"].device)  # not b1's person
        with pytest.raises(UnknownDevice):
            await m["p2"].share_history(topic, m["a1"].device)  # same org, not P
        share = await m["p2"].share_history(topic, m["p3"].device)
        assert share is not None
        await wait_until(lambda: all(has_entry(fed.nodes["p3"], ctrl, x)
                                     for x in (forged, share)))
        assert m["p3"].accept_invitations() == [] and m["p3"].accept_history_shares() == 0
        p3_view = by_id(m["p3"], topic)
        assert p3_view[before].content == Text("vorher")  # type: ignore[attr-defined]
        assert p3_view[later].content == Text("nachher")  # type: ignore[attr-defined]
        # the new device writes as P; its entries are accepted by everyone
        mine = await m["p3"].send_text(topic, "vom Tablet")
        await everywhere(fed, topic, mine, ("b1",))
        view = m["b1"]._room_state(topic).view
        assert mine in view.order and mine not in view.rejected
        assert by_id(m["b1"], topic)[mine].person == PERSON  # type: ignore[attr-defined]
        assert Rejection.NOT_MEMBER not in view.rejected.values()
        nursery.cancel_scope.cancel()


# ------------------------------------------------- a device certified after the person joined


def written(fed: Fed, name: str, topic: bytes) -> int:
    """How many entries device ``name`` wrote to ``topic`` (its own log height)."""
    head = fed.nodes[name].store.head(fed.m[name].device, topic)
    return 0 if head is None else head.header.seq


async def certify_p3(fed: Fed, names: tuple[str, ...]) -> None:
    published = await fed.m["a1"].publish_certificate(cert("p3"))
    ctrl = control_topic(ROOTS["a"].public_key)
    await wait_until(lambda: all(has_entry(fed.nodes[n], ctrl, published) for n in names))


async def test_a_device_certified_later_is_invited_by_the_persons_other_devices(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        fed = await build(nursery, watch=True, without_room=("p3",))
        m = fed.m
        topic = fed.room.topic
        ctrl = control_topic(ROOTS["a"].public_key)
        await m["b1"].create_room_from(fed.room)
        await wait_until(lambda: all(any(r.topic == topic for r in m[n].rooms())
                                     for n in ("p1", "p2")))
        before = await m["b1"].send_text(topic, "vorher")
        await everywhere(fed, topic, before, ("p1", "p2"))
        assert topic not in fed.nodes["p3"].topics
        counts = {n: written(fed, n, ctrl) for n in ("a1", "p1", "p2", "b1")}

        # P gets a tablet; nobody sends anything: P's other devices invite it
        await certify_p3(fed, ("p1", "p2", "p3"))
        await wait_until(lambda: topic in fed.nodes["p3"].topics)
        await wait_until(lambda: any(r.topic == topic for r in m["p3"].rooms()))
        await wait_until(lambda: written(fed, "p1", ctrl) + written(fed, "p2", ctrl)
                         > counts["p1"] + counts["p2"])
        await trio.sleep(5)  # let every watcher run again: nobody invites twice
        assert written(fed, "a1", ctrl) == counts["a1"] + 1  # the certificate only
        assert written(fed, "b1", ctrl) == counts["b1"]  # not the room admin: P's devices did
        for n in ("p1", "p2"):
            assert counts[n] <= written(fed, n, ctrl) <= counts[n] + 1

        # the next message rekeys to the tablet; the earlier one stays closed to it
        later = await m["b1"].send_text(topic, "nachher")
        await everywhere(fed, topic, later, ("p3",))
        p3_view = by_id(m["p3"], topic)
        assert p3_view[later].content == Text("nachher")  # type: ignore[attr-defined]
        assert p3_view[before].status is MessageStatus.UNDECRYPTABLE  # type: ignore[attr-defined]
        nursery.cancel_scope.cancel()


async def test_the_author_of_the_next_epoch_invites_a_later_device(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """No watcher runs (P's other devices are as good as offline): b1's next message
    opens an epoch sealed to the tablet, and b1 invites it."""
    async with trio.open_nursery() as nursery:
        fed = await build(nursery, without_room=("p3",))
        m = fed.m
        topic = fed.room.topic
        ctrl = control_topic(ROOTS["a"].public_key)
        await m["b1"].create_room_from(fed.room)
        before = await m["b1"].send_text(topic, "vorher")
        await certify_p3(fed, ("b1", "p1", "p2", "p3"))
        await wait_until(lambda: m["b1"].room(topic).inactive == frozenset())
        # the person has other active devices: they are the ones to invite, not b1
        assert await m["b1"].invite_new_devices() == []
        assert await m["a1"].invite_new_devices() == []  # not a member at all
        count = written(fed, "b1", ctrl)
        later = await m["b1"].send_text(topic, "nachher")
        assert written(fed, "b1", ctrl) == count + 1  # one invitation, to the tablet

        def p3_has_room() -> bool:
            m["p3"].accept_invitations()
            return topic in fed.nodes["p3"].topics

        await wait_until(p3_has_room)
        await everywhere(fed, topic, later, ("p3",))
        p3_view = by_id(m["p3"], topic)
        assert p3_view[later].content == Text("nachher")  # type: ignore[attr-defined]
        assert p3_view[before].status is MessageStatus.UNDECRYPTABLE  # type: ignore[attr-defined]
        # the tablet got its epoch: nobody else needs to invite it any more
        await everywhere(fed, topic, later, ("p1", "p2"))
        assert await m["p2"].invite_new_devices() == []
        await m["b1"].send_text(topic, "noch eine")  # no new recipient: no invitation
        assert written(fed, "b1", ctrl) == count + 1
        nursery.cancel_scope.cancel()


async def test_a_room_admin_invites_a_later_device_of_a_person_without_other_devices(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        fed = await build(nursery, without_room=("p3",))
        m = fed.m
        topic = fed.room.topic
        ctrl = control_topic(ROOTS["a"].public_key)
        await m["b1"].create_room_from(fed.room)
        before = await m["b1"].send_text(topic, "vorher")
        for n in ("p1", "p2"):  # P loses both devices
            revocation = await m["a1"].revoke_device(m[n].device, "verloren")
            await wait_until(lambda r=revocation: has_entry(fed.nodes["b1"], ctrl, r))
        await certify_p3(fed, ("b1", "p1", "p2", "p3"))
        await wait_until(lambda: m["p3"].certificate() is not None
                         and m["b1"].room(topic).members.keys() >= {m["p3"].device})
        assert await m["p1"].invite_new_devices() == []  # revoked: not active
        assert await m["b1"].invite_new_devices() == [(topic, m["p3"].device)]
        assert await m["b1"].invite_new_devices() == []  # once

        def p3_has_room() -> bool:
            m["p3"].accept_invitations()
            return topic in fed.nodes["p3"].topics

        await wait_until(p3_has_room)
        await everywhere(fed, topic, before, ("p3",))
        assert any(r.topic == topic for r in m["p3"].rooms())
        assert by_id(m["p3"], topic)[before].status is MessageStatus.UNDECRYPTABLE  # type: ignore[attr-defined]
        nursery.cancel_scope.cancel()


def test_api_views_carry_the_person_as_hex_or_null() -> None:
    import jsonschema

    from p2pmsg.api import openapi_document
    from p2pmsg.api.views import message_view, room_view
    from p2pmsg.messaging import Message, RoomKind, RoomRole
    from p2pmsg.messaging.room import Member
    from p2pmsg.messenger import Room

    doc = openapi_document()
    schemas = doc["components"]["schemas"]

    def check(name: str, value: object) -> None:
        schema = {**schemas[name], "components": doc["components"]}
        jsonschema.Draft202012Validator(schema).validate(value)  # refs: "#/components/..."

    org, dev, other = bytes(32), b"\x01" * 32, b"\x02" * 32
    mine = Message(b"\x03" * 32, dev, org, 5 << 16, MessageStatus.OK, Text("x"), person=PERSON)
    plain = Message(b"\x04" * 32, other, org, 6 << 16, MessageStatus.OK, Text("y"))
    assert message_view(mine)["person"] == PERSON.hex()
    assert message_view(plain)["person"] is None
    check("Message", message_view(mine))
    check("Message", message_view(plain))
    room = Room(b"\x05" * 32, RoomKind.GROUP, dev,
                {dev: Member(dev, org, RoomRole.ADMIN, b"\x06" * 32, PERSON),
                 other: Member(other, org, RoomRole.MEMBER, b"\x06" * 32)}, 0, True)
    view = room_view(room, True)
    assert [m["person"] for m in view["members"]] == [PERSON.hex(), None]
    check("Room", view)


# --------------------------------------------------------------------------- history shares


def test_history_share_round_trip_and_only_the_recipient_opens_it() -> None:
    from p2pmsg.messenger.history import open_history_share

    new, other = ident("share-new"), ident("share-other")
    topic = bytes(range(32))
    keys = {bytes([i]) * 32: bytes([i + 100]) * 32 for i in range(3)}
    payload = compose_history_share(new.public_key, topic, keys)
    assert open_history_share(new, payload) == (topic, keys)
    assert open_history_share(other, payload) is None
    for secret in (*keys.values(), topic):  # nothing readable in the clear
        assert secret not in payload
    for bad_args in ((new.public_key, topic[:31], keys), (new.public_key, topic, {}),
                     (new.public_key, topic, {b"x": bytes(32)}),
                     (new.public_key, topic, {bytes(32): b"short"})):
        with pytest.raises(ValueError):
            compose_history_share(*bad_args)


@given(st.binary(max_size=300))
@settings(max_examples=200)
def test_history_share_garbage_is_never_an_error(data: bytes) -> None:
    from p2pmsg import _cbor
    from p2pmsg.messenger.history import HISTORY_TAG, open_history_share

    me = ident("share-new")
    assert open_history_share(me, data) is None
    assert open_history_share(me, _cbor.dumps([HISTORY_TAG, data])) is None


@given(st.recursive(st.none() | st.integers() | st.binary(max_size=40) | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=4), max_leaves=12))
@settings(max_examples=200)
def test_history_share_with_a_malformed_sealed_body_is_ignored(body: object) -> None:
    import nacl.public

    from p2pmsg import _cbor
    from p2pmsg.messaging.crypto import curve25519_public
    from p2pmsg.messenger.history import HISTORY_TAG, open_history_share

    me = ident("share-new")
    box = nacl.public.SealedBox(nacl.public.PublicKey(curve25519_public(me.public_key)))
    sealed = bytes(box.encrypt(_cbor.dumps(body)))
    result = open_history_share(me, _cbor.dumps([HISTORY_TAG, sealed]))
    assert result is None or (len(result[0]) == 32 and all(
        len(e) == len(k) == 32 for e, k in result[1].items()))
