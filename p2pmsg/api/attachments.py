"""Attachments over HTTP: a bounded streamed upload and a streamed decrypted download.

Upload (``POST /v1/rooms/{room}/attachments``): the raw request body is the file;
:func:`receive_to_temp` streams it into an unnamed-after-use temporary file (mode
0600) without holding it in memory and refuses more than ``limit`` bytes (413);
the handler then calls ``Messenger.send_file`` with that path and deletes it.

Download (``GET /v1/rooms/{room}/messages/{message}/attachment``):
:func:`ensure_local` makes the blob complete in the node's blob store (fetching
it from connected peers for at most ``wait`` seconds; chunks already fetched are
kept, so a retry resumes) and :func:`decrypted_chunks` yields the plaintext one
verified chunk at a time — no plaintext file is ever written by the API.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import trio
from starlette.requests import Request

from ..blobs import BlobStore, BlobUnavailableError, Manifest, check_descriptor, decrypt_chunk
from ..errors import ValidationError
from ..messaging import AttachmentDescriptor
from ..node import Node
from .errors import ApiError

__all__ = ["decrypted_chunks", "ensure_local", "receive_to_temp"]

log = logging.getLogger("p2pmsg.api")


async def receive_to_temp(request: Request, limit: int, directory: Path | None) -> Path:
    """Stream the request body into a new temporary file and return its path.

    The caller deletes the file. 413 above ``limit`` bytes (checked against
    Content-Length first, then while streaming), 400 for an empty body."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise ApiError(413, f"file larger than {limit} bytes (ApiConfig.max_upload)")
    fd, name = tempfile.mkstemp(prefix="upload-", dir=directory)
    path = Path(name)
    try:
        size = 0
        async with trio.wrap_file(os.fdopen(fd, "wb")) as f:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, f"file larger than {limit} bytes "
                                        "(ApiConfig.max_upload)")
                if chunk:
                    await f.write(chunk)
        if size == 0:
            raise ApiError(400, "body: empty file (send the file's bytes as the body)")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _store(node: Node) -> BlobStore:
    if node.blob_store is None:
        raise ApiError(503, "this node has no blob store (NodeConfig.blob_store): "
                            "attachments are unavailable")
    return node.blob_store


async def ensure_local(node: Node, desc: AttachmentDescriptor, room: bytes, org: bytes,
                       wait: float) -> Manifest:
    """The blob's verified manifest once every chunk is stored here.

    Fetches from connected peers for at most ``wait`` seconds (0: do not fetch).
    Raises :class:`ApiError` 409 when it is not (yet) available, 502 when the
    stored blob is not the one the message names, 503 without a blob store."""
    store = _store(node)
    manifest = store.get_manifest(desc.content_hash)
    if manifest is None or store.missing(desc.content_hash):
        if wait <= 0:
            raise ApiError(409, "attachment not fetched yet (retry with wait > 0)")
        try:
            with trio.move_on_after(wait) as scope:
                await node.fetch_blob(desc.content_hash, room, org=org)
        except BlobUnavailableError:
            raise ApiError(409, "attachment not available: no connected peer serves it "
                                "now (chunks fetched so far are kept; retry later)") from None
        except ValidationError:
            raise ApiError(502, "peers sent a file that does not match the message") from None
        if scope.cancelled_caught:
            raise ApiError(409, f"attachment not fetched within {wait:g} s (chunks fetched "
                                "so far are kept; retry to resume)")
        manifest = store.get_manifest(desc.content_hash)
        if manifest is None:  # pragma: no cover - fetch_blob returned: complete
            raise ApiError(409, "attachment not available")
    try:
        check_descriptor(desc, manifest)
    except ValidationError:
        raise ApiError(502, "the stored file does not match the message") from None
    return manifest


async def decrypted_chunks(node: Node, manifest: Manifest,
                           key: bytes) -> AsyncIterator[bytes]:
    """Plaintext of a complete blob, one verified chunk per item (memory bounded by
    the chunk size). A chunk removed meanwhile (retention) ends the stream early;
    the client sees a body shorter than Content-Length."""
    store = _store(node)
    for index, h in enumerate(manifest.chunk_hashes):
        data = store.get(h)
        if data is None:  # headers are sent: all we can do is stop early
            log.warning("API attachment stream ended early: a chunk was removed")
            return
        yield decrypt_chunk(manifest, key, index, data)
        await trio.lowlevel.checkpoint()
