"""Fixtures of the multi-host tests: a fresh two-site namespace topology per test.

Every test here is skipped, with the reason, when network namespaces are not usable
(not root, no iproute2, ``ip netns add`` refused): see
:func:`netns_harness.unavailable_reason`. At the start of the session, namespaces
left behind by dead earlier runs are swept (:func:`netns_harness.sweep_stale`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import netns_harness

_REASON: list[str | None] = []


def netns_skip_reason() -> str | None:
    """Checked once per session (creates and deletes one probe namespace)."""
    if not _REASON:
        reason = netns_harness.unavailable_reason()
        if reason is None:
            netns_harness.sweep_stale()
        _REASON.append(reason)
    return _REASON[0]


@pytest.fixture
def topology() -> Iterator[netns_harness.Topology]:
    """Two sites (a1, a2 | b1, b2) and a router; always destroyed afterwards."""
    reason = netns_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    topo = netns_harness.Topology()
    try:
        yield topo.build()
    finally:
        topo.destroy()
