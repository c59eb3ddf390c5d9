"""Log benchmark: append and ingest rates of signed entries, against raw pynacl.

Run ``python benchmarks/bench_log.py`` (100,000 entries of 200-byte payloads; ~1
minute on 2 cores), ``--quick`` for a CI smoke run, ``--json PATH`` to keep the
figures. docs/benchmarks.md explains each figure and records measured values.

Figures (all into a fresh store in a temporary directory):

* raw sign / raw verify — ``nacl.signing`` sign/verify of messages the size of an
  entry's signing input, in a tight loop: the physical limit of the machine;
* durable single append — create + sign + ``SqliteStore.append([entry])`` per entry,
  each call a durable commit (a smaller count: fsync bounds it);
* batched append — create + sign 1,000 entries, then one ``append`` per batch;
* full-verification ingest — decode wire bytes, verify link + signature of every
  entry, check every payload hash, append per 1,000;
* chain-verification ingest — the same with ``verify_run`` (one signature per run of
  1,000 entries, hash links for the rest);
* diagnostics — create+sign alone, decode+chain-verify alone, and ``Store.append``
  alone, which show whether the library or the store limits the figures above.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nacl.signing

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Figure, Stopwatch, default_json_path, print_table, save_json, timed

from p2pmsg.entry import Entry, create_entry, decode_entry
from p2pmsg.identity import Domain, Identity
from p2pmsg.store import MemoryStore, SqliteStore, Store
from p2pmsg.validate import verify_entry, verify_payload, verify_run

PAYLOAD_SIZE = 200
BATCH = 1_000
BASE_TS = 1_700_000_000_000 << 16
TARGET_BATCHED_VS_SIGN = 0.70
TARGET_CHAIN_INGEST = 50_000.0


def sqlite_is_placeholder() -> bool:
    """True while p2pmsg.store.sqlite still aliases MemoryStore (early development)."""
    return SqliteStore is MemoryStore  # type: ignore[comparison-overlap]


def open_store(directory: Path, name: str) -> Store:
    """A fresh SqliteStore in ``directory`` (or the MemoryStore placeholder)."""
    if sqlite_is_placeholder():
        return MemoryStore()
    return SqliteStore(directory / f"{name}.db")


def raw_rates(message_size: int, count: int) -> tuple[Stopwatch, Stopwatch]:
    """(sign/s, verify/s) of bare pynacl on ``message_size``-byte messages."""
    key = nacl.signing.SigningKey.generate()
    verify_key = key.verify_key
    messages = [os.urandom(message_size) for _ in range(count)]
    with timed() as sw_sign:
        signed = [key.sign(m) for m in messages]
    pairs = [(s.message, s.signature) for s in signed]
    with timed() as sw_verify:
        for message, signature in pairs:
            verify_key.verify(message, signature)
    return sw_sign, sw_verify


def make_payloads(count: int) -> list[bytes]:
    return [os.urandom(PAYLOAD_SIZE) for _ in range(count)]


def durable_single_append(directory: Path, count: int) -> Stopwatch:
    """Create, sign and append one entry per durable commit."""
    ident, topic = Identity.generate(), os.urandom(32)
    payloads = make_payloads(count)
    store = open_store(directory, "single")
    prev: Entry | None = None
    try:
        with timed() as sw:
            for i, payload in enumerate(payloads):
                entry = create_entry(
                    ident, topic, i + 1, prev.id if prev else None, BASE_TS + i, payload
                )
                store.append([entry], {entry.id: payload}, payloads_verified=True)
                prev = entry
    finally:
        store.close()
    return sw


def batched_append(
    directory: Path, count: int
) -> tuple[Stopwatch, list[Entry], list[bytes]]:
    """Create + sign ``BATCH`` entries, append them in one call; repeat. Returns the log."""
    ident, topic = Identity.generate(), os.urandom(32)
    payloads = make_payloads(count)
    store = open_store(directory, "batched")
    entries: list[Entry] = []
    prev_id: bytes | None = None
    try:
        with timed() as sw:
            for start in range(0, count, BATCH):
                batch: list[Entry] = []
                batch_payloads: dict[bytes, bytes] = {}
                for i in range(start, min(start + BATCH, count)):
                    payload = payloads[i]
                    entry = create_entry(ident, topic, i + 1, prev_id, BASE_TS + i, payload)
                    batch.append(entry)
                    batch_payloads[entry.id] = payload
                    prev_id = entry.id
                # create_entry hashed each payload: the store need not hash again.
                store.append(batch, batch_payloads, payloads_verified=True)
                entries.extend(batch)
    finally:
        store.close()
    return sw, entries, payloads


def ingest(
    directory: Path,
    name: str,
    wires: list[bytes],
    payloads: list[bytes],
    verify: Callable[[Entry | None, list[Entry]], None],
) -> Stopwatch:
    """Decode, ``verify`` per run of ``BATCH``, check payload hashes, append."""
    store = open_store(directory, name)
    prev: Entry | None = None
    count = len(wires)
    try:
        with timed() as sw:
            for start in range(0, count, BATCH):
                run = [decode_entry(w) for w in wires[start : start + BATCH]]
                verify(prev, run)
                run_payloads: dict[bytes, bytes] = {}
                for entry, payload in zip(run, payloads[start : start + BATCH], strict=True):
                    verify_payload(entry.header, payload)
                    run_payloads[entry.id] = payload
                # verify_payload above hashed each payload once; the store trusts it.
                store.append(run, run_payloads, payloads_verified=True)
                prev = run[-1]
    finally:
        store.close()
    return sw


def create_only(count: int) -> Stopwatch:
    """Diagnostic: create + sign without any store (the library's own share)."""
    ident, topic = Identity.generate(), os.urandom(32)
    payloads = make_payloads(count)
    prev_id: bytes | None = None
    with timed() as sw:
        for i, payload in enumerate(payloads):
            prev_id = create_entry(ident, topic, i + 1, prev_id, BASE_TS + i, payload).id
    return sw


def chain_verify_only(wires: list[bytes], payloads: list[bytes]) -> Stopwatch:
    """Diagnostic: decode + verify_run + payload hashes, nothing stored."""
    prev: Entry | None = None
    with timed() as sw:
        for start in range(0, len(wires), BATCH):
            run = [decode_entry(w) for w in wires[start : start + BATCH]]
            verify_run(prev, run)
            for entry, payload in zip(run, payloads[start : start + BATCH], strict=True):
                verify_payload(entry.header, payload)
            prev = run[-1]
    return sw


def store_only(directory: Path, entries: list[Entry], payloads: list[bytes]) -> Stopwatch:
    """Diagnostic: ``Store.append`` of ready, verified entries, ``BATCH`` per call."""
    store = open_store(directory, "store-only")
    by_id = {e.id: p for e, p in zip(entries, payloads, strict=True)}
    batches = [
        (entries[i : i + BATCH], {e.id: by_id[e.id] for e in entries[i : i + BATCH]})
        for i in range(0, len(entries), BATCH)
    ]
    try:
        with timed() as sw:
            for batch, batch_payloads in batches:
                store.append(batch, batch_payloads)
    finally:
        store.close()
    return sw


def verify_full(prev: Entry | None, run: list[Entry]) -> None:
    for entry in run:
        verify_entry(prev, entry)
        prev = entry


def verify_chain(prev: Entry | None, run: list[Entry]) -> None:
    verify_run(prev, run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000, help="entries per figure")
    parser.add_argument(
        "--durable-count", type=int, default=2_000,
        help="entries for the durable single-append figure (one commit each)",
    )
    parser.add_argument("--quick", action="store_true", help="small counts (CI smoke)")
    parser.add_argument("--json", metavar="PATH", help="save figures as JSON ('-' = default)")
    args = parser.parse_args(argv)
    count = 2_000 if args.quick else args.count
    durable_count = 200 if args.quick else min(args.durable_count, count)
    raw_count = min(count, 20_000)

    ident = Identity.generate()
    sample = create_entry(ident, os.urandom(32), 2, os.urandom(32), BASE_TS, bytes(PAYLOAD_SIZE))
    signing_size = len(Domain.ENTRY.value) + len(sample.raw)

    backend = "MemoryStore (SqliteStore placeholder)" if sqlite_is_placeholder() else "SqliteStore"
    print(f"bench_log: {count:,} entries x {PAYLOAD_SIZE} B payloads, batches of {BATCH:,}, "
          f"store: {backend}, signing input {signing_size} B")

    sw_sign, sw_verify = raw_rates(signing_size, raw_count)
    with tempfile.TemporaryDirectory(prefix="p2pmsg-bench-") as tmp:
        directory = Path(tmp)
        single = durable_single_append(directory, durable_count)
        batched, entries, payloads = batched_append(directory, count)
        wires = [e.to_bytes() for e in entries]
        full = ingest(directory, "full", wires, payloads, verify_full)
        chain = ingest(directory, "chain", wires, payloads, verify_chain)
        creating = create_only(count)
        chain_cpu = chain_verify_only(wires, payloads)
        storing = store_only(directory, entries, payloads)
    # Measure the limits again at the end and pool both: on a busy machine one
    # measurement can land in a quiet or a loud moment and skew every ratio.
    sw_sign2, sw_verify2 = raw_rates(signing_size, raw_count)
    spread = (
        f"start/end: sign {sw_sign.rate(raw_count):,.0f}/{sw_sign2.rate(raw_count):,.0f}, "
        f"verify {sw_verify.rate(raw_count):,.0f}/{sw_verify2.rate(raw_count):,.0f}"
    )
    sw_sign = Stopwatch(sw_sign.seconds + sw_sign2.seconds,
                        sw_sign.cpu_seconds + sw_sign2.cpu_seconds)
    sw_verify = Stopwatch(sw_verify.seconds + sw_verify2.seconds,
                          sw_verify.cpu_seconds + sw_verify2.cpu_seconds)
    raw_count *= 2

    sign_rate, verify_rate = sw_sign.rate(raw_count), sw_verify.rate(raw_count)

    def fig(
        name: str, sw: Stopwatch, n: int, limit: str | None = None,
        unit: str = "entries/s", **kw: Any,
    ) -> Figure:
        """A figure from a stopwatch, as a ratio to raw "sign" or "verify" if given."""
        value = sw.rate(n)
        base = {"sign": sign_rate, "verify": verify_rate}.get(limit or "")
        return Figure(name, value, unit, n, cpu_value=sw.cpu_rate(n),
                      ratio=value / base if base else None, limit_name=limit, **kw)

    batched_ratio = batched.rate(count) / sign_rate
    chain_rate = chain.rate(count)
    figures = [
        fig("raw sign (pynacl)", sw_sign, raw_count, unit="ops/s",
            note=f"nacl.signing sign of {signing_size}-byte messages, tight loop"),
        fig("raw verify (pynacl)", sw_verify, raw_count, unit="ops/s",
            note=f"measured at the start and the end of the run, pooled ({spread})"),
        fig("durable single append", single, durable_count, "sign",
            note="one durable commit per entry; smaller count because fsync bounds it"),
        fig("batched append (1,000/commit)", batched, count, "sign",
            target=f">= {TARGET_BATCHED_VS_SIGN:.0%} of raw sign",
            met=batched_ratio >= TARGET_BATCHED_VS_SIGN),
        fig("full-verification ingest", full, count, "verify"),
        fig("chain-verification ingest", chain, count, "verify",
            target=f">= {TARGET_CHAIN_INGEST:,.0f} entries/s",
            met=chain_rate >= TARGET_CHAIN_INGEST),
        fig("  diagnostic: create+sign, no store", creating, count, "sign"),
        fig("  diagnostic: decode+chain-verify, no store", chain_cpu, count, "verify"),
        fig("  diagnostic: store.append only", storing, count,
            note="ready entries + payloads, 1,000 per append call: the store's own limit"),
    ]
    if sqlite_is_placeholder():
        figures[2].note = (figures[2].note or "") + "; MemoryStore: nothing is durable"
    print_table("log benchmark", figures)
    if args.json:
        path = default_json_path("bench_log") if args.json == "-" else Path(args.json)
        params = {"count": count, "durable_count": durable_count, "raw_count": raw_count,
                  "payload_size": PAYLOAD_SIZE, "batch": BATCH, "store": backend,
                  "signing_input_size": signing_size, "quick": args.quick}
        print(f"saved {save_json(path, 'bench_log', figures, params)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
