"""Fork proofs: detection, verification, wire form, and exact detection in random histories."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pmsg.entry import Entry, create_entry, decode_entry
from p2pmsg.errors import DecodeError, Reason, ValidationError
from p2pmsg.forks import (
    MAX_FORK_PROOF_SIZE,
    ForkProof,
    check_fork,
    decode_fork_proof,
    find_forks,
    verify_fork_proof,
)
from p2pmsg.identity import SIGNATURE_SIZE, Identity

ALICE = Identity.from_seed(b"\xa1" * 32)
BOB = Identity.from_seed(b"\xb0" * 32)
TOPIC = hashlib.blake2b(b"room", digest_size=32).digest()
OTHER = hashlib.blake2b(b"other", digest_size=32).digest()


def _e(key: Identity = ALICE, topic: bytes = TOPIC, seq: int = 1, payload: bytes = b"p",
       backlink: bytes | None = None) -> Entry:
    if seq > 1 and backlink is None:
        backlink = bytes(32)
    return create_entry(key, topic, seq, backlink, 0, payload)


def test_check_fork_detects_equivocation() -> None:
    a, b = _e(payload=b"a"), _e(payload=b"b")
    proof = check_fork(a, b)
    assert proof is not None
    assert proof == check_fork(b, a)  # one proof per fork, whatever the argument order
    assert proof.first.id < proof.second.id
    assert {proof.first.id, proof.second.id} == {a.id, b.id}
    assert proof.log_id == (ALICE.public_key, TOPIC)
    assert proof.seq == 1
    verify_fork_proof(proof)


@pytest.mark.parametrize(
    "other",
    [
        _e(payload=b"a"),  # the same entry
        _e(payload=b"b", seq=2),  # another seq
        _e(payload=b"b", topic=OTHER),  # another topic
        _e(payload=b"b", key=BOB),  # another author
    ],
)
def test_check_fork_ignores_non_conflicts(other: Entry) -> None:
    assert check_fork(_e(payload=b"a"), other) is None


def _proof_pair() -> tuple[Entry, Entry]:
    a, b = _e(payload=b"a"), _e(payload=b"b")
    return (a, b) if a.id < b.id else (b, a)


def _reason(fn: Any) -> Reason:
    with pytest.raises(ValidationError) as exc:
        fn()
    return exc.value.reason


def test_verify_fork_proof_rejects_non_forks() -> None:
    lo, hi = _proof_pair()
    assert _reason(lambda: verify_fork_proof(ForkProof(lo, lo))) is Reason.MALFORMED
    assert _reason(lambda: verify_fork_proof(ForkProof(hi, lo))) is Reason.MALFORMED
    s2 = _e(seq=2)
    x, y = sorted([lo, s2], key=lambda e: e.id)
    assert _reason(lambda: verify_fork_proof(ForkProof(x, y))) is Reason.MALFORMED
    b = _e(key=BOB)
    x, y = sorted([lo, b], key=lambda e: e.id)
    assert _reason(lambda: verify_fork_proof(ForkProof(x, y))) is Reason.MALFORMED


def test_verify_fork_proof_needs_both_signatures() -> None:
    """Nobody can frame an author: both headers must carry the author's signature."""
    a = _e(payload=b"a")
    fake = decode_entry(_e(payload=b"b").raw + bytes(SIGNATURE_SIZE))
    proof = ForkProof.of(a, fake)
    assert _reason(lambda: verify_fork_proof(proof)) is Reason.BAD_SIGNATURE
    with pytest.raises(ValidationError) as exc:
        decode_fork_proof(proof.to_bytes())
    assert exc.value.reason is Reason.BAD_SIGNATURE


