"""QUIC throughput on loopback: p2pmsg_quic's QuicTransport vs raw aioquic.

See ``_quic_bench.py`` for what "raw" means (two loops: the per-datagram one
this script always used, and a batched one that is the fairer limit now that the
transport batches). Rounds alternate raw / transport so
both see the same machine load; the ratio of each round is computed from that
round's pair and the **median** over rounds is reported (the machine is shared
and noisy: absolute MB/s vary by 2-3x between runs, the paired ratio much less).

Run:  .venv/bin/python benchmarks/bench_quic_raw.py [--mb 20] [--datagram 1350 16000]
          [--rounds 3] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from functools import partial
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _quic_bench import QUIC_TARGET_RATIO, quic_transport, raw_aioquic


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--mb", type=float, default=20.0, help="MiB per transfer")
    parser.add_argument("--datagram", type=int, nargs="*", default=[1350, 16000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 MiB, 1 round")
    args = parser.parse_args()
    if args.quick:
        args.mb, args.rounds, args.datagram = 2.0, 1, [16000]
    total = int(args.mb * 1024 * 1024)
    payload = b"\xab" * total
    for datagram in args.datagram:
        rates: dict[str, list[float]] = {"raw": [], "batched": [], "quic": []}
        for _ in range(args.rounds):
            rates["raw"].append(total / trio.run(raw_aioquic, payload, datagram) / 1e6)
            rates["batched"].append(
                total / trio.run(partial(raw_aioquic, batched=True), payload, datagram) / 1e6
            )
            rates["quic"].append(total / trio.run(quic_transport, payload, datagram) / 1e6)
        med = {k: statistics.median(v) for k, v in rates.items()}
        print(f"max_datagram_size={datagram} ({args.mb:g} MiB, median of {args.rounds} rounds)")
        print(f"  raw aioquic, per-datagram loop {med['raw']:7.1f} MB/s")
        print(f"  raw aioquic, batched loop      {med['batched']:7.1f} MB/s")
        print(f"  QuicTransport                  {med['quic']:7.1f} MB/s")
        for name in ("raw", "batched"):
            ratios = [q / r for q, r in zip(rates["quic"], rates[name], strict=True)]
            ratio = statistics.median(ratios)
            verdict = "MET" if ratio >= QUIC_TARGET_RATIO else "NOT MET"
            print(
                f"  QuicTransport / {name:7s} ratio {ratio:5.0%}  "
                f"(rounds {', '.join(f'{r:.0%}' for r in ratios)}) "
                f"target >= {QUIC_TARGET_RATIO:.0%} [{verdict}]"
            )

if __name__ == "__main__":
    main()
