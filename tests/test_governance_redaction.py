"""Redaction enforcement: member nodes erase what a valid redaction removed.

Pure planner (``plan_redactions``) + executor (``erase_redactions``) on one
SqliteStore per member (no byte of the target or its edits left in the db/WAL; every
log still verifies; the timeline shows the tombstone), and the Messenger wiring
end to end: nodes with SqliteStore and BlobStore, synced over a memory network,
enforcing automatically under ``open_messenger``.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import trio
import trio.testing
from governance_helpers import Clinic
from node_helpers import wait_until, wall

from p2pmsg.blobs import BlobStore
from p2pmsg.certs import Role, issue_certificate
from p2pmsg.entry import Entry
from p2pmsg.governance.audit import AuditKind, AuditLog
from p2pmsg.governance.redaction import enforce_redactions, erase_redactions
from p2pmsg.governance.retention import iter_entries
from p2pmsg.identity import Identity
from p2pmsg.messaging import (
    Content,
    Edit,
    MemberSpec,
    MessageStatus,
    Reaction,
    Redaction,
    RoomState,
    Text,
    compose_message,
    decrypt_timeline,
)
from p2pmsg.messaging.redaction import folded_entries, plan_redactions
from p2pmsg.messaging.timeline import open_epoch_keys
from p2pmsg.messenger import (
    Messenger,
    messenger_topics,
    open_messenger,
    org_control_items,
    plan_room,
)
from p2pmsg.net.base import PeerHint
from p2pmsg.net.memory import MemoryNetwork
from p2pmsg.node import Node, NodeConfig, serve_node
from p2pmsg.policy import AllowAllPolicy
from p2pmsg.store.base import PayloadState, Store
from p2pmsg.store.sqlite import SqliteStore
from p2pmsg.validate import verify_run

NODE = Identity.from_seed(b"\x0a" * 32)


def on_disk(path: Path) -> bytes:
    wal = Path(str(path) + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def send(c: Clinic, who: Identity, content: Content) -> Entry:
    w = c.world
    w.tick()
    state = w.room(c.topic)
    return w.append(who, c.topic, compose_message(
        state, who, content, seq=w.next_seq(who, c.topic), now_ms=w.now_ms))


def room_of(store: Store, c: Clinic) -> RoomState:
    items = []
    for entry in iter_entries(store, [c.topic]):
        payload = store.get_payload(entry.id)
        items.append((entry, payload if isinstance(payload, bytes) else None))
    room = RoomState(c.topic, c.world.org_states())
    room.apply(items)
    return room


def all_logs_verify(store: Store) -> None:
    for topic in store.topics():
        for head in store.heads(topic):
            verify_run(None, store.get_range(head.author, topic, 1, head.seq), full=True)


def enforce(store: Store, c: Clinic, member: Identity, audit: AuditLog | None = None,
            ) -> list[bytes]:
    view = room_of(store, c).view
    results = erase_redactions(store, plan_redactions(view, open_epoch_keys(view, member)),
                               audit=audit, now_ms=5)
    return sorted(eid for r in results for eid in r.erased)


def test_author_and_admin_redactions_erase_on_every_member_node(tmp_path: Path) -> None:
    c = Clinic()
    own = c.say(c.bob, "MARKER-bob-own-3b1e")
    edit = send(c, c.bob, Edit(own.id, "MARKER-bob-edit-77aa"))
    react = send(c, c.bert, Reaction(own.id, "ok"))
    other = c.say(c.bob, "MARKER-bob-admin-target-c0de")
    keep = c.say(c.bert, "bert stays")
    by_author = send(c, c.bob, Redaction(own.id))          # the author
    by_admin = send(c, c.alice, Redaction(other.id, "wrong patient"))  # alice: room admin
    gone = [c.payload(own), c.payload(edit), c.payload(other)]

    for member in (c.alice, c.bob, c.bert):
        db = tmp_path / f"{member.public_key.hex()[:8]}.db"
        audit = AuditLog(tmp_path / f"audit-{member.public_key.hex()[:8]}.db", NODE)
        with SqliteStore(db) as store:
            c.load(store)
            before = on_disk(db)
            assert all(p[-40:] in before for p in gone)

            assert enforce(store, c, member, audit) == sorted([own.id, edit.id, other.id])

            blob = on_disk(db)
            for p in gone:
                assert p[-40:] not in blob and p[:60] not in blob
            for eid in (own.id, edit.id, other.id):
                assert store.get_payload(eid) is PayloadState.ERASED
            for kept in (react, keep, by_author, by_admin):  # others' content, the evidence
                assert isinstance(store.get_payload(kept.id), bytes)
            all_logs_verify(store)
            store.integrity_check()

            shown = {m.id: m for m in decrypt_timeline(room_of(store, c), member).messages}
            assert shown[own.id].status is MessageStatus.REDACTED
            assert shown[own.id].redacted_by == c.bob.public_key
            assert shown[other.id].status is MessageStatus.REDACTED
            assert shown[other.id].redacted_by == c.alice.public_key
            assert shown[keep.id].content == Text("bert stays")
            assert enforce(store, c, member) == []  # idempotent: nothing left to erase

        records = audit.query(kinds=[AuditKind.REDACTION])
        assert {(r.details["redaction"], r.details["target"], r.details["redactor"])
                for r in records} == {
            (by_author.id.hex(), own.id.hex(), c.bob.public_key.hex()),
            (by_admin.id.hex(), other.id.hex(), c.alice.public_key.hex())}
        assert sum(int(str(r.details["erased"])) for r in records) == 3
        assert all("MARKER" not in str(r.details) for r in records)
        assert audit.verify() == 2
        audit.close()


def test_erased_edits_and_reactions_stay_folded_into_their_messages(tmp_path: Path) -> None:
    """Reproduces a reported bug: once a redaction erased an edit's payload, the
    timeline listed the edit as an extra UNAVAILABLE message. The plan names what it
    erases that is no message (``folded``) and the timeline leaves those out, so the
    room lists the same messages before and after enforcement."""
    c = Clinic()
    own = c.say(c.bob, "MARKER-bob-own-3b1e")
    edit = send(c, c.bob, Edit(own.id, "MARKER-bob-edit-77aa"))
    keep = c.say(c.bert, "bert stays")
    react = send(c, c.bert, Reaction(keep.id, "ok"))
    send(c, c.bob, Redaction(own.id))                    # the author: erases own + edit
    send(c, c.alice, Redaction(react.id, "falsch"))      # v2 clear path: the reaction
    for member in (c.alice, c.bob, c.bert):
        db = tmp_path / f"{member.public_key.hex()[:8]}.db"
        with SqliteStore(db) as store:
            c.load(store)
            view = room_of(store, c).view
            keys = open_epoch_keys(view, member)
            plan = plan_redactions(view, keys)
            assert {t.target: t.folded for t in plan} == {
                own.id: ((edit.id, own.id),), react.id: ((react.id, keep.id),)}
            folded = folded_entries(plan)
            listed = [m.id for m in decrypt_timeline(view, member, keys).messages]
            assert listed == [own.id, keep.id]
            assert store.folded(c.topic) == {}
            erase_redactions(store, plan)
            assert store.get_payload(edit.id) is PayloadState.ERASED
            # the store keeps the links with the erasure (the messenger reads them)
            assert store.folded(c.topic) == folded == {edit.id: own.id, react.id: keep.id}
            after = room_of(store, c).view
            # without the names the erased edit and reaction look like lost messages
            bare = [m.id for m in decrypt_timeline(after, member, keys).messages]
            assert edit.id in bare and react.id in bare
            shown = decrypt_timeline(after, member, keys, folded=folded)
            assert [m.id for m in shown.messages] == listed
            assert shown.by_id[own.id].status is MessageStatus.REDACTED
            assert shown.by_id[keep.id].content == Text("bert stays")
            # planning again names nothing new, and the fold is the same every time
            assert folded_entries(plan_redactions(after, keys)) == {}
        with SqliteStore(db) as store:  # a restart: the links were kept on disk
            after = room_of(store, c).view
            assert store.folded(c.topic) == folded
            shown = decrypt_timeline(after, member, keys, folded=store.folded(c.topic))
            assert [m.id for m in shown.messages] == listed
            assert erase_redactions(store, plan_redactions(after, keys)) == []


def test_links_are_recorded_by_members_not_by_relays(tmp_path: Path) -> None:
    """``enforce_redactions`` (the daemon's path) records the same links as the
    messenger where it holds the keys; a relay erases the named target from the
    clear refs but cannot tell an edit or a reaction apart, so it links nothing."""
    c = Clinic()
    own = c.say(c.bob, "MARKER-bob-own-3b1e")
    edit = send(c, c.bob, Edit(own.id, "MARKER-bob-edit-77aa"))
    keep = c.say(c.bert, "bert stays")
    react = send(c, c.bert, Reaction(keep.id, "ok"))
    send(c, c.bob, Redaction(own.id))
    send(c, c.alice, Redaction(react.id, "falsch"))
    with SqliteStore(tmp_path / "member.db") as member, \
            SqliteStore(tmp_path / "relay.db") as relay:
        for store in (member, relay):
            c.load(store)
        view = room_of(member, c).view
        keys = open_epoch_keys(view, c.bert)
        done = enforce_redactions(member, [view], keys=keys)
        assert sorted(e for r in done for e in r.erased) == sorted([own.id, edit.id, react.id])
        assert member.folded(c.topic) == {edit.id: own.id, react.id: keep.id}
        done = enforce_redactions(relay, [room_of(relay, c).view])
        assert sorted(e for r in done for e in r.erased) == sorted([own.id, react.id])
        assert relay.get_payload(react.id) is PayloadState.ERASED
        assert isinstance(relay.get_payload(edit.id), bytes)  # sealed: unknown as an edit
        assert relay.folded(c.topic) == {}


def test_redaction_by_non_admin_non_author_erases_nothing(tmp_path: Path) -> None:
    c = Clinic()
    target = c.say(c.alice, "MARKER-alice-9e9e")
    forged = send(c, c.bert, Redaction(target.id))  # bert: member, not the author
    with SqliteStore(tmp_path / "s.db") as store:
        c.load(store)
        view = room_of(store, c).view
        assert plan_redactions(view, open_epoch_keys(view, c.alice)) == []
        assert enforce(store, c, c.alice) == []
        assert store.get_payload(target.id) == c.payload(target)
        shown = {m.id: m for m in decrypt_timeline(room_of(store, c), c.bob).messages}
        assert shown[target.id].content == Text("MARKER-alice-9e9e")
        assert forged.id not in shown


def test_relay_without_keys_plans_what_a_member_plans() -> None:
    c = Clinic()
    target = c.say(c.alice, "x")
    send(c, c.alice, Redaction(target.id))
    view = c.world.room(c.topic).view
    stones = plan_redactions(view, open_epoch_keys(view, c.bert))
    assert [(s.target, s.redactor, s.erase) for s in stones] == [
        (target.id, c.alice.public_key, (target.id,))]
    assert plan_redactions(view, {}) == stones  # SEALED v2: the clear refs suffice


def test_redaction_of_already_purged_target_is_still_a_tombstone() -> None:
    c = Clinic()
    target = c.say(c.alice, "x")
    redaction = send(c, c.alice, Redaction(target.id))
    items = [(e, None if e.id == target.id else p)
             for e, p in c.world.topics[c.topic]]
    room = RoomState(c.topic, c.world.org_states())
    room.apply(items)
    (stone,) = plan_redactions(room.view, open_epoch_keys(room.view, c.bob))
    assert stone.redaction == redaction.id and stone.erase == () and stone.blobs == ()


# -- end to end through the Messenger -------------------------------------------------

T0 = 1_700_000_000_000
DEVICES = ("a1", "a2", "b1")


def ident(name: str) -> Identity:
    return Identity.from_seed(hashlib.blake2b(b"redaction-e2e/" + name.encode(),
                                             digest_size=32).digest())




@asynccontextmanager
async def federation(tmp_path: Path) -> AsyncIterator[tuple[dict[str, Messenger],
                                                            dict[str, Path], bytes]]:
    """a1 (org a, room creator/admin), a2 (org a), b1 (org b); all SqliteStore +
    BlobStore; a2 and b1 dial a1. Messengers run under open_messenger."""
    net = MemoryNetwork(seed=3)
    roots = {o: ident("root-" + o) for o in "ab"}
    org_ids = [r.public_key for r in roots.values()]
    members = [MemberSpec(ident(n).public_key, roots[n[0]].public_key) for n in ("a2", "b1")]
    plan = plan_room(ident("a1"), roots["a"].public_key, members, created_ms=T0)
    topics = messenger_topics(org_ids, [plan.topic])
    dbs = {n: tmp_path / f"{n}.db" for n in DEVICES}
    async with (AsyncExitStack() as stack, trio.open_nursery() as nursery,
                AsyncExitStack() as inner):
        m: dict[str, Messenger] = {}
        for name in DEVICES:
            store = stack.enter_context(SqliteStore(dbs[name]))
            if name.endswith("1"):
                certs = [issue_certificate(roots[name[0]], ident(d).public_key,
                                           Role.ADMIN if d.endswith("1") else Role.MEMBER,
                                           d, 0, 2**50) for d in DEVICES if d[0] == name[0]]
                items = org_control_items(roots[name[0]], certs, start_ms=T0 - 10_000)
                store.append([e for e, _ in items], {e.id: p for e, p in items})
            identity = ident(name)
            cfg = NodeConfig(
                identity=identity, store=store, topics=topics, policy=AllowAllPolicy(),
                transports=[net.transport(name, identity.public_key)],
                peers=[] if name == "a1" else [PeerHint(ident("a1").public_key,
                                                        "memory://a1")],
                wall_clock=wall, reconnect_initial=0.1, reconnect_max=1.0, seed=1, name=name,
                blob_store=BlobStore(tmp_path / f"blobs-{name}", durable=False))
            node: Node = await nursery.start(serve_node, cfg)
            m[name] = await inner.enter_async_context(
                open_messenger(node, roots[name[0]].public_key, orgs=org_ids))
        await wait_until(lambda: all(x.certificate() is not None for x in m.values()))
        await m["a1"].wait_certified([ident(n).public_key for n in ("a2", "b1")])
        await m["a1"].create_room_from(plan)
        await wait_until(lambda: all(x.room(plan.topic).joined for x in m.values()
                                     if plan.topic in x.node.store.topics()))
        yield m, dbs, plan.topic
        nursery.cancel_scope.cancel()


def payload_everywhere(m: dict[str, Messenger], eid: bytes) -> bool:
    return all(isinstance(x.node.store.get_payload(eid), bytes) for x in m.values())


def erased_everywhere(m: dict[str, Messenger], eid: bytes) -> bool:
    return all(x.node.store.get_payload(eid) is PayloadState.ERASED for x in m.values())


async def test_messenger_nodes_enforce_author_and_admin_redactions(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with federation(tmp_path) as (m, dbs, topic):
        secret = await m["a2"].send_text(topic, "MARKER-a2-own-5151")
        fixed = await m["a2"].send_edit(topic, secret, "MARKER-a2-edited-6262")
        other = await m["b1"].send_text(topic, "MARKER-b1-admin-7373")
        stays = await m["a2"].send_text(topic, "a2 stays")
        src = tmp_path / "scan.pdf"
        src.write_bytes(b"%PDF MARKER-attachment " + bytes(range(256)) * 40)
        file_id = await m["b1"].send_file(topic, src, mime="application/pdf")
        for eid in (secret, fixed, other, file_id, stays):
            await wait_until(lambda e=eid: payload_everywhere(m, e))  # type: ignore[misc]
        root = m["b1"].node.blob_store.roots(room=topic)[0]  # type: ignore[union-attr]
        dest = tmp_path / "got.pdf"
        attached = {msg.id: msg for msg in m["a1"].messages(topic)}[file_id]
        await m["a1"].download(attached, dest)
        assert root in m["a1"].node.blob_store.roots()  # type: ignore[union-attr]
        assert dest.read_bytes() == src.read_bytes()
        ciphertexts = {eid: m["a1"].node.payload(e) for eid, e in
                       ((e.id, e) for e in m["a1"].node.read(topic))
                       if eid in (secret, fixed, other, file_id)}

        listed = [msg.id for msg in m["a1"].messages(topic)]
        assert fixed not in listed  # an edit applies to its target: never listed itself
        await m["a2"].redact(topic, secret)               # by the author
        await m["a1"].redact(topic, other, "falsch")      # by the room admin
        await m["a1"].redact(topic, file_id)              # admin, an attachment
        forged = await m["b1"].redact(topic, stays)       # not author, not admin: ignored
        for eid in (secret, fixed, other, file_id):
            await wait_until(lambda e=eid: erased_everywhere(m, e))  # type: ignore[misc]
        await wait_until(lambda: all(forged in {e.id for e in x.node.read(topic)}
                                     for x in m.values()))
        await trio.sleep(1)  # let every watcher run on the last entry

        for name, x in m.items():
            blob = on_disk(dbs[name])
            for payload in ciphertexts.values():
                assert payload is not None and payload[-40:] not in blob, name
            assert root not in x.node.blob_store.roots()  # type: ignore[union-attr]
            all_logs_verify(x.node.store)
            shown = {msg.id: msg for msg in x.messages(topic)}
            # the erased edit is folded into its redacted target, not listed apart
            assert fixed not in shown, name
            assert list(shown) == listed, name  # the same messages, in the same places
            assert shown[secret].status is MessageStatus.REDACTED
            assert shown[secret].redacted_by == m["a2"].device
            assert shown[other].redacted_by == m["a1"].device
            assert shown[file_id].status is MessageStatus.REDACTED
            assert shown[stays].content == Text("a2 stays")
            assert isinstance(x.node.store.get_payload(stays), bytes)
            assert isinstance(x.node.store.get_payload(forged), bytes)
            # a restarted messenger (nothing in memory) lists the same: the links
            # of the erased edit are in the store, not in the old messenger
            again = Messenger(x.node, x.org, orgs=x.orgs)
            assert [msg.id for msg in again.messages(topic)] == listed, name
