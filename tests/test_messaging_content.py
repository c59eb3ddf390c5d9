"""Payload encodings: every kind round-trips, garbage raises only DecodeError,
unknown kinds and newer versions decode to Unknown* values (kept, never dropped)."""

from __future__ import annotations

import contextlib
import json
import os

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pmsg import _cbor
from p2pmsg.certs import Role, decode_certificate, issue_certificate
from p2pmsg.errors import DecodeError, Reason
from p2pmsg.identity import Identity
from p2pmsg.messaging import (
    Attachment,
    AttachmentDescriptor,
    Edit,
    FhirCommunication,
    Kind,
    Reaction,
    ReadReceipt,
    Redaction,
    Reply,
    Revocation,
    Text,
    UnknownContent,
    compose_certificate,
    compose_revocation,
    decode_content,
    decode_control_payload,
    decode_room_payload,
    encode_content,
)
from p2pmsg.messaging.org import UnknownControl
from p2pmsg.messaging.payloads import (
    EpochKeys,
    MemberAdd,
    MemberLeave,
    MemberRemove,
    MemberRole,
    MemberSpec,
    RelayAdd,
    RelayRemove,
    RoomCreate,
    RoomKind,
    RoomRole,
    Sealed,
    UnknownPayload,
    encode_room_payload,
)

ID = os.urandom(32)
COMMUNICATION = json.dumps({
    "resourceType": "Communication", "status": "completed",
    "payload": [{"contentString": "Labor: K+ 5.9 mmol/l"}],
})

CONTENTS = [
    Text("hallo"),
    Text(""),
    Attachment(Kind.VOICE, AttachmentDescriptor(os.urandom(32), 12_345, "audio/ogg",
                                                os.urandom(32)), ""),
    Attachment(Kind.IMAGE, AttachmentDescriptor(os.urandom(32), 1, "image/png", os.urandom(32),
                                                "x.png"), "caption"),
    Attachment(Kind.DOCUMENT, AttachmentDescriptor(os.urandom(32), 2**40, "application/pdf",
                                                   os.urandom(32), "Arztbrief.pdf")),
    Attachment(Kind.VIDEO, AttachmentDescriptor(os.urandom(32), 3 * 2**30, "video/mp4",
                                                os.urandom(32))),
    FhirCommunication(COMMUNICATION, "Labor: K+ 5.9", "http://example.org/fhir/Profile", "4.0.1"),
    Reply(ID, "ok"),
    Edit(ID, "korrigiert"),
    Redaction(ID, "wrong patient"),
    Reaction(ID, "👍"),
    ReadReceipt(ID),
]


@pytest.mark.parametrize("content", CONTENTS, ids=lambda c: type(c).__name__)
def test_content_round_trips(content: object) -> None:
    data = encode_content(content)  # type: ignore[arg-type]
    assert decode_content(data) == content
    assert _cbor.dumps(cbor2.loads(data)) == data  # canonical


def test_every_content_kind_is_covered() -> None:
    covered = {Kind.TEXT, Kind.FHIR, Kind.REPLY, Kind.EDIT, Kind.REDACTION, Kind.REACTION,
               Kind.READ_RECEIPT} | {c.kind for c in CONTENTS if isinstance(c, Attachment)}
    assert covered == {k for k in Kind if k < 32}


def test_fhir_must_be_a_communication_resource() -> None:
    with pytest.raises(ValueError, match="Communication"):
        encode_content(FhirCommunication(json.dumps({"resourceType": "Patient"}), "x"))
    with pytest.raises(ValueError, match="JSON"):
        encode_content(FhirCommunication("{not json", "x"))
    forged = _cbor.dumps([Kind.FHIR, 1, "[1, 2]", "fallback", "", "4.0.1"])
    with pytest.raises(DecodeError):
        decode_content(forged)


def test_attachment_kind_must_be_an_attachment() -> None:
    desc = AttachmentDescriptor(os.urandom(32), 1, "text/plain", os.urandom(32))
    with pytest.raises(ValueError, match="attachment"):
        encode_content(Attachment(Kind.TEXT, desc))


def test_unknown_kind_and_newer_version_are_kept() -> None:
    future = _cbor.dumps([29, 1, "a new kind", [1, 2]])
    assert decode_content(future) == UnknownContent(29, 1, future)
    newer_text = _cbor.dumps([Kind.TEXT, 2, "text", "with a new field"])
    assert decode_content(newer_text) == UnknownContent(Kind.TEXT, 2, newer_text)
    far = _cbor.dumps([1000, 7])
    assert isinstance(decode_content(far), UnknownContent)


def test_room_kind_inside_ciphertext_is_malformed() -> None:
    with pytest.raises(DecodeError) as info:
        decode_content(_cbor.dumps([Kind.MEMBER_LEAVE, 1]))
    assert info.value.reason is Reason.MALFORMED


