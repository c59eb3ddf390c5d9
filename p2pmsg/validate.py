"""Validation of entries and runs of entries: pure functions, one error type.

Every check raises :class:`~p2pmsg.errors.ValidationError` with a stable
:class:`~p2pmsg.errors.Reason`; none does I/O. Decode first
(:func:`p2pmsg.entry.decode_entry`), then:

* :func:`verify_entry` — one entry after a known predecessor (full verification);
* :func:`verify_run` — a contiguous run of one log, by **chain verification**: the
  hash links plus *one* signature, that of the last entry (see below);
* :func:`verify_payload` — a payload against the header that commits to it.

Chain verification — why one signature is enough
-------------------------------------------------
Entry ids are BLAKE2b-256 over the *signed* header bytes (header and signature),
and each header carries the id of its predecessor as backlink. If the last entry's
signature verifies, the author signed a header that names, by collision-resistant
hash, the exact bytes of the previous entry, which names the one before, and so on
back to the first entry of the run (whose backlink must match the head we already
trust, or seq must be 1). So the author has vouched for the content of every entry
in the run: nobody else could have produced a run ending in a valid signature that
links to other bytes without a BLAKE2b collision or forging Ed25519.

What chain verification does *not* prove is that each earlier signature is valid on
its own. An author that signs a head over earlier entries with bad signatures is
misbehaving; :func:`find_bad_signatures` checks the deferred signatures (lazily, off
the hot path) and a node treats any hit like a fork: evidence is kept, the log is
frozen, an audit event is raised. docs/protocol.md states the same argument.
"""

from __future__ import annotations

from collections.abc import Sequence

from .entry import Entry, Header, payload_hash
from .errors import Reason, ValidationError
from .identity import Domain, verify

__all__ = [
    "find_bad_signatures",
    "verify_entry",
    "verify_link",
    "verify_payload",
    "verify_run",
    "verify_signature",
]


def verify_signature(entry: Entry) -> None:
    """Raise BAD_SIGNATURE unless the author's signature over the header verifies."""
    if not verify(entry.header.author, Domain.ENTRY, entry.raw, entry.signature):
        raise ValidationError(Reason.BAD_SIGNATURE, f"seq {entry.header.seq}: signature invalid")


def verify_link(prev: Entry | None, entry: Entry) -> None:
    """Raise unless ``entry`` directly follows ``prev`` in the same log.

    ``prev`` is the current head of the log, or None for an empty log.
    """
    h = entry.header
    if prev is None:
        if h.seq != 1:
            raise ValidationError(Reason.SEQ_GAP, f"log is empty but entry has seq {h.seq}")
        return
    if prev.header.author != h.author or prev.header.topic != h.topic:
        raise ValidationError(Reason.WRONG_LOG, "entry belongs to another log than its predecessor")
    if h.seq != prev.header.seq + 1:
        raise ValidationError(
            Reason.SEQ_GAP, f"seq {h.seq} does not follow head {prev.header.seq}"
        )
    if h.backlink != prev.id:
        raise ValidationError(Reason.BACKLINK_MISMATCH, f"seq {h.seq}: backlink is not the head id")


def verify_entry(prev: Entry | None, entry: Entry) -> None:
    """Full verification of one entry after ``prev``: linkage and signature."""
    verify_link(prev, entry)
    verify_signature(entry)


def verify_run(prev: Entry | None, run: Sequence[Entry], *, full: bool = False) -> None:
    """Verify a contiguous run of one log that starts right after ``prev``.

    Checks every hash link and seq, and the signature of the **last** entry only
    (chain verification), or every signature with ``full=True``. With chain
    verification the caller should later pass the run to :func:`find_bad_signatures`.
    """
    if not run:
        return
    first = run[0].header
    author, topic = first.author, first.topic
    if prev is not None and (prev.header.author != author or prev.header.topic != topic):
        raise ValidationError(Reason.WRONG_LOG, "run belongs to another log than its predecessor")
    last = prev
    for entry in run:
        h = entry.header
        if h.author != author or h.topic != topic:
            raise ValidationError(Reason.WRONG_LOG, "a run must hold entries of one log")
        verify_link(last, entry)
        if full:
            verify_signature(entry)
        last = entry
    if not full:
        verify_signature(run[-1])


def find_bad_signatures(entries: Sequence[Entry]) -> list[Entry]:
    """The entries whose own signatures do not verify (the deferred half of a run check)."""
    return [
        e for e in entries if not verify(e.header.author, Domain.ENTRY, e.raw, e.signature)
    ]


def verify_payload(header: Header, payload: bytes) -> None:
    """Raise PAYLOAD_MISMATCH unless ``payload`` is the one ``header`` commits to."""
    if len(payload) != header.payload_size:
        raise ValidationError(
            Reason.PAYLOAD_MISMATCH,
            f"payload is {len(payload)} bytes, header says {header.payload_size}",
        )
    if payload_hash(payload) != header.payload_hash:
        raise ValidationError(Reason.PAYLOAD_MISMATCH, "payload hash differs from the header")
