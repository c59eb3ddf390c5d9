"""Reading a room: edits, redactions, reactions, receipts, unknown kinds, order."""

from __future__ import annotations

import json
import os

from messaging_helpers import World

from p2pmsg import _cbor
from p2pmsg.identity import Identity
from p2pmsg.messaging import (
    Attachment,
    AttachmentDescriptor,
    Content,
    Edit,
    FhirCommunication,
    Kind,
    MemberSpec,
    MessageStatus,
    Reaction,
    ReadReceipt,
    Redaction,
    Reply,
    RoomKind,
    RoomRole,
    Text,
    UnknownContent,
    compose_message,
    compose_rekey,
    compose_role,
    compose_room,
    decrypt_timeline,
)
from p2pmsg.messaging.crypto import encrypt_for_entry, epoch_key, open_secret


class Room:
    def __init__(self) -> None:
        self.w = World()
        a, b = self.w.new_org(), self.w.new_org()
        self.alice = self.w.new_device(a, "alice")  # admin (creator)
        self.bob = self.w.new_device(b, "bob")
        self.carol = self.w.new_device(a, "carol")
        self.topic, create = compose_room(
            self.alice, a.id, RoomKind.GROUP,
            [MemberSpec(self.bob.public_key, b.id), MemberSpec(self.carol.public_key, a.id)],
            self.w.now_ms)
        self.w.append(self.alice, self.topic, create)
        self.w.append(self.alice, self.topic,
                      compose_rekey(self.w.room(self.topic), self.alice, self.w.now_ms))

    def send(self, who: Identity, content: Content) -> bytes:
        state = self.w.room(self.topic)
        payload = compose_message(state, who, content, seq=self.w.next_seq(who, self.topic),
                                  now_ms=self.w.now_ms)
        return self.w.append(who, self.topic, payload).id

    def timeline(self, who: Identity | None = None):  # type: ignore[no-untyped-def]
        return decrypt_timeline(self.w.room(self.topic), who or self.bob)

    def by_id(self, who: Identity | None = None):  # type: ignore[no-untyped-def]
        return {m.id: m for m in self.timeline(who).messages}


def test_every_kind_is_shown_in_order() -> None:
    r = Room()
    desc = AttachmentDescriptor(os.urandom(32), 1000, "image/jpeg", os.urandom(32), "wound.jpg")
    fhir = FhirCommunication(json.dumps({"resourceType": "Communication", "status": "completed"}),
                             "Verlegung morgen 8 Uhr", "https://example.org/StructureDefinition/x")
    contents: list[Content] = [Text("hi"), Attachment(Kind.IMAGE, desc, "day 3"), fhir]
    ids = [r.send(r.alice, c) for c in contents]
    ids.append(r.send(r.bob, Reply(ids[0], "hello")))
    messages = r.timeline().messages
    assert [m.id for m in messages] == ids
    assert [m.content for m in messages] == [*contents, Reply(ids[0], "hello")]
    assert all(m.status is MessageStatus.OK for m in messages)
    assert messages[0].author == r.alice.public_key


def test_edit_only_by_author_and_history_kept() -> None:
    r = Room()
    target = r.send(r.alice, Text("K+ 5.9"))
    r.send(r.bob, Edit(target, "hijacked"))  # not the author: ignored
    r.send(r.alice, Edit(target, "K+ 5.6"))
    r.send(r.alice, Edit(target, "K+ 5.7"))
    msg = r.by_id()[target]
    assert msg.content == Text("K+ 5.7")
    assert msg.history == (Text("K+ 5.9"), Text("K+ 5.6"))
    assert msg.edited
    assert len(r.timeline().messages) == 1  # edits are folded, not shown on their own


