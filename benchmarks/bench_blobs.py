"""Attachment throughput: encrypt+chunk vs raw AEAD, and transfer over the fake link.

Figures (MB = 10^6 bytes of plaintext):

* raw XChaCha20-Poly1305 (pynacl) on 256 KiB buffers — the limit for encryption;
* blob encrypt+chunk (BlobEncryptor: AEAD + nonce + BLAKE2b-256 per chunk), as a
  ratio of that limit;
* blob decrypt (verify hash + AEAD per chunk);
* in-memory transfer: two BlobTransfer machines over a fake link, objects served
  from a dict (protocol + framing + CBOR + hashing cost only), vs raw AEAD;
* on-disk transfer: the same with BlobStore on both sides (durable=False, and
  durable=True i.e. fsync per chunk), vs the in-memory transfer.

    .venv/bin/python benchmarks/bench_blobs.py            # 64 MB
    .venv/bin/python benchmarks/bench_blobs.py --quick    # 8 MB (smoke test)
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
from pathlib import Path

import nacl.bindings

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Figure, default_json_path, print_table, save_json, timed

from p2pmsg.blobs import (
    BlobEncryptor,
    BlobStore,
    BlobTransfer,
    ChunkReceived,
    Fetch,
    ManifestReceived,
    ObjectsRequested,
    SendObjects,
    decrypt_chunk,
    encrypt_blob,
)
from p2pmsg.blobs.format import DEFAULT_CHUNK_SIZE
from p2pmsg.blobs.testing import TransferPair, TransferPeer

MB = 1_000_000


def raw_aead(data: bytes, chunk: int) -> None:
    key, nonce = os.urandom(32), os.urandom(24)
    for i in range(0, len(data), chunk):
        nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
            data[i:i + chunk], b"", nonce, key)


def encrypt(data: bytes, chunk: int) -> int:
    enc = BlobEncryptor(len(data), chunk_size=chunk)
    n = 0
    for i in range(0, len(data), chunk):
        n += len(enc.update(data[i:i + chunk]))
    tail, _ = enc.finish()
    return n + len(tail)


def transfer_in_memory(objects: dict[bytes, bytes], root: bytes) -> int:
    server, client = BlobTransfer(), BlobTransfer()
    box = {id(server): bytearray(), id(client): bytearray()}
    box[id(client)] += client.send(Fetch(root))
    received = 0
    while True:
        moved = False
        for src, dst in ((client, server), (server, client)):
            out = bytes(box[id(src)]) + src.data_to_send()
            box[id(src)].clear()
            if out:
                moved = True
                dst.receive_data(out)
            while (e := dst.next_event()) is not None:
                if isinstance(e, ObjectsRequested):
                    box[id(dst)] += dst.send(SendObjects({h: objects.get(h) for h in e.hashes}))
                elif isinstance(e, ManifestReceived):
                    box[id(dst)] += dst.send(Fetch(e.root, e.manifest))
                elif isinstance(e, ChunkReceived):
                    received += len(e.data)
        if not moved:
            return received


def transfer_on_disk(data: bytes, durable: bool) -> float:
    with tempfile.TemporaryDirectory() as d:
        src = BlobStore(Path(d) / "a", durable=False)
        dst = BlobStore(Path(d) / "b", durable=durable)
        m, _ = src.import_file(io.BytesIO(data), len(data), org=b"o", room=b"r")
        client = TransferPeer(dst)
        pair = TransferPair(TransferPeer(src), client, max_flight=4 << 20)
        with timed() as sw:
            client.fetch(m.root_hash)
            pair.run()
        assert client.complete == [m.root_hash]
        src.close()
        dst.close()
        return sw.seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=64)
    ap.add_argument("--quick", action="store_true", help="8 MB (smoke test)")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    ap.add_argument("--save", action="store_true", help="write JSON under benchmarks/results/")
    args = ap.parse_args()
    size = (8 if args.quick else args.size_mb) * MB
    data = os.urandom(size)
    chunk = DEFAULT_CHUNK_SIZE
    figs: list[Figure] = []

    with timed() as sw:
        raw_aead(data, chunk)
    raw = size / MB / sw.seconds
    figs.append(Figure("raw XChaCha20-Poly1305 (pynacl)", raw, "MB/s", size,
                       cpu_value=size / MB / sw.cpu_seconds))

    with timed() as sw:
        encrypt(data, chunk)
    v = size / MB / sw.seconds
    figs.append(Figure("blob encrypt+chunk", v, "MB/s", size, ratio=v / raw,
                       limit_name="raw AEAD", cpu_value=size / MB / sw.cpu_seconds))

    blob = encrypt_blob(data, chunk_size=chunk)
    m = blob.manifest
    with timed() as sw:
        for i, c in enumerate(blob.chunks):
            decrypt_chunk(m, blob.key, i, c)
    v = size / MB / sw.seconds
    figs.append(Figure("blob verify+decrypt", v, "MB/s", size, ratio=v / raw,
                       limit_name="raw AEAD", cpu_value=size / MB / sw.cpu_seconds))

    objects = blob.objects()
    with timed() as sw:
        got = transfer_in_memory(objects, m.root_hash)
    assert got == m.encrypted_size
    mem = size / MB / sw.seconds
    figs.append(Figure("transfer in memory (2 machines, fake link)", mem, "MB/s", size,
                       ratio=mem / raw, limit_name="raw AEAD",
                       cpu_value=size / MB / sw.cpu_seconds))

    for durable in (False, True):
        secs = transfer_on_disk(data, durable)
        v = size / MB / secs
        name = f"transfer store->store ({'fsync' if durable else 'no fsync'})"
        figs.append(Figure(name, v, "MB/s", size, ratio=v / mem, limit_name="in-memory",
                           note=None if not durable else "one fsync'd file + commit per chunk"))

    print_table(f"attachments: {size // MB} MB, {chunk // 1024} KiB chunks", figs)
    params = {"size": size, "chunk_size": chunk, "quick": args.quick}
    if args.json:
        save_json(args.json, "bench_blobs", figs, params)
    elif args.save:
        print("saved", save_json(default_json_path("bench_blobs"), "bench_blobs", figs, params))


if __name__ == "__main__":
    main()