@pytest.mark.parametrize(
    "data",
    [
        _cbor.dumps([Kind.TEXT, 1]),  # missing field
        _cbor.dumps([Kind.TEXT, 1, b"bytes"]),  # wrong type
        _cbor.dumps([Kind.TEXT, 0, "x"]),  # version 0
        _cbor.dumps([-1, 1, "x"]),  # negative kind
        _cbor.dumps(["text", 1, "x"]),  # kind not int
        _cbor.dumps([Kind.REPLY, 1, b"short", "x"]),
        _cbor.dumps([Kind.REACTION, 1, ID, ""]),  # empty key
        _cbor.dumps([Kind.TEXT, 1, "x" * 65_537]),
        _cbor.dumps({"kind": 1}),
        _cbor.dumps([1]),
        b"",
        b"\xff",
        bytes.fromhex("9f0101ff"),  # indefinite array: non-canonical
    ],
)
def test_bad_contents_raise_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_content(data)


def _room_payloads() -> list[object]:
    return [
        RoomCreate(ID, os.urandom(32), RoomKind.GROUP, os.urandom(16), 5,
                   (MemberSpec(b"\x01" * 32, ID, RoomRole.ADMIN), MemberSpec(b"\x02" * 32, ID))),
        RoomCreate(ID, os.urandom(32), RoomKind.DIRECT, os.urandom(16), 0, ()),
        MemberAdd(os.urandom(32), os.urandom(32), RoomRole.ADMIN),
        MemberRemove(os.urandom(32)),
        MemberLeave(),
        MemberRole(os.urandom(32), RoomRole.MEMBER),
        EpochKeys(tuple(sorted((os.urandom(32), os.urandom(80)) for _ in range(3)))),
        Sealed(os.urandom(32), os.urandom(24), os.urandom(100)),
        RelayAdd(os.urandom(32), os.urandom(32)),
        RelayRemove(os.urandom(32)),
    ]


@pytest.mark.parametrize("payload", _room_payloads(), ids=lambda p: type(p).__name__)
def test_room_payload_round_trips(payload: object) -> None:
    data = encode_room_payload(payload)  # type: ignore[arg-type]
    assert decode_room_payload(data) == payload


def test_room_payload_rules() -> None:
    unsorted = EpochKeys(((b"\x02" * 32, os.urandom(80)), (b"\x01" * 32, os.urandom(80))))
    with pytest.raises(ValueError, match="wrong type"):
        encode_room_payload(unsorted)
    with pytest.raises(ValueError):
        encode_room_payload(EpochKeys(()))  # an epoch with nobody in it
    dup = (MemberSpec(b"\x01" * 32, ID), MemberSpec(b"\x01" * 32, ID))
    with pytest.raises(ValueError):
        encode_room_payload(RoomCreate(ID, ID, RoomKind.GROUP, os.urandom(16), 1, dup))
    with pytest.raises(ValueError, match="creator"):
        encode_room_payload(RoomCreate(ID, ID, RoomKind.GROUP, os.urandom(16), 1,
                                       (MemberSpec(ID, ID),)))


def test_unknown_room_and_control_payloads_are_kept() -> None:
    future_room = _cbor.dumps([50, 1, "future op"])
    assert decode_room_payload(future_room) == UnknownPayload(50, 1, future_room)
    newer = _cbor.dumps([Kind.MEMBER_ADD, 9, "?"])
    assert decode_room_payload(newer) == UnknownPayload(Kind.MEMBER_ADD, 9, newer)
    future_ctl = _cbor.dumps([70, 1])
    assert decode_control_payload(future_ctl) == UnknownControl(70, 1, future_ctl)


def test_control_payloads_round_trip() -> None:
    root, dev = Identity.generate(), Identity.generate()
    cert = issue_certificate(root, dev.public_key, Role.ADMIN, "Station 3", 0, 10)
    decoded = decode_control_payload(compose_certificate(cert))
    assert decoded == decode_certificate(cert.to_bytes())
    t1, t2 = os.urandom(32), os.urandom(32)
    rev = decode_control_payload(compose_revocation(dev.public_key, 99, {t2: 3, t1: 4}, "lost"))
    assert rev == Revocation(dev.public_key, 99, tuple(sorted({t1: 4, t2: 3}.items())), "lost")


_cbor_values = st.recursive(
    st.none() | st.integers(-(2**64), 2**64) | st.binary(max_size=40) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=6),
    max_leaves=8,
)


@st.composite
def _framed(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from([int(k) for k in Kind] + [0, 12, 50, 66, 200]))
    version = draw(st.integers(-1, 3))
    fields = draw(st.lists(_cbor_values, max_size=7))
    return _cbor.dumps([kind, version, *fields])


@settings(max_examples=250, deadline=None)
@given(st.one_of(st.binary(max_size=200), _framed()))
def test_decoders_raise_only_decode_error(data: bytes) -> None:
    """Fuzz: any bytes either decode or raise DecodeError — nothing else escapes."""
    for decoder in (decode_content, decode_room_payload, decode_control_payload):
        with contextlib.suppress(DecodeError):
            decoder(data)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_corrupted_valid_payloads_raise_only_decode_error(data: st.DataObject) -> None:
    good = [encode_content(c) for c in CONTENTS] + [
        encode_room_payload(p) for p in _room_payloads()  # type: ignore[arg-type]
    ]
    blob = bytearray(data.draw(st.sampled_from(good)))
    pos = data.draw(st.integers(0, len(blob) - 1))
    blob[pos] ^= data.draw(st.integers(1, 255))
    for decoder in (decode_content, decode_room_payload, decode_control_payload):
        with contextlib.suppress(DecodeError):
            decoder(bytes(blob))
