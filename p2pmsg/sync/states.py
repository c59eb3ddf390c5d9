"""Connection states and the one transition table of the sync machine.

docs/protocol-sync.md draws its state diagram from :data:`TRANSITIONS` (run
``python -m p2pmsg.sync.states`` to print it as mermaid); tests check the two agree.
Which message types may arrive in each state is :data:`ACCEPTS`; anything else is a
``unexpected_message`` protocol error.
"""

from __future__ import annotations

import enum

from .messages import MsgType

__all__ = [
    "ACCEPTS",
    "OPEN_STATES",
    "ROUND_INITIAL",
    "ROUND_TRANSITIONS",
    "TRANSITIONS",
    "Round",
    "RoundTrigger",
    "State",
    "Trigger",
    "mermaid",
    "round_mermaid",
]


class State(enum.Enum):
    """The lifecycle of one sync session."""

    IDLE = "idle"
    """Created; ``start()`` not called yet. The peer's HELLO may already arrive."""
    HELLO_SENT = "hello_sent"
    """Our HELLO is queued; waiting for the peer's HELLO."""
    HELLO_RECEIVED = "hello_received"
    """The peer's HELLO arrived before we called ``start()``; its GRANT waits for ours."""
    AWAIT_GRANT = "await_grant"
    """Both HELLOs exchanged, our GRANT sent; waiting for the peer's GRANT."""
    ESTABLISHED = "established"
    """Handshake done: reconciliation, transfer, live push, payload fetch, keepalive."""
    CLOSED = "closed"
    """Terminal. Incoming bytes, timers and commands are ignored (no-ops)."""


class Trigger(enum.Enum):
    """What moves the machine from one state to another."""

    START = "start()"
    RECV_HELLO = "recv HELLO"
    RECV_GRANT = "recv GRANT"
    ADD_INTEREST = "AddInterest: send INTEREST"
    RECV_INTEREST = "recv INTEREST: send INTEREST_GRANT"
    RECV_INTEREST_GRANT = "recv INTEREST_GRANT"
    CLOSE = "Close command"
    RECV_CLOSE = "recv CLOSE"
    EOF = "eof"
    PROTOCOL_ERROR = "protocol error"
    IDLE_TIMEOUT = "idle timeout"


OPEN_STATES = (State.IDLE, State.HELLO_SENT, State.HELLO_RECEIVED, State.AWAIT_GRANT,
               State.ESTABLISHED)

TRANSITIONS: dict[tuple[State, Trigger], State] = {
    (State.IDLE, Trigger.START): State.HELLO_SENT,
    (State.IDLE, Trigger.RECV_HELLO): State.HELLO_RECEIVED,
    (State.HELLO_SENT, Trigger.RECV_HELLO): State.AWAIT_GRANT,
    (State.HELLO_RECEIVED, Trigger.START): State.AWAIT_GRANT,
    (State.AWAIT_GRANT, Trigger.RECV_GRANT): State.ESTABLISHED,
    # Interest changes at run time renegotiate grants without leaving ESTABLISHED
    # (an AddInterest before it is held back and sent on entering it).
    (State.ESTABLISHED, Trigger.ADD_INTEREST): State.ESTABLISHED,
    (State.ESTABLISHED, Trigger.RECV_INTEREST): State.ESTABLISHED,
    (State.ESTABLISHED, Trigger.RECV_INTEREST_GRANT): State.ESTABLISHED,
    **{
        (s, t): State.CLOSED
        for s in OPEN_STATES
        for t in (Trigger.CLOSE, Trigger.RECV_CLOSE, Trigger.EOF, Trigger.PROTOCOL_ERROR,
                  Trigger.IDLE_TIMEOUT)
    },
}
"""(state, trigger) -> next state. A pair not in the table is not allowed."""

_ALWAYS = frozenset({MsgType.PING, MsgType.PONG, MsgType.CLOSE})

ACCEPTS: dict[State, frozenset[MsgType]] = {
    State.IDLE: _ALWAYS | {MsgType.HELLO},
    State.HELLO_SENT: _ALWAYS | {MsgType.HELLO},
    State.HELLO_RECEIVED: _ALWAYS,
    State.AWAIT_GRANT: _ALWAYS | {MsgType.GRANT},
    State.ESTABLISHED: frozenset(MsgType) - {MsgType.HELLO, MsgType.GRANT},
    State.CLOSED: frozenset(),
}
"""Message types a peer may send us in each state."""


