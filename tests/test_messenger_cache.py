"""The messenger's caches (room states, org states, decrypted contents, timelines)
follow the store: entries and payloads written by anyone, erasures, and give what a
fresh resolution from the store gives."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio
import trio.testing

from p2pmsg import Identity, MemoryStore, NodeConfig, Role, issue_certificate, open_node
from p2pmsg.messaging import (
    Message,
    MessageStatus,
    RoomKind,
    RoomState,
    Text,
    decrypt_timeline,
)
from p2pmsg.messenger import (
    MemoryKeyring,
    Messenger,
    messenger_topics,
    open_messenger,
    org_control_items,
)
from p2pmsg.node import Node
from p2pmsg.store import SqliteStore
from p2pmsg.store.base import PayloadState

T0 = 1_700_000_000_000


@dataclass
class Setup:
    org: Identity
    other: Identity
    me: Identity
    peer: Identity

    def store(self) -> MemoryStore:
        """A store holding both organisations' control topics (certificates)."""
        store = MemoryStore()
        for root, device in [(self.org, self.me), (self.other, self.peer)]:
            cert = issue_certificate(root, device.public_key, Role.ADMIN, "d", 0, 2**50)
            items = org_control_items(root, [cert], start_ms=T0 - 1000)
            store.append([e for e, _ in items], {e.id: p for e, p in items})
        return store

    def config(self, store: MemoryStore | SqliteStore) -> NodeConfig:
        return NodeConfig(identity=self.me, store=store,
                          topics=messenger_topics([self.org.public_key, self.other.public_key]),
                          wall_clock=lambda: T0 + int(trio.current_time() * 1000))

    def messenger(self, node: Node) -> Messenger:
        return Messenger(node, self.org.public_key, orgs=[self.other.public_key])


def _setup() -> Setup:
    return Setup(Identity.generate(), Identity.generate(), Identity.generate(),
                 Identity.generate())


@asynccontextmanager
async def _room(s: Setup) -> AsyncIterator[tuple[Node, Messenger, bytes]]:
    async with open_node(s.config(s.store())) as node:
        m = s.messenger(node)
        await m.wait_certified([s.peer.public_key])
        room = await m.create_room([s.peer.public_key], kind=RoomKind.GROUP)
        yield node, m, room.topic


def _fresh(m: Messenger, topic: bytes) -> list[Message]:
    """The messages resolved and decrypted from scratch, as before any cache (with
    the erased edits and reactions the store links to their messages folded)."""
    state = RoomState(topic, {o: s for o, s in m.org_states().items()})
    state.apply([(e, m.node.payload(e)) for e in m.node.read(topic)])
    return list(decrypt_timeline(state.view, m.identity,
                                 folded=m.node.store.folded(topic)).messages)


async def test_an_erased_payload_drops_its_cached_plaintext(
        autojump_clock: trio.testing.MockClock) -> None:
    s = _setup()
    async with _room(s) as (node, m, topic):
        first = await m.send_text(topic, "Befund: vertraulich")
        await m.send_text(topic, "zwei")
        assert [x.status for x in m.messages(topic)] == [MessageStatus.OK] * 2
        assert node.store.erase_payload(first)  # as retention or an erasure does
        shown = {x.id: x for x in m.messages(topic)}
        assert shown[first].status is MessageStatus.UNAVAILABLE and shown[first].content is None
        # the plaintext is gone from the messenger's memory too, not only from the view
        assert all(first not in c.contents for c in m._room_cache.values())
        assert m.messages(topic) == _fresh(m, topic)


async def test_entries_written_by_another_writer_are_picked_up(
        autojump_clock: trio.testing.MockClock) -> None:
    s = _setup()
    async with _room(s) as (node, m, topic):
        await m.send_text(topic, "eins")
        assert len(m.messages(topic)) == 1
        other = s.messenger(node)  # another messenger on the node: not this one's writes
        await other.send_text(topic, "zwei")
        await other.remove_member(topic, s.peer.public_key)
        await other.send_text(topic, "drei")  # rekeys away from the peer
        assert [x.content for x in m.messages(topic)] == [Text("eins"), Text("zwei"),
                                                          Text("drei")]
        assert s.peer.public_key not in m.room(topic).members
        assert m.room(topic).epoch == 1
        assert m.messages(topic) == _fresh(m, topic)


async def test_a_payload_arriving_later_is_shown(
        autojump_clock: trio.testing.MockClock) -> None:
    s = _setup()
    async with _room(s) as (node, m, topic):
        await m.send_text(topic, "eins")
        late = await m.send_text(topic, "zwei")
        entries = node.read(topic)
        payloads = {e.id: p for e in entries if (p := node.payload(e)) is not None}
        late_payload = payloads.pop(late)
        # the same device's second node: the room arrived without one payload
        store = s.store()
        store.append(entries, payloads)
        async with open_node(s.config(store)) as node2:
            m2 = s.messenger(node2)
            shown = {x.id: x for x in m2.messages(topic)}
            assert shown[late].status is MessageStatus.UNAVAILABLE
            assert store.put_payload(late, late_payload)
            shown = {x.id: x for x in m2.messages(topic)}
            assert shown[late].content == Text("zwei")
            assert m2.messages(topic) == _fresh(m2, topic)


