"""Identity: keys, domain-separated signatures, and a verify() that never raises."""

from __future__ import annotations

import hashlib

import nacl.signing
import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pmsg.identity import (
    PUBLIC_KEY_SIZE,
    SIGNATURE_SIZE,
    Domain,
    Identity,
    short_id,
    verify,
)

SEED = bytes(range(32))
# Order of the Ed25519 base-point group; S + L is a non-canonical spelling of S.
ED25519_L = 2**252 + 27742317777372353535851937790883648493


def test_from_seed_is_deterministic_and_matches_nacl() -> None:
    a, b = Identity.from_seed(SEED), Identity.from_seed(SEED)
    assert a.public_key == b.public_key
    assert a.public_key == bytes(nacl.signing.SigningKey(SEED).verify_key)
    assert len(a.public_key) == PUBLIC_KEY_SIZE
    assert a.seed() == SEED


def test_generate_gives_distinct_keys() -> None:
    assert Identity.generate().public_key != Identity.generate().public_key


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_from_seed_rejects_wrong_size(size: int) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Identity.from_seed(bytes(size))


def test_repr_hides_secret() -> None:
    ident = Identity.from_seed(SEED)
    text = repr(ident)
    assert SEED.hex() not in text
    assert ident.public_key.hex() not in text
    assert ident.short_id in text


def test_short_id_is_blake2b_fingerprint() -> None:
    key = Identity.from_seed(SEED).public_key
    assert short_id(key) == hashlib.blake2b(key, digest_size=6).hexdigest()
    assert len(short_id(key)) == 12


def test_sign_covers_domain_prefix() -> None:
    ident = Identity.from_seed(SEED)
    sig = ident.sign(Domain.ENTRY, b"msg")
    assert len(sig) == SIGNATURE_SIZE
    # The signature is a plain Ed25519 signature over domain || message.
    nacl.signing.VerifyKey(ident.public_key).verify(Domain.ENTRY.value + b"msg", sig)
    assert verify(ident.public_key, Domain.ENTRY, b"msg", sig)


def test_domains_are_prefix_free_and_nul_terminated() -> None:
    values = [d.value for d in Domain]
    assert len(set(values)) == len(values)
    for a in values:
        assert a.endswith(b"\x00")
        assert a.count(b"\x00") == 1
        for b in values:
            if a != b:
                assert not b.startswith(a)


@pytest.mark.parametrize("signed_in", list(Domain))
@pytest.mark.parametrize("checked_in", list(Domain))
def test_domain_separation(signed_in: Domain, checked_in: Domain) -> None:
    ident = Identity.from_seed(SEED)
    sig = ident.sign(signed_in, b"same bytes")
    assert verify(ident.public_key, checked_in, b"same bytes", sig) == (signed_in is checked_in)


def test_entry_signature_does_not_verify_as_certificate() -> None:
    ident = Identity.from_seed(SEED)
    sig = ident.sign(Domain.ENTRY, b"header")
    assert verify(ident.public_key, Domain.ENTRY, b"header", sig)
    assert not verify(ident.public_key, Domain.CERTIFICATE, b"header", sig)


def test_domain_cannot_be_shifted_into_the_message() -> None:
    """Moving bytes between domain and message does not help: domains are fixed."""
    ident = Identity.from_seed(SEED)
    sig = ident.sign(Domain.ENTRY, b"x")
    assert not verify(ident.public_key, Domain.ENTRY, Domain.ENTRY.value + b"x", sig)


def test_verify_rejects_other_key_and_other_message() -> None:
    a, b = Identity.from_seed(SEED), Identity.from_seed(bytes(32))
    sig = a.sign(Domain.ENTRY, b"m")
    assert not verify(b.public_key, Domain.ENTRY, b"m", sig)
    assert not verify(a.public_key, Domain.ENTRY, b"n", sig)


@pytest.mark.parametrize("key_size", [0, 1, 31, 33, 64])
def test_verify_false_on_bad_key_size(key_size: int) -> None:
    sig = Identity.from_seed(SEED).sign(Domain.ENTRY, b"m")
    assert verify(bytes(key_size), Domain.ENTRY, b"m", sig) is False


@pytest.mark.parametrize("sig_size", [0, 1, 63, 65, 128])
def test_verify_false_on_bad_signature_size(sig_size: int) -> None:
    key = Identity.from_seed(SEED).public_key
    assert verify(key, Domain.ENTRY, b"m", bytes(sig_size)) is False


def test_verify_false_on_invalid_points() -> None:
    ident = Identity.from_seed(SEED)
    sig = ident.sign(Domain.ENTRY, b"m")
    # all-zero / all-0xff keys are small-order or not points at all
    assert verify(bytes(32), Domain.ENTRY, b"m", sig) is False
    assert verify(b"\xff" * 32, Domain.ENTRY, b"m", sig) is False
    assert verify(ident.public_key, Domain.ENTRY, b"m", b"\xff" * 64) is False


def test_signature_is_not_malleable() -> None:
    """S + L spells the same scalar; libsodium must reject it (no second valid signature).

    This is what makes a fork proof evidence against the *author*: nobody else can
    turn one signed entry into a second, differently-identified valid one.
    """
    ident = Identity.from_seed(SEED)
    sig = ident.sign(Domain.ENTRY, b"m")
    s = int.from_bytes(sig[32:], "little")
    mauled = sig[:32] + (s + ED25519_L).to_bytes(32, "little")
    assert mauled != sig
    assert verify(ident.public_key, Domain.ENTRY, b"m", mauled) is False


@given(key=st.binary(max_size=70), sig=st.binary(max_size=130), msg=st.binary(max_size=64),
       domain=st.sampled_from(list(Domain)))
def test_verify_never_raises(key: bytes, sig: bytes, msg: bytes, domain: Domain) -> None:
    assert verify(key, domain, msg, sig) is False


def test_curve25519_private_matches_nacl() -> None:
    ident = Identity.from_seed(SEED)
    expected = bytes(nacl.signing.SigningKey(SEED).to_curve25519_private_key())
    assert ident.to_curve25519_private() == expected
