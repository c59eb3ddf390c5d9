"""Shared test fixtures and builders.

Keep this file small and generic: helpers that build valid p2pmsg objects for any
test module. Module-specific fixtures belong in their test module.

* :func:`build_chain` / fixture ``make_chain`` — a valid, signed log of ``n`` entries
  (with payloads) for a given or random identity and topic, optionally continuing
  after an existing entry (to build longer logs or fork branches).
* fixtures ``identity`` and ``topic`` — a fresh random author key / topic id.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from chain_helpers import Chain, build_chain
from hypothesis import HealthCheck, settings

from p2pmsg.entry import TOPIC_SIZE
from p2pmsg.identity import Identity

# Property tests check behaviour, not speed: a loaded 2-core CI machine must not turn
# a slow example into a failure. Speed targets live in benchmarks/.
settings.register_profile(
    "p2pmsg", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "p2pmsg"))


@pytest.fixture(scope="session")
def make_chain() -> Callable[..., Chain]:
    """The :func:`build_chain` builder, as a fixture (usable from any scope)."""
    return build_chain


@pytest.fixture
def identity() -> Identity:
    """A fresh random author identity."""
    return Identity.generate()


@pytest.fixture
def topic() -> bytes:
    """A fresh random 32-byte topic id."""
    return os.urandom(TOPIC_SIZE)
