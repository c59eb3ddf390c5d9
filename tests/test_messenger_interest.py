"""Rooms created after every node is open reach members of other orgs: the creator
adds the room to its node's interest in-protocol and invites the members through
their org's control topic (virtual time, memory transport, direct links)."""

from __future__ import annotations

import os

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pmsg._cbor import dumps
from p2pmsg.certs import Role, issue_certificate
from p2pmsg.identity import Identity
from p2pmsg.messaging import MemberSpec, control_topic
from p2pmsg.messaging.crypto import seal_bytes
from p2pmsg.messenger import messenger_topics, open_messenger, org_control_items
from p2pmsg.messenger.invitations import (
    INVITATION_TAG,
    INVITATION_TAG_V2,
    Invitation,
    compose_invitation,
    open_invitation,
)
from p2pmsg.net.base import PeerHint
from p2pmsg.net.memory import LinkConditions, MemoryNetwork
from p2pmsg.node import NodeConfig, open_node
from p2pmsg.policy import AllowAllPolicy
from p2pmsg.store.memory import MemoryStore

T0 = 1_700_000_000_000


def _wall() -> int:
    return T0 + int(trio.current_time() * 1000)


def test_invitation_opens_only_for_its_device() -> None:
    me, other = Identity.generate(), Identity.generate()
    topic = os.urandom(32)
    payload = compose_invitation(me.public_key, topic)
    assert open_invitation(me, payload) == Invitation(topic)
    assert open_invitation(other, payload) is None
    for garbage in (b"", b"\x80", payload[:-1], os.urandom(64)):
        assert open_invitation(me, garbage) is None
    # v2 names the organisations taking part (members', relays'), sorted, unique
    orgs = (b"\x02" * 32, b"\x01" * 32, b"\x02" * 32)
    v2 = compose_invitation(me.public_key, topic, orgs)
    assert open_invitation(me, v2) == Invitation(topic, (b"\x01" * 32, b"\x02" * 32))
    assert open_invitation(other, v2) is None
    for bad in ((b"\x01" * 31,), tuple(os.urandom(32) for _ in range(65))):
        with pytest.raises(ValueError):
            compose_invitation(me.public_key, topic, bad)


@settings(max_examples=200)
@given(st.binary(max_size=600))
def test_invitation_decoder_never_raises_on_garbage(data: bytes) -> None:
    me = Identity.from_seed(b"\x01" * 32)
    assert open_invitation(me, data) is None
    sealed = seal_bytes(me.public_key, data)  # opens, but the body is garbage
    for tag in (INVITATION_TAG, INVITATION_TAG_V2):
        result = open_invitation(me, dumps([tag, sealed]))
        assert result is None or (len(result.topic) == 32 and all(
            len(o) == 32 for o in result.orgs))


async def test_room_created_after_open_reaches_a_member_of_another_org(
    autojump_clock: trio.testing.MockClock,
) -> None:
    clinic, lab = Identity.generate(), Identity.generate()
    a_id, b_id = Identity.generate(), Identity.generate()
    net = MemoryNetwork(LinkConditions(latency=0.02))
    # The nodes know only the two control topics at open: no room is planned.
    topics = messenger_topics([clinic.public_key, lab.public_key])

    def config(me: Identity, root: Identity, name: str, peers: list[PeerHint]) -> NodeConfig:
        store = MemoryStore()
        cert = issue_certificate(root, me.public_key, Role.MEMBER, name, 0, 2**50)
        items = org_control_items(root, [cert], start_ms=T0 - 1000)
        store.append([e for e, _ in items], {e.id: p for e, p in items})
        return NodeConfig(identity=me, store=store, topics=topics, policy=AllowAllPolicy(),
                          transports=[net.transport(name, me.public_key)], peers=peers,
                          wall_clock=_wall, name=name, reconnect_initial=0.1)

    async with open_node(config(b_id, lab, "b", [])) as b_node, \
            open_messenger(b_node, lab.public_key, orgs=[clinic.public_key]) as bm, \
            open_node(config(a_id, clinic, "a", [PeerHint(b_id.public_key, "memory://b")])
                      ) as a_node, \
            open_messenger(a_node, clinic.public_key, orgs=[lab.public_key]) as am:
        with trio.fail_after(60):
            await am.wait_certified([b_id.public_key])
            await bm.wait_certified([a_id.public_key])
        opened = a_node.statistics().sessions_opened
        room = await am.create_room([MemberSpec(b_id.public_key, lab.public_key)])
        assert room.topic in a_node.topics and am.missing_topics() == []
        assert room.topic not in b_node.topics
        msg = await am.send_text(room, "Befund liegt vor")
        with trio.fail_after(60):
            while not any(r.topic == room.topic for r in bm.rooms()):
                await trio.sleep(0.1)
            while not bm.messages(room.topic):
                await trio.sleep(0.1)
        assert room.topic in b_node.topics  # learned from the invitation
        (got,) = bm.messages(room.topic)
        assert got.id == msg and got.content.text == "Befund liegt vor"  # type: ignore[union-attr]
        # B answers; A gets it (B's node now asks A and serves it back: mutual)
        answer = await bm.send_text(room.topic, "danke")
        with trio.fail_after(60):
            while answer not in {m.id for m in am.messages(room)}:
                await trio.sleep(0.1)
        # all of it over the sessions opened before the room existed
        assert a_node.statistics().sessions_opened == opened
        assert b_node.statistics().sessions_reopened == 0
        # the invitation is in the lab's control topic and changes nothing there
        ctrl = control_topic(lab.public_key)
        assert any(e.author == a_id.public_key for e in b_node.read(ctrl))
        assert set(bm.org_states()[lab.public_key].active_devices(_wall())) == {b_id.public_key}


