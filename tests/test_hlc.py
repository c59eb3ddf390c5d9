"""Hybrid logical clock: layout, monotonicity, causality and the drift bound."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from p2pmsg.hlc import COUNTER_BITS, MAX_TIMESTAMP, HybridClock, physical_ms

T = 1_700_000_000_000


def test_layout() -> None:
    ts = (T << COUNTER_BITS) | 5
    assert physical_ms(ts) == T
    assert HybridClock.counter(ts) == 5
    assert COUNTER_BITS == 16
    assert MAX_TIMESTAMP == 2**64 - 1


def test_tick_follows_wall_clock() -> None:
    clock = HybridClock()
    assert clock.tick(T) == T << 16
    assert clock.tick(T + 1) == (T + 1) << 16


def test_tick_same_ms_increments_counter() -> None:
    clock = HybridClock()
    a, b, c = clock.tick(T), clock.tick(T), clock.tick(T)
    assert (HybridClock.counter(a), HybridClock.counter(b), HybridClock.counter(c)) == (0, 1, 2)
    assert physical_ms(c) == T


def test_wall_clock_going_backwards_keeps_monotonic() -> None:
    clock = HybridClock()
    a = clock.tick(T)
    b = clock.tick(T - 5000)
    assert b > a
    assert physical_ms(b) == T


def test_counter_overflow_carries_into_physical() -> None:
    clock = HybridClock(last=(T << 16) | 0xFFFF)
    nxt = clock.tick(T)
    assert nxt == (T + 1) << 16


def test_observe_pulls_clock_forward() -> None:
    clock = HybridClock()
    clock.tick(T)
    remote = ((T + 1000) << 16) | 3
    assert clock.observe(remote, wall_ms=T)
    assert clock.tick(T) > remote
    assert physical_ms(clock.last) == T + 1000


def test_observe_older_timestamp_changes_nothing() -> None:
    clock = HybridClock()
    now = clock.tick(T)
    assert clock.observe((T - 10) << 16, wall_ms=T)
    assert clock.last == now


def test_drift_bound() -> None:
    clock = HybridClock(max_drift_ms=60_000)
    clock.tick(T)
    before = clock.last
    at_bound = (T + 60_000) << 16 | 0xFFFF
    too_far = (T + 60_001) << 16
    assert clock.observe(too_far, wall_ms=T) is False
    assert clock.last == before  # ignored entirely
    assert clock.observe(at_bound, wall_ms=T) is True
    assert clock.last == at_bound


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 2**40), st.integers(0, 2**56)),
                max_size=50))
def test_monotonic_and_causal(events: list[tuple[bool, int, int]]) -> None:
    """Whatever mix of ticks and observes, ticks strictly increase and exceed all accepted
    remote timestamps seen before them."""
    clock = HybridClock(max_drift_ms=10_000)
    last_tick = -1
    max_accepted = -1
    for is_tick, wall, remote in events:
        if is_tick:
            ts = clock.tick(wall)
            assert ts > last_tick
            assert ts > max_accepted
            assert physical_ms(ts) >= wall
            last_tick = ts
        else:
            accepted = clock.observe(remote, wall)
            assert accepted == (physical_ms(remote) <= wall + 10_000)
            if accepted:
                max_accepted = max(max_accepted, remote)
            assert clock.last >= max(last_tick, max_accepted)
