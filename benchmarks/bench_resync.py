"""Idle re-sync cost of range-based reconciliation vs a full height vector.

Scenario: one topic with N logs (one entry each) held by both nodes; on D logs node
A has one more entry. We run one session over the fake link (p2pmsg.sync.testing)
and count every byte both ways (handshake, reconciliation, requests, the D entries
themselves, credit) and the round trips. A height vector would cost N x (32-byte
author + 8-byte seq) in one direction alone.

    .venv/bin/python benchmarks/bench_resync.py            # N=10000, D=10
    .venv/bin/python benchmarks/bench_resync.py --logs 2000 --diff 1 5 50
"""

from __future__ import annotations

import argparse
import os
import time

from p2pmsg.entry import create_entry
from p2pmsg.identity import Identity
from p2pmsg.sync.testing import ConnectionPair, SyncPeer

HEIGHT_VECTOR_ITEM = 32 + 8


def build(n_logs: int, n_diff: int, payload_size: int = 64) -> tuple[SyncPeer, SyncPeer, bytes]:
    topic = os.urandom(32)
    a, b = SyncPeer(os.urandom(32)), SyncPeer(os.urandom(32))
    firsts, payloads = [], {}
    ids = [Identity.generate() for _ in range(n_logs)]
    for ident in ids:
        p = os.urandom(payload_size)
        e = create_entry(ident, topic, 1, None, 1, p)
        firsts.append(e)
        payloads[e.id] = p
    a.add(firsts, payloads)
    b.add(firsts, payloads)
    extra, extra_p = [], {}
    for ident, first in zip(ids[:n_diff], firsts[:n_diff], strict=True):
        p = os.urandom(payload_size)
        e = create_entry(ident, topic, 2, first.id, 2, p)
        extra.append(e)
        extra_p[e.id] = p
    a.add(extra, extra_p)
    return a, b, topic


def measure(n_logs: int, n_diff: int) -> dict[str, float]:
    a, b, topic = build(n_logs, n_diff)
    pair = ConnectionPair.connect(a, b, [topic], [topic])
    t0 = time.perf_counter()
    pair.run()
    elapsed = time.perf_counter() - t0
    assert a.entry_ids([topic]) == b.entry_ids([topic])
    vector = n_logs * HEIGHT_VECTOR_ITEM
    recon = a.c.stats.recon_bytes_sent + b.c.stats.recon_bytes_sent
    return {
        "logs": n_logs, "diff": n_diff, "total_bytes": pair.total_bytes,
        "recon_bytes": recon, "round_trips": pair.round_trips, "vector_bytes": vector,
        "ratio": pair.total_bytes / vector, "seconds": elapsed,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--logs", type=int, default=10_000)
    ap.add_argument("--diff", type=int, nargs="+", default=[10])
    ap.add_argument("--quick", action="store_true", help="1,000 logs (smoke test)")
    args = ap.parse_args()
    if args.quick:
        args.logs = 1_000
    print(f"== idle re-sync: {args.logs} logs, bytes both ways vs a height vector "
          f"({HEIGHT_VECTOR_ITEM} B/log)")
    print(f"{'logs':>7} {'diff':>5} {'total B':>9} {'recon B':>9} {'RTs':>4} "
          f"{'vector B':>9} {'ratio':>7} {'time s':>7}")
    for d in args.diff:
        r = measure(args.logs, d)
        print(f"{r['logs']:>7} {r['diff']:>5} {r['total_bytes']:>9} {r['recon_bytes']:>9} "
              f"{r['round_trips']:>4} {r['vector_bytes']:>9} {r['ratio']:>7.2%} "
              f"{r['seconds']:>7.3f}")


if __name__ == "__main__":
    main()
