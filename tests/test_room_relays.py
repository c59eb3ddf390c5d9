"""Relays declared in the room: RELAY_ADD / RELAY_REMOVE payloads and their resolution.

Covered: the codec (round trip, wire layout, newer version kept as unknown,
structured and random garbage -> DecodeError only); the resolver rules (admins
only, at the entry's point in the total order; ALREADY_RELAY / TARGET_NOT_RELAY;
a relay is not a member: its entries are NOT_MEMBER, it is never an epoch
recipient, declaring it does not ask for a rekey); retention keeps the entries
(STRUCTURE); the audit records ``relay_add`` / ``relay_remove``. Need-to-know at
the protocol level is in tests/test_governance_policy.py, end to end over the
memory transport in tests/test_relay_declared.py.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from messaging_helpers import World

from p2pmsg import _cbor
from p2pmsg.errors import DecodeError
from p2pmsg.governance.audit import AuditKind, AuditLog
from p2pmsg.governance.changes import record_changes
from p2pmsg.governance.retention import PayloadClass, classify_payload
from p2pmsg.identity import Identity, short_id
from p2pmsg.messaging import (
    Kind,
    MemberSpec,
    NotPermitted,
    Rejection,
    RoomKind,
    compose_rekey,
    compose_room,
    compose_text,
)
from p2pmsg.messaging.compose import compose_relay_add, compose_relay_remove
from p2pmsg.messaging.payloads import (
    RelayAdd,
    RelayRemove,
    Sealed,
    UnknownPayload,
    decode_room_payload,
    encode_room_payload,
)

NODE, ORG = b"\x0a" * 32, b"\x0b" * 32


# -- codec -------------------------------------------------------------------------------

def test_relay_payloads_round_trip_with_their_wire_layout() -> None:
    add = encode_room_payload(RelayAdd(NODE, ORG))
    assert add == _cbor.dumps([39, 1, NODE, ORG])
    assert decode_room_payload(add) == RelayAdd(NODE, ORG)
    remove = encode_room_payload(RelayRemove(NODE))
    assert remove == _cbor.dumps([40, 1, NODE])
    assert decode_room_payload(remove) == RelayRemove(NODE)
    assert Kind.RELAY_ADD == 39 and Kind.RELAY_REMOVE == 40


def test_newer_relay_versions_are_kept_as_unknown() -> None:
    newer = _cbor.dumps([39, 2, NODE, ORG, "an expiry, say"])
    assert decode_room_payload(newer) == UnknownPayload(39, 2, newer)


@pytest.mark.parametrize("data", [
    [39, 1, NODE], [39, 1, NODE, ORG, 0], [39, 1, NODE[:31], ORG], [39, 1, NODE, None],
    [40, 1], [40, 1, NODE, ORG], [40, 1, "node"], [39, 1, ORG, NODE + b"\x00"],
], ids=str)
def test_bad_relay_payloads_are_refused(data: list[object]) -> None:
    with pytest.raises(DecodeError):
        decode_room_payload(_cbor.dumps(data))
    with pytest.raises(ValueError):
        encode_room_payload(RelayAdd(NODE[:31], ORG))


_leaf = st.one_of(st.none(), st.integers(-3, 2**64), st.binary(max_size=40), st.text(max_size=4),
                  st.sampled_from([NODE, ORG]))
_value = st.recursive(_leaf, lambda inner: st.lists(inner, max_size=4), max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from([39, 40]), version=st.integers(-1, 2),
       fields=st.lists(_value, max_size=4))
def test_relay_decoder_on_structured_garbage(kind: int, version: int,
                                             fields: list[object]) -> None:
    data = _cbor.dumps([kind, version, *fields])
    try:
        payload = decode_room_payload(data)
    except DecodeError:
        return
    if isinstance(payload, UnknownPayload):
        assert payload.version > 1 and payload.raw == data
        return
    assert isinstance(payload, RelayAdd | RelayRemove)
    assert encode_room_payload(payload) == data  # whatever decodes re-encodes exactly


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=100))
def test_relay_decoder_on_random_bytes(data: bytes) -> None:
    for candidate in (data, b"\x84\x18\x27\x01" + data, b"\x83\x18\x28\x01" + data):
        with contextlib.suppress(DecodeError):
            decode_room_payload(candidate)


# -- resolution ----------------------------------------------------------------------------

def _room() -> tuple[World, Identity, Identity, Identity, bytes, bytes]:
    """Org A: alice (creator, admin). Org B: bob (member). Org R runs relay node r."""
    w = World()
    a, b, r = w.new_org(), w.new_org(), w.new_org()
    alice, bob = w.new_device(a, "alice"), w.new_device(b, "bob")
    relay = Identity.generate()
    topic, create = compose_room(alice, a.id, RoomKind.GROUP,
                                 [MemberSpec(bob.public_key, b.id)], w.now_ms)
    w.append(alice, topic, create)
    w.append(alice, topic, compose_rekey(w.room(topic), alice, w.now_ms))
    return w, alice, bob, relay, topic, r.id


def test_admin_declares_a_relay_that_is_not_a_member() -> None:
    w, alice, bob, relay, topic, r = _room()
    before = w.room(topic)
    assert before.view.relays == {} and before.rekey_reason(w.now_ms) is None
    with pytest.raises(NotPermitted):  # bob is not an admin
        compose_relay_add(before, bob, relay.public_key, r)
    added = w.append(alice, topic, compose_relay_add(before, alice, relay.public_key, r))
    state = w.room(topic)
    assert state.view.relays == {relay.public_key: r}
    assert relay.public_key not in state.members
    assert added.id in state.view.order
    assert state.rekey_reason(w.now_ms) is None  # no key for a relay: nothing to rotate
    assert relay.public_key not in state.active_members(w.now_ms)
    with pytest.raises(NotPermitted):
        compose_relay_add(state, alice, relay.public_key, r)
    # the relay cannot write, whatever it writes
    for payload in (encode_room_payload(RelayRemove(relay.public_key)),
                    encode_room_payload(Sealed(b"\x01" * 32, b"\x02" * 24, b"ct"))):
        forged = w.append(relay, topic, payload)
        assert w.room(topic).view.rejected[forged.id] is Rejection.NOT_MEMBER
    # a new epoch is not sealed to it
    rekey = w.append(alice, topic, compose_rekey(state, alice, w.now_ms))
    epoch = w.room(topic).view.current_epoch
    assert epoch is not None and epoch.id == rekey.id
    assert set(epoch.recipients) == {alice.public_key, bob.public_key}
    text = w.append(alice, topic, compose_text(w.room(topic), alice, "hi",
                                               seq=w.next_seq(alice, topic), now_ms=w.now_ms))
    assert text.id in w.room(topic).view.order


def test_rules_apply_at_the_point_in_the_total_order() -> None:
    w, alice, bob, relay, topic, r = _room()
    n = relay.public_key
    not_admin = w.append(bob, topic, encode_room_payload(RelayAdd(n, r)))
    add = w.append(alice, topic, encode_room_payload(RelayAdd(n, r)))
    again = w.append(alice, topic, encode_room_payload(RelayAdd(n, b"\x33" * 32)))
    bob_removes = w.append(bob, topic, encode_room_payload(RelayRemove(n)))
    remove = w.append(alice, topic, encode_room_payload(RelayRemove(n)))
    gone = w.append(alice, topic, encode_room_payload(RelayRemove(n)))
    view = w.room(topic).view
    assert view.rejected == {not_admin.id: Rejection.NOT_ADMIN, again.id: Rejection.ALREADY_RELAY,
                             bob_removes.id: Rejection.NOT_ADMIN,
                             gone.id: Rejection.TARGET_NOT_RELAY}
    assert add.id in view.order and remove.id in view.order and view.relays == {}
    # re-adding after the removal works; bob made admin later may then remove it
    w.append(alice, topic, encode_room_payload(RelayAdd(n, r)))
    assert w.room(topic).view.relays == {n: r}
    with pytest.raises(NotPermitted):
        compose_relay_remove(w.room(topic), bob, n)
    with pytest.raises(NotPermitted):
        compose_relay_remove(w.room(topic), alice, b"\x77" * 32)  # not a relay


def test_concurrent_removals_resolve_the_same_everywhere() -> None:
    """Two admins remove the relay concurrently (same time, no causal link): the one
    ordered first wins, the other is TARGET_NOT_RELAY — in every arrival order."""
    import random

    from p2pmsg.messaging import RoomRole, RoomState, compose_role

    w, alice, bob, relay, topic, r = _room()
    w.append(alice, topic, compose_role(w.room(topic), alice, bob.public_key, RoomRole.ADMIN))
    w.append(alice, topic, encode_room_payload(RelayAdd(relay.public_key, r)))
    ts = (w.tick() << 16)
    w.append(alice, topic, encode_room_payload(RelayRemove(relay.public_key)), timestamp=ts)
    w.append(bob, topic, encode_room_payload(RelayRemove(relay.public_key)),
             timestamp=ts, deps=[])
    reference = w.room(topic).view
    assert reference.relays == {} and len(
        [x for x in reference.rejected.values() if x is Rejection.TARGET_NOT_RELAY]) == 1
    rng = random.Random(7)
    items = list(w.topics[topic])
    for _ in range(10):
        rng.shuffle(items)
        state = RoomState(topic, w.org_states())
        for item in items:
            state.apply([item])
        assert state.view.relays == reference.relays
        assert state.view.rejected == reference.rejected


# -- governance: retention and audit -----------------------------------------------------

def test_relay_entries_are_structure_never_purged() -> None:
    for payload in (RelayAdd(NODE, ORG), RelayRemove(NODE)):
        assert classify_payload(encode_room_payload(payload)) is PayloadClass.STRUCTURE


def test_relay_changes_are_audited_once(tmp_path: Path) -> None:
    w, alice, _bob, relay, topic, r = _room()
    add = w.append(alice, topic, encode_room_payload(RelayAdd(relay.public_key, r)))
    remove = w.append(alice, topic, encode_room_payload(RelayRemove(relay.public_key)))
    view = w.room(topic).view
    seen: set[str] = set()
    with AuditLog(tmp_path / "audit.db", Identity.generate()) as audit:
        record_changes(audit, [view], w.org_states(), w.now_ms, seen)
        assert record_changes(audit, [view], w.org_states(), w.now_ms, seen) == 0
        records = {str(x.details["ref"]): x.details
                   for x in audit.query(kinds=[AuditKind.MEMBERSHIP_CHANGED])}
    assert records[add.id.hex()]["action"] == "relay_add"
    assert records[add.id.hex()]["node"] == short_id(relay.public_key)
    assert records[add.id.hex()]["org"] == short_id(r)
    assert records[remove.id.hex()]["action"] == "relay_remove"
    assert records[remove.id.hex()]["by"] == short_id(alice.public_key)
