"""A malicious peer against an honest sync machine: every attack ends in
RemoteProtocolError (with a stable reason), a closed session, and nothing stored."""

from __future__ import annotations

import dataclasses
import os

import pytest
from chain_helpers import build_chain
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pmsg.errors import RemoteProtocolError
from p2pmsg.sync import MAX_FRAME_SIZE, ConnectionClosed, EntriesReceived, State, SyncConfig
from p2pmsg.sync.frames import encode_frame
from p2pmsg.sync.messages import (
    Close,
    Credit,
    ForkProofMsg,
    Grant,
    Hello,
    Interest,
    InterestGrant,
    Item,
    PayloadRequest,
    Payloads,
    Ping,
    Range,
    RangeMode,
    Recon,
    Request,
    Resync,
    Run,
)
from p2pmsg.sync.testing import RawPeer, SyncPeer

RUN_FINAL, RUN_LIVE = 2, 1


def _victim() -> SyncPeer:
    return SyncPeer(os.urandom(32))


def _expect(raw: RawPeer, reason: str, data: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        raw.send_bytes(data)
    assert info.value.reason == reason
    v = raw.victim
    assert v.c.state is State.CLOSED
    closed = [e for e in v.events if isinstance(e, ConnectionClosed)]
    assert closed and closed[-1].reason == reason and closed[-1].error is info.value
    assert Close(reason, "") in raw.read()  # the peer is told why


def _frame(msg: object) -> bytes:
    return encode_frame(msg.encode())  # type: ignore[attr-defined]


def _established(topics: list[bytes]) -> RawPeer:
    raw = RawPeer(_victim())
    raw.establish(topics)
    raw.read()
    return raw


def test_oversized_frame_rejected_before_body() -> None:
    raw = _established([])
    header = (MAX_FRAME_SIZE + 1).to_bytes(4, "big")
    _expect(raw, "frame_too_large", header)  # only the 4-byte header was sent
    assert raw.victim.c._decoder.buffered <= 4


def test_hello_with_wrong_node_id() -> None:
    raw = RawPeer(_victim())
    raw.victim.connect(raw.node_id, initiator=False)
    raw.victim.c.start([])
    _expect(raw, "wrong_node_id", _frame(Hello(1, os.urandom(32), (), 2 << 20)))


def test_hello_with_unknown_version_or_tiny_credit() -> None:
    raw = RawPeer(_victim())
    raw.victim.connect(raw.node_id, initiator=False)
    _expect(raw, "unsupported_version", _frame(Hello(9, raw.node_id, (), 2 << 20)))
    raw = RawPeer(_victim())
    raw.victim.connect(raw.node_id, initiator=False)
    _expect(raw, "bad_credit", _frame(Hello(1, raw.node_id, (), 1000)))


def test_message_before_handshake() -> None:
    raw = RawPeer(_victim())
    raw.victim.connect(raw.node_id, initiator=False)
    raw.victim.c.start([])
    _expect(raw, "unexpected_message", _frame(Credit(5)))


def test_unrequested_entries() -> None:
    topic = os.urandom(32)
    raw = _established([topic])
    chain = build_chain(2, topic=topic)
    run = Run(topic, chain.author, RUN_FINAL, tuple(e.to_bytes() for e in chain.entries),
              (None, None))
    _expect(raw, "unrequested_entries", _frame(run))
    assert raw.victim.store.heads(topic) == []


def _requested(topic: bytes, chain_len: int = 3) -> tuple[RawPeer, object]:
    """Victim requests a log of `chain_len` entries from the raw peer."""
    raw = RawPeer(_victim())
    raw.establish([topic])
    chain = build_chain(chain_len, topic=topic)
    # the raw peer acts as responder of reconciliation: it answers the victim's opening?
    # The victim is not the initiator, so the raw peer opens with its full item list.
    raw.read()
    item = Item(chain.author, chain_len, chain.entries[-1].id)
    raw.send(Recon(topic, False, (Range(None, RangeMode.ITEMS, items=(item,)),)))
    msgs = raw.read()
    assert any(isinstance(m, Request) for m in msgs)
    return raw, chain


def test_replayed_run_after_request_is_closed() -> None:
    topic = os.urandom(32)
    raw, chain = _requested(topic)
    run = Run(topic, chain.author, RUN_FINAL,  # type: ignore[attr-defined]
              tuple(e.to_bytes() for e in chain.entries), (None,) * 3)  # type: ignore[attr-defined]
    raw.send(run)
    assert len(raw.victim.store.heads(topic)) == 1
    _expect(raw, "unrequested_entries", _frame(run))  # the same run again


def test_bad_signature_in_run() -> None:
    topic = os.urandom(32)
    raw, chain = _requested(topic)
    entries = list(chain.entries)  # type: ignore[attr-defined]
    last = entries[-1]
    forged = dataclasses.replace(last, signature=bytes(64))
    wire = (*(e.to_bytes() for e in entries[:-1]), forged.to_bytes())
    run = Run(topic, last.author, RUN_FINAL, wire, (None,) * 3)
    # the forged entry has another id: the request asked up to a head id the victim
    # cannot check yet, so the signature check is what catches it
    _expect(raw, "bad_signature", _frame(run))
    assert raw.victim.store.heads(topic) == []
    assert not [e for e in raw.victim.events if isinstance(e, EntriesReceived)]


def test_broken_link_in_run() -> None:
    topic = os.urandom(32)
    raw, chain = _requested(topic)
    other = build_chain(3, identity=chain.identity, topic=topic)  # type: ignore[attr-defined]
    entries = [chain.entries[0], other.entries[1], chain.entries[2]]  # type: ignore[attr-defined]
    run = Run(topic, chain.author, RUN_FINAL,  # type: ignore[attr-defined]
              tuple(e.to_bytes() for e in entries), (None,) * 3)
    _expect(raw, "bad_link", _frame(run))


def test_payload_not_matching_header() -> None:
    topic = os.urandom(32)
    raw, chain = _requested(topic)
    run = Run(topic, chain.author, RUN_FINAL,  # type: ignore[attr-defined]
              tuple(e.to_bytes() for e in chain.entries), (b"x" * 24, None, None))  # type: ignore[attr-defined]
    _expect(raw, "payload_mismatch", _frame(run))


def test_flood_beyond_credit() -> None:
    topic = os.urandom(32)
    config = SyncConfig(max_in_flight=MAX_FRAME_SIZE + 4)
    raw = RawPeer(_victim(), config=config)
    raw.establish([topic])
    raw.read()
    chain = build_chain(40, topic=topic, payload_size=60_000)
    raw.victim.auto_apply = False  # a slow application
    item = Item(chain.author, 40, chain.entries[-1].id)
    raw.send(Recon(topic, False, (Range(None, RangeMode.ITEMS, items=(item,)),)))
    raw.read()
    sent = 0
    with pytest.raises(RemoteProtocolError) as info:
        for i in range(0, 40, 4):
            part = chain.entries[i:i + 4]
            run = Run(topic, chain.author, RUN_FINAL if i == 36 else 0,
                      tuple(e.to_bytes() for e in part),
                      tuple(chain.payloads[e.id] for e in part))
            sent += len(_frame(run))
            raw.send(run)
    assert info.value.reason == "credit_exceeded"
    assert sent > config.max_in_flight
    assert raw.victim.c.stats.credit_in_use <= config.max_in_flight + len(_frame(run))
    # what reached the application stayed within the window
    delivered = sum(len(e.entries) for e in raw.victim.events if isinstance(e, EntriesReceived))
    assert 0 < delivered < 40


def test_credit_returned_beyond_use() -> None:
    raw = _established([])
    _expect(raw, "credit_overflow", _frame(Credit(1)))


def test_request_for_ungranted_topic() -> None:
    topic = os.urandom(32)
    raw = _established([])
    _expect(raw, "unexpected_topic", _frame(Request(topic, ((os.urandom(32), 1, 5),))))


def test_payload_request_for_ungranted_topic_and_unrequested_payloads() -> None:
    topic = os.urandom(32)
    raw = _established([])
    _expect(raw, "unexpected_topic", _frame(PayloadRequest(topic, (os.urandom(32),))))
    raw = _established([topic])
    _expect(raw, "unrequested_payload", _frame(Payloads(topic, ((os.urandom(32), b"x"),))))


def test_bad_fork_proof() -> None:
    topic = os.urandom(32)
    raw = _established([topic])
    _expect(raw, "bad_fork_proof", _frame(ForkProofMsg(b"\x82\x41\x00\x41\x00")))


def test_grant_of_topic_not_asked_for() -> None:
    raw = RawPeer(_victim())
    raw.victim.connect(raw.node_id, initiator=False)
    raw.victim.c.start([])
    raw.send(Hello(1, raw.node_id, (), 2 << 20))
    _expect(raw, "unexpected_topic", _frame(Grant((os.urandom(32),))))


def test_recon_for_topic_not_reconciled() -> None:
    raw = _established([])
    _expect(raw, "unexpected_recon", _frame(Recon(os.urandom(32), False, ())))


def test_resync_for_a_topic_the_victim_does_not_open() -> None:
    # The raw peer is the initiator side here (the victim answers): the victim is
    # not the opener of the mutual topic, so it may not be asked for rounds.
    topic = os.urandom(32)
    raw = _established([topic])
    _expect(raw, "unexpected_topic", _frame(Resync((topic,))))


def test_resync_without_topics_is_malformed() -> None:
    raw = _established([os.urandom(32)])
    _expect(raw, "malformed_frame", encode_frame(bytes([0x82, 12, 0x80])))


def test_recon_while_quiet_from_a_non_opener() -> None:
    # The victim opens rounds of a topic it serves one way; a RECON turn from the
    # peer when no round is open is out of turn.
    topic = os.urandom(32)
    raw = RawPeer(_victim())
    raw.establish([topic], victim_topics=[])  # we read it, the victim does not
    raw.read()
    _expect(raw, "unexpected_recon", _frame(Recon(topic, False, ())))


def test_truncated_frame_at_eof() -> None:
    raw = _established([])
    raw.send_bytes(_frame(Ping(1))[:-1])
    _expect(raw, "truncated_frame", b"")


# ---------------------------------------------------------------- fuzzing

_REASONS_OK = RemoteProtocolError


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=300))
def test_random_garbage_raises_only_remote_protocol_error(data: bytes) -> None:
    raw = _established([bytes(32)])
    try:
        raw.send_bytes(data)
    except RemoteProtocolError as exc:
        assert exc.reason and raw.victim.c.state is State.CLOSED


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=200))
def test_random_cbor_frame_bodies_raise_only_remote_protocol_error(body: bytes) -> None:
    raw = _established([bytes(32)])
    try:
        raw.send_bytes(len(body).to_bytes(4, "big") + body)
    except RemoteProtocolError:
        assert raw.victim.c.state is State.CLOSED


