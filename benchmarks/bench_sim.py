"""Federation simulation: 50 nodes in 10 organisations, random topology (degree 4),
1 % segment loss, 50 ms latency, 1,000 messages, in virtual time.

    .venv/bin/python benchmarks/bench_sim.py [--seed 1] [--quick]

Topics: one federation-wide topic, one internal topic per organisation, and five
rooms shared by two organisations each. Prints a table and saves
benchmarks/results/bench_sim.json. Times are *virtual* seconds (trio MockClock);
the wall-clock cost of the run is printed separately.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from p2pmsg.sim import Scenario, run_simulation


def scenario(seed: int, quick: bool = False) -> Scenario:
    rng = random.Random(seed)
    orgs = 2 if quick else 10
    topics = [frozenset(range(orgs))] + [frozenset({o}) for o in range(orgs)]
    topics += [frozenset(rng.sample(range(orgs), 2)) for _ in range(5)]
    return Scenario(
        nodes=10 if quick else 50,
        orgs=orgs,
        degree=4,
        topics=topics,
        messages=100 if quick else 1000,
        payload_size=200,
        duration=10.0,
        latency=0.05,
        loss=0.01,
        seed=seed,
        extra={"benchmark": "bench_sim"},
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="10 nodes, 100 messages")
    parser.add_argument("--json", type=Path, default=None, help="where to save the result")
    args = parser.parse_args()
    t0 = time.perf_counter()
    result = run_simulation(scenario(args.seed, args.quick))
    wall = time.perf_counter() - t0
    rows = [
        ("converged", result.converged),
        ("virtual time to convergence after last append (s)", result.convergence_time),
        ("virtual time from start to convergence (s)", result.converged_at),
        ("nodes / edges / topics", f"{result.nodes} / {result.edges} / {result.topics}"),
        ("entries appended", result.entries_appended),
        ("entries delivered (new, all receivers)", result.entries_delivered),
        ("duplicate deliveries", result.duplicate_deliveries),
        ("entries sent in range answers", result.entries_sent),
        ("total sync bytes sent", result.bytes_sent),
        ("bytes per delivered entry",
         round(result.bytes_sent / max(1, result.entries_delivered), 1)),
        ("wire segments / retransmissions", f"{result.wire_segments} / {result.retransmissions}"),
        ("connections (incl. reconnects, dups)", result.connections),
        ("live pushes of entries the receiver had", result.live_duplicates),
        ("live offers dropped / resync rounds", f"{result.live_dropped} / {result.resync_rounds}"),
        ("unauthorised entries (leaks)", result.leaks),
        ("wall-clock seconds for the run", round(wall, 1)),
    ]
    total = max(1, result.bytes_sent)
    for name, size in sorted(result.bytes_by_type.items(), key=lambda kv: -kv[1]):
        rows.append((f"  bytes {name}", f"{size} ({100 * size / total:.1f} %)"))
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    out = args.json or Path(__file__).parent / "results" / "bench_sim.json"
    if args.quick and args.json is None:
        return
    out.parent.mkdir(exist_ok=True)
    data = json.loads(result.to_json())
    data["wall_clock_s"] = round(wall, 1)
    out.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
