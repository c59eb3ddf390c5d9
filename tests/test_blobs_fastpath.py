"""The bulk paths of attachment transfer give the same results as the general ones.

Covered: the hand-built BLOB/DATA frames are the canonical CBOR the general
encoder makes; the fast BLOB/DATA decoders accept exactly what the general decoder
accepts and return the same messages (hypothesis, garbage included); the
piece-list FrameDecoder cuts any split of a stream into the same bodies; deferred
chunk verification (``verify_chunks=False``) and held credit (``hold_chunks``) in
the transfer machine; the store's four-step chunk write; export's decrypt-first
check still tells a damaged file from a wrong key.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pmsg import _cbor
from p2pmsg.blobs import (
    BlobStore,
    BlobTransfer,
    ChunkMismatchError,
    ChunkReceived,
    ConnectionClosed,
    Fetch,
    FetchComplete,
    ObjectsRequested,
    SendObjects,
    TransferConfig,
    encrypt_blob,
    wire,
)
from p2pmsg.blobs.format import MAX_CHUNK_SIZE, MAX_OBJECT_SIZE, hash_object
from p2pmsg.errors import DecodeError, LocalProtocolError, RemoteProtocolError, StoreError
from p2pmsg.messaging.errors import DecryptionError
from p2pmsg.sync import SyncConnection
from p2pmsg.sync import messages as sync_messages
from p2pmsg.sync.frames import (
    FrameDecoder,
    canonical_bstr_head,
    canonical_bstr_tail,
    encode_frame,
)
from p2pmsg.sync.messages import MAX_BLOB_PIECE, BlobPiece, MsgType
from p2pmsg.sync.testing import RawPeer, SyncPeer

ORG, ROOM = b"o" * 32, b"r" * 32


# --- canonical heads and tails ----------------------------------------------------------

@pytest.mark.parametrize("n", [0, 1, 23, 24, 255, 256, 65535, 65536, 262184, 1 << 20])
def test_bstr_head_is_canonical_cbor(n: int) -> None:
    encoded = _cbor.dumps(b"\x00" * n)
    assert canonical_bstr_head(n) + b"\x00" * n == encoded
    assert canonical_bstr_tail(encoded, 0) == b"\x00" * n


def test_bstr_tail_refuses_long_heads_and_other_shapes() -> None:
    assert canonical_bstr_tail(b"\x58\x05abcde", 0) is None  # 1-byte length in a 2-byte head
    assert canonical_bstr_tail(b"\x59\x00\x20" + b"x" * 32, 0) is None
    assert canonical_bstr_tail(b"\x45abcd", 0) is None  # length says 5, 4 follow
    assert canonical_bstr_tail(b"\x64abcd", 0) is None  # a text string
    assert canonical_bstr_tail(b"", 0) is None
    assert canonical_bstr_tail(b"\x43abc", 0) == b"abc"


# --- the BLOB frame of the sync protocol -----------------------------------------------

def _established() -> SyncConnection:
    raw = RawPeer(SyncPeer(os.urandom(32)))
    raw.establish([])
    raw.read()
    return raw.victim.c


def _reference_sync(body: bytes) -> object:
    """The general decoder's answer (no fast path): message or error reason."""
    try:
        value = _cbor.loads_canonical(body, "frame", 1 << 21)
    except DecodeError:
        return "error"
    if (type(value) is list and len(value) == 2 and value[0] == MsgType.BLOB
            and type(value[1]) is bytes and 1 <= len(value[1]) <= MAX_BLOB_PIECE):
        return BlobPiece(value[1])
    return "not-blob"


def _fast_sync(body: bytes) -> object:
    try:
        msg = sync_messages.decode_message(body)
    except RemoteProtocolError:
        return "error"
    return msg if isinstance(msg, BlobPiece) else "not-blob"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 6), st.binary(max_size=4))
