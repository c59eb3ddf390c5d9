"""mDNS discovery latency on this host's loopback interface (real multicast).

    .venv/bin/python benchmarks/bench_discovery.py [--runs 10] [--quick] [--json PATH]

Three figures, each over N runs (p50 and max, milliseconds):

* **late joiner**: node A is advertised and settled; a new browse-only discovery
  starts; time from ``run()`` to its first hint for A. This is "a node joins a
  site". Runs are spaced by ``--gap`` (default 1.2 s) because an mDNS responder
  multicasts a record at most once per second (RFC 6762 §6), so back-to-back
  queries would measure that rate limit, not discovery.
  Limit: the same with raw python-zeroconf (``Zeroconf`` + ``ServiceBrowser`` with
  QM questions, time to its ``Added`` callback), so the ratio shows what the trio
  bridge, resolution and TXT validation add.
* **simultaneous start**: two nodes start at the same moment; time until *both*
  have a hint for the other. Includes registration probing (~1.5 s).
* **departure**: one of those nodes stops (goodbye packets); time until the other
  forgets it.

Skips (prints the reason, exits 0) when IPv4 multicast does not work on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import trio
from _common import Figure, default_json_path, print_table, save_json
from p2pmsg_mdns import SERVICE_TYPE, MdnsDiscovery, multicast_unavailable_reason
from zeroconf import (
    DNSQuestionType,
    IPVersion,
    ServiceBrowser,
    ServiceStateChange,
    Zeroconf,
)

LOOPBACK = "127.0.0.1"
ORG = b"\x07" * 32


def _node(ports: dict[str, int] | None = None) -> MdnsDiscovery:
    return MdnsDiscovery(
        node_id=os.urandom(32), org_id=ORG, ports=ports or {}, interfaces=[LOOPBACK]
    )


async def _until_hint(mdns: MdnsDiscovery, node_id: bytes) -> None:
    async for hint in mdns.hints():
        if hint.node_id == node_id:
            return


async def late_joiner_ours(target: bytes) -> float:
    joiner = _node()
    async with trio.open_nursery() as nursery:
        start = time.perf_counter()
        nursery.start_soon(joiner.run)
        with trio.fail_after(10):
            await _until_hint(joiner, target)
        elapsed = time.perf_counter() - start
        nursery.cancel_scope.cancel()
    return elapsed


def late_joiner_raw(target_name: str) -> float:
    """Raw zeroconf: time from opening a Zeroconf to the browser's Added callback."""
    import threading

    found = threading.Event()

    def handler(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if name == target_name and state_change is ServiceStateChange.Added:
            found.set()

    start = time.perf_counter()
    zc = Zeroconf(interfaces=[LOOPBACK], ip_version=IPVersion.V4Only)
    browser = ServiceBrowser(zc, SERVICE_TYPE, handlers=[handler], question_type=DNSQuestionType.QM)
    ok = found.wait(10)
    elapsed = time.perf_counter() - start
    browser.cancel()
    zc.close()
    if not ok:
        raise TimeoutError("raw zeroconf did not find the service")
    return elapsed


async def simultaneous_and_departure() -> tuple[float, float]:
    a, b = _node({"quic": 41001}), _node({"quic": 41002})
    b_scope = trio.CancelScope()

    async def run_b() -> None:
        with b_scope:
            await b.run()

    async with trio.open_nursery() as nursery:
        start = time.perf_counter()
        with trio.fail_after(15):
            async with trio.open_nursery() as waiters:
                waiters.start_soon(_until_hint, a, b._node_id)
                waiters.start_soon(_until_hint, b, a._node_id)
                nursery.start_soon(a.run)
                nursery.start_soon(run_b)
        both = time.perf_counter() - start
        # Let b finish registering, so it leaves with goodbye packets.
        with trio.fail_after(10):
            while b.instance_name is None:
                await trio.sleep(0.01)
        gone = time.perf_counter()
        b_scope.cancel()
        with trio.fail_after(10):
            while any(p.advertisement.node_id == b._node_id for p in a.peers()):
                await a.wait_peers_changed()
        departure = time.perf_counter() - gone
        nursery.cancel_scope.cancel()
    return both, departure


def _ms(values: list[float]) -> tuple[float, float]:
    return statistics.median(values) * 1000, max(values) * 1000


async def measure(
    runs: int, gap: float
) -> tuple[list[float], list[float], list[float], list[float]]:
    target = _node({"quic": 41000})
    ours: list[float] = []
    raw: list[float] = []
    async with target.running():
        assert target.instance_name is not None
        await trio.sleep(gap)  # let the registration announcements pass
        for _ in range(runs):
            ours.append(await late_joiner_ours(target._node_id))
            await trio.sleep(gap)
            raw.append(await trio.to_thread.run_sync(late_joiner_raw, target.instance_name))
            await trio.sleep(gap)
    both: list[float] = []
    departure: list[float] = []
    for _ in range(runs):
        s, d = await simultaneous_and_departure()
        both.append(s)
        departure.append(d)
    return ours, raw, both, departure


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--gap", type=float, default=1.2)
    parser.add_argument("--quick", action="store_true", help="1 run (smoke test)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs
    title = f"mDNS discovery latency on {LOOPBACK} ({runs} runs)"

    reason = multicast_unavailable_reason(LOOPBACK)
    if reason is not None:
        print(f"== {title} ==")
        print(f"skipped: {reason}")
        return

    ours, raw, both, departure = trio.run(measure, runs, args.gap)
    raw_p50, raw_max = _ms(raw)
    ours_p50, ours_max = _ms(ours)
    both_p50, both_max = _ms(both)
    dep_p50, dep_max = _ms(departure)
    limit = "raw zeroconf"
    figures = [
        Figure("raw zeroconf late joiner p50", raw_p50, "ms", runs),
        Figure("raw zeroconf late joiner max", raw_max, "ms", runs),
        Figure("late joiner p50", ours_p50, "ms", runs, ours_p50 / raw_p50, limit),
        Figure("late joiner max", ours_max, "ms", runs, ours_max / raw_max, limit),
        Figure(
            "simultaneous start p50",
            both_p50,
            "ms",
            runs,
            note="both nodes probe ~1.5 s; includes RFC 6762 one-second multicast limit",
        ),
        Figure("simultaneous start max", both_max, "ms", runs),
        Figure("departure p50", dep_p50, "ms", runs),
        Figure("departure max", dep_max, "ms", runs),
    ]
    print_table(title, figures)
    params = {"runs": runs, "gap": args.gap, "interface": LOOPBACK}
    path = save_json(
        args.json or default_json_path("bench_discovery"), "bench_discovery", figures, params
    )
    print(f"saved {path}")


if __name__ == "__main__":
    main()