def test_wire_round_trip() -> None:
    proof = ForkProof.of(*_proof_pair())
    data = proof.to_bytes()
    assert cbor2.loads(data) == [proof.first.to_bytes(), proof.second.to_bytes()]
    assert decode_fork_proof(data) == proof
    assert len(data) <= MAX_FORK_PROOF_SIZE


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", Reason.MALFORMED),
        (b"\xff\xff", Reason.MALFORMED),
        (cbor2.dumps(1), Reason.MALFORMED),
        (cbor2.dumps([]), Reason.MALFORMED),
        (cbor2.dumps([b"a"]), Reason.MALFORMED),
        (cbor2.dumps([b"a", "b"]), Reason.MALFORMED),
        (cbor2.dumps([b"a", b"b", b"c"]), Reason.MALFORMED),
        (cbor2.dumps([b"\xff" * 100, b"\xff" * 100]), Reason.MALFORMED),  # entries not CBOR
        (bytes(MAX_FORK_PROOF_SIZE + 1), Reason.TOO_LARGE),
        (b"\x9f" + ForkProof.of(*_proof_pair()).to_bytes()[1:] + b"\xff", Reason.NON_CANONICAL),
    ],
)
def test_decode_fork_proof_garbage(data: bytes, reason: Reason) -> None:
    with pytest.raises(DecodeError) as exc:
        decode_fork_proof(data)
    assert exc.value.reason is reason


@given(st.binary(max_size=2300))
def test_decode_fork_proof_random_bytes(data: bytes) -> None:
    # DecodeError is one ValidationError; BAD_SIGNATURE etc. are the others.
    with contextlib.suppress(ValidationError):
        decode_fork_proof(data)


def test_find_forks_empty_and_clean() -> None:
    assert find_forks([]) == []
    e1 = _e()
    e2 = create_entry(ALICE, TOPIC, 2, e1.id, 0, b"")
    assert find_forks([e1, e2, e1, e2]) == []  # re-delivery is no fork


def test_find_forks_three_versions_gives_three_proofs() -> None:
    versions = [_e(payload=bytes([i])) for i in range(3)]
    proofs = find_forks(versions)
    assert len(proofs) == 3
    pairs = {(p.first.id, p.second.id) for p in proofs}
    assert pairs == {tuple(sorted((a.id, b.id))) for a, b in itertools.combinations(versions, 2)}
    for p in proofs:
        verify_fork_proof(p)


# --------------------------------------------------------------------------- property (d)

AUTHORS = [Identity.from_seed(bytes([0x40 + i]) * 32) for i in range(3)]
TOPICS = [hashlib.blake2b(bytes([i]), digest_size=32).digest() for i in range(2)]


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Entry], set[tuple[bytes, bytes]]]:
    """A random multi-author, multi-topic history with random equivocations.

    Returns the delivered entries (shuffled, some delivered twice) and the expected
    set of fork pairs, computed from what the generator *created*: every two distinct
    entries it signed at one (author, topic, seq).
    """
    created: dict[tuple[bytes, bytes, int], list[Entry]] = {}
    delivered: list[Entry] = []

    def make(key: Identity, topic: bytes, seq: int, prev: Entry | None, tag: str) -> Entry:
        e = create_entry(key, topic, seq, None if prev is None else prev.id, seq,
                         f"{tag}".encode())
        created.setdefault((key.public_key, topic, seq), []).append(e)
        delivered.append(e)
        return e

    for ai, key in enumerate(AUTHORS):
        for ti, topic in enumerate(TOPICS):
            length = draw(st.integers(0, 5), label="log length")
            prev: Entry | None = None
            for seq in range(1, length + 1):
                main = make(key, topic, seq, prev, f"{ai}/{ti}/{seq}/main")
                extra = draw(st.integers(0, 2), label="equivocations here")
                for v in range(extra):
                    alt = make(key, topic, seq, prev, f"{ai}/{ti}/{seq}/alt{v}")
                    if draw(st.booleans(), label="extend the forked branch"):
                        make(key, topic, seq + 1, alt, f"{ai}/{ti}/{seq + 1}/branch{v}")
                prev = main
    dupes = draw(st.lists(st.sampled_from(delivered), max_size=5)) if delivered else []
    order = draw(st.permutations(delivered + dupes), label="delivery order")
    expected = {
        (min(a.id, b.id), max(a.id, b.id))
        for versions in created.values()
        for a, b in itertools.combinations(versions, 2)
    }
    return list(order), expected


@settings(max_examples=60)
@given(histories())
def test_property_find_forks_is_exact(history: tuple[list[Entry], set[tuple[bytes, bytes]]]
                                      ) -> None:
    entries, expected = history
    proofs = find_forks(entries)
    found = [(p.first.id, p.second.id) for p in proofs]
    assert len(found) == len(set(found)), "a fork reported twice"
    assert set(found) == expected, "missed or invented an equivocation"
    for p in proofs:
        verify_fork_proof(p)
        assert decode_fork_proof(p.to_bytes()) == p