def test_sync_blob_fast_decode_matches_general(data: bytes, cut: int, junk: bytes) -> None:
    good = BlobPiece(data).encode() if data else b"\x82\x0f\x40"
    for body in (good, good[:len(good) - cut] if cut else good, good + junk,
                 good[:2] + junk + good[2:], bytes([0x82, 0x0F]) + data):
        ref = _reference_sync(body)
        got = _fast_sync(body)
        if ref == "not-blob":  # another message type or an error: not ours to judge
            assert not isinstance(got, BlobPiece)
        else:
            assert got == ref


def test_sync_blob_fast_decode_non_canonical_head_refused() -> None:
    body = bytes([0x82, 0x0F, 0x59, 0x00, 0x03]) + b"abc"  # 3 in a 2-byte length
    with pytest.raises(RemoteProtocolError) as info:
        sync_messages.decode_message(body)
    assert info.value.reason == "non_canonical"


@given(st.lists(st.binary(min_size=0, max_size=3 * 1000), max_size=4))
@settings(max_examples=60, deadline=None)
def test_encode_blob_frames_are_the_general_encoding(buffers: list[bytes]) -> None:
    # encode_blob cuts each buffer into MAX_BLOB_PIECE frames on its own
    a = _established()
    out = a.encode_blob(buffers)
    expected = b"".join(
        encode_frame(BlobPiece(buf[i:i + MAX_BLOB_PIECE]).encode())
        for buf in buffers for i in range(0, len(buf), MAX_BLOB_PIECE))
    assert out == expected
    one = b"".join(buffers)
    assert a.encode_blob(memoryview(one)) == a.encode_blob(one)


def test_encode_blob_large_piece_matches() -> None:
    a = _established()
    data = os.urandom(3 * MAX_BLOB_PIECE + 17)
    expected = b"".join(encode_frame(BlobPiece(data[i:i + MAX_BLOB_PIECE]).encode())
                        for i in range(0, len(data), MAX_BLOB_PIECE))
    assert a.encode_blob(data) == expected
    assert a.encode_blob([data[:100], memoryview(data)[100:]]) == b"".join(
        [a.encode_blob(data[:100]), a.encode_blob(data[100:])])


# --- the DATA frame of the blob protocol -----------------------------------------------

@pytest.mark.parametrize("n", [0, 1, 23, 24, 300, 65536, MAX_OBJECT_SIZE])
def test_data_encode_frame_is_the_general_encoding(n: int) -> None:
    msg = wire.Data(os.urandom(32), os.urandom(n))
    assert msg.encode_frame() == encode_frame(msg.encode())
    assert wire.decode_message(msg.encode()) == msg


def _reference_wire(body: bytes) -> object:
    try:
        value = _cbor.loads_canonical(body, "blob frame", 1 << 21)
    except DecodeError:
        return "error"
    if (type(value) is list and len(value) == 3 and value[0] == 2
            and type(value[1]) is bytes and len(value[1]) == 32
            and type(value[2]) is bytes and len(value[2]) <= MAX_OBJECT_SIZE):
        return wire.Data(value[1], value[2])
    return "not-data"


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(max_size=300), st.integers(0, 6),
       st.binary(max_size=4))
def test_data_fast_decode_matches_general(h: bytes, data: bytes, cut: int,
                                          junk: bytes) -> None:
    good = wire.Data(h, data).encode()
    for body in (good, good[:len(good) - cut], good + junk, good[:36] + junk + good[36:],
                 good[:4] + junk + good[4:]):
        ref = _reference_wire(body)
        try:
            got: object = wire.decode_message(body)
        except RemoteProtocolError:
            got = "error"
        if ref == "not-data":
            assert not isinstance(got, wire.Data)
        else:
            assert got == ref


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_decoders_fed_garbage_raise_only_protocol_errors(body: bytes) -> None:
    for decode in (wire.decode_message, sync_messages.decode_message):
        try:
            decode(bytes([0x83, 2, 0x58, 32]) + body)
            decode(bytes([0x82, 0x0F]) + body)
            decode(body)
        except RemoteProtocolError:
            pass


