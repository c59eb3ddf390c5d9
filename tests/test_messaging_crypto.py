"""End-to-end encryption: AEAD binding, epochs, removal, revocation, relays."""

from __future__ import annotations

import os

import pytest
from messaging_helpers import World

from p2pmsg.identity import Identity
from p2pmsg.messaging import (
    DecryptionError,
    MemberSpec,
    MessageStatus,
    RekeyRequired,
    RoomKind,
    Text,
    compose_add,
    compose_rekey,
    compose_remove,
    compose_room,
    compose_text,
    decode_room_payload,
    decrypt_for_entry,
    decrypt_messages,
    encrypt_for_entry,
    open_epoch_keys,
)
from p2pmsg.messaging.crypto import epoch_key, open_secret, seal_secret
from p2pmsg.messaging.payloads import Sealed

KEY = os.urandom(32)
EPOCH, TOPIC, AUTHOR = os.urandom(32), os.urandom(32), os.urandom(32)


def _sealed(data: bytes) -> Sealed:
    payload = decode_room_payload(data)
    assert isinstance(payload, Sealed)
    return payload


def test_aead_round_trip_and_binding() -> None:
    data = encrypt_for_entry(KEY, EPOCH, TOPIC, AUTHOR, 7, b"Befund anbei")
    sealed = _sealed(data)
    assert decrypt_for_entry(KEY, TOPIC, AUTHOR, 7, sealed) == b"Befund anbei"
    for key, topic, author, seq in [
        (os.urandom(32), TOPIC, AUTHOR, 7),
        (KEY, os.urandom(32), AUTHOR, 7),  # moved to another room
        (KEY, TOPIC, os.urandom(32), 7),  # replayed under another author
        (KEY, TOPIC, AUTHOR, 8),  # replayed at another position
    ]:
        with pytest.raises(DecryptionError):
            decrypt_for_entry(key, topic, author, seq, sealed)
    other_epoch = Sealed(os.urandom(32), sealed.nonce, sealed.ciphertext)
    with pytest.raises(DecryptionError):
        decrypt_for_entry(KEY, TOPIC, AUTHOR, 7, other_epoch)
    flipped = bytearray(sealed.ciphertext)
    flipped[0] ^= 1
    with pytest.raises(DecryptionError):
        decrypt_for_entry(KEY, TOPIC, AUTHOR, 7, Sealed(EPOCH, sealed.nonce, bytes(flipped)))


def test_nonces_are_fresh() -> None:
    a = _sealed(encrypt_for_entry(KEY, EPOCH, TOPIC, AUTHOR, 1, b"x"))
    b = _sealed(encrypt_for_entry(KEY, EPOCH, TOPIC, AUTHOR, 1, b"x"))
    assert a.nonce != b.nonce and a.ciphertext != b.ciphertext


def test_sealed_secret_opens_only_for_its_device() -> None:
    me, other = Identity.generate(), Identity.generate()
    secret = os.urandom(32)
    sealed = seal_secret(me.public_key, secret)
    assert open_secret(me, sealed) == secret
    with pytest.raises(DecryptionError):
        open_secret(other, sealed)
    assert epoch_key(TOPIC, secret) != epoch_key(os.urandom(32), secret)


def _room() -> tuple[World, bytes, dict[str, Identity], bytes]:
    w = World()
    a, b = w.new_org(), w.new_org()
    alice, carol = w.new_device(a, "alice"), w.new_device(a, "carol")
    bob = w.new_device(b, "bob")
    topic, create = compose_room(alice, a.id, RoomKind.GROUP,
                                 [MemberSpec(bob.public_key, b.id),
                                  MemberSpec(carol.public_key, a.id)], w.now_ms)
    w.append(alice, topic, create)
    w.append(alice, topic, compose_rekey(w.room(topic), alice, w.now_ms))
    return w, topic, {"alice": alice, "bob": bob, "carol": carol}, b.id


def _say(w: World, topic: bytes, who: Identity, text: str) -> bytes:
    state = w.room(topic)
    payload = compose_text(state, who, text, seq=w.next_seq(who, topic), now_ms=w.now_ms)
    return w.append(who, topic, payload).id


def _texts(w: World, topic: bytes, who: Identity) -> dict[bytes, object]:
    return {m.id: (m.content.text if isinstance(m.content, Text) else m.status)
            for m in decrypt_messages(w.room(topic), who)}