class Round(enum.Enum):
    """Per-topic reconciliation state inside ESTABLISHED (one per granted topic).

    Each topic has an *opener*: the connection initiator for a topic both sides
    grant each other, the serving side for a one-way topic. Only the opener starts
    rounds (so two rounds never cross); the other side asks for one with RESYNC.
    """

    AWAITING = "awaiting"
    """A round is open and the peer's turn is due (RECON accepted)."""
    QUIET = "quiet"
    """No round open. The opener may open one; the other side accepts an opening turn."""


class RoundTrigger(enum.Enum):
    """What moves a topic's reconciliation state."""

    ESTABLISHED_WAIT = "established (opener sent FINGERPRINT, or peer opens)"
    ESTABLISHED_PUSHED = "established (one-way: ITEMS_FINAL sent)"
    TURN_NEEDS_REPLY = "recv turn, our answer needs a reply"
    TURN_ENDS_ROUND = "recv turn, no further reply"
    INTEREST_SERVE = "INTEREST granted, we serve one-way (ITEMS_FINAL sent)"
    INTEREST_RECEIVE = "INTEREST_GRANT received for a new topic (peer pushes)"
    OPEN_ROUND = ("opener: resync timer / send-queue overflow / recv RESYNC"
                  " / one-way topic became mutual")
    PUSH_ITEMS = "opener of a one-way topic: resend ITEMS_FINAL"


ROUND_INITIAL: dict[RoundTrigger, Round] = {
    RoundTrigger.ESTABLISHED_WAIT: Round.AWAITING,
    RoundTrigger.ESTABLISHED_PUSHED: Round.QUIET,
    RoundTrigger.INTEREST_SERVE: Round.QUIET,
    RoundTrigger.INTEREST_RECEIVE: Round.AWAITING,
}
"""Entry into the per-topic machine: when the handshake completes, or when a topic
joins the session later through INTEREST / INTEREST_GRANT (always one-way first:
the topic becomes mutual only if the other side asks for it too, and then its
opener — the side that served it first — opens a fingerprint round)."""

ROUND_TRANSITIONS: dict[tuple[Round, RoundTrigger], Round] = {
    (Round.AWAITING, RoundTrigger.TURN_NEEDS_REPLY): Round.AWAITING,
    (Round.AWAITING, RoundTrigger.TURN_ENDS_ROUND): Round.QUIET,
    (Round.QUIET, RoundTrigger.OPEN_ROUND): Round.AWAITING,
    (Round.QUIET, RoundTrigger.PUSH_ITEMS): Round.QUIET,
    # the non-opener receiving the opener's first turn of a new round:
    (Round.QUIET, RoundTrigger.TURN_NEEDS_REPLY): Round.AWAITING,
    (Round.QUIET, RoundTrigger.TURN_ENDS_ROUND): Round.QUIET,
}
"""(round state, trigger) -> next round state. RECON in QUIET is accepted only by
the non-opener (the opener raises ``unexpected_recon``)."""


def round_mermaid() -> str:
    """The per-topic reconciliation table as a mermaid state diagram."""
    lines = ["stateDiagram-v2"]
    for trig, dst in ROUND_INITIAL.items():
        lines.append(f"    [*] --> {dst.name}: {trig.value}")
    for (src, trig), dst in ROUND_TRANSITIONS.items():
        lines.append(f"    {src.name} --> {dst.name}: {trig.value}")
    return "\n".join(lines)


def mermaid() -> str:
    """The transition table as a mermaid state diagram (close edges folded)."""
    lines = ["stateDiagram-v2", "    [*] --> IDLE"]
    for (src, trig), dst in TRANSITIONS.items():
        if dst is State.CLOSED:
            continue
        lines.append(f"    {src.name} --> {dst.name}: {trig.value}")
    lines.append("    OPEN --> CLOSED: Close / recv CLOSE / eof / protocol error / idle timeout")
    lines.append("    CLOSED --> [*]")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    print(mermaid())
    print()
    print(round_mermaid())