# --- FrameDecoder over pieces ----------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=600), min_size=1, max_size=8),
       st.lists(st.integers(1, 700), min_size=1, max_size=40))
def test_frame_decoder_any_split_same_bodies(bodies: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(b) for b in bodies)
    d = FrameDecoder()
    got: list[bytes] = []
    pos, i = 0, 0
    while pos < len(stream):
        n = cuts[i % len(cuts)]
        i += 1
        d.feed(stream[pos:pos + n])
        pos += n
        while (body := d.next_frame()) is not None:
            got.append(body)
        assert d.buffered == pos - sum(len(b) + 4 for b in got) or pos > len(stream)
    assert got == bodies
    d.eof()  # nothing left over


def test_frame_decoder_bounds_and_truncation() -> None:
    d = FrameDecoder(max_frame_size=100)
    d.feed(b"\x00\x00")
    d.feed(b"\x00")
    with pytest.raises(RemoteProtocolError) as info:
        d.feed(b"\x65")  # 101 bytes announced, split across pieces
    assert info.value.reason == "frame_too_large"
    d = FrameDecoder()
    d.feed(encode_frame(b"abc")[:5])
    assert d.next_frame() is None
    with pytest.raises(RemoteProtocolError) as info:
        d.eof()
    assert info.value.reason == "truncated_frame"
    d = FrameDecoder()
    with pytest.raises(RemoteProtocolError):
        d.feed(b"\x00\x00\x00\x00")
    d = FrameDecoder()
    d.feed(bytearray(encode_frame(b"x")) + memoryview(encode_frame(b"yz")).tobytes())
    assert [d.next_frame(), d.next_frame(), d.next_frame()] == [b"x", b"yz", None]


# --- the transfer machine: deferred verification and held credit -------------------------

def _serve(server: BlobTransfer, objects: dict[bytes, bytes]) -> None:
    while (event := server.next_event()) is not None:
        if isinstance(event, ObjectsRequested):
            server.apply(SendObjects({h: objects.get(h) for h in event.hashes}))


def _frames(data: bytes) -> list[wire.Message]:
    d = FrameDecoder()
    d.feed(data)
    return [wire.decode_message(b) for b in iter(d.next_frame, None)]


def _exchange(a: BlobTransfer, b: BlobTransfer, objects: dict[bytes, bytes],
              extra: bytes = b"") -> None:
    if out := a.data_to_send() + extra:  # b"" would mean end of stream
        b.receive_data(out)
    _serve(b, objects)
    if out := b.data_to_send():
        a.receive_data(out)


def test_held_credit_bounds_received_but_unstored_bytes() -> None:
    blob = encrypt_blob(os.urandom(10 * 1000), chunk_size=1000)
    m = blob.manifest
    objects = blob.objects()
    window = MAX_OBJECT_SIZE  # holds every chunk of this blob at once
    client = BlobTransfer(TransferConfig(window=window, verify_chunks=False, hold_chunks=True))
    server = BlobTransfer()
    client.apply(Fetch(m.root_hash, m))
    chunks: list[ChunkReceived] = []
    for _ in range(20):
        _exchange(client, server, objects)
        while (e := client.next_event()) is not None:
            if isinstance(e, ChunkReceived):
                assert not e.verified
                chunks.append(e)
        assert client.stats.in_flight + client.stats.held <= window
    assert len(chunks) == m.chunk_count
    assert client.stats.held == sum(len(c.data) for c in chunks)

    # A window of 3 maximal chunks: no more requests until the node releases credit.
    blob = encrypt_blob(os.urandom(6 * MAX_CHUNK_SIZE), chunk_size=MAX_CHUNK_SIZE)
    m = blob.manifest
    objects = blob.objects()
    size = m.cipher_size(0)
    client = BlobTransfer(TransferConfig(window=3 * size, verify_chunks=False,
                                         hold_chunks=True))
    server = BlobTransfer()
    client.apply(Fetch(m.root_hash, m))
    got = 0
    for _ in range(5):
        _exchange(client, server, objects)
        got += sum(isinstance(e, ChunkReceived) for e in iter(client.next_event, None))
    assert got == 3 and client.stats.held == 3 * size and client.stats.in_flight == 0
    request = client.release(2 * size)  # two more requested at once
    assert [type(x) for x in _frames(request)] == [wire.Request]
    assert len(_frames(request)[0].hashes) == 2
    server.receive_data(request)
    _exchange(client, server, objects)
    assert sum(isinstance(e, ChunkReceived) for e in iter(client.next_event, None)) == 2
    with pytest.raises(LocalProtocolError):
        client.release(-1)


