"""Federation list: signed, versioned, fail closed; bad input changes nothing."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pmsg import _cbor
from p2pmsg.errors import DecodeError, Reason, ValidationError
from p2pmsg.governance.federation import (
    DEFAULT_MAX_AGE_MS,
    FederationError,
    FederationRegistry,
    FederationStatus,
    Organisation,
    OrgKind,
    decode_federation_list,
    issue_federation_list,
)
from p2pmsg.identity import Domain, Identity

ISSUER = Identity.from_seed(b"\x01" * 32)
T0 = 1_700_000_000_000
ORG_A, ORG_B = b"\xaa" * 32, b"\xbb" * 32
NODE_A, NODE_B, STRANGER = b"\x0a" * 32, b"\x0b" * 32, b"\x0c" * 32


def orgs() -> list[Organisation]:
    return [
        Organisation(ORG_B, "Rehab Nord", OrgKind.CLINIC, (NODE_B,), ("quic://b:4433",)),
        Organisation(ORG_A, "Klinikum A", OrgKind.HOSPITAL, (NODE_A,), ("quic://a:4433",)),
    ]


def listing(version: int = 1, issued: int = T0, issuer: Identity = ISSUER) -> bytes:
    return issue_federation_list(issuer, version, issued, orgs()).raw


def test_roundtrip_and_lookup() -> None:
    flist = decode_federation_list(listing())
    assert [o.org_id for o in flist.organisations] == [ORG_A, ORG_B]  # sorted
    assert flist.max_age_ms == DEFAULT_MAX_AGE_MS == 72 * 3600 * 1000
    reg = FederationRegistry(ISSUER.public_key)
    assert reg.lookup(NODE_A, T0).status is FederationStatus.NO_LIST
    assert reg.accept(listing(), T0)
    found = reg.lookup(NODE_A, T0 + 1)
    assert found.allowed and found.org is not None and found.org.kind is OrgKind.HOSPITAL
    unknown = reg.lookup(STRANGER, T0 + 1)
    assert unknown.status is FederationStatus.UNKNOWN and not unknown.allowed
    assert "refetch" in unknown.reason
    assert not reg.accept(listing(), T0)  # same list again: a no-op


def test_stale_list_fails_closed_for_everyone_and_says_so() -> None:
    reg = FederationRegistry(ISSUER.public_key, listing(), T0)
    last_valid = T0 + DEFAULT_MAX_AGE_MS - 1
    assert reg.lookup(NODE_A, last_valid).allowed
    stale = reg.lookup(NODE_A, last_valid + 1)
    assert stale.status is FederationStatus.STALE and not stale.allowed
    assert "expired" in stale.reason
    assert reg.organisations(last_valid + 1) == {}
    # a newer list restores service
    assert reg.accept(listing(version=2, issued=last_valid), last_valid + 1)
    assert reg.lookup(NODE_A, last_valid + 1).allowed


def test_rollback_is_refused_and_changes_nothing() -> None:
    reg = FederationRegistry(ISSUER.public_key, listing(version=5), T0)
    for older in (4, 5):
        with pytest.raises(FederationError) as info:
            reg.accept(listing(version=older, issued=T0 + 10), T0 + 20)
        assert info.value.reason is Reason.ROLLBACK
        assert reg.current is not None and reg.current.version == 5
        assert reg.current.issued_ms == T0


def test_expired_list_is_refused() -> None:
    reg = FederationRegistry(ISSUER.public_key)
    with pytest.raises(FederationError) as info:
        reg.accept(listing(), T0 + DEFAULT_MAX_AGE_MS)
    assert info.value.reason is Reason.EXPIRED
    with pytest.raises(FederationError):  # issued far in the future
        reg.accept(listing(issued=T0 + 3_600_000), T0)
    assert reg.current is None


def test_wrong_issuer_and_forged_signature() -> None:
    reg = FederationRegistry(ISSUER.public_key, listing(), T0)
    other = Identity.from_seed(b"\x02" * 32)
    with pytest.raises(FederationError) as info:
        reg.accept(listing(version=2, issuer=other), T0)
    assert info.value.reason is Reason.WRONG_ISSUER
    # forged: claims ISSUER but is signed by another key
    good = decode_federation_list(listing(version=2))
    forged_sig = other.sign(Domain.FEDERATION, good.body())
    forged = _cbor.dumps([good.body(), forged_sig])
    with pytest.raises(FederationError) as info:
        reg.accept(forged, T0)
    assert info.value.reason is Reason.BAD_SIGNATURE
    # right signature, wrong domain
    wrong_domain = _cbor.dumps([good.body(), ISSUER.sign(Domain.CERTIFICATE, good.body())])
    with pytest.raises(FederationError):
        reg.accept(wrong_domain, T0)
    assert reg.current is not None and reg.current.version == 1


def test_node_key_in_two_orgs_is_malformed() -> None:
    bad = [Organisation(ORG_A, "A", OrgKind.LAB, (NODE_A,)),
           Organisation(ORG_B, "B", OrgKind.LAB, (NODE_A,))]
    with pytest.raises(ValueError, match="twice"):
        issue_federation_list(ISSUER, 1, T0, bad)


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_decoder_raises_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_federation_list(data)


@settings(max_examples=200)
@given(st.data())
def test_any_corrupted_byte_is_refused_and_changes_nothing(data: st.DataObject) -> None:
    raw = bytearray(listing(version=2))
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] ^= data.draw(st.integers(1, 255))
    reg = FederationRegistry(ISSUER.public_key, listing(version=1), T0)
    before = reg.current
    with pytest.raises(ValidationError):
        reg.accept(bytes(raw), T0)
    assert reg.current is before


@settings(max_examples=100)
@given(st.recursive(st.integers(-5, 2**64) | st.binary(max_size=40) | st.text(max_size=8)
                    | st.none(), lambda c: st.lists(c, max_size=7), max_leaves=30))
def test_structured_garbage_raises_only_decode_error(value: object) -> None:
    body = _cbor.dumps([1, *value] if isinstance(value, list) else value)
    for data in (_cbor.dumps([body, b"\x00" * 64]), body):
        with contextlib.suppress(DecodeError):
            decode_federation_list(data)
