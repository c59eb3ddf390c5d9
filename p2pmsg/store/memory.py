"""In-memory reference implementation of :class:`~p2pmsg.store.base.Store`.

Simple on purpose: it defines the behaviour ``SqliteStore`` must match (both run
the same tests) and backs the simulator. Nothing survives the process.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..entry import Entry
from ..errors import ForkError, StoreError, ValidationError
from ..forks import ForkProof
from ..validate import verify_link, verify_payload
from .base import AppendResult, LogHead, Misbehaviour, PayloadState

__all__ = ["MemoryStore"]

_Log = tuple[bytes, bytes]


class MemoryStore:
    """A :class:`Store` in dictionaries. See the protocol for each method's contract."""

    def __init__(self) -> None:
        self._logs: dict[_Log, list[Entry]] = {}
        self._by_id: dict[bytes, Entry] = {}
        self._payloads: dict[bytes, bytes] = {}
        self._erased: set[bytes] = set()
        self._folded: dict[bytes, dict[bytes, bytes]] = {}
        """topic -> erased entry id -> the message it was folded into."""
        self._forks: list[ForkProof] = []
        self._fork_keys: set[tuple[bytes, bytes]] = set()
        self._misbehaviours: list[Misbehaviour] = []
        self._misbehaviour_keys: set[tuple[str, bytes, bytes]] = set()
        self._frozen: set[_Log] = set()
        self._topics: dict[bytes, set[bytes]] = {}
        self.erasures = 0
        """Payloads erased so far (see :meth:`Store.erase_payload`)."""

    def append(
        self,
        entries: Sequence[Entry],
        payloads: Mapping[bytes, bytes] | None = None,
        *,
        payloads_verified: bool = False,
    ) -> AppendResult:
        payloads = payloads or {}
        pending: dict[_Log, list[Entry]] = {}
        added: list[Entry] = []
        duplicates = 0
        batch_ids: set[bytes] = set()
        for entry in entries:
            if entry.id in self._by_id or entry.id in batch_ids:
                duplicates += 1
                continue
            log = entry.log_id
            if log in self._frozen:
                proof = self._proof_for(log)
                raise ForkError(proof, "log is frozen by an earlier fork")
            stored = self._logs.get(log, [])
            extra = pending.setdefault(log, [])
            height = len(stored) + len(extra)
            if entry.header.seq <= height:
                existing = (stored + extra)[entry.header.seq - 1]
                proof = ForkProof.of(existing, entry)
                self.record_fork(proof)
                raise ForkError(proof)
            prev = extra[-1] if extra else (stored[-1] if stored else None)
            try:
                verify_link(prev, entry)
            except ValidationError as exc:
                raise StoreError(f"entry does not extend its log: {exc}") from exc
            payload = payloads.get(entry.id)
            if payload is not None and not payloads_verified:
                try:
                    verify_payload(entry.header, payload)
                except ValidationError as exc:
                    raise StoreError(f"payload rejected: {exc}") from exc
            extra.append(entry)
            batch_ids.add(entry.id)
            added.append(entry)
        for log, run in pending.items():
            self._logs.setdefault(log, []).extend(run)
            self._topics.setdefault(log[1], set()).add(log[0])
        for entry in added:
            self._by_id[entry.id] = entry
            payload = payloads.get(entry.id)
            if payload is not None:
                self._payloads[entry.id] = bytes(payload)
        return AppendResult(tuple(added), duplicates)

    def _proof_for(self, log: _Log) -> ForkProof:
        for proof in self._forks:
            if proof.log_id == log:
                return proof
        raise AssertionError("frozen log without a proof")  # pragma: no cover

    def head(self, author: bytes, topic: bytes) -> Entry | None:
        log = self._logs.get((author, topic))
        return log[-1] if log else None

    def heads(self, topic: bytes) -> list[LogHead]:
        result = []
        for author in sorted(self._topics.get(topic, ())):
            last = self._logs[(author, topic)][-1]
            result.append(LogHead(author, last.header.seq, last.id))
        return result

    def topics(self) -> list[bytes]:
        return sorted(self._topics)

    def get_range(self, author: bytes, topic: bytes, start: int, end: int) -> list[Entry]:
        log = self._logs.get((author, topic), [])
        start = max(start, 1)
        return log[start - 1 : max(end, start - 1)]

    def get_entry(self, entry_id: bytes) -> Entry | None:
        return self._by_id.get(entry_id)

    def put_payload(self, entry_id: bytes, payload: bytes) -> bool:
        entry = self._by_id.get(entry_id)
        if entry is None:
            raise StoreError("payload for an unknown entry")
        if entry_id in self._erased or entry_id in self._payloads:
            return False
        try:
            verify_payload(entry.header, payload)
        except ValidationError as exc:
            raise StoreError(f"payload rejected: {exc}") from exc
        self._payloads[entry_id] = bytes(payload)
        return True

    def get_payload(self, entry_id: bytes) -> bytes | PayloadState:
        if entry_id not in self._by_id:
            return PayloadState.UNKNOWN
        if entry_id in self._erased:
            return PayloadState.ERASED
        return self._payloads.get(entry_id, PayloadState.MISSING)

    def erase_payload(self, entry_id: bytes, *, folded_into: bytes | None = None) -> bool:
        if folded_into is not None and not folded_into:
            raise StoreError("folded_into must be a message id")
        entry = self._by_id.get(entry_id)
        if entry is None:
            return False
        changed = entry_id not in self._erased
        if folded_into is not None:
            links = self._folded.setdefault(entry.header.topic, {})
            if entry_id not in links:
                links[entry_id] = bytes(folded_into)
                changed = True
        if changed:
            self.erasures += 1
        self._payloads.pop(entry_id, None)
        self._erased.add(entry_id)
        return True

    def folded(self, topic: bytes) -> dict[bytes, bytes]:
        return dict(self._folded.get(topic, {}))

    def missing_payloads(self, topic: bytes, limit: int = 1000) -> list[bytes]:
        found: list[bytes] = []
        for author in sorted(self._topics.get(topic, ())):
            for e in self._logs[(author, topic)]:
                if e.id not in self._payloads and e.id not in self._erased:
                    found.append(e.id)
        found.sort(key=lambda i: (self._by_id[i].header.timestamp, i))
        return found[: max(limit, 0)]  # a negative limit means none, not 'all but n'

    def record_fork(self, proof: ForkProof) -> bool:
        key = (proof.first.id, proof.second.id)
        self._frozen.add(proof.log_id)
        if key in self._fork_keys:
            return False
        self._fork_keys.add(key)
        self._forks.append(proof)
        return True

    def forks(self) -> list[ForkProof]:
        return list(self._forks)

    def is_frozen(self, author: bytes, topic: bytes) -> bool:
        return (author, topic) in self._frozen

    def record_misbehaviour(self, record: Misbehaviour) -> bool:
        author, topic = record.entry.log_id
        key = (record.kind, author, topic)
        if key in self._misbehaviour_keys:
            return False
        self._misbehaviour_keys.add(key)
        self._misbehaviours.append(record)
        return True

    def misbehaviours(self) -> list[Misbehaviour]:
        return list(self._misbehaviours)

    def close(self) -> None:
        pass