def test_deferred_verification_reject_cuts_off() -> None:
    blob = encrypt_blob(os.urandom(3000), chunk_size=1000)
    m = blob.manifest
    objects = dict(blob.objects())
    bad = bytearray(objects[m.chunk_hashes[1]])
    bad[-1] ^= 1
    objects[m.chunk_hashes[1]] = bytes(bad)
    client = BlobTransfer(TransferConfig(verify_chunks=False, hold_chunks=True))
    server = BlobTransfer()
    client.apply(Fetch(m.root_hash, m))
    _exchange(client, server, objects)
    events = list(iter(client.next_event, None))
    received = [e for e in events if isinstance(e, ChunkReceived)]
    assert len(received) == 3  # the machine did not hash: the caller must
    assert not any(isinstance(e, ConnectionClosed) for e in events)
    # The machine already reported FetchComplete (it only counts arrivals): the
    # caller decides the fetch's outcome after hashing (the node: cut_off).
    assert any(isinstance(e, FetchComplete) for e in events)
    out = client.reject_chunk()
    events = list(iter(client.next_event, None))
    assert isinstance(events[-1], ConnectionClosed)
    assert events[-1].error is not None and events[-1].error.reason == "hash_mismatch"
    server.receive_data(out)
    assert isinstance(list(iter(server.next_event, None))[-1], ConnectionClosed)
    assert client.closed and client.release(10) == b"" and client.reject_chunk() == b""


def test_verifying_machine_still_cuts_off_a_bad_chunk() -> None:
    blob = encrypt_blob(os.urandom(2000), chunk_size=1000)
    m = blob.manifest
    objects = dict(blob.objects())
    objects[m.chunk_hashes[0]] = objects[m.chunk_hashes[1]]  # right length, wrong bytes
    client, server = BlobTransfer(), BlobTransfer()
    client.apply(Fetch(m.root_hash, m))
    server.receive_data(client.data_to_send())
    _serve(server, objects)
    with pytest.raises(RemoteProtocolError) as info:
        client.receive_data(server.data_to_send())
    assert info.value.reason == "hash_mismatch"
    got = [e for e in iter(client.next_event, None) if isinstance(e, ChunkReceived)]
    assert all(e.index != 0 and e.verified for e in got)  # the bad one never reported


def test_frames_to_send_and_apply() -> None:
    blob = encrypt_blob(os.urandom(2000), chunk_size=1000)
    m = blob.manifest
    client, server = BlobTransfer(), BlobTransfer()
    client.apply(Fetch(m.root_hash, m))
    frames = client.frames_to_send()
    assert len(frames) == 2  # HELLO, REQUEST
    assert client.data_to_send() == b""
    server.receive_data(b"".join(frames))
    _serve(server, blob.objects())
    client.receive_data(server.data_to_send())
    assert any(isinstance(e, FetchComplete) for e in iter(client.next_event, None))


# --- the store's three steps and export --------------------------------------------------

