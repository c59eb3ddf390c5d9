"""The TCP transport's record layer (sans-IO): framing, tamper/replay/truncation
detection, the final record, and a fuzz test that garbage only ever raises
TransportError."""

from __future__ import annotations

import os
import struct

import nacl.bindings as sodium
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from p2pmsg_tcp.records import (
    ABYTES,
    LENGTH_BYTES,
    MAX_RECORD_SIZE,
    Record,
    RecordDecoder,
    RecordEncoder,
    new_pull_state,
    new_push_state,
)

from p2pmsg.errors import LocalProtocolError, TransportError


def _pair(key: bytes | None = None) -> tuple[RecordEncoder, RecordDecoder]:
    key = key or os.urandom(32)
    push, header = new_push_state(key)
    return RecordEncoder(push), RecordDecoder(new_pull_state(header, key))


def _drain(decoder: RecordDecoder) -> list[Record]:
    out = []
    while (record := decoder.next_record()) is not None:
        out.append(record)
    return out


def _split_records(wire: bytes) -> list[bytes]:
    """Cut wire bytes into whole records (length prefix included)."""
    out = []
    while wire:
        (length,) = struct.unpack(">I", wire[:LENGTH_BYTES])
        out.append(wire[: LENGTH_BYTES + length])
        wire = wire[LENGTH_BYTES + length :]
    return out


def test_roundtrip_and_split_into_bounded_records() -> None:
    enc, dec = _pair()
    data = os.urandom(3 * MAX_RECORD_SIZE + 5)
    wire = enc.encode(data)
    records = _split_records(wire)
    assert len(records) == 4
    assert all(len(r) <= LENGTH_BYTES + MAX_RECORD_SIZE + ABYTES for r in records)
    dec.receive_data(wire)
    got = _drain(dec)
    assert b"".join(r.data for r in got) == data
    assert not any(r.final for r in got)


def test_byte_by_byte_feeding() -> None:
    enc, dec = _pair()
    wire = enc.encode(b"hello") + enc.encode(b"world") + enc.encode_final()
    got: list[Record] = []
    for i in range(len(wire)):
        dec.receive_data(wire[i : i + 1])
        got += _drain(dec)
    dec.receive_data(b"")  # clean EOF after the final record
    assert got == [Record(b"hello", False), Record(b"world", False), Record(b"", True)]
    assert dec.final_seen


def test_empty_write_makes_no_record() -> None:
    enc, _ = _pair()
    assert enc.encode(b"") == b""


def test_eof_without_final_is_truncation() -> None:
    enc, dec = _pair()
    dec.receive_data(enc.encode(b"complete message"))
    assert _drain(dec) == [Record(b"complete message", False)]
    with pytest.raises(TransportError, match="truncated"):
        dec.receive_data(b"")


def test_eof_inside_a_record_is_an_error() -> None:
    enc, dec = _pair()
    wire = enc.encode(b"x" * 1000)
    dec.receive_data(wire[:-3])
    with pytest.raises(TransportError):
        dec.receive_data(b"")


def test_dropped_final_record_is_truncation() -> None:
    enc, dec = _pair()
    wire = enc.encode(b"data")
    enc.encode_final()  # produced but "lost" by an attacker
    dec.receive_data(wire)
    with pytest.raises(TransportError, match="truncated"):
        dec.receive_data(b"")


@pytest.mark.parametrize("position", [0, 2, 3, 4, 10, -1])
def test_any_flipped_byte_is_detected(position: int) -> None:
    enc, dec = _pair()
    wire = bytearray(enc.encode(b"patient record " * 10))
    wire[position] ^= 0x01
    with pytest.raises(TransportError):
        dec.receive_data(bytes(wire))
        dec.receive_data(b"")  # a shortened length field may only show up at EOF


def test_replayed_and_reordered_records_are_rejected() -> None:
    enc, dec = _pair()
    first, second = enc.encode(b"one"), enc.encode(b"two")
    dec.receive_data(first)
    with pytest.raises(TransportError):
        dec.receive_data(first)  # replay

    enc, dec = _pair()
    first, second = enc.encode(b"one"), enc.encode(b"two")
    with pytest.raises(TransportError):
        dec.receive_data(second)  # reordered


def test_record_from_another_stream_is_rejected() -> None:
    enc_a, _ = _pair()
    _, dec_b = _pair()
    with pytest.raises(TransportError):
        dec_b.receive_data(enc_a.encode(b"hello"))


def test_oversized_length_is_rejected_before_buffering() -> None:
    _, dec = _pair()
    with pytest.raises(TransportError, match="length"):
        dec.receive_data(struct.pack(">I", MAX_RECORD_SIZE + ABYTES + 1))


def test_data_after_final_is_rejected() -> None:
    enc, dec = _pair()
    wire = enc.encode_final()
    dec.receive_data(wire)
    with pytest.raises(TransportError, match="after the final"):
        dec.receive_data(b"\x00")


def test_errors_are_permanent() -> None:
    enc, dec = _pair()
    good = enc.encode(b"x")
    with pytest.raises(TransportError):
        dec.receive_data(b"\xff" * 8)
    with pytest.raises(TransportError):
        dec.receive_data(good)


def test_final_record_with_data_is_rejected() -> None:
    key = os.urandom(32)
    push, header = new_push_state(key)
    dec = RecordDecoder(new_pull_state(header, key))
    length = struct.pack(">I", 3 + ABYTES)
    bad = length + sodium.crypto_secretstream_xchacha20poly1305_push(
        push, b"abc", length, sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL
    )
    with pytest.raises(TransportError):
        dec.receive_data(bad)


def test_encoder_refuses_to_send_after_final() -> None:
    enc, _ = _pair()
    enc.encode_final()
    with pytest.raises(LocalProtocolError):
        enc.encode(b"late")
    with pytest.raises(LocalProtocolError):
        enc.encode_final()


def test_bad_header_is_a_transport_error() -> None:
    with pytest.raises(TransportError):
        new_pull_state(b"short", os.urandom(32))


@settings(max_examples=300, deadline=None)
@given(chunks=st.lists(st.binary(max_size=200), max_size=8), eof=st.booleans())
def test_fuzz_garbage_only_raises_transport_error(chunks: list[bytes], eof: bool) -> None:
    """Random bytes never decrypt: they raise TransportError or wait for more input."""
    _, dec = _pair()
    records: list[Record] = []
    try:
        for chunk in chunks:
            dec.receive_data(chunk)
            records += _drain(dec)
        if eof:
            dec.receive_data(b"")
    except TransportError:
        return
    assert records == []
    assert not eof, "EOF without a final record must raise"


@settings(max_examples=200, deadline=None)
@given(
    messages=st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=5),
    flip=st.integers(min_value=0),
    bit=st.integers(min_value=0, max_value=7),
)
def test_fuzz_any_single_bit_flip_is_detected(messages: list[bytes], flip: int, bit: int) -> None:
    enc, dec = _pair()
    wire = bytearray(b"".join(enc.encode(m) for m in messages) + enc.encode_final())
    wire[flip % len(wire)] ^= 1 << bit
    with pytest.raises(TransportError):
        dec.receive_data(bytes(wire))
        _drain(dec)
        dec.receive_data(b"")
