"""SEALED v2 clear refs: what relays (nodes without room keys) can act on.

Covered: the v2 codec (round trip, bounds, v1 still decodes, garbage -> DecodeError
only); the refs are bound into the AEAD (changing them breaks decryption) and a
member rejects a v2 payload whose refs disagree with its content; redaction
enforcement on a relay from the clear refs, identical to a member's; retention on
a relay deletes the attachment blobs of purged messages; a relay fetches the blobs
its rooms name and serves them, so a member downloads an attachment byte-identical
while the sender is offline (memory transport, virtual time).
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from governance_helpers import Clinic
from hypothesis import given, settings
from hypothesis import strategies as st
from node_helpers import wait_until, wall

from p2pmsg import _cbor
from p2pmsg.blobs import BlobStore, Quotas
from p2pmsg.certs import Role, issue_certificate
from p2pmsg.entry import Entry
from p2pmsg.errors import DecodeError
from p2pmsg.governance.audit import AuditKind, AuditLog
from p2pmsg.governance.redaction import enforce_redactions
from p2pmsg.governance.retention import DAY_MS, RetentionConfig, run_purge
from p2pmsg.identity import Identity
from p2pmsg.messaging import (
    Attachment,
    AttachmentDescriptor,
    Content,
    Kind,
    MemberSpec,
    MessageStatus,
    Redaction,
    Text,
    compose_message,
    decrypt_timeline,
)
from p2pmsg.messaging.content import encode_content
from p2pmsg.messaging.crypto import (
    RefsMismatchError,
    decrypt_content,
    decrypt_for_entry,
    encrypt_for_entry,
    epoch_key,
    open_secret,
    refs_of,
)
from p2pmsg.messaging.errors import DecryptionError
from p2pmsg.messaging.payloads import (
    MAX_CLEAR_BLOBS,
    NO_REFS,
    ClearRefs,
    Sealed,
    UnknownPayload,
    decode_room_payload,
    encode_room_payload,
)
from p2pmsg.messaging.redaction import plan_redactions
from p2pmsg.messaging.timeline import open_epoch_keys
from p2pmsg.messenger import Messenger, messenger_topics, open_messenger, org_control_items
from p2pmsg.messenger.bootstrap import plan_room
from p2pmsg.net.base import PeerHint
from p2pmsg.net.memory import MemoryNetwork
from p2pmsg.node import Node, NodeConfig, open_node, serve_node
from p2pmsg.node.blobs import RelayBlobFetcher, clear_blob_refs
from p2pmsg.policy import AllowAllPolicy
from p2pmsg.store.base import PayloadState
from p2pmsg.store.memory import MemoryStore

NODE = Identity.from_seed(b"\x0c" * 32)
E, N = b"\x01" * 32, b"\x02" * 24
R1, R2, T = b"\x10" * 32, b"\x20" * 32, b"\x30" * 32


# -- codec -----------------------------------------------------------------------------

@pytest.mark.parametrize("sealed", [
    Sealed(E, N, b"ct"),
    Sealed(E, N, b"", ClearRefs(blobs=(R1,))),
    Sealed(E, N, b"ct", ClearRefs(blobs=(R1, R2))),
    Sealed(E, N, b"ct", ClearRefs(redacts=T)),
    Sealed(E, N, b"ct", ClearRefs((R1,), T)),
    Sealed(E, N, b"ct", NO_REFS, 1),
], ids=["empty", "one-blob", "two-blobs", "redacts", "both", "v1"])
def test_sealed_round_trips(sealed: Sealed) -> None:
    data = encode_room_payload(sealed)
    assert decode_room_payload(data) == sealed
    assert _cbor.loads_canonical(data, "x", 1 << 21)[:2] == [38, sealed.version]


def test_sealed_v2_wire_layout_and_v1_still_decodes() -> None:
    v2 = encode_room_payload(Sealed(E, N, b"ct", ClearRefs((R1,), T)))
    assert v2 == _cbor.dumps([38, 2, E, N, b"ct", [R1], T])
    assert encode_room_payload(Sealed(E, N, b"ct")) == _cbor.dumps([38, 2, E, N, b"ct", [], None])
    v1 = _cbor.dumps([38, 1, E, N, b"ct"])
    assert decode_room_payload(v1) == Sealed(E, N, b"ct", NO_REFS, 1)
    newer = _cbor.dumps([38, 3, E, N, b"ct", [], None, "more"])
    assert decode_room_payload(newer) == UnknownPayload(38, 3, newer)  # kept, not parsed


@pytest.mark.parametrize(("fields", "why"), [
    ([E, N, b"ct"], "v2 without refs"),
    ([E, N, b"ct", [], None, 0], "an extra field"),
    ([E, N, b"ct", [R2, R1], None], "blobs not sorted"),
    ([E, N, b"ct", [R1, R1], None], "duplicate blob"),
    ([E, N, b"ct", [R1[:31]], None], "short root"),
    ([E, N, b"ct", [bytes([i]) * 32 for i in range(MAX_CLEAR_BLOBS + 1)], None], "too many"),
    ([E, N, b"ct", [], T[:31]], "short redacts"),
    ([E, N, b"ct", [], b""], "empty redacts"),
    ([E, N, b"ct", None, None], "blobs is null"),
    ([E, N, b"ct", [], 0], "redacts is an int"),
])
def test_sealed_v2_refuses_bad_refs(fields: list[object], why: str) -> None:
    with pytest.raises(DecodeError):
        decode_room_payload(_cbor.dumps([38, 2, *fields]))
    if len(fields) != 3:  # v1 is exactly epoch, nonce, ciphertext
        with pytest.raises(DecodeError):
            decode_room_payload(_cbor.dumps([38, 1, *fields]))  # v1 never has refs


def test_writer_refuses_what_readers_refuse() -> None:
    with pytest.raises(ValueError):
        encode_room_payload(Sealed(E, N, b"", ClearRefs(blobs=(R2, R1))))
    with pytest.raises(ValueError):
        encode_room_payload(Sealed(E, N, b"", ClearRefs(redacts=T), 1))  # v1: no refs
    with pytest.raises(ValueError):
        encode_room_payload(Sealed(E, N, b"", NO_REFS, 3))


_cbor_leaf = st.one_of(st.none(), st.integers(-3, 2**64), st.binary(max_size=40),
                       st.text(max_size=4), st.sampled_from([E, R1, R2, T, N]))
_cbor_value = st.recursive(_cbor_leaf, lambda inner: st.lists(inner, max_size=MAX_CLEAR_BLOBS + 2),
                           max_leaves=24)


@settings(max_examples=200, deadline=None)
@given(version=st.sampled_from([1, 2]), fields=st.lists(_cbor_value, max_size=7))
def test_sealed_decoder_on_structured_garbage(version: int, fields: list[object]) -> None:
    data = _cbor.dumps([38, version, *fields])
    try:
        payload = decode_room_payload(data)
    except DecodeError:
        return
    assert isinstance(payload, Sealed) and payload.version == version
    assert encode_room_payload(payload) == data  # whatever decodes re-encodes exactly


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_sealed_decoder_on_random_bytes(data: bytes) -> None:
    for candidate in (data, b"\x87\x18\x26\x02" + data):  # [38, 2, ... + random bytes
        with suppress(DecodeError):
            decode_room_payload(candidate)


# -- the refs are bound and checked ------------------------------------------------------

KEY, TOPIC, AUTHOR = b"\x07" * 32, b"\x08" * 32, b"\x09" * 32
DOC = Attachment(Kind.DOCUMENT, AttachmentDescriptor(R1, 10, "application/pdf", b"\x0f" * 32))


@pytest.mark.parametrize(("content", "refs"), [
    (Text("x"), NO_REFS),
    (DOC, ClearRefs(blobs=(R1,))),
    (Redaction(T, "wrong patient"), ClearRefs(redacts=T)),
])
def test_refs_of_content(content: Content, refs: ClearRefs) -> None:
    assert refs_of(content) == refs


def test_clear_refs_are_bound_into_the_aead() -> None:
    data = encrypt_for_entry(KEY, E, TOPIC, AUTHOR, 3, encode_content(DOC),
                             refs=ClearRefs(blobs=(R1,)))
    sealed = decode_room_payload(data)
    assert isinstance(sealed, Sealed)
    assert decrypt_content(KEY, TOPIC, AUTHOR, 3, sealed) == DOC
    for refs in (NO_REFS, ClearRefs(blobs=(R2,)), ClearRefs((R1,), T)):
        forged = Sealed(sealed.epoch, sealed.nonce, sealed.ciphertext, refs)
        with pytest.raises(DecryptionError):  # a relay or a MITM cannot rewrite the refs
            decrypt_for_entry(KEY, TOPIC, AUTHOR, 3, forged)
    as_v1 = Sealed(sealed.epoch, sealed.nonce, sealed.ciphertext, NO_REFS, 1)
    with pytest.raises(DecryptionError):  # nor downgrade to v1 to hide them
        decrypt_for_entry(KEY, TOPIC, AUTHOR, 3, as_v1)


@pytest.mark.parametrize(("content", "refs"), [
    (DOC, NO_REFS),                                   # hides its attachment from relays
    (DOC, ClearRefs(blobs=(R2,))),                    # names another blob
    (Text("x"), ClearRefs(blobs=(R1,))),              # claims a blob it has not
    (Text("x"), ClearRefs(redacts=T)),                # claims a redaction it is not
    (Redaction(T), NO_REFS),                          # a redaction relays cannot see
    (Redaction(T), ClearRefs(redacts=R2)),            # redacts one thing, says another
])
def test_member_rejects_refs_that_disagree_with_the_content(
        content: Content, refs: ClearRefs) -> None:
    """Only the author (who holds the epoch key) can write such a payload; every
    member rejects its content as malformed (a DecodeError), the same way."""
    data = encrypt_for_entry(KEY, E, TOPIC, AUTHOR, 5, encode_content(content), refs=refs)
    sealed = decode_room_payload(data)
    assert isinstance(sealed, Sealed)
    with pytest.raises(RefsMismatchError) as info:
        decrypt_content(KEY, TOPIC, AUTHOR, 5, sealed)
    assert isinstance(info.value, DecodeError)


def test_v1_and_unknown_contents_are_not_checked() -> None:
    v1 = decode_room_payload(encrypt_for_entry(KEY, E, TOPIC, AUTHOR, 5, encode_content(DOC),
                                               version=1))
    assert isinstance(v1, Sealed) and v1.version == 1
    assert decrypt_content(KEY, TOPIC, AUTHOR, 5, v1) == DOC
    future = _cbor.dumps([25, 1, "a poll with a picture"])  # a newer content kind
    unknown = decode_room_payload(encrypt_for_entry(KEY, E, TOPIC, AUTHOR, 5, future,
                                                    refs=ClearRefs(blobs=(R1,))))
    assert isinstance(unknown, Sealed)
    assert decrypt_content(KEY, TOPIC, AUTHOR, 5, unknown).kind == 25  # type: ignore[union-attr]


def _sealed_raw(c: Clinic, who: Identity, content: Content, refs: ClearRefs) -> Entry:
    """Append what a misbehaving author could write: ``content`` with ``refs``."""
    w = c.world
    w.tick()
    state = w.room(c.topic)
    epoch = state.view.current_epoch
    assert epoch is not None
    key = epoch_key(c.topic, open_secret(who, epoch.recipients[who.public_key]))
    seq = w.next_seq(who, c.topic)
    return w.append(who, c.topic, encrypt_for_entry(
        key, epoch.id, c.topic, who.public_key, seq, encode_content(content), refs=refs))


def send(c: Clinic, who: Identity, content: Content) -> Entry:
    w = c.world
    w.tick()
    return w.append(who, c.topic, compose_message(
        w.room(c.topic), who, content, seq=w.next_seq(who, c.topic), now_ms=w.now_ms))


def test_compose_writes_v2_with_the_right_refs() -> None:
    c = Clinic()
    text = c.say(c.alice, "hello")
    red = send(c, c.alice, Redaction(text.id))
    for entry, refs in ((text, NO_REFS), (red, ClearRefs(redacts=text.id))):
        sealed = decode_room_payload(c.payload(entry))
        assert isinstance(sealed, Sealed) and sealed.version == 2 and sealed.refs == refs


# -- redaction on a relay ------------------------------------------------------------------

def test_relay_enforces_redactions_like_a_member(tmp_path: Path) -> None:
    c = Clinic()
    with BlobStore(tmp_path / "relay-blobs", durable=False) as blobs:
        own = c.say(c.bob, "MARKER-own")
        attached, root = c.attach(c.bert, blobs, b"SCAN " * 400)
        by_author = send(c, c.bob, Redaction(own.id))
        by_admin = send(c, c.alice, Redaction(attached.id, "wrong patient"))
        forged_target = c.say(c.alice, "alice stays")
        forged = send(c, c.bert, Redaction(forged_target.id))  # neither author nor admin

        view = c.world.room(c.topic).view
        relay_plan = plan_redactions(view, {})
        for member in (c.alice, c.bob, c.bert):
            assert plan_redactions(view, open_epoch_keys(view, member)) == relay_plan
        assert {(s.target, s.redaction, s.blobs) for s in relay_plan} == {
            (own.id, by_author.id, ()), (attached.id, by_admin.id, (root,))}

        store = MemoryStore()
        c.load(store)
        with AuditLog(tmp_path / "audit.db", NODE) as audit:
            results = enforce_redactions(store, [view], blobs=blobs, audit=audit, now_ms=9)
            records = audit.query(kinds=[AuditKind.REDACTION])
        assert sorted(eid for r in results for eid in r.erased) == sorted([own.id, attached.id])
        assert store.get_payload(own.id) is PayloadState.ERASED
        assert store.get_payload(attached.id) is PayloadState.ERASED
        for kept in (forged_target, forged, by_author, by_admin):
            assert isinstance(store.get_payload(kept.id), bytes)
        assert blobs.roots() == []  # the attachment went with its message
        assert {(r.details["target"], int(str(r.details["blobs"]))) for r in records} == {
            (own.id.hex(), 0), (attached.id.hex(), 1)}
        assert enforce_redactions(store, [view], blobs=blobs) == []  # idempotent


def test_refs_mismatch_is_handled_the_same_on_relays_and_members() -> None:
    """Clear refs decide erasure everywhere; the content is rejected by members."""
    c = Clinic()
    target = c.say(c.alice, "MARKER-target")
    lying = _sealed_raw(c, c.alice, Text("not a redaction"), ClearRefs(redacts=target.id))
    hidden_target = c.say(c.alice, "MARKER-other")
    hidden = _sealed_raw(c, c.alice, Redaction(hidden_target.id), NO_REFS)

    view = c.world.room(c.topic).view
    relay = plan_redactions(view, {})
    assert [(s.target, s.redaction) for s in relay] == [(target.id, lying.id)]
    for member in (c.alice, c.bob, c.bert):
        assert plan_redactions(view, open_epoch_keys(view, member)) == relay
        shown = {m.id: m for m in decrypt_timeline(view, member).messages}
        assert shown[lying.id].status is MessageStatus.UNDECRYPTABLE  # rejected content
        assert shown[hidden.id].status is MessageStatus.UNDECRYPTABLE
        assert shown[hidden_target.id].content == Text("MARKER-other")  # not redacted


# -- retention on a relay --------------------------------------------------------------------

def test_relay_retention_deletes_blobs_of_purged_messages(tmp_path: Path) -> None:
    c = Clinic()
    with BlobStore(tmp_path / "blobs", durable=False) as blobs:
        old, old_root = c.attach(c.alice, blobs, b"OLD " * 900)
        c.world.tick(10 * DAY_MS)
        c.rekey(c.alice)  # the old epoch expired
        fresh, fresh_root = c.attach(c.bob, blobs, b"NEW " * 700)
        store = MemoryStore()
        c.load(store)
        assert sorted(r.root for r in clear_blob_refs(store, [old.id, fresh.id])) == sorted(
            [old_root, fresh_root])
        with AuditLog(tmp_path / "audit.db", NODE) as audit:
            plan = run_purge(store, RetentionConfig(default_ms=5 * DAY_MS), c.world.now_ms,
                             authors={}, audit=audit, blobs=blobs)  # no keys: a relay
            rec = audit.query(kinds=[AuditKind.PURGE])[0]
        assert plan.erase_ids() == [old.id] and plan.blobs_deleted == 1
        assert rec.details["blobs"] == 1
        assert blobs.roots() == [fresh_root]
        assert isinstance(store.get_payload(fresh.id), bytes)


# -- relay forwarding, end to end ------------------------------------------------------------

T0 = 1_700_000_000_000


def ident(name: str) -> Identity:
    return Identity.from_seed(hashlib.blake2b(b"relay-refs/" + name.encode(),
                                             digest_size=32).digest())




@asynccontextmanager
async def relay_setup(tmp_path: Path, relay_quotas: Quotas | None = None) -> AsyncIterator[
        tuple[Messenger, Messenger, Node, trio.CancelScope, bytes]]:
    """a1 (org A, room creator) and b1 (org B) in a room; r (org R) relays it.
    Only a1-r and b1-r are connected: b1 never talks to a1 directly."""
    net = MemoryNetwork(seed=5)
    roots = {o: ident("root-" + o) for o in "abr"}
    org_ids = [roots[o].public_key for o in "ab"]
    plan = plan_room(ident("a1"), roots["a"].public_key,
                     [MemberSpec(ident("b1").public_key, roots["b"].public_key)], created_ms=T0)
    topics = messenger_topics(org_ids, [plan.topic])

    def cfg(name: str, peers: list[str]) -> NodeConfig:
        identity = ident(name)
        store = MemoryStore()
        if name != "r":
            cert = issue_certificate(roots[name[0]], identity.public_key, Role.ADMIN, name,
                                     0, 2**50)
            items = org_control_items(roots[name[0]], [cert], start_ms=T0 - 10_000)
            store.append([e for e, _ in items], {e.id: p for e, p in items})
        return NodeConfig(
            identity=identity, store=store, topics=topics, policy=AllowAllPolicy(),
            transports=[net.transport(name, identity.public_key)],
            peers=[PeerHint(ident(p).public_key, f"memory://{p}") for p in peers],
            wall_clock=wall, reconnect_initial=0.1, reconnect_max=1.0, seed=1, name=name,
            blob_store=BlobStore(tmp_path / f"blobs-{name}", durable=False,
                                 quotas=relay_quotas if name == "r" else None))

    a_scope = trio.CancelScope()

    async def run_a(*, task_status: trio.TaskStatus[Messenger]) -> None:
        with a_scope:
            async with (open_node(cfg("a1", ["r"])) as node,
                        open_messenger(node, roots["a"].public_key, orgs=org_ids) as m):
                task_status.started(m)
                await trio.sleep_forever()

    async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
        relay: Node = await nursery.start(serve_node, cfg("r", []))
        a1: Messenger = await nursery.start(run_a)
        b_node: Node = await nursery.start(serve_node, cfg("b1", ["r"]))
        b1 = await stack.enter_async_context(
            open_messenger(b_node, roots["b"].public_key, orgs=org_ids))
        await wait_until(lambda: a1.certificate() is not None and b1.certificate() is not None)
        await a1.wait_certified([ident("b1").public_key])
        await a1.create_room_from(plan)
        await wait_until(lambda: b1.room(plan.topic).joined
                         if plan.topic in b_node.store.topics() else False)
        yield a1, b1, relay, a_scope, plan.topic
        await stack.aclose()
        nursery.cancel_scope.cancel()


async def test_member_downloads_from_the_relay_while_the_sender_is_offline(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    data = os.urandom(700_000)  # several chunks
    async with relay_setup(tmp_path) as (a1, b1, relay, a_scope, topic):
        assert relay.blob_store is not None and b1.node.blob_store is not None
        message_id = await a1.send_file(topic, data, mime="application/pdf", name="scan.pdf")
        await wait_until(lambda: isinstance(relay.store.get_payload(message_id), bytes))
        assert relay.blob_store.roots() == []  # relays do not fetch by themselves
        fetcher = RelayBlobFetcher(relay, [topic])
        report = await fetcher.run_once()
        (root,) = report.fetched
        assert relay.blob_store.roots(room=topic) == [root]
        assert relay.blob_store.is_complete(root)
        assert (await fetcher.run_once()).fetched == []  # nothing new: nothing fetched

        a_scope.cancel()  # the sender goes offline for good
        await wait_until(lambda: a1.device not in relay.connected_peers())
        await wait_until(lambda: message_id in {m.id for m in b1.messages(topic)})
        msg = {m.id: m for m in b1.messages(topic)}[message_id]
        assert msg.status is MessageStatus.OK
        out = io.BytesIO()
        with trio.fail_after(60):
            written = await b1.download(msg, out)
        assert written == len(data) and out.getvalue() == data
        assert b1.node.connected_peers() == [relay.id]  # only the relay was reachable
        assert relay.statistics().blob_objects_served > 0


async def test_relay_enforces_a_messenger_redaction_of_a_file(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    from p2pmsg.daemon.governance import org_states, room_views

    async with relay_setup(tmp_path) as (a1, _b1, relay, _a_scope, topic):
        assert relay.blob_store is not None
        message_id = await a1.send_file(topic, b"%PDF " * 3000, mime="application/pdf")
        await wait_until(lambda: isinstance(relay.store.get_payload(message_id), bytes))
        (root,) = (await RelayBlobFetcher(relay, [topic]).run_once()).fetched
        redaction = await a1.redact(topic, message_id)  # a1: the author
        entry = a1.node.store.get_entry(redaction)
        assert entry is not None
        payload = a1.node.payload(entry)
        assert payload is not None
        sealed = decode_room_payload(payload)
        assert isinstance(sealed, Sealed) and sealed.refs == ClearRefs(redacts=message_id)
        await wait_until(lambda: isinstance(relay.store.get_payload(redaction), bytes))

        orgs = org_states(relay.store, [ident("root-a").public_key, ident("root-b").public_key])
        views = room_views(relay.store, orgs)
        (result,) = enforce_redactions(relay.store, views, blobs=relay.blob_store)
        assert result.erased == (message_id,) and result.blobs_deleted == 1
        assert relay.store.get_payload(message_id) is PayloadState.ERASED
        assert root not in relay.blob_store.roots()
        # the relay's fetcher does not bring it back: the message no longer names it
        assert (await RelayBlobFetcher(relay, [topic]).run_once()).fetched == []


def test_erasure_on_a_relay_deletes_the_persons_attachment_blobs(tmp_path: Path) -> None:
    from p2pmsg.governance.erasure import erase_person

    c = Clinic()
    with BlobStore(tmp_path / "blobs", durable=False) as blobs:
        _, alice_root = c.attach(c.alice, blobs, b"ALICE " * 300)
        _, bob_root = c.attach(c.bob, blobs, b"BOB " * 300)
        store = MemoryStore()
        c.load(store)
        stone = erase_person(store, [c.alice.public_key], NODE, "DPO-1", 1, 2, blobs=blobs)
        assert stone.erased and blobs.roots() == [bob_root]
        assert alice_root not in blobs.roots()


async def test_relay_fetch_stays_within_quotas(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    async with relay_setup(tmp_path, Quotas(default_room=50_000)) as (a1, _b1, relay, _s, topic):
        assert relay.blob_store is not None
        small = await a1.send_file(topic, b"s" * 10_000)
        large = await a1.send_file(topic, os.urandom(200_000))
        for eid in (small, large):
            await wait_until(lambda e=eid: isinstance(relay.store.get_payload(e), bytes))  # type: ignore[misc]
        fetcher = RelayBlobFetcher(relay, [topic])
        report = await fetcher.run_once()
        assert len(report.fetched) == 1 and len(report.refused) == 1, report
        assert relay.blob_store.roots(room=topic) == report.fetched
        assert relay.blob_store.usage(room=topic) <= 50_000
        again = await fetcher.run_once()  # refused for good: not asked again
        assert again.fetched == again.refused == again.unavailable == []


def test_relay_scan_picks_up_payloads_that_arrive_later(tmp_path: Path) -> None:
    """Headers can arrive before payloads: a ref is found once the payload is here."""
    from types import SimpleNamespace

    c = Clinic()
    with BlobStore(tmp_path / "sender", durable=False) as sender, \
            BlobStore(tmp_path / "relay", durable=False) as relay_blobs:
        text = c.say(c.alice, "no refs")
        doc, root = c.attach(c.bob, sender, b"DOC " * 500)
        store = MemoryStore()
        for items in c.world.topics.values():
            store.append([e for e, _ in items],
                         {e.id: p for e, p in items if p is not None and e.id != doc.id})
        node = SimpleNamespace(store=store, _require_blob_store=lambda: relay_blobs)
        fetcher = RelayBlobFetcher(node, [c.topic])  # type: ignore[arg-type]
        assert fetcher.scan() == []  # the document's payload is not here yet
        assert fetcher.scan() == []
        store.put_payload(doc.id, c.payload(doc))
        (ref,) = fetcher.scan()
        assert (ref.root, ref.room, ref.entry, ref.author) == (
            root, c.topic, doc.id, c.bob.public_key)
        assert fetcher.scan() == []  # queued once
        assert text.id not in {r.entry for r in clear_blob_refs(store, [text.id, doc.id])}


async def test_relay_backs_off_from_a_blob_nobody_serves(
        autojump_clock: trio.testing.MockClock, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A member can name roots nobody holds; the relay retries them with an
    exponential backoff, not on every scan."""
    async with relay_setup(tmp_path) as (a1, _b1, relay, _a_scope, topic):
        message_id = await a1.send_file(topic, os.urandom(5000), name="gone.bin")
        await wait_until(lambda: isinstance(relay.store.get_payload(message_id), bytes))
        store_a = a1.node.blob_store
        assert store_a is not None
        (root,) = store_a.roots(room=topic)
        store_a.delete_blob(root)  # now nobody serves it
        calls: list[bytes] = []
        fetch = relay.fetch_blob

        async def counting(root: bytes, room: bytes, **kw: Any) -> Any:
            calls.append(root)
            return await fetch(root, room, **kw)

        monkeypatch.setattr(relay, "fetch_blob", counting)
        fetcher = RelayBlobFetcher(relay, [topic])
        assert (await fetcher.run_once()).unavailable == [root] and len(calls) == 1
        assert (await fetcher.run_once()).unavailable == [root] and len(calls) == 1
        await trio.sleep(fetcher.base_backoff + 0.1)
        await fetcher.run_once()
        assert len(calls) == 2
        await trio.sleep(fetcher.base_backoff + 0.1)  # the second delay is twice as long
        await fetcher.run_once()
        assert len(calls) == 2
        await trio.sleep(fetcher.base_backoff)
        await fetcher.run_once()
        assert len(calls) == 3