def test_store_four_steps(tmp_path: Path) -> None:
    blob = encrypt_blob(os.urandom(3000), chunk_size=1000)
    m = blob.manifest
    with BlobStore(tmp_path / "s", durable=True) as store:
        store.add_manifest(m, org=ORG, room=ROOM)
        pairs = [(h, blob.chunks[i]) for i, h in enumerate(m.chunk_hashes)]
        batch = store.prepare_chunks(pairs[:2])
        assert not batch.verified and batch.size == len(blob.chunks[0]) * 2
        with pytest.raises(StoreError):
            store.sync_chunks(batch)  # not written yet
        store.write_chunks(batch)
        with pytest.raises(StoreError):
            store.commit_chunks(batch)  # not synced yet
        assert all(store.get(h) is None for h, _ in pairs)
        store.sync_chunks(batch)
        assert store.missing(m.root_hash) == (0, 1, 2)  # on disk, not yet committed
        assert sorted(store.commit_chunks(batch)) == sorted(h for h, _ in pairs[:2])
        assert store.missing(m.root_hash) == (2,)
        bad = bytearray(blob.chunks[2])
        bad[0] ^= 1
        batch = store.prepare_chunks([(pairs[2][0], bytes(bad))])
        with pytest.raises(ChunkMismatchError):
            store.write_chunks(batch)
        assert store.missing(m.root_hash) == (2,)
        with pytest.raises(ChunkMismatchError):  # wrong length: refused at once
            store.prepare_chunks([(pairs[2][0], blob.chunks[2][:-1])])
        # abandoned between the steps: the temp files go
        batch = store.prepare_chunks(pairs[2:])
        store.write_chunks(batch)
        assert list((tmp_path / "s" / "tmp").iterdir())
        store.discard_chunks(batch)
        assert list((tmp_path / "s" / "tmp").iterdir()) == []
        assert store.put_chunks(pairs) == [pairs[2][0]]
        assert store.missing(m.root_hash) == ()
        assert store.prepare_chunks(pairs[:1]).objects == {}  # already held


def test_export_tells_damage_from_wrong_key(tmp_path: Path) -> None:
    data = os.urandom(5000)
    with BlobStore(tmp_path / "s", durable=False) as store:
        m, key = store.import_file(io.BytesIO(data), len(data), org=ORG, room=ROOM,
                                   chunk_size=1000)
        out = io.BytesIO()
        assert store.export(m.root_hash, key, out) == len(data) and out.getvalue() == data
        with pytest.raises(DecryptionError):
            store.export(m.root_hash, os.urandom(32), io.BytesIO())
        # swap two chunk files: each still decrypts under the key, not at that index
        p0, p1 = (store._object_path(m.chunk_hashes[i]) for i in (0, 1))
        b0, b1 = p0.read_bytes(), p1.read_bytes()
        p0.write_bytes(b1)
        p1.write_bytes(b0)
        with pytest.raises(ChunkMismatchError):
            store.export(m.root_hash, key, io.BytesIO())
        p0.write_bytes(b0)
        p1.write_bytes(b0[:-1] + bytes([b0[-1] ^ 1]))  # one flipped bit
        with pytest.raises(ChunkMismatchError):
            store.export(m.root_hash, key, io.BytesIO())


def test_hash_object_same_digest_from_libsodium_and_hashlib() -> None:
    # Large bytes objects are hashed by libsodium (GIL released), everything else
    # by hashlib: the content address must not depend on which.
    for size in (0, 1, 64 * 1024 - 1, 64 * 1024, 1024 * 1024 + 40):
        data = os.urandom(size)
        want = hashlib.blake2b(data, digest_size=32).digest()
        assert hash_object(data) == want
        assert hash_object(memoryview(data)) == want  # type: ignore[arg-type]
        assert hash_object(bytearray(data)) == want  # type: ignore[arg-type]


def test_data_frame_parts_carry_the_chunk_without_a_copy() -> None:
    chunk = os.urandom(1024 * 1024 + 40)
    msg = wire.Data(hash_object(chunk), chunk)
    head, body = msg.frame_parts()
    assert body is chunk
    assert head + body == encode_frame(msg.encode()) == msg.encode_frame()
