"""Validation: linkage, signatures, payloads, chain verification, and every Reason code."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest

from p2pmsg.certs import Role, decode_certificate, issue_certificate, verify_certificate
from p2pmsg.entry import Entry, create_entry, decode_entry
from p2pmsg.errors import ForkError, Reason, ValidationError
from p2pmsg.governance.federation import FederationRegistry, issue_federation_list
from p2pmsg.identity import SIGNATURE_SIZE, Domain, Identity
from p2pmsg.store.memory import MemoryStore
from p2pmsg.validate import (
    find_bad_signatures,
    verify_entry,
    verify_link,
    verify_payload,
    verify_run,
    verify_signature,
)

ALICE = Identity.from_seed(b"\xa1" * 32)
BOB = Identity.from_seed(b"\xb0" * 32)
TOPIC = hashlib.blake2b(b"room", digest_size=32).digest()
OTHER_TOPIC = hashlib.blake2b(b"other room", digest_size=32).digest()


def _log(n: int, key: Identity = ALICE, topic: bytes = TOPIC, start: Entry | None = None,
         tag: bytes = b"") -> list[Entry]:
    out: list[Entry] = []
    prev = start
    for _ in range(n):
        seq = 1 if prev is None else prev.seq + 1
        e = create_entry(key, topic, seq, None if prev is None else prev.id, seq << 16,
                         b"msg %d" % seq + tag)
        out.append(e)
        prev = e
    return out


def _with_bad_signature(e: Entry) -> Entry:
    return decode_entry(e.raw + bytes(SIGNATURE_SIZE))


def _resign_chain(key: Identity, entries: list[Entry], index: int) -> list[Entry]:
    """entries with entry ``index`` carrying a bad signature, and the author re-signing
    every later entry so the hash links stay intact (a misbehaving author)."""
    out = [*entries[:index], _with_bad_signature(entries[index])]
    for e in entries[index + 1 :]:
        h = e.header
        out.append(create_entry(key, h.topic, h.seq, out[-1].id, h.timestamp, b"msg %d" % h.seq))
    return out


def _reason(fn: Callable[[], object]) -> Reason:
    with pytest.raises(ValidationError) as exc:
        fn()
    return exc.value.reason


# --------------------------------------------------------------------------- links


def test_link_first_entry_into_empty_log() -> None:
    verify_link(None, _log(1)[0])


def test_link_valid_successor() -> None:
    e1, e2 = _log(2)
    verify_link(e1, e2)
    verify_entry(e1, e2)


def test_link_non_first_into_empty_log_is_seq_gap() -> None:
    assert _reason(lambda: verify_link(None, _log(2)[1])) is Reason.SEQ_GAP


def test_link_wrong_seq_is_seq_gap() -> None:
    log = _log(4)
    assert _reason(lambda: verify_link(log[1], log[1])) is Reason.SEQ_GAP  # replay of seq 2
    assert _reason(lambda: verify_link(log[1], log[3])) is Reason.SEQ_GAP  # 4 after 2
    assert _reason(lambda: verify_link(log[2], log[1])) is Reason.SEQ_GAP  # backwards


def test_link_backlink_mismatch() -> None:
    e1 = _log(1)[0]
    stray = create_entry(ALICE, TOPIC, 2, b"\x00" * 32, 0, b"")
    assert _reason(lambda: verify_link(e1, stray)) is Reason.BACKLINK_MISMATCH


def test_link_other_author_or_topic_is_wrong_log() -> None:
    e1 = _log(1)[0]
    by_bob = create_entry(BOB, TOPIC, 2, e1.id, 0, b"")
    elsewhere = create_entry(ALICE, OTHER_TOPIC, 2, e1.id, 0, b"")
    assert _reason(lambda: verify_link(e1, by_bob)) is Reason.WRONG_LOG
    assert _reason(lambda: verify_link(e1, elsewhere)) is Reason.WRONG_LOG


def test_verify_entry_checks_signature() -> None:
    e1, e2 = _log(2)
    assert _reason(lambda: verify_entry(e1, _with_bad_signature(e2))) is Reason.BAD_SIGNATURE


def test_signature_by_other_key_or_domain_fails() -> None:
    e = _log(1)[0]
    by_bob = decode_entry(e.raw + BOB.sign(Domain.ENTRY, e.raw))
    cert_domain = decode_entry(e.raw + ALICE.sign(Domain.CERTIFICATE, e.raw))
    verify_signature(e)
    assert _reason(lambda: verify_signature(by_bob)) is Reason.BAD_SIGNATURE
    assert _reason(lambda: verify_signature(cert_domain)) is Reason.BAD_SIGNATURE


# --------------------------------------------------------------------------- payloads


def test_payload_ok_and_mismatches() -> None:
    e = create_entry(ALICE, TOPIC, 1, None, 0, b"hello")
    verify_payload(e.header, b"hello")
    assert _reason(lambda: verify_payload(e.header, b"hellO")) is Reason.PAYLOAD_MISMATCH
    assert _reason(lambda: verify_payload(e.header, b"hello!")) is Reason.PAYLOAD_MISMATCH
    assert _reason(lambda: verify_payload(e.header, b"")) is Reason.PAYLOAD_MISMATCH


# --------------------------------------------------------------------------- runs


def test_empty_run_is_fine() -> None:
    verify_run(None, [])
    verify_run(_log(1)[0], [], full=True)


@pytest.mark.parametrize("full", [False, True])
def test_valid_runs(full: bool) -> None:
    log = _log(6)
    verify_run(None, log, full=full)
    verify_run(log[1], log[2:], full=full)
    assert find_bad_signatures(log) == []


def test_run_must_start_after_prev() -> None:
    log = _log(5)
    assert _reason(lambda: verify_run(log[0], log[2:])) is Reason.SEQ_GAP
    assert _reason(lambda: verify_run(None, log[1:])) is Reason.SEQ_GAP


def test_run_with_gap_reordering_or_duplicate() -> None:
    log = _log(5)
    assert _reason(lambda: verify_run(None, [log[0], log[1], log[3]])) is Reason.SEQ_GAP
    assert _reason(lambda: verify_run(None, [log[0], log[2], log[1]])) is Reason.SEQ_GAP
    assert _reason(lambda: verify_run(None, [log[0], log[1], log[1]])) is Reason.SEQ_GAP


def test_run_of_mixed_logs_is_wrong_log() -> None:
    a = _log(2)
    b = _log(2, key=BOB)
    assert _reason(lambda: verify_run(None, [a[0], b[1]])) is Reason.WRONG_LOG
    assert _reason(lambda: verify_run(b[0], a[1:])) is Reason.WRONG_LOG
    c = _log(2, topic=OTHER_TOPIC)
    assert _reason(lambda: verify_run(a[0], c[1:])) is Reason.WRONG_LOG


def test_run_with_bad_last_signature_fails_chain_verification() -> None:
    log = _log(4)
    run = [*log[:3], _with_bad_signature(log[3])]
    assert _reason(lambda: verify_run(None, run)) is Reason.BAD_SIGNATURE


def test_run_with_bad_middle_signature() -> None:
    """The author signed entry 4 over entry 2's bad signature: chain verification
    passes (the author vouched for those bytes), the deferred check finds entry 2,
    and full verification fails."""
    run = _resign_chain(ALICE, _log(4), 1)
    verify_run(None, run)  # chain verification: links + last signature only
    bad = find_bad_signatures(run)
    assert [e.seq for e in bad] == [2]
    assert bad[0] is run[1]
    assert _reason(lambda: verify_run(None, run, full=True)) is Reason.BAD_SIGNATURE


def test_chain_binds_every_earlier_entry() -> None:
    """Swapping any earlier entry for another validly signed one breaks a link."""
    log = _log(4)
    alt = _log(4, tag=b" (forked)")  # the same author's equivocating history
    for i in range(3):
        run = [*log[:i], alt[i], *log[i + 1 :]]
        with pytest.raises(ValidationError) as exc:
            verify_run(None, run)
        assert exc.value.reason is Reason.BACKLINK_MISMATCH


def test_forged_middle_entry_is_caught_by_links() -> None:
    """A third party cannot insert its own bytes in the middle: ids change."""
    log = _log(3)
    e2 = log[1]
    forged = create_entry(BOB, TOPIC, 2, log[0].id, e2.header.timestamp, b"forged")
    forged = decode_entry(forged.raw.replace(BOB.public_key, ALICE.public_key) + forged.signature)
    run = [log[0], forged, log[2]]
    assert forged.id != e2.id
    assert _reason(lambda: verify_run(None, run)) is Reason.BACKLINK_MISMATCH


# --------------------------------------------------------------------------- every reason


def _fork_via_store() -> None:
    e1 = _log(1)[0]
    twin = create_entry(ALICE, TOPIC, 1, None, 0, b"other")
    store = MemoryStore()
    store.append([e1])
    store.append([twin])


ORG = Identity.from_seed(b"\x0c" * 32)
CERT = issue_certificate(ORG, ALICE.public_key, Role.MEMBER, "Tablet", 1000, 2000)

def _federation_list(version: int, issued_ms: int) -> bytes:
    return issue_federation_list(ORG, version, issued_ms, []).raw


def _federation_registry(initial: bytes | None = None) -> FederationRegistry:
    return FederationRegistry(ORG.public_key, initial, 1)


PRODUCERS: dict[Reason, Callable[[], object]] = {
    Reason.MALFORMED: lambda: decode_entry(b"\xff" + bytes(64)),
    Reason.NON_CANONICAL: lambda: decode_entry(_log(1)[0].raw + b"\x00" + bytes(64)),
    Reason.TOO_LARGE: lambda: decode_entry(bytes(10_000)),
    Reason.UNKNOWN_VERSION: lambda: decode_entry(b"\x82\x02\x00" + bytes(64)),
    Reason.BAD_SIGNATURE: lambda: verify_signature(_with_bad_signature(_log(1)[0])),
    Reason.SEQ_GAP: lambda: verify_link(None, _log(2)[1]),
    Reason.BACKLINK_MISMATCH: lambda: verify_link(
        _log(1)[0], create_entry(ALICE, TOPIC, 2, bytes(32), 0, b"")),
    Reason.PAYLOAD_MISMATCH: lambda: verify_payload(_log(1)[0].header, b"x"),
    Reason.WRONG_LOG: lambda: verify_run(None, [_log(1)[0], _log(2, key=BOB)[1]]),
    Reason.FORK: _fork_via_store,
    Reason.CERT_EXPIRED: lambda: verify_certificate(CERT, ORG.public_key, 2000),
    Reason.CERT_WRONG_ISSUER: lambda: verify_certificate(
        decode_certificate(CERT.to_bytes()), ALICE.public_key, 1500),
    # signed statements of the governance layer (tests/test_governance_federation.py)
    Reason.EXPIRED: lambda: _federation_registry().accept(_federation_list(1, 0), 10**12),
    Reason.ROLLBACK: lambda: _federation_registry(_federation_list(2, 0)).accept(
        _federation_list(1, 0), 1),
    Reason.WRONG_ISSUER: lambda: FederationRegistry(BOB.public_key).accept(
        _federation_list(1, 0), 1),
}


def test_every_reason_has_a_producer() -> None:
    """A new Reason must come with a way to reach it (and a test of it)."""
    assert set(PRODUCERS) == set(Reason)


@pytest.mark.parametrize("reason", list(Reason))
def test_every_reason_is_reachable(reason: Reason) -> None:
    expected_type = ForkError if reason is Reason.FORK else ValidationError
    with pytest.raises(expected_type) as exc:
        PRODUCERS[reason]()
    assert exc.value.reason is reason
    assert str(exc.value).startswith(reason.value + ":")


def test_reason_values_are_stable() -> None:
    """The string values are a wire/audit contract; changing one is a breaking change."""
    assert {r.name: r.value for r in Reason} == {
        "MALFORMED": "malformed",
        "NON_CANONICAL": "non_canonical",
        "TOO_LARGE": "too_large",
        "UNKNOWN_VERSION": "unknown_version",
        "BAD_SIGNATURE": "bad_signature",
        "SEQ_GAP": "seq_gap",
        "BACKLINK_MISMATCH": "backlink_mismatch",
        "PAYLOAD_MISMATCH": "payload_mismatch",
        "WRONG_LOG": "wrong_log",
        "FORK": "fork",
        "CERT_EXPIRED": "cert_expired",
        "CERT_WRONG_ISSUER": "cert_wrong_issuer",
        "EXPIRED": "expired",
        "ROLLBACK": "rollback",
        "WRONG_ISSUER": "wrong_issuer",
    }
