"""A userspace WAN link: two TAP devices joined with loss, latency and cuts.

Why: the test machines' kernel has no ``sch_netem`` (``CONFIG_NET_SCH_NETEM`` is not
set), so ``tc qdisc add ... netem`` fails with "Specified qdisc kind is unknown".
This script replaces it for the inter-site link of the netns harness. Started
*inside the router namespace* (``ip netns exec ROUTER python wanlink.py A B``), it
creates two non-persistent TAP devices ``A`` and ``B`` there, prints ``ready``, and
copies Ethernet frames between them; the harness then moves ``B`` into the site
namespace and attaches it to the site bridge (an attached TAP fd keeps working
across a namespace move). The devices vanish when this process exits.

Impairment, per direction: every frame is dropped with probability ``loss``,
otherwise delivered ``delay_ms`` later (constant delay: order is kept). Control on
stdin, one JSON object per line, each answered by ``ok``:
``{"delay_ms": 40, "loss": 0.05}``, ``{"cut": true}`` / ``{"cut": false}``,
``{"stats": true}`` (answers ``ok {json counters}``). EOF on stdin ends it.
"""

from __future__ import annotations

import collections
import fcntl
import json
import os
import random
import select
import struct
import sys
import time

__all__ = ["main"]

_TUNSETIFF = 0x400454CA
_IFF_TAP = 0x0002
_IFF_NO_PI = 0x1000
_MAX_FRAME = 65536


def open_tap(name: str) -> int:
    """Create (and attach to) a non-persistent TAP device in this namespace."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", name.encode(), _IFF_TAP | _IFF_NO_PI))
    return fd


def main(argv: list[str]) -> int:
    name_a, name_b = argv[1], argv[2]
    seed = int(argv[3]) if len(argv) > 3 else 0
    rng = random.Random(seed)
    fd_a, fd_b = open_tap(name_a), open_tap(name_b)
    other = {fd_a: fd_b, fd_b: fd_a}
    queues: dict[int, collections.deque[tuple[float, bytes]]] = {
        fd_a: collections.deque(), fd_b: collections.deque()
    }  # keyed by destination fd
    delay, loss, cut = 0.0, 0.0, False
    stats = {"forwarded": 0, "dropped_loss": 0, "dropped_cut": 0, "write_errors": 0}
    stdin = sys.stdin.fileno()
    os.set_blocking(stdin, False)
    control = b""
    print("ready", flush=True)
    while True:
        now = time.monotonic()
        due = [q[0][0] for q in queues.values() if q]
        timeout = max(0.0, min(due) - now) if due else None
        readable, _, _ = select.select([fd_a, fd_b, stdin], [], [], timeout)
        for fd in readable:
            if fd == stdin:
                chunk = os.read(stdin, 4096)
                if not chunk:
                    return 0
                control += chunk
                while b"\n" in control:
                    line, control = control.split(b"\n", 1)
                    if not line.strip():
                        continue
                    cmd = json.loads(line)
                    delay = float(cmd.get("delay_ms", delay * 1000.0)) / 1000.0
                    loss = float(cmd.get("loss", loss))
                    cut = bool(cmd.get("cut", cut))
                    if cut:  # a cut also loses what was in flight
                        for q in queues.values():
                            stats["dropped_cut"] += len(q)
                            q.clear()
                    extra = " " + json.dumps(stats) if cmd.get("stats") else ""
                    print("ok" + extra, flush=True)
                continue
            for _ in range(64):  # drain a burst, then look at the others again
                try:
                    frame = os.read(fd, _MAX_FRAME)
                except BlockingIOError:
                    break
                except OSError:  # the device went down under us
                    break
                if cut:
                    stats["dropped_cut"] += 1
                elif loss and rng.random() < loss:
                    stats["dropped_loss"] += 1
                else:
                    queues[other[fd]].append((time.monotonic() + delay, frame))
        now = time.monotonic()
        for dest, queue in queues.items():
            while queue and queue[0][0] <= now:
                _, frame = queue.popleft()
                try:
                    os.write(dest, frame)
                    stats["forwarded"] += 1
                except OSError:  # link down (ip link set ... down): the frame is lost
                    stats["write_errors"] += 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