def test_redaction_by_author_or_admin_only() -> None:
    r = Room()
    m1 = r.send(r.bob, Text("mine"))
    m2 = r.send(r.bob, Text("moderated"))
    m3 = r.send(r.alice, Text("admin's"))
    r.send(r.bob, Redaction(m1))  # author
    r.send(r.alice, Redaction(m2, "wrong patient"))  # admin
    r.send(r.carol, Redaction(m3))  # neither: ignored
    msgs = r.by_id()
    assert msgs[m1].status is MessageStatus.REDACTED and msgs[m1].content is None
    assert msgs[m1].redacted_by == r.bob.public_key
    assert msgs[m2].status is MessageStatus.REDACTED
    assert msgs[m2].redacted_by == r.alice.public_key
    assert msgs[m3].status is MessageStatus.OK


def test_admin_status_is_judged_when_the_redaction_is_applied() -> None:
    r = Room()
    m = r.send(r.bob, Text("x"))
    r.send(r.carol, Redaction(m))  # carol is not admin yet: ignored
    state = r.w.room(r.topic)
    r.w.append(r.alice, r.topic, compose_role(state, r.alice, r.carol.public_key, RoomRole.ADMIN))
    r.w.append(r.alice, r.topic, compose_rekey(r.w.room(r.topic), r.alice, r.w.now_ms))
    assert r.by_id()[m].status is MessageStatus.OK
    r.send(r.carol, Redaction(m))
    assert r.by_id()[m].status is MessageStatus.REDACTED


def test_reactions_and_receipts() -> None:
    r = Room()
    m1 = r.send(r.alice, Text("one"))
    m2 = r.send(r.alice, Text("two"))
    r.send(r.bob, Reaction(m1, "👍"))
    r.send(r.bob, Reaction(m1, "👍"))  # duplicate
    r.send(r.carol, Reaction(m1, "👍"))
    r.send(r.carol, Reaction(os.urandom(32), "❤"))  # unknown target: ignored
    r.send(r.bob, ReadReceipt(m1))
    r.send(r.bob, ReadReceipt(m2))
    r.send(r.carol, ReadReceipt(m1))
    t = r.timeline()
    assert t.messages[0].reactions == {"👍": [r.bob.public_key, r.carol.public_key]}
    assert dict(t.read_up_to) == {r.bob.public_key: m2, r.carol.public_key: m1}
    assert len(t.messages) == 2


def test_unknown_kind_is_kept_and_shown_as_unknown() -> None:
    r = Room()
    state = r.w.room(r.topic)
    epoch = state.view.current_epoch
    assert epoch is not None
    key = epoch_key(r.topic, open_secret(r.alice, epoch.recipients[r.alice.public_key]))
    future = _cbor.dumps([25, 3, "a poll", ["yes", "no"]])
    seq = r.w.next_seq(r.alice, r.topic)
    r.w.append(r.alice, r.topic,
               encrypt_for_entry(key, epoch.id, r.topic, r.alice.public_key, seq, future))
    after = r.send(r.alice, Text("after"))
    msgs = r.timeline().messages
    assert msgs[0].content == UnknownContent(25, 3, future)
    assert msgs[1].id == after


def test_missing_payload_is_shown_as_unavailable() -> None:
    r = Room()
    m = r.send(r.alice, Text("x"))
    state = r.w.room(r.topic)
    items = [(e, None if e.id == m else p) for e, p in r.w.topics[r.topic]]
    state2 = type(state)(r.topic, state.orgs)
    state2.apply(items)
    (msg,) = decrypt_timeline(state2, r.bob).messages
    assert msg.status is MessageStatus.UNAVAILABLE
    state2.apply(r.w.topics[r.topic])  # the payload arrives later
    (msg,) = decrypt_timeline(state2, r.bob).messages
    assert msg.content == Text("x")


def test_unknown_room_payload_kind_is_shown_not_dropped() -> None:
    r = Room()
    raw = _cbor.dumps([50, 1, "a future room op"])
    e = r.w.append(r.carol, r.topic, raw)
    (msg,) = r.timeline().messages
    assert msg.id == e.id
    assert msg.content == UnknownContent(50, 1, raw)


# --- persons: author judged per person ------------------------------------------------


