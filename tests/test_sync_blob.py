"""BLOB frames: the sync session's carrier for attachment transfer (docs/attachments.md §6).

The sync machine only wraps and unwraps bytes; the blob machine (p2pmsg.blobs)
verifies them. Checked here: round trip, state rules (only in an established
session), malformed BLOB frames, and a hypothesis fuzz of the decoder.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pmsg import _cbor
from p2pmsg.errors import LocalProtocolError, RemoteProtocolError
from p2pmsg.sync import State
from p2pmsg.sync.events import BlobData, ConnectionClosed
from p2pmsg.sync.frames import FrameDecoder, encode_frame
from p2pmsg.sync.messages import (
    MAX_BLOB_PIECE,
    BlobPiece,
    Close,
    MsgType,
    decode_message,
)
from p2pmsg.sync.testing import RawPeer, SyncPeer


def _established() -> RawPeer:
    raw = RawPeer(SyncPeer(os.urandom(32)))
    raw.establish([])
    raw.read()
    return raw


def test_blob_bytes_reach_the_node_as_events_in_order() -> None:
    raw = _established()
    raw.send(BlobPiece(b"first"))
    raw.send(BlobPiece(b"second"))
    got = [e.data for e in raw.victim.events if isinstance(e, BlobData)]
    assert got == [b"first", b"second"]
    assert raw.victim.c.state is State.ESTABLISHED


def test_encode_blob_splits_into_pieces_and_counts_them() -> None:
    raw = _established()
    data = os.urandom(2 * MAX_BLOB_PIECE + 5)
    frames = raw.victim.c.encode_blob(data)
    dec = FrameDecoder()
    dec.feed(frames)
    pieces = []
    while (body := dec.next_frame()) is not None:
        msg = decode_message(body)
        assert isinstance(msg, BlobPiece)
        pieces.append(msg.data)
    assert [len(p) for p in pieces] == [MAX_BLOB_PIECE, MAX_BLOB_PIECE, 5]
    assert b"".join(pieces) == data
    assert raw.victim.c.stats.sent_by_type["BLOB"] == len(frames)
    assert raw.victim.c.data_to_send() == b""  # returned, not queued


def test_encode_blob_needs_an_established_session() -> None:
    peer = SyncPeer(os.urandom(32))
    peer.connect(bytes(range(32)), initiator=False)
    peer.c.start([])
    with pytest.raises(LocalProtocolError):
        peer.c.encode_blob(b"x")


def test_blob_before_handshake_is_a_protocol_error() -> None:
    raw = RawPeer(SyncPeer(os.urandom(32)))
    raw.victim.connect(raw.node_id, initiator=False)
    raw.victim.c.start([])
    with pytest.raises(RemoteProtocolError) as info:
        raw.send(BlobPiece(b"early"))
    assert info.value.reason == "unexpected_message"
    assert not any(isinstance(e, BlobData) for e in raw.victim.events)


@pytest.mark.parametrize("payload", [b"", b"x" * (MAX_BLOB_PIECE + 1), "text", 7])
def test_malformed_blob_frames_close_the_session(payload: object) -> None:
    raw = _established()
    body = _cbor.dumps([MsgType.BLOB.value, payload])
    with pytest.raises(RemoteProtocolError) as info:
        raw.send_bytes(encode_frame(body))
    assert info.value.reason == "malformed_frame"
    assert raw.victim.c.state is State.CLOSED
    assert any(isinstance(e, ConnectionClosed) for e in raw.victim.events)
    assert Close("malformed_frame", "") in raw.read()


@given(st.binary(min_size=1, max_size=2048))
def test_blob_piece_round_trips(data: bytes) -> None:
    assert decode_message(BlobPiece(data).encode()) == BlobPiece(data)


@given(st.lists(st.one_of(st.binary(max_size=64), st.integers(), st.text(max_size=8),
                          st.none()), max_size=3))
def test_blob_decoder_fuzz_raises_only_remote_errors(fields: list[object]) -> None:
    body = _cbor.dumps([MsgType.BLOB.value, *fields])
    try:
        msg = decode_message(body)
    except RemoteProtocolError:
        return
    assert isinstance(msg, BlobPiece) and 1 <= len(msg.data) <= MAX_BLOB_PIECE
