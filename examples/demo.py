"""`make demo`: two nodes write signed logs and replicate them by exchanging bytes.

A placeholder until p2pmsg.node and the memory transport can carry a real session:
here "replication" is done by hand with the same core calls a node makes — encode
entries to wire bytes, and on the receiving side decode_entry, verify_run (chain
verification against the local head), verify_payload, then store.append. It also
shows that a corrupted entry from a peer is refused and never stored.

Exits 0 only if every check passes. Payloads are synthetic demo text.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from p2pmsg.entry import Entry, create_entry, decode_entry
from p2pmsg.errors import ValidationError
from p2pmsg.hlc import HybridClock
from p2pmsg.identity import Identity, short_id
from p2pmsg.store import MemoryStore
from p2pmsg.validate import find_bad_signatures, verify_payload, verify_run

ROOM = bytes.fromhex("d3" * 32)  # a fixed demo topic id


class DemoNode:
    """One node: an identity, a store, a clock. Only what the demo needs."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.identity = Identity.generate()
        self.store = MemoryStore()
        self.clock = HybridClock()

    @property
    def label(self) -> str:
        return f"{self.name}[{self.identity.short_id}]"

    def write(self, text: str) -> Entry:
        head = self.store.head(self.identity.public_key, ROOM)
        others = [h.id for h in self.store.heads(ROOM) if h.author != self.identity.public_key]
        payload = text.encode()
        entry = create_entry(
            self.identity, ROOM,
            seq=head.seq + 1 if head else 1,
            backlink=head.id if head else None,
            timestamp=self.clock.tick(int(time.time() * 1000)),
            payload=payload,
            deps=others,
        )
        self.store.append([entry], {entry.id: payload})
        print(f"  {self.label} wrote seq {entry.seq} id {entry.id.hex()[:12]}: {text!r}")
        return entry

    def export_log(self, author: bytes) -> tuple[list[bytes], list[bytes]]:
        """Wire bytes and payloads of one log, as a peer would send them."""
        head = self.store.head(author, ROOM)
        entries = self.store.get_range(author, ROOM, 1, head.seq if head else 0)
        payloads = []
        for e in entries:
            p = self.store.get_payload(e.id)
            assert isinstance(p, bytes)
            payloads.append(p)
        return [e.to_bytes() for e in entries], payloads

    def ingest(self, wires: Sequence[bytes], payloads: Sequence[bytes]) -> int:
        """Verify a received run and store it; raises ValidationError on bad input."""
        run = [decode_entry(w) for w in wires]
        by_id = {e.id: p for e, p in zip(run, payloads, strict=True)}
        # Entries we already hold (same id) are skipped; anything else must extend our
        # head, so a conflicting entry at a known seq fails verify_run (a fork).
        fresh = [e for e in run if self.store.get_entry(e.id) is None]
        if not fresh:
            return 0
        verify_run(self.store.head(fresh[0].author, ROOM), fresh)
        for e in fresh:
            verify_payload(e.header, by_id[e.id])
            self.clock.observe(e.header.timestamp, int(time.time() * 1000))
        result = self.store.append(fresh, {e.id: by_id[e.id] for e in fresh})
        return len(result.added)


def replicate(src: DemoNode, dst: DemoNode) -> None:
    total = 0
    for head in src.store.heads(ROOM):
        wires, payloads = src.export_log(head.author)
        added = dst.ingest(wires, payloads)
        total += added
        print(f"  {src.label} -> {dst.label}: log {short_id(head.author)} "
              f"{len(wires)} entries ({sum(map(len, wires))} B), {added} new"
              + (" (chain-verified)" if added else ""))
    print(f"  {dst.label} stored {total} new entries")


def all_entries(node: DemoNode) -> dict[bytes, Entry]:
    found: dict[bytes, Entry] = {}
    for head in node.store.heads(ROOM):
        for e in node.store.get_range(head.author, ROOM, 1, head.seq):
            found[e.id] = e
    return found


def main() -> int:
    checks: list[tuple[str, bool]] = []
    clinic, hospital = DemoNode("clinic"), DemoNode("hospital")
    print("p2pmsg demo: two nodes, one room, replication by exchanging wire bytes\n")
    print("1. each node writes to its own signed log")
    clinic.write("referral sent (demo)")
    clinic.write("lab results attached (demo)")
    hospital.write("referral received (demo)")
    clinic.write("follow-up scheduled (demo)")
    hospital.write("admission confirmed (demo)")

    print("\n2. replicate in both directions")
    replicate(clinic, hospital)
    replicate(hospital, clinic)
    print("   (again: idempotent)")
    replicate(clinic, hospital)

    print("\n3. a corrupted entry from a peer is refused")
    wires, payloads = clinic.export_log(clinic.identity.public_key)
    tampered = bytearray(wires[-1])
    tampered[-1] ^= 0x01  # flip one bit of the signature
    victim = DemoNode("fresh-node")
    try:
        victim.ingest([*wires[:-1], bytes(tampered)], payloads)
        checks.append(("tampered run rejected", False))
    except ValidationError as exc:
        print(f"  {victim.label} rejected the run: {exc.reason.value}")
        checks.append(("tampered run rejected", True))
    checks.append(("nothing stored from the tampered run", not victim.store.topics()))

    print("\n4. checks")
    a, b = all_entries(clinic), all_entries(hospital)
    checks.append(("both nodes hold the same entries", a.keys() == b.keys() and len(a) == 5))
    checks.append(("every signature verifies", not find_bad_signatures(list(a.values()))))
    payloads_ok = all(
        isinstance(node.store.get_payload(i), bytes)
        for node in (clinic, hospital) for i in a
    )
    checks.append(("every payload present on both", payloads_ok))
    heads_equal = clinic.store.heads(ROOM) == hospital.store.heads(ROOM)
    checks.append(("log heads identical", heads_equal))
    for name, ok in checks:
        print(f"  [{'ok' if ok else 'FAIL'}] {name}")
    passed = all(ok for _, ok in checks)
    print("\ndemo " + ("passed" if passed else "FAILED"))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
