"""Device certificates: issue, encode/decode, verify, and every way to fail."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pmsg.certs import (
    MAX_CERT_TIME,
    MAX_DISPLAY_NAME,
    PERSON_ID_SIZE,
    DeviceCertificate,
    Role,
    decode_certificate,
    issue_certificate,
    person_id,
    random_person_id,
    verify_certificate,
)
from p2pmsg.errors import CertificateError, DecodeError, Reason, ValidationError
from p2pmsg.identity import Domain, Identity

ORG = Identity.from_seed(b"\x01" * 32)
OTHER_ORG = Identity.from_seed(b"\x02" * 32)
DEVICE = Identity.from_seed(b"\x03" * 32).public_key
T0 = 1_700_000_000_000
DAY = 86_400_000
PERSON = bytes(range(16))


def _cert(**kw: object) -> DeviceCertificate:
    args: dict[str, object] = {"org_root": ORG, "device": DEVICE, "role": Role.MEMBER,
                               "display_name": "Station 3B", "valid_from": T0,
                               "valid_until": T0 + DAY}
    args.update(kw)
    return issue_certificate(**args)  # type: ignore[arg-type]


def _signed(body: list[object], key: Identity = ORG) -> bytes:
    b = cbor2.dumps(body, canonical=True)
    return cbor2.dumps([b, key.sign(Domain.CERTIFICATE, b)], canonical=True)


def _body(cert: DeviceCertificate) -> list[object]:
    return [1, cert.org, cert.device, cert.role.value, cert.display_name, cert.valid_from,
            cert.valid_until]


def test_issue_round_trip_and_verify() -> None:
    cert = _cert()
    assert cert.org == ORG.public_key
    decoded = decode_certificate(cert.to_bytes())
    assert decoded == cert
    verify_certificate(decoded, ORG.public_key, T0)
    verify_certificate(decoded, ORG.public_key, T0 + DAY - 1)


@pytest.mark.parametrize("role", list(Role))
def test_every_role_round_trips(role: Role) -> None:
    cert = _cert(role=role)
    assert decode_certificate(cert.to_bytes()).role is role


def test_signature_is_over_certificate_domain() -> None:
    cert = _cert()
    assert ORG.sign(Domain.CERTIFICATE, cert.body()) == cert.signature


@pytest.mark.parametrize("now", [T0 - 1, T0 + DAY, T0 + 10 * DAY, 0])
def test_outside_window_is_expired(now: int) -> None:
    with pytest.raises(CertificateError) as exc:
        verify_certificate(_cert(), ORG.public_key, now)
    assert exc.value.reason is Reason.CERT_EXPIRED


def test_wrong_issuer() -> None:
    with pytest.raises(CertificateError) as exc:
        verify_certificate(_cert(), OTHER_ORG.public_key, T0)
    assert exc.value.reason is Reason.CERT_WRONG_ISSUER


def test_forged_issuer_field_is_bad_signature() -> None:
    """Claiming ORG as issuer while signing with another key is caught by the signature."""
    cert = decode_certificate(_signed(_body(_cert()), OTHER_ORG))
    with pytest.raises(CertificateError) as exc:
        verify_certificate(cert, ORG.public_key, T0)
    assert exc.value.reason is Reason.BAD_SIGNATURE


@pytest.mark.parametrize(
    "change",
    [
        {"device": b"\x09" * 32},
        {"role": Role.ADMIN},
        {"display_name": "Station 3C"},
        {"valid_from": T0 - 1},
        {"valid_until": T0 + 2 * DAY},
        {"signature": bytes(64)},
    ],
)
def test_any_changed_field_breaks_signature(change: dict[str, object]) -> None:
    tampered = dataclasses.replace(_cert(), **change)  # type: ignore[arg-type]
    with pytest.raises(CertificateError) as exc:
        verify_certificate(tampered, ORG.public_key, T0)
    assert exc.value.reason is Reason.BAD_SIGNATURE


def test_entry_domain_signature_is_rejected() -> None:
    cert = _cert()
    wrong = dataclasses.replace(cert, signature=ORG.sign(Domain.ENTRY, cert.body()))
    with pytest.raises(CertificateError) as exc:
        verify_certificate(wrong, ORG.public_key, T0)
    assert exc.value.reason is Reason.BAD_SIGNATURE


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"device": b"\x01" * 31}, "32 bytes"),
        ({"display_name": ""}, "display name"),
        ({"display_name": "x" * (MAX_DISPLAY_NAME + 1)}, "display name"),
        ({"valid_from": T0, "valid_until": T0}, "validity"),
        ({"valid_from": -1}, "validity"),
        ({"valid_until": MAX_CERT_TIME + 1}, "validity"),
    ],
)
def test_issue_rejects_bad_arguments(kw: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _cert(**kw)


def test_longest_name_in_widest_characters_fits() -> None:
    cert = _cert(display_name="\U0001f3e5" * MAX_DISPLAY_NAME, valid_until=MAX_CERT_TIME)
    assert decode_certificate(cert.to_bytes()) == cert


BODY = _body(_cert())


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", Reason.MALFORMED),
        (b"\xff", Reason.MALFORMED),
        (cbor2.dumps(42), Reason.MALFORMED),
        (cbor2.dumps([b"a"]), Reason.MALFORMED),
        (cbor2.dumps([b"a", b"b", b"c"]), Reason.MALFORMED),
        (cbor2.dumps([b"\xff", bytes(64)]), Reason.MALFORMED),  # body not CBOR
        (cbor2.dumps([cbor2.dumps({}), bytes(64)]), Reason.MALFORMED),
        (cbor2.dumps([cbor2.dumps([]), bytes(64)]), Reason.MALFORMED),
        (_signed([3, *BODY[1:], PERSON]), Reason.UNKNOWN_VERSION),
        (_signed([0, *BODY[1:]]), Reason.UNKNOWN_VERSION),
        (_signed([2, *BODY[1:]]), Reason.MALFORMED),  # v2 needs the person field
        (_signed([1, *BODY[1:], PERSON]), Reason.MALFORMED),  # v1 has no person field
        (_signed([2, *BODY[1:], None]), Reason.MALFORMED),
        (_signed([2, *BODY[1:], PERSON[:15]]), Reason.MALFORMED),
        (_signed([2, *BODY[1:], PERSON + b"\x00"]), Reason.MALFORMED),
        (_signed([2, *BODY[1:], "person"]), Reason.MALFORMED),
        (_signed([2, *BODY[1:], PERSON, 0]), Reason.MALFORMED),
        (_signed(["1", *BODY[1:]]), Reason.MALFORMED),
        (_signed(BODY[:6]), Reason.MALFORMED),
        (_signed([*BODY, 0]), Reason.MALFORMED),
        (_signed([1, BODY[1][:31], *BODY[2:]]), Reason.MALFORMED),
        (_signed([*BODY[:2], "device", *BODY[3:]]), Reason.MALFORMED),
        (_signed([*BODY[:3], "root", *BODY[4:]]), Reason.MALFORMED),
        (_signed([*BODY[:3], 7, *BODY[4:]]), Reason.MALFORMED),
        (_signed([*BODY[:4], b"name", *BODY[5:]]), Reason.MALFORMED),
        (_signed([*BODY[:5], T0 + 1, T0]), Reason.MALFORMED),
        (_signed([*BODY[:5], -1, T0]), Reason.MALFORMED),
        (_signed([*BODY[:6], MAX_CERT_TIME + 1]), Reason.MALFORMED),  # bignum
        (cbor2.dumps([cbor2.dumps(BODY, canonical=True), bytes(63)]), Reason.MALFORMED),
        (b"\x9f" + _cert().to_bytes()[1:] + b"\xff", Reason.NON_CANONICAL),
        (_cert().to_bytes() + b"\x00", Reason.NON_CANONICAL),
        (bytes(1025), Reason.TOO_LARGE),
    ],
)
def test_decode_rejects(data: bytes, reason: Reason) -> None:
    with pytest.raises(DecodeError) as exc:
        decode_certificate(data)
    assert exc.value.reason is reason


def test_non_canonical_body_is_rejected() -> None:
    body = b"\x87\x18\x01" + cbor2.dumps(BODY, canonical=True)[2:]  # version as 0x18 0x01
    data = cbor2.dumps([body, ORG.sign(Domain.CERTIFICATE, body)], canonical=True)
    with pytest.raises(DecodeError) as exc:
        decode_certificate(data)
    assert exc.value.reason is Reason.NON_CANONICAL


@given(st.binary(max_size=1100))
def test_decode_garbage_raises_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_certificate(data)


def test_certificate_error_is_validation_error() -> None:
    assert issubclass(CertificateError, ValidationError)


# --------------------------------------------------------------------------- persons (v2)


def test_certificate_without_person_is_version_1() -> None:
    cert = _cert()
    assert cert.person is None and cert.version == 1
    assert cbor2.loads(cert.body()) == _body(cert)


def test_person_certificate_is_version_2_with_8_fields() -> None:
    cert = _cert(person=PERSON)
    assert cert.version == 2
    body = cbor2.loads(cert.body())
    assert body == [2, *_body(cert)[1:], PERSON]
    decoded = decode_certificate(cert.to_bytes())
    assert decoded == cert and decoded.person == PERSON
    verify_certificate(decoded, ORG.public_key, T0)


def test_changed_person_breaks_signature() -> None:
    cert = _cert(person=PERSON)
    for other in (bytes(16), None):
        tampered = dataclasses.replace(cert, person=other)
        with pytest.raises(CertificateError) as exc:
            verify_certificate(tampered, ORG.public_key, T0)
        assert exc.value.reason is Reason.BAD_SIGNATURE


@pytest.mark.parametrize("person", [b"", bytes(15), bytes(17), bytes(32)])
def test_issue_rejects_bad_person(person: bytes) -> None:
    with pytest.raises(ValueError, match="person id"):
        _cert(person=person)


def test_person_id_is_deterministic_keyed_and_pseudonymous() -> None:
    a = person_id(ORG, "staff-4711")
    assert len(a) == PERSON_ID_SIZE
    assert person_id(ORG, "staff-4711") == a
    assert person_id(ORG, "staff-4712") != a
    assert person_id(OTHER_ORG, "staff-4711") != a  # keyed with the root secret
    # NFC: the same handle typed with a combining accent gives the same id
    assert person_id(ORG, "Ren\u00e9") == person_id(ORG, "Rene\u0301")
    # not a plain (unkeyed) hash of the handle, so a reader of the control topic
    # cannot test guesses without the org root secret
    assert a != hashlib.blake2b(b"staff-4711", digest_size=16).digest()


@pytest.mark.parametrize("handle", ["", "x" * 257])
def test_person_id_rejects_bad_handles(handle: str) -> None:
    with pytest.raises(ValueError, match="handle"):
        person_id(ORG, handle)


def test_random_person_ids_differ_and_issue() -> None:
    a, b = random_person_id(), random_person_id()
    assert a != b and len(a) == len(b) == PERSON_ID_SIZE
    assert decode_certificate(_cert(person=a).to_bytes()).person == a


@given(st.binary(min_size=16, max_size=16), st.sampled_from(list(Role)))
def test_person_certificates_round_trip(person: bytes, role: Role) -> None:
    cert = _cert(person=person, role=role)
    assert decode_certificate(cert.to_bytes()) == cert