def test_removed_member_cannot_read_after_removal() -> None:
    w, topic, d, _ = _room()
    before = _say(w, topic, d["bob"], "before removal")
    state = w.room(topic)
    w.append(d["alice"], topic, compose_remove(state, d["alice"], d["carol"].public_key))
    with pytest.raises(RekeyRequired):  # the old epoch still includes carol
        _say(w, topic, d["alice"], "too early")
    w.append(d["alice"], topic, compose_rekey(w.room(topic), d["alice"], w.now_ms))
    after = _say(w, topic, d["bob"], "SECRET-AFTER-REMOVAL")
    carol_sees = _texts(w, topic, d["carol"])
    assert carol_sees[before] == "before removal"
    assert carol_sees[after] is MessageStatus.UNDECRYPTABLE
    new_epoch = w.room(topic).view.current_epoch
    assert new_epoch is not None
    assert new_epoch.id not in open_epoch_keys(w.room(topic).view, d["carol"])
    assert _texts(w, topic, d["alice"])[after] == "SECRET-AFTER-REMOVAL"


def test_revoked_device_cannot_read_after_revocation() -> None:
    w, topic, d, b_org = _room()
    w.revoke(w.orgs[b_org], d["bob"])
    w.tick(5)
    state = w.room(topic)
    assert d["bob"].public_key not in state.active_members(w.now_ms)
    with pytest.raises(RekeyRequired):
        compose_text(state, d["alice"], "x", seq=w.next_seq(d["alice"], topic), now_ms=w.now_ms)
    w.append(d["alice"], topic, compose_rekey(state, d["alice"], w.now_ms))
    after = _say(w, topic, d["carol"], "SECRET-AFTER-REVOCATION")
    assert _texts(w, topic, d["bob"])[after] is MessageStatus.UNDECRYPTABLE
    assert _texts(w, topic, d["alice"])[after] == "SECRET-AFTER-REVOCATION"


def test_late_joiner_does_not_read_history() -> None:
    w, topic, d, _ = _room()
    early = _say(w, topic, d["alice"], "old")
    dave = w.new_device(w.orgs[next(iter(w.orgs))], "dave")
    state = w.room(topic)
    w.append(d["alice"], topic, compose_add(state, d["alice"], dave.public_key,
                                            next(iter(w.orgs))))
    w.append(d["alice"], topic, compose_rekey(w.room(topic), d["alice"], w.now_ms))
    new = _say(w, topic, d["alice"], "new")
    seen = _texts(w, topic, dave)
    assert seen[early] is MessageStatus.UNDECRYPTABLE
    assert seen[new] == "new"


def test_relay_holding_everything_sees_no_plaintext() -> None:
    """A store-and-relay node holds every entry and payload of every topic (room and
    control) but no member key: the marker must appear in none of those bytes."""
    w, topic, d, _ = _room()
    marker = "MARKER-" + os.urandom(8).hex()
    _say(w, topic, d["alice"], f"Patient {marker} Zimmer 12")
    _say(w, topic, d["bob"], marker * 3)
    everything = b"".join(w.all_payload_bytes())
    everything += b"".join(e.to_bytes() for items in w.topics.values() for e, _ in items)
    for encoding in ("utf-8", "utf-16-le", "utf-16-be"):
        assert marker.encode(encoding) not in everything
    relay = Identity.generate()
    assert all(m.status is MessageStatus.UNDECRYPTABLE
               for m in decrypt_messages(w.room(topic), relay))
    assert any(marker in str(v) for v in _texts(w, topic, d["carol"]).values())


def test_replayed_ciphertext_under_another_author_does_not_decrypt() -> None:
    w, topic, d, _ = _room()
    original = _say(w, topic, d["bob"], "bob's words")
    payload = next(p for e, p in w.topics[topic] if e.id == original)
    assert payload is not None
    replay = w.append(d["carol"], topic, payload).id  # carol is a member: entry accepted
    seen = _texts(w, topic, d["alice"])
    assert seen[original] == "bob's words"
    assert seen[replay] is MessageStatus.UNDECRYPTABLE


def test_garbage_sealed_to_a_member_only_hides_that_epoch() -> None:
    from p2pmsg.messaging.payloads import EpochKeys, encode_room_payload
    w, topic, d, _ = _room()
    members = sorted(p.public_key for p in d.values())
    bogus = EpochKeys(tuple((m, os.urandom(80)) for m in members))
    w.append(d["carol"], topic, encode_room_payload(bogus))  # a malicious member
    view = w.room(topic).view
    keys = open_epoch_keys(view, d["bob"])
    assert view.epochs[0].id in keys and view.epochs[1].id not in keys
