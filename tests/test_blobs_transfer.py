"""The blob transfer machine: flow control, progress, resume, malicious peers, fuzzing."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pmsg.blobs import (
    BlobStore,
    BlobTransfer,
    ChunkReceived,
    CloseSession,
    ConnectionClosed,
    Fetch,
    FetchComplete,
    FetchFailed,
    ManifestReceived,
    ObjectsRequested,
    Progress,
    QuotaExceededError,
    Quotas,
    SendObjects,
    TransferConfig,
    decrypt_blob,
    encrypt_blob,
)
from p2pmsg.blobs.format import MAX_OBJECT_SIZE, hash_object
from p2pmsg.blobs.testing import TransferPair, TransferPeer
from p2pmsg.blobs.wire import (
    MAX_REQUEST_HASHES,
    Close,
    Data,
    Hello,
    Missing,
    Request,
    decode_message,
)
from p2pmsg.errors import LocalProtocolError, RemoteProtocolError
from p2pmsg.sync.frames import FrameDecoder, encode_frame

ORG, ROOM = b"org", b"room"


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[BlobStore, BlobStore, BlobStore]]:
    s = [BlobStore(tmp_path / n, durable=False) for n in "abc"]
    yield s[0], s[1], s[2]
    for x in s:
        x.close()


def import_bytes(store: BlobStore, data: bytes, chunk_size: int = 256 * 1024):
    return store.import_file(io.BytesIO(data), len(data), org=ORG, room=ROOM,
                             chunk_size=chunk_size)


def frames(data: bytes) -> list[object]:
    d = FrameDecoder()
    d.feed(data)
    out = []
    while (body := d.next_frame()) is not None:
        out.append(decode_message(body))
    return out


def test_20mb_with_flow_control_cut_and_resume(stores) -> None:
    src, dst, other = stores
    data = os.urandom(20 * 1024 * 1024 + 1234)
    m, key = import_bytes(src, data)  # default chunk size: 81 chunks
    window = 2 * MAX_OBJECT_SIZE
    server = TransferPeer(src, config=TransferConfig(window=window))
    client = TransferPeer(dst, config=TransferConfig(window=window))
    pair = TransferPair(server, client, max_flight=200 * 1024)
    client.fetch(m.root_hash)
    while not client.progress or client.progress[-1].done < len(data) // 2:
        assert pair.step()
    assert client.conn.stats.max_in_flight <= window
    pair.cut()
    closed = [e for e in client.events if isinstance(e, ConnectionClosed)]
    assert closed and closed[0].unfinished == (m.root_hash,)
    missing = dst.missing(m.root_hash)
    assert 0 < len(missing) < m.chunk_count
    held = m.chunk_count - len(missing)

    # Resume from a *different* peer that has the blob: only missing chunks move.
    other.add_manifest(m, org=ORG, room=ROOM)
    for _i, h in enumerate(m.chunk_hashes):
        other.put_chunk(h, src.get(h) or b"")
    server2, client2 = TransferPeer(other), TransferPeer(dst)
    pair2 = TransferPair(server2, client2, max_flight=200 * 1024)
    client2.fetch(m.root_hash)
    pair2.run()
    asked = {h for e in server2.events if isinstance(e, ObjectsRequested) for h in e.hashes}
    assert asked == {m.chunk_hashes[i] for i in missing}
    assert server2.conn.stats.objects_sent == len(missing)
    assert client2.complete == [m.root_hash]
    assert client2.progress[0].done == sum(m.plain_size(i) for i in range(m.chunk_count)
                                           if i not in missing)
    assert held > 0
    dones = [p.done for p in client.progress + client2.progress]
    assert dones == sorted(dones) and dones[-1] == len(data)
    assert all(p.total == len(data) for p in client2.progress)
    out = io.BytesIO()
    dst.export(m.root_hash, key, out)
    assert out.getvalue() == data


def test_small_chunks_multi_page_manifest() -> None:
    # 8195 chunks of 64 B: a two-page manifest. Served from memory (pure machines
    # only): 16k tiny files on disk would test the filesystem, not the protocol.
    data = os.urandom(8192 * 64 + 64 * 3)
    blob = encrypt_blob(data, chunk_size=64)
    m = blob.manifest
    assert len(m.pages) == 2
    objects = blob.objects()
    server, client = BlobTransfer(), BlobTransfer(TransferConfig(window=MAX_OBJECT_SIZE))
    outbox = {id(client): bytearray(), id(server): bytearray()}  # send() drains its bytes
    outbox[id(client)] += client.send(Fetch(m.root_hash))
    got: dict[int, bytes] = {}
    for _ in range(10_000):
        moved = False
        for src, dst in ((client, server), (server, client)):
            out = bytes(outbox[id(src)]) + src.data_to_send()
            outbox[id(src)].clear()
            if out:
                moved = True
                dst.receive_data(out)
            while (e := dst.next_event()) is not None:
                if isinstance(e, ObjectsRequested):
                    outbox[id(dst)] += dst.send(SendObjects({h: objects.get(h)
                                                             for h in e.hashes}))
                elif isinstance(e, ManifestReceived):
                    assert e.manifest == m
                    outbox[id(dst)] += dst.send(Fetch(e.root, e.manifest))
                elif isinstance(e, ChunkReceived):
                    got[e.index] = e.data
                assert not isinstance(e, FetchFailed | ConnectionClosed)
        if not moved:
            break
    assert client.stats.max_in_flight <= MAX_OBJECT_SIZE
    assert len(got) == m.chunk_count
    assert decrypt_blob(m, blob.key, got.values()) == data


def test_peer_lacking_chunks_then_another_peer(stores) -> None:
    src, partial, dst = stores
    data = os.urandom(10 * 1024)
    m, key = import_bytes(src, data, chunk_size=1024)
    partial.add_manifest(m, org=ORG, room=ROOM)
    for i in (0, 2, 4, 6, 8):
        partial.put_chunk(m.chunk_hashes[i], src.get(m.chunk_hashes[i]) or b"")
    client = TransferPeer(dst)
    pair = TransferPair(TransferPeer(partial), client)
    client.fetch(m.root_hash)
    pair.run()
    assert [f.reason for f in client.failed] == ["unavailable"]
    assert client.failed[0].missing == (1, 3, 5, 7, 9) == dst.missing(m.root_hash)
    client2 = TransferPeer(dst)
    pair2 = TransferPair(TransferPeer(src), client2)
    client2.fetch(m.root_hash)
    pair2.run()
    assert client2.complete == [m.root_hash]
    out = io.BytesIO()
    dst.export(m.root_hash, key, out)
    assert out.getvalue() == data


def test_unknown_blob_fails_unavailable(stores) -> None:
    src, dst, _ = stores
    client = TransferPeer(dst)
    pair = TransferPair(TransferPeer(src), client)
    client.fetch(os.urandom(32))
    pair.run()
    assert [(f.reason, f.missing) for f in client.failed] == [("unavailable", ())]
    assert client.error is None


def test_quota_exceeded_during_fetch_stores_nothing(tmp_path: Path, stores) -> None:
    src, _, _ = stores
    m, _ = import_bytes(src, os.urandom(50 * 1024), chunk_size=1024)
    with BlobStore(tmp_path / "q", durable=False,
                   quotas=Quotas(room={ROOM: 10_000})) as small:
        client = TransferPeer(small)
        server = TransferPeer(src)
        pair = TransferPair(server, client)
        client.fetch(m.root_hash)
        pair.run()
        assert [type(e) for e in client.store_errors] == [QuotaExceededError]
        assert small.usage() == 0 and small.get_manifest(m.root_hash) is None
        assert not any(isinstance(e, ChunkReceived) for e in client.events)
        assert list((tmp_path / "q" / "objects").rglob("*.*")) == []
        requested = sum(len(e.hashes) for e in server.events if isinstance(e, ObjectsRequested))
        assert requested == 1 + len(m.pages)  # root and pages only, no chunk


class EvilServer:
    """Answers requests by hand so it can lie."""

    def __init__(self, client: TransferPeer) -> None:
        self.client = client
        self.inbox: list[object] = []
        self._dec = FrameDecoder()
        client.conn.receive_data(encode_frame(Hello(1).encode()))

    def read(self) -> list[object]:
        self._dec.feed(self.client.take_output())
        out = []
        while (body := self._dec.next_frame()) is not None:
            out.append(decode_message(body))
        self.inbox += out
        return out

    def send(self, msg: object) -> None:
        try:
            self.client.conn.receive_data(encode_frame(msg.encode()))  # type: ignore[attr-defined]
        finally:
            self.client.process()


def test_malicious_server_wrong_chunk_is_cut_off(stores) -> None:
    _src, dst, _ = stores
    blob = encrypt_blob(os.urandom(4096), chunk_size=1024)
    m = blob.manifest
    dst.add_manifest(m, org=ORG, room=ROOM)
    client = TransferPeer(dst)
    evil = EvilServer(client)
    client.fetch(m.root_hash)
    reqs = [x for x in evil.read() if isinstance(x, Request)]
    assert set(reqs[0].hashes) == set(m.chunk_hashes)
    evil.send(Data(m.chunk_hashes[0], blob.chunks[0]))  # one honest chunk
    assert dst.have(m.chunk_hashes[0])
    forged = bytearray(blob.chunks[1])
    forged[30] ^= 0x40
    with pytest.raises(RemoteProtocolError) as info:
        evil.send(Data(m.chunk_hashes[1], bytes(forged)))
    assert info.value.reason == "hash_mismatch"
    assert not dst.have(m.chunk_hashes[1])
    assert dst.missing(m.root_hash) == (1, 2, 3)
    assert client.conn.closed
    assert any(isinstance(x, Close) and x.reason == "hash_mismatch" for x in evil.read())
    assert not any(isinstance(e, ChunkReceived) and e.index == 1 for e in client.events)
    # after the cut, even correct data is ignored
    client.conn.receive_data(encode_frame(Data(m.chunk_hashes[2], blob.chunks[2]).encode()))
    client.process()
    assert not dst.have(m.chunk_hashes[2])


@pytest.mark.parametrize("case", ["wrong_length", "unsolicited", "swapped", "missing_unasked"])
def test_malicious_server_variants(stores, case: str) -> None:
    _, dst, _ = stores
    blob = encrypt_blob(os.urandom(3000), chunk_size=1024)
    m = blob.manifest
    dst.add_manifest(m, org=ORG, room=ROOM)
    client = TransferPeer(dst)
    evil = EvilServer(client)
    client.fetch(m.root_hash)
    evil.read()
    other = encrypt_blob(b"z" * 100, chunk_size=1024)
    msg = {
        "wrong_length": Data(m.chunk_hashes[0], blob.chunks[0] + b"x"),
        "unsolicited": Data(other.manifest.chunk_hashes[0], other.chunks[0]),
        "swapped": Data(m.chunk_hashes[0], blob.chunks[1]),
        "missing_unasked": Missing((os.urandom(32),)),
    }[case]
    with pytest.raises(RemoteProtocolError):
        evil.send(msg)
    assert dst.missing(m.root_hash) == (0, 1, 2)


def test_bad_manifest_from_author(stores) -> None:
    _, dst, _ = stores
    client = TransferPeer(dst)
    evil = EvilServer(client)
    junk = b"\x83\x01\x02\x03"  # hashes right (we ask for its hash) but is no root
    client.fetch(hash_object(junk))
    evil.read()
    evil.send(Data(hash_object(junk), junk))
    assert [(f.reason) for f in client.failed] == ["bad_manifest"]
    assert client.error is None and not client.conn.closed


def test_malicious_requester_too_many_requests(stores) -> None:
    src, _, _ = stores
    server = TransferPeer(src)
    server.conn.receive_data(encode_frame(Hello(1).encode()))
    first = tuple(sorted(os.urandom(32) for _ in range(MAX_REQUEST_HASHES)))
    server.conn.receive_data(encode_frame(Request(first).encode()))
    # not answered yet (no process()): one more is over the bound
    with pytest.raises(RemoteProtocolError) as info:
        server.conn.receive_data(encode_frame(Request((os.urandom(32),)).encode()))
    assert info.value.reason == "too_many_requests"


def test_requester_duplicate_request_and_hello_rules() -> None:
    t = BlobTransfer()
    with pytest.raises(RemoteProtocolError) as info:
        t.receive_data(encode_frame(Request((bytes(32),)).encode()))
    assert info.value.reason == "expected_hello"
    t = BlobTransfer()
    t.receive_data(encode_frame(Hello(1).encode()))
    t.receive_data(encode_frame(Request((bytes(32),)).encode()))
    with pytest.raises(RemoteProtocolError) as info:
        t.receive_data(encode_frame(Request((bytes(32),)).encode()))
    assert info.value.reason == "duplicate_request"
    t = BlobTransfer()
    with pytest.raises(RemoteProtocolError) as info:
        t.receive_data(encode_frame(Hello(7).encode()))
    assert info.value.reason == "unsupported_version"


def test_local_misuse() -> None:
    t = BlobTransfer()
    with pytest.raises(LocalProtocolError):
        t.send(SendObjects({bytes(32): b"x"}))  # never requested
    with pytest.raises(LocalProtocolError):
        t.send(Fetch(b"short"))
    blob = encrypt_blob(b"abc", chunk_size=64)
    with pytest.raises(LocalProtocolError):
        t.send(Fetch(bytes(32), blob.manifest))  # manifest of another root
    with pytest.raises(LocalProtocolError):
        t.send(Fetch(blob.manifest.root_hash, blob.manifest, (5,)))
    t.send(Fetch(blob.manifest.root_hash))
    with pytest.raises(LocalProtocolError):
        t.send(Fetch(blob.manifest.root_hash))
    with pytest.raises(ValueError):
        TransferConfig(window=1000)


def test_nothing_missing_completes_at_once() -> None:
    blob = encrypt_blob(b"abc", chunk_size=64)
    t = BlobTransfer()
    t.send(Fetch(blob.manifest.root_hash, blob.manifest, ()))
    assert t.next_event() == Progress(blob.manifest.root_hash, 3, 3)
    assert t.next_event() == FetchComplete(blob.manifest.root_hash)
    assert not any(isinstance(x, Request) for x in frames(t.data_to_send()))


def test_close_and_eof() -> None:
    a, b = BlobTransfer(), BlobTransfer()
    b.receive_data(a.data_to_send())
    b.receive_data(a.send(CloseSession("done")))
    assert b.next_event() == ConnectionClosed("done", None, ())
    assert b.closed and a.closed
    c = BlobTransfer()
    c.receive_data(encode_frame(Hello(1).encode()) + b"\x00\x00")
    with pytest.raises(RemoteProtocolError):
        c.receive_data(b"")  # truncated frame at end of stream


@given(st.binary(max_size=400))
@settings(max_examples=400, deadline=None)
def test_garbage_into_receive_data_raises_only_remote_error(data: bytes) -> None:
    for prefix in (b"", encode_frame(Hello(1).encode())):
        t = BlobTransfer()
        t.send(Fetch(bytes(32)))
        try:
            t.receive_data(prefix + data)
        except RemoteProtocolError:
            assert t.closed
        while t.next_event() is not None:
            pass


@given(st.lists(st.one_of(
    st.builds(Data, st.binary(min_size=32, max_size=32), st.binary(max_size=64)),
    st.builds(Missing, st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=3,
                                unique=True).map(lambda x: tuple(sorted(x)))),
    st.builds(Request, st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=3,
                                unique=True).map(lambda x: tuple(sorted(x)))),
    st.builds(Close, st.text(max_size=10)),
    st.builds(Hello, st.integers(0, 3)),
), max_size=8))
@settings(max_examples=200, deadline=None)
def test_well_formed_but_hostile_messages(msgs: list[object]) -> None:
    blob = encrypt_blob(b"q" * 200, chunk_size=64)
    t = BlobTransfer()
    t.send(Fetch(blob.manifest.root_hash, blob.manifest))
    t.receive_data(encode_frame(Hello(1).encode()))
    for msg in msgs:
        try:
            t.receive_data(encode_frame(msg.encode()))  # type: ignore[attr-defined]
        except RemoteProtocolError:
            break
        while (e := t.next_event()) is not None:
            assert not isinstance(e, ChunkReceived)  # nothing random ever verifies
            if isinstance(e, ObjectsRequested):
                t.send(SendObjects(dict.fromkeys(e.hashes)))


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_garbage_into_decode_message(body: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        decode_message(body)


def test_two_way_fetch_and_manifest_event(stores) -> None:
    a_store, b_store, _ = stores
    ma, _ = import_bytes(a_store, os.urandom(3000), chunk_size=1024)
    mb, _ = import_bytes(b_store, os.urandom(5000), chunk_size=1024)
    a, b = TransferPeer(a_store), TransferPeer(b_store)
    pair = TransferPair(a, b)
    a.fetch(mb.root_hash)
    b.fetch(ma.root_hash)
    pair.run()
    assert a.complete == [mb.root_hash] and b.complete == [ma.root_hash]
    got = [e for e in a.events if isinstance(e, ManifestReceived)]
    assert got[0].manifest == mb and set(got[0].objects) == set(mb.metadata_objects())
    assert not a.failed and not b.failed and not isinstance(a.error, RemoteProtocolError)
    assert FetchFailed not in {type(e) for e in a.events}