async def test_live_yields_changed_messages_as_new_objects(
        autojump_clock: trio.testing.MockClock) -> None:
    s = _setup()
    async with _room(s) as (_node, m, topic), trio.open_nursery() as nursery:
        got: list[Message] = []

        async def follow() -> None:
            async for msg in m.live(topic):
                got.append(msg)

        nursery.start_soon(follow)
        await trio.sleep(1)
        first = await m.send_text(topic, "eins")
        await trio.sleep(1)
        await m.send_text(topic, "zwei")
        await m.react(topic, first, "+1")
        edit = await m.send_edit(topic, first, "eins!")
        await trio.sleep(1)
        assert (got[0].id, got[0].content) == (first, Text("eins"))
        assert got[0].reactions == {} and not got[0].edited  # yielded earlier: unchanged
        last = {x.id: x for x in got}
        assert last[first].content == Text("eins!") and last[first].reactions == {
            "+1": [s.me.public_key]}
        assert m.messages(topic) == _fresh(m, topic)
        await m.redact(topic, first)
        await trio.sleep(1)
        assert [x for x in got if x.id == first][-1].status is MessageStatus.REDACTED
        assert m.messages(topic) == _fresh(m, topic)
        assert edit not in {x.id for x in m.messages(topic)} | {x.id for x in got}
        nursery.cancel_scope.cancel()


async def test_the_watcher_still_erases_an_edit_written_after_the_redaction(
        autojump_clock: trio.testing.MockClock) -> None:
    """Redactions are re-planned only when new entries could change the plan (a
    redaction or an edit): a later edit of a redacted message is still erased."""
    s = _setup()
    async with open_node(s.config(s.store())) as node, \
            open_messenger(node, s.org.public_key, orgs=[s.other.public_key]) as m:
        await m.wait_certified([s.peer.public_key])
        topic = (await m.create_room([s.peer.public_key], kind=RoomKind.GROUP)).topic
        first = await m.send_text(topic, "Befund")
        await m.redact(topic, first)
        assert node.store.get_payload(first) is PayloadState.ERASED
        for i in range(3):  # unrelated traffic: nothing to plan again
            await m.send_text(topic, f"weiter {i}")
            await trio.sleep(0.1)
        late = await m.send_edit(topic, first, "Befund (korrigiert)")
        assert isinstance(node.store.get_payload(late), bytes)
        await trio.sleep(0.1)  # the watcher runs after the new entry
        assert node.store.get_payload(late) is PayloadState.ERASED
        assert m.messages(topic) == _fresh(m, topic)


async def test_erased_edits_stay_folded_after_a_restart(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    """Reported bug: a redaction erased the message's edit (and a redacted
    reaction), the timeline folded them into their messages only as long as the
    messenger ran; after a restart they came back as extra UNAVAILABLE messages.
    The store now keeps the links with the erasure: a new messenger (and a new
    node) over the same SqliteStore file lists exactly what the old one did."""
    s = _setup()
    path = tmp_path / "node.db"
    keyring = MemoryKeyring()  # the device's keys outlive the restart (as its keyfile)
    with SqliteStore(path) as store:
        seed = s.store()  # both organisations' certificates, copied into the file
        for topic in seed.topics():
            for head in seed.heads(topic):
                entries = seed.get_range(head.author, topic, 1, head.seq)
                store.append(entries, {e.id: p for e in entries
                                       if isinstance(p := seed.get_payload(e.id), bytes)})
        async with open_node(s.config(store)) as node:
            m = Messenger(node, s.org.public_key, orgs=[s.other.public_key], keyring=keyring)
            await m.wait_certified([s.peer.public_key])
            topic = (await m.create_room([s.peer.public_key], kind=RoomKind.GROUP)).topic
            first = await m.send_text(topic, "Befund")
            edit = await m.send_edit(topic, first, "Befund (korrigiert)")
            second = await m.send_text(topic, "zwei")
            react = await m.react(topic, second, "+1")
            await m.redact(topic, first)   # erases first and its edit
            await m.redact(topic, react)   # a reaction named directly (clear path)
            for eid in (first, edit, react):
                assert store.get_payload(eid) is PayloadState.ERASED
            assert store.folded(topic) == {edit: first, react: second}
            before = m.messages(topic)
            assert [x.id for x in before] == [first, second]
            assert before[0].status is MessageStatus.REDACTED
            assert before[1].reactions == {}
            assert before == _fresh(m, topic)
    with SqliteStore(path) as store:  # the restart: a new node and messenger
        async with open_node(s.config(store)) as node:
            again = Messenger(node, s.org.public_key, orgs=[s.other.public_key],
                              keyring=keyring)
            after = again.messages(topic)
            assert [x.id for x in after] == [first, second]  # no extra UNAVAILABLE entry
            assert all(x.status is not MessageStatus.UNAVAILABLE for x in after)
            assert after == before
            assert again.apply_redactions(topic) == []  # nothing left to erase
            assert again.messages(topic) == before