_T = bytes(32)
_A = bytes(range(1, 33))
_VALID_MESSAGES = [
    Hello(1, bytes(range(32)), (_T,), 2 << 20),
    Grant((_T,)),
    Recon(_T, False, (Range(None, RangeMode.FINGERPRINT, fingerprint=bytes(16)),)),
    Recon(_T, True, (Range(b"\x80", RangeMode.ITEMS, items=(Item(_A, 3, bytes(32)),)),)),
    Recon(_T, False, (Range(None, RangeMode.ITEMS_FINAL, items=(Item(_A, 2, bytes(32)),)),)),
    Request(_T, ((_A, 1, 3),)),
    Run(_T, _A, RUN_FINAL, (), ()),
    Run(_T, _A, RUN_LIVE, (b"\x00" * 100,), (None,)),
    Credit(10),
    PayloadRequest(_T, (bytes(32),)),
    Payloads(_T, ((bytes(32), None),)),
    ForkProofMsg(b"\x80"),
    Ping(1),
    Resync((_T,)),
    Interest((_T,)),
    Interest((bytes(range(32)),)),
    InterestGrant(()),
    InterestGrant((_T,)),
    Close("x", ""),
]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(st.sampled_from(_VALID_MESSAGES), max_size=8), st.booleans())
def test_valid_frames_in_any_order_raise_only_remote_protocol_error(
        msgs: list[object], establish: bool) -> None:
    raw = RawPeer(_victim())
    if establish:
        raw.establish([_T])
    else:
        raw.victim.connect(raw.node_id, initiator=False)
    for msg in msgs:
        if raw.victim.c.state is State.CLOSED:
            break
        try:
            raw.send(msg)  # type: ignore[arg-type]
        except RemoteProtocolError:
            assert raw.victim.c.state is State.CLOSED