class PersonRoom(Room):
    """Room plus org B's person P with two devices (bob is P's phone, bob2 P's
    laptop) and org A's person with the same 16 bytes (dave, not the same author)."""

    def __init__(self) -> None:
        self.w = World()
        a, b = self.w.new_org(), self.w.new_org()
        self.person = os.urandom(16)
        self.alice = self.w.new_device(a, "alice")  # admin (creator), no person
        self.bob = self.w.new_device(b, "bob-phone", person=self.person)
        self.bob2 = self.w.new_device(b, "bob-laptop", person=self.person)
        self.carol = self.w.new_device(a, "carol")
        self.dave = self.w.new_device(a, "dave", person=self.person)  # another org's P
        self.topic, create = compose_room(
            self.alice, a.id, RoomKind.GROUP,
            [MemberSpec(self.bob.public_key, b.id), MemberSpec(self.carol.public_key, a.id),
             MemberSpec(self.dave.public_key, a.id)],
            self.w.now_ms)
        self.w.append(self.alice, self.topic, create)
        self.w.append(self.alice, self.topic,
                      compose_rekey(self.w.room(self.topic), self.alice, self.w.now_ms))


def test_messages_carry_the_authors_person() -> None:
    r = PersonRoom()
    m1 = r.send(r.bob2, Text("from the laptop"))
    m2 = r.send(r.alice, Text("device only"))
    msgs = r.by_id(r.bob)  # the phone reads what the laptop wrote
    assert msgs[m1].status is MessageStatus.OK
    assert msgs[m1].author == r.bob2.public_key and msgs[m1].person == r.person
    assert msgs[m2].person is None


def test_edit_from_the_authors_other_device_is_the_authors() -> None:
    r = PersonRoom()
    target = r.send(r.bob, Text("K+ 5.9"))
    r.send(r.bob2, Edit(target, "K+ 5.6"))  # same person, other device: applies
    r.send(r.dave, Edit(target, "hijacked"))  # same person bytes, other org: ignored
    r.send(r.carol, Edit(target, "hijacked"))  # not the author: ignored
    msg = r.by_id(r.alice)[target]
    assert msg.content == Text("K+ 5.6")
    assert msg.history == (Text("K+ 5.9"),)
    # a device-only author's message stays editable by that device only
    plain = r.send(r.carol, Text("x"))
    r.send(r.dave, Edit(plain, "y"))
    assert r.by_id(r.alice)[plain].content == Text("x")


def test_redaction_from_the_authors_other_device_is_the_authors() -> None:
    r = PersonRoom()
    m1 = r.send(r.bob, Text("mine"))
    m2 = r.send(r.carol, Text("carol's"))
    r.send(r.bob2, Redaction(m1))  # the author person, other device
    r.send(r.dave, Redaction(m2))  # neither author nor admin: ignored
    msgs = r.by_id(r.alice)
    assert msgs[m1].status is MessageStatus.REDACTED
    assert msgs[m1].redacted_by == r.bob2.public_key
    assert msgs[m2].status is MessageStatus.OK


def test_redaction_plan_judges_the_author_per_person_like_the_timeline() -> None:
    """What erasure enforces (plan_redactions) matches what the timeline shows."""
    from p2pmsg.messaging import open_epoch_keys
    from p2pmsg.messaging.redaction import plan_redactions

    r = PersonRoom()
    m1 = r.send(r.bob, Text("mine"))
    e1 = r.send(r.bob2, Edit(m1, "mine, edited on the laptop"))
    m2 = r.send(r.carol, Text("carol's"))
    red = r.send(r.bob2, Redaction(m1))  # the author person's other device
    r.send(r.dave, Redaction(m2))  # same person bytes, other org, not admin: no effect
    view = r.w.room(r.topic).view
    plan = plan_redactions(view, open_epoch_keys(view, r.alice))
    assert [(t.redaction, t.target) for t in plan] == [(red, m1)]
    assert set(plan[0].erase) == {m1, e1}
    assert r.by_id(r.alice)[m2].status is MessageStatus.OK
