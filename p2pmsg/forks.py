"""Fork proofs: evidence that an author signed two different entries at one position.

A log is append-only, so two validly signed entries with the same (author, topic,
seq) but different ids can only come from a misbehaving (or cloned/stolen) author
key. The two signed headers are the proof; anyone can check it with
:func:`verify_fork_proof`, offline, without trusting whoever presents it. Nodes keep
proofs, freeze the forked log, and pass proofs on to peers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from . import _cbor
from .entry import MAX_ENTRY_SIZE, Entry, decode_entry
from .errors import DecodeError, Reason, ValidationError
from .validate import verify_signature

__all__ = ["ForkProof", "check_fork", "decode_fork_proof", "find_forks", "verify_fork_proof"]

MAX_FORK_PROOF_SIZE = 2 * MAX_ENTRY_SIZE + 16


@dataclass(frozen=True, slots=True)
class ForkProof:
    """Two conflicting signed headers, ordered by id so each fork has one proof."""

    first: Entry
    second: Entry

    @classmethod
    def of(cls, a: Entry, b: Entry) -> ForkProof:
        return cls(a, b) if a.id < b.id else cls(b, a)

    @property
    def log_id(self) -> tuple[bytes, bytes]:
        return self.first.log_id

    @property
    def seq(self) -> int:
        return self.first.header.seq

    def to_bytes(self) -> bytes:
        """Canonical CBOR array of the two entries' wire bytes."""
        return _cbor.dumps([self.first.to_bytes(), self.second.to_bytes()])


def check_fork(a: Entry, b: Entry) -> ForkProof | None:
    """A proof if ``a`` and ``b`` conflict (same log and seq, different ids), else None.

    Both entries must already be signature-checked (or use :func:`verify_fork_proof`).
    """
    if a.id != b.id and a.log_id == b.log_id and a.header.seq == b.header.seq:
        return ForkProof.of(a, b)
    return None


def verify_fork_proof(proof: ForkProof) -> None:
    """Raise :class:`ValidationError` unless ``proof`` shows a real equivocation."""
    a, b = proof.first, proof.second
    if a.log_id != b.log_id or a.header.seq != b.header.seq:
        raise ValidationError(Reason.MALFORMED, "fork proof: entries are not at one log position")
    if a.id >= b.id:
        raise ValidationError(Reason.MALFORMED, "fork proof: entries must differ, ordered by id")
    verify_signature(a)
    verify_signature(b)


def decode_fork_proof(data: bytes) -> ForkProof:
    """Parse and verify a proof received from anyone. Raises ValidationError/DecodeError."""
    value = _cbor.loads_canonical(data, "fork proof", MAX_FORK_PROOF_SIZE)
    if type(value) is not list or len(value) != 2 or not all(type(v) is bytes for v in value):
        raise DecodeError(Reason.MALFORMED, "fork proof: expected an array of two entries")
    proof = ForkProof(decode_entry(value[0]), decode_entry(value[1]))
    verify_fork_proof(proof)
    return proof


def find_forks(entries: Iterable[Entry]) -> list[ForkProof]:
    """Every equivocation among ``entries`` (signature-checked), one proof per pair.

    Used by tests and audits; stores detect forks incrementally on append.
    """
    seen: dict[tuple[bytes, bytes, int], dict[bytes, Entry]] = {}
    for e in entries:
        seen.setdefault((e.header.author, e.header.topic, e.header.seq), {})[e.id] = e
    proofs: list[ForkProof] = []
    for versions in seen.values():
        ordered = sorted(versions.values(), key=lambda e: e.id)
        for i, a in enumerate(ordered):
            proofs.extend(ForkProof(a, b) for b in ordered[i + 1 :])
    return proofs
