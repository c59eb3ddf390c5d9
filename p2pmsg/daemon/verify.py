"""Offline verification of a store: every log re-verified from seq 1, forks reported.

:func:`verify_store` reads each (author, topic) log in chunks and checks every hash
link, sequence number and signature (``verify_run(..., full=True)``) plus every
stored payload against its header, then lists the recorded fork proofs. It only
reads; ``p2pmsg verify`` prints the :class:`VerifyReport`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..entry import Entry
from ..errors import Reason, ValidationError
from ..store.base import Store
from ..validate import verify_payload, verify_run

__all__ = ["LogProblem", "VerifyReport", "verify_store"]

_CHUNK = 4096


@dataclass(frozen=True, slots=True)
class LogProblem:
    """One log that failed verification (ids are public keys / topic ids)."""

    author: bytes
    topic: bytes
    seq: int
    reason: str


@dataclass(slots=True)
class VerifyReport:
    """What :func:`verify_store` found."""

    topics: int = 0
    logs: int = 0
    entries: int = 0
    payloads_checked: int = 0
    problems: list[LogProblem] = field(default_factory=list)
    forks: list[tuple[bytes, bytes, int]] = field(default_factory=list)
    """(author, topic, seq) of each recorded fork proof."""

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_store(store: Store) -> VerifyReport:
    """Re-verify every log of ``store`` from its first entry (O(entries) signature checks)."""
    report = VerifyReport()
    for topic in store.topics():
        report.topics += 1
        for head in store.heads(topic):
            report.logs += 1
            prev: Entry | None = None
            start = 1
            while start <= head.seq:
                end = min(head.seq, start + _CHUNK - 1)
                run = store.get_range(head.author, topic, start, end)
                try:
                    if len(run) != end - start + 1:
                        raise ValidationError(
                            Reason.SEQ_GAP,
                            f"entries {start}..{end}: {len(run)} stored, gap in the log",
                        )
                    verify_run(prev, run, full=True)
                    for entry in run:
                        payload = store.get_payload(entry.id)
                        if isinstance(payload, bytes):
                            verify_payload(entry.header, payload)
                            report.payloads_checked += 1
                except ValidationError as exc:
                    report.problems.append(LogProblem(head.author, topic, start, str(exc)))
                    break
                report.entries += len(run)
                prev = run[-1]
                start = end + 1
            else:
                if prev is not None and prev.id != head.id:
                    report.problems.append(
                        LogProblem(head.author, topic, head.seq, "head id differs from last entry")
                    )
    for proof in store.forks():
        first = proof.first.header
        report.forks.append((first.author, first.topic, first.seq))
    return report

