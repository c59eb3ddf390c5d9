"""The node's audit hook: what it records, and the sink it records into.

Set ``NodeConfig.audit`` to any object with the :class:`AuditSink` shape — a
:class:`p2pmsg.governance.audit.AuditLog` fits as is (its ``append`` *is* the
protocol) — and the node records, with **short ids only** (12 hex digits of a hash,
:func:`p2pmsg.identity.short_id`) and never content:

========================  ==============================================================
kind                      when, and the details
========================  ==============================================================
CONNECTION_ACCEPTED       a connection passed ``policy.allow_peer`` and got a session
                          (``peer``, ``direction``)
CONNECTION_REFUSED        ``allow_peer`` said no (inbound: closed before any sync byte;
                          outbound: not dialed; transport handshake: see
                          :func:`audited_allow_peer`) (``peer``, ``direction``)
TOPICS_DENIED             the peer's HELLO asked for topics the policy denies
                          (``peer``, ``topics``: short topic ids, ``count``)
PROTOCOL_ERROR            a session ended on a ``RemoteProtocolError`` (``peer``,
                          ``reason``: the stable reason code)
ACCESS_REVOKED            :meth:`~p2pmsg.node.Node.revalidate_sessions` closed a session
                          (``peer``, ``topics``, ``reason``)
FORK_DETECTED             a new fork proof was stored (``author``, ``topic``, ``seq``,
                          ``peer`` or ``"local"``)
BAD_SIGNATURE             a deferred signature check failed (``author``, ``topic``,
                          ``seq``, ``peer``)
========================  ==============================================================

A sink that fails (disk full, closed file) never takes the node down: the failure
is logged at ERROR and the event is lost — monitor that log line. ``AuditLog``
fsyncs every record in the trio thread; these events are rare (connections,
misbehaviour), not per entry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from ..errors import P2PMsgError
from ..governance.audit import AuditKind, Detail
from ..identity import short_id
from ..policy import Policy

__all__ = ["AuditSink", "NodeAudit", "audited_allow_peer"]

log = logging.getLogger("p2pmsg.node")


@runtime_checkable
class AuditSink(Protocol):
    """Where audit events go: :class:`p2pmsg.governance.audit.AuditLog` or a test fake."""

    def append(self, kind: AuditKind, at_ms: int, **details: Detail) -> object:
        """Record one event durably. May raise (the node logs and carries on)."""
        ...


class NodeAudit:
    """The node's wrapper around an optional sink: adds the time, never raises."""

    __slots__ = ("_clock", "_name", "sink")

    def __init__(self, sink: AuditSink | None, clock: Callable[[], int], name: str) -> None:
        self.sink = sink
        self._clock = clock
        self._name = name

    def record(self, kind: AuditKind, **details: Detail) -> None:
        """Append ``kind`` with ``details`` at the current wall-clock time (if a sink is set)."""
        if self.sink is None:
            return
        try:
            self.sink.append(kind, self._clock(), **details)
        except (P2PMsgError, ValueError, OSError) as exc:
            log.error("%s: audit record %s lost: %s", self._name, kind.value, exc)


def audited_allow_peer(
    policy: Policy, audit: AuditSink | None, clock: Callable[[], int]
) -> Callable[[bytes], bool]:
    """``policy.allow_peer`` for a transport's handshake, recording refusals.

    Transports that refuse peers inside their handshake (TCP, QUIC) never hand the
    connection to the node, so the daemon passes this function to them as their
    ``allow_peer`` so that such refusals are audited as well.
    """
    recorder = NodeAudit(audit, clock, "transport")

    def allow_peer(peer_id: bytes) -> bool:
        if policy.allow_peer(peer_id):
            return True
        recorder.record(AuditKind.CONNECTION_REFUSED, peer=short_id(peer_id),
                        direction="inbound", stage="handshake")
        return False

    return allow_peer