async def test_governed_nodes_replicate_a_room_created_after_open(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Both nodes enforce the signed federation list (GovernancePolicy), no room
    exists at open, and no certificate was exchanged out of band: the control topics
    replicate (every listed org may read them), the invitee's policy expects the room
    from the invitation, and the room flows both ways over the open session."""
    from p2pmsg.governance import GovernancePolicy
    from p2pmsg.governance.federation import (
        FederationRegistry,
        Organisation,
        OrgKind,
        issue_federation_list,
    )

    clinic, lab, issuer = Identity.generate(), Identity.generate(), Identity.generate()
    a_id, b_id = Identity.generate(), Identity.generate()
    net = MemoryNetwork(LinkConditions(latency=0.02))
    topics = messenger_topics([clinic.public_key, lab.public_key])
    flist = issue_federation_list(issuer, 1, T0, [
        Organisation(clinic.public_key, "clinic", OrgKind.HOSPITAL, (a_id.public_key,)),
        Organisation(lab.public_key, "lab", OrgKind.HOSPITAL, (b_id.public_key,))])

    def config(me: Identity, root: Identity, name: str, peers: list[PeerHint]) -> NodeConfig:
        store = MemoryStore()  # only its own org's certificate
        cert = issue_certificate(root, me.public_key, Role.MEMBER, name, 0, 2**50)
        items = org_control_items(root, [cert], start_ms=T0 - 1000)
        store.append([e for e, _ in items], {e.id: p for e, p in items})
        policy = GovernancePolicy(FederationRegistry(issuer.public_key, flist.raw, now_ms=T0),
                                  clock=_wall)
        return NodeConfig(identity=me, store=store, topics=topics, policy=policy,
                          transports=[net.transport(name, me.public_key)], peers=peers,
                          wall_clock=_wall, name=name, reconnect_initial=0.1)

    async with open_node(config(b_id, lab, "b", [])) as b_node, \
            open_messenger(b_node, lab.public_key, orgs=[clinic.public_key]) as bm, \
            open_node(config(a_id, clinic, "a", [PeerHint(b_id.public_key, "memory://b")])
                      ) as a_node, \
            open_messenger(a_node, clinic.public_key, orgs=[lab.public_key]) as am:
        assert isinstance(b_node.policy, GovernancePolicy) and bm.governance is b_node.policy
        with trio.fail_after(60):
            await am.wait_certified([b_id.public_key])
            await bm.wait_certified([a_id.public_key])
        opened = a_node.statistics().sessions_opened
        room = await am.create_room([MemberSpec(b_id.public_key, lab.public_key)])
        msg = await am.send_text(room, "Befund liegt vor")
        with trio.fail_after(60):
            while not any(r.topic == room.topic for r in bm.rooms()):
                await trio.sleep(0.1)
            while not bm.messages(room.topic):
                await trio.sleep(0.1)
        (got,) = bm.messages(room.topic)
        assert got.id == msg
        assert bm.governance.room_orgs(room.topic) == {clinic.public_key, lab.public_key}
        answer = await bm.send_text(room.topic, "danke")
        with trio.fail_after(60):
            while answer not in {m.id for m in am.messages(room)}:
                await trio.sleep(0.1)
        assert a_node.statistics().sessions_opened == opened
        assert a_node.statistics().sessions_revoked == b_node.statistics().sessions_revoked == 0
