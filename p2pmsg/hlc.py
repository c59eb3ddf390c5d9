"""Hybrid logical clock (Kulkarni et al. 2014), pure: the caller passes wall time.

A timestamp is one unsigned 64-bit integer: ``physical_ms << 16 | counter``. It is
monotonic per node, stays close to wall-clock milliseconds, and respects causality:
after :meth:`HybridClock.observe` of a remote timestamp, every later :meth:`tick` is
greater than it. Ties between nodes are broken by entry id where an order is needed.
"""

from __future__ import annotations

__all__ = ["COUNTER_BITS", "MAX_TIMESTAMP", "HybridClock", "physical_ms"]

COUNTER_BITS = 16
_COUNTER_MASK = (1 << COUNTER_BITS) - 1
MAX_TIMESTAMP = (1 << 64) - 1


def physical_ms(timestamp: int) -> int:
    """The wall-clock milliseconds part of an HLC timestamp."""
    return timestamp >> COUNTER_BITS


class HybridClock:
    """Issues HLC timestamps. Feed it ``wall_ms`` (e.g. ``int(time.time() * 1000)``).

    ``max_drift_ms`` bounds how far a remote timestamp may run ahead of our wall
    clock before :meth:`observe` ignores it, so one peer with a broken clock cannot
    drag every node's clock into the future.
    """

    __slots__ = ("last", "max_drift_ms")

    def __init__(self, last: int = 0, max_drift_ms: int = 60_000) -> None:
        self.last = last
        self.max_drift_ms = max_drift_ms

    def tick(self, wall_ms: int) -> int:
        """A new timestamp for a local event, greater than every earlier one."""
        candidate = wall_ms << COUNTER_BITS
        self.last = candidate if candidate > self.last else self.last + 1
        return self.last

    def observe(self, remote: int, wall_ms: int) -> bool:
        """Merge a timestamp seen on a received entry. False if it was too far ahead."""
        if physical_ms(remote) > wall_ms + self.max_drift_ms:
            return False
        self.last = max(self.last, remote)
        return True

    @staticmethod
    def counter(timestamp: int) -> int:
        return timestamp & _COUNTER_MASK
