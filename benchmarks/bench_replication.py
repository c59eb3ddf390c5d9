"""Catch-up replication throughput: two nodes over the memory transport.

Node A holds one log of N entries (200-byte payloads); node B connects and catches
up. Prints entries/s, MB/s (payload bytes), wire bytes per entry, and ratios to the
raw pynacl Ed25519 verify rate measured in the same run and to Hypercore 11's
3,300-4,000 entries/s on this machine (docs/DESIGN "measured limits").

    .venv/bin/python benchmarks/bench_replication.py [--entries 100000] [--quick]

Results also go to benchmarks/results/bench_replication.json. The memory transport
runs with no latency knobs, so this measures the sync machine + node + store.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import nacl.signing
import trio

from p2pmsg.entry import create_entry
from p2pmsg.identity import Domain, Identity
from p2pmsg.net.base import PeerHint
from p2pmsg.net.memory import MemoryNetwork
from p2pmsg.node import NodeConfig, open_node
from p2pmsg.policy import AllowAllPolicy
from p2pmsg.store.memory import MemoryStore

TOPIC = bytes(32)
HYPERCORE = (3300, 4000)


def build_log(n: int, size: int) -> MemoryStore:
    author = Identity.from_seed(b"A" * 32)
    store = MemoryStore()
    prev = None
    batch, payloads = [], {}
    for seq in range(1, n + 1):
        payload = os.urandom(size)
        e = create_entry(author, TOPIC, seq, None if prev is None else prev.id, seq, payload)
        batch.append(e)
        payloads[e.id] = payload
        prev = e
        if len(batch) == 5000:
            store.append(batch, payloads)
            batch, payloads = [], {}
    store.append(batch, payloads)
    return store


def raw_verify_rate(samples: int = 5000) -> float:
    key = nacl.signing.SigningKey.generate()
    msgs = [os.urandom(380) for _ in range(samples)]
    sigs = [key.sign(Domain.ENTRY.value + m).signature for m in msgs]
    vk = nacl.signing.VerifyKey(bytes(key.verify_key))
    t0 = time.perf_counter()
    for m, s in zip(msgs, sigs, strict=True):
        vk.verify(Domain.ENTRY.value + m, s)
    return samples / (time.perf_counter() - t0)


async def replicate(store: MemoryStore, n: int) -> dict[str, float]:
    net = MemoryNetwork()
    a_id, b_id = Identity.from_seed(b"a" * 32), Identity.from_seed(b"b" * 32)
    a_cfg = NodeConfig(identity=a_id, store=store, policy=AllowAllPolicy(), topics=[TOPIC],
                       transports=[net.transport("a", a_id.public_key)], name="a")
    b_cfg = NodeConfig(identity=b_id, policy=AllowAllPolicy(), topics=[TOPIC],
                       transports=[net.transport("b", b_id.public_key)],
                       peers=[PeerHint(a_id.public_key, "memory://a")], name="b")
    async with open_node(a_cfg) as a:
        t0 = time.perf_counter()
        async with open_node(b_cfg) as b:
            await b.wait_for_entries(TOPIC, n)
            caught_up = time.perf_counter() - t0
            while b.statistics().lazy_verified < n:
                await trio.sleep(0.01)
            verified = time.perf_counter() - t0
            stats_b = b.statistics()
        stats_a = a.statistics()
    return {
        "catch_up_s": caught_up,
        "all_signatures_checked_s": verified,
        "wire_bytes": stats_a.bytes_sent + stats_b.bytes_sent,
        "duplicates": stats_b.duplicate_entries,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--payload", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="5,000 entries, no results file")
    parser.add_argument("--json", type=Path, default=None, help="where to save the figures")
    args = parser.parse_args()
    n = 5_000 if args.quick else args.entries
    t0 = time.perf_counter()
    store = build_log(n, args.payload)
    build_s = time.perf_counter() - t0
    verify_rate = raw_verify_rate()
    r = trio.run(replicate, store, n)
    rate = n / r["catch_up_s"]
    full_rate = n / r["all_signatures_checked_s"]
    result = {
        "entries": n,
        "payload_bytes": args.payload,
        "build_log_s": round(build_s, 2),
        "catch_up_s": round(r["catch_up_s"], 3),
        "entries_per_s": round(rate),
        "payload_MB_per_s": round(rate * args.payload / 1e6, 2),
        "wire_bytes_per_entry": round(r["wire_bytes"] / n, 1),
        "entries_per_s_incl_lazy_signature_checks": round(full_rate),
        "raw_pynacl_verify_per_s": round(verify_rate),
        "ratio_to_raw_verify": round(rate / verify_rate, 2),
        "ratio_to_hypercore": [round(rate / HYPERCORE[1], 2), round(rate / HYPERCORE[0], 2)],
        "duplicates": r["duplicates"],
        "target_entries_per_s": 20_000,
    }
    width = max(len(k) for k in result)
    for k, v in result.items():
        print(f"{k:<{width}}  {v}")
    out = args.json or Path(__file__).parent / "results" / "bench_replication.json"
    if args.quick and args.json is None:
        return
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
