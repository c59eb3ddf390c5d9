"""The blob format: round trips, tamper/wrong-key detection, manifests, decoders."""

from __future__ import annotations

import contextlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pmsg import _cbor
from p2pmsg.blobs import (
    BlobEncryptor,
    BlobIncompleteError,
    ChunkMismatchError,
    FileTooLargeError,
    Manifest,
    check_descriptor,
    decrypt_blob,
    decrypt_chunk,
    describe,
    encrypt_blob,
)
from p2pmsg.blobs.format import (
    CHUNK_OVERHEAD,
    DEFAULT_CHUNK_SIZE,
    PAGE_HASHES,
    RootInfo,
    decode_page,
    decode_root,
    hash_object,
)
from p2pmsg.errors import DecodeError, P2PMsgError, ValidationError
from p2pmsg.messaging.content import Attachment, decode_content, encode_content
from p2pmsg.messaging.errors import DecryptionError
from p2pmsg.messaging.kinds import Kind

CS = 64  # small chunks keep the edge cases fast


@pytest.mark.parametrize("size", [0, 1, CS - 1, CS, CS + 1, 5 * CS, 5 * CS + 3])
def test_round_trip_small_chunks(size: int) -> None:
    data = os.urandom(size)
    blob = encrypt_blob(data, chunk_size=CS)
    m = blob.manifest
    assert m.size == size
    assert m.chunk_count == max(1, -(-size // CS))
    assert [len(c) for c in blob.chunks] == [m.cipher_size(i) for i in range(m.chunk_count)]
    assert sum(len(c) for c in blob.chunks) == m.encrypted_size == size + CHUNK_OVERHEAD * len(
        blob.chunks)
    assert decrypt_blob(m, blob.key, blob.chunks) == data
    again = Manifest.from_objects(m.root, m.pages)
    assert again == m and again.root_hash == m.root_hash


def test_round_trip_default_chunk_size_several_mb() -> None:
    data = os.urandom(12 * DEFAULT_CHUNK_SIZE + 12345)  # 13 chunks (~12.6 MB at 1 MiB)
    blob = encrypt_blob(data)
    assert blob.manifest.chunk_size == DEFAULT_CHUNK_SIZE
    assert blob.manifest.chunk_count == 13
    assert decrypt_blob(blob.manifest, blob.key, blob.chunks) == data


@given(st.binary(max_size=700), st.lists(st.integers(1, 200), min_size=1, max_size=20))
@settings(max_examples=60, deadline=None)
def test_streaming_any_piece_sizes(data: bytes, pieces: list[int]) -> None:
    enc = BlobEncryptor(len(data), chunk_size=CS)
    chunks, pos, i = [], 0, 0
    while pos < len(data):
        n = pieces[i % len(pieces)]
        chunks += enc.update(data[pos:pos + n])
        pos += n
        i += 1
    tail, manifest = enc.finish()
    chunks += tail
    assert [c.index for c in chunks] == list(range(manifest.chunk_count))
    assert [c.hash for c in chunks] == list(manifest.chunk_hashes)
    assert decrypt_blob(manifest, enc.key, [c.data for c in chunks]) == data


def test_encryptor_refuses_wrong_amount() -> None:
    enc = BlobEncryptor(10, chunk_size=CS)
    with pytest.raises(ValueError, match="more than"):
        enc.update(bytes(11))
    enc = BlobEncryptor(10, chunk_size=CS)
    enc.update(bytes(9))
    with pytest.raises(ValueError, match="fed 9"):
        enc.finish()


def test_file_size_limit() -> None:
    with pytest.raises(FileTooLargeError):
        BlobEncryptor(1001, max_file_size=1000)
    assert BlobEncryptor(1000, max_file_size=1000).size == 1000


def test_default_limit_allows_2_gib() -> None:
    enc = BlobEncryptor(2 * 1024**3)  # only constructs; nothing is encrypted
    assert enc.size == 2 * 1024**3


@given(st.data())
@settings(max_examples=80, deadline=None)
def test_any_tampered_chunk_byte_is_detected(data: st.DataObject) -> None:
    blob = encrypt_blob(bytes(range(200)), chunk_size=CS)
    i = data.draw(st.integers(0, blob.manifest.chunk_count - 1))
    chunk = bytearray(blob.chunks[i])
    pos = data.draw(st.integers(0, len(chunk) - 1))
    chunk[pos] ^= data.draw(st.integers(1, 255))
    with pytest.raises(ChunkMismatchError):
        decrypt_chunk(blob.manifest, blob.key, i, bytes(chunk))
    chunks = list(blob.chunks)
    chunks[i] = bytes(chunk)
    with pytest.raises(ChunkMismatchError):
        decrypt_blob(blob.manifest, blob.key, chunks)


def test_wrong_key_fails() -> None:
    blob = encrypt_blob(b"x" * 300, chunk_size=CS)
    with pytest.raises(DecryptionError):
        decrypt_blob(blob.manifest, os.urandom(32), blob.chunks)
    with pytest.raises(DecryptionError):
        decrypt_chunk(blob.manifest, os.urandom(32), 0, blob.chunks[0])


def test_empty_file_still_detects_wrong_key() -> None:
    blob = encrypt_blob(b"", chunk_size=CS)
    assert len(blob.chunks) == 1
    with pytest.raises(DecryptionError):
        decrypt_blob(blob.manifest, os.urandom(32), blob.chunks)


def test_chunk_is_bound_to_its_place() -> None:
    # A manifest re-listing real chunks in another order (as a malicious author
    # could) passes the hash check but the AEAD binding of the index refuses it.
    blob = encrypt_blob(bytes(2 * CS), chunk_size=CS)
    m = blob.manifest
    swapped = Manifest(m.file_id, m.size, m.chunk_size, m.chunk_hashes[::-1])
    with pytest.raises(DecryptionError):
        decrypt_chunk(swapped, blob.key, 0, blob.chunks[1])
    other_file = Manifest(os.urandom(16), m.size, m.chunk_size, m.chunk_hashes)
    with pytest.raises(DecryptionError):
        decrypt_chunk(other_file, blob.key, 0, blob.chunks[0])


def test_reordered_and_duplicated_chunks_are_handled() -> None:
    data = os.urandom(10 * CS + 5)
    blob = encrypt_blob(data, chunk_size=CS)
    shuffled = list(reversed(blob.chunks)) + list(blob.chunks[:4])
    assert decrypt_blob(blob.manifest, blob.key, shuffled) == data
    as_map = dict(zip(blob.manifest.chunk_hashes[::-1], blob.chunks[::-1], strict=True))
    assert decrypt_blob(blob.manifest, blob.key, as_map) == data


def test_foreign_and_missing_chunks() -> None:
    blob = encrypt_blob(bytes(3 * CS), chunk_size=CS)
    other = encrypt_blob(bytes(CS), chunk_size=CS)
    with pytest.raises(ChunkMismatchError):
        decrypt_blob(blob.manifest, blob.key, [*blob.chunks, other.chunks[0]])
    with pytest.raises(BlobIncompleteError) as info:
        decrypt_blob(blob.manifest, blob.key, blob.chunks[:1])
    assert info.value.missing == 2


def test_multi_page_manifest() -> None:
    size = (PAGE_HASHES + 10) * CS
    enc = BlobEncryptor(size, chunk_size=CS)
    enc.update(bytes(size))
    _, m = enc.finish()
    assert len(m.pages) == 2
    assert len(m.pages[0]) == PAGE_HASHES * 32 and len(m.pages[1]) == 10 * 32
    info = decode_root(m.root)
    assert info.page_hashes == tuple(hash_object(p) for p in m.pages)
    assert Manifest.from_objects(m.root, m.pages) == m
    with pytest.raises(DecodeError):
        Manifest.from_objects(m.root, m.pages[:1])
    with pytest.raises(ChunkMismatchError):
        Manifest.from_objects(m.root, m.pages[::-1])


def test_descriptor_fits_the_attachment_content() -> None:
    blob = encrypt_blob(b"%PDF-1.7 ...", chunk_size=CS)
    desc = describe(blob.manifest, blob.key, "application/pdf", "befund.pdf")
    content = Attachment(Kind.DOCUMENT, desc, "Befund")
    decoded = decode_content(encode_content(content))
    assert decoded == content
    assert isinstance(decoded, Attachment)
    check_descriptor(decoded.descriptor, blob.manifest)
    other = encrypt_blob(b"other", chunk_size=CS)
    with pytest.raises(ValidationError):
        check_descriptor(decoded.descriptor, other.manifest)


def test_root_decoder_rejects_bad_roots() -> None:
    m = encrypt_blob(bytes(100), chunk_size=CS).manifest
    good = _cbor.loads_canonical(m.root, "t", 1 << 16)
    cases = [
        [2, *good[1:]],                     # unknown version
        good[:4],                           # missing field
        [1, b"short", *good[2:]],           # file id length
        [1, good[1], -1, *good[3:]],        # negative size
        [1, good[1], good[2], 10, good[4]], # chunk size too small
        [1, good[1], good[2], good[3], []], # no page
        [1, good[1], 1 << 62, 64, good[4]], # far too many chunks
    ]
    for case in cases:
        with pytest.raises(DecodeError):
            decode_root(_cbor.dumps(case))


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_garbage_root_raises_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_root(data)


@given(st.binary(max_size=200), st.integers(-2, 3))
@settings(max_examples=200, deadline=None)
def test_garbage_page_raises_only_library_errors(data: bytes, index: int) -> None:
    info = RootInfo(bytes(16), 1000, CS, (hash_object(b"x"),))
    with pytest.raises(P2PMsgError):
        decode_page(info, index, data)
