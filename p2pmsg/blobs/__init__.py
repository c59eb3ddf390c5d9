"""Attachments: encrypted, chunked, content-addressed blobs and their transfer.

* :mod:`.format` (pure) — per-file key, XChaCha20-Poly1305 per chunk, paged
  manifest; the manifest's root hash is ``AttachmentDescriptor.content_hash``.
* :mod:`.store` (I/O) — objects on disk in the node's data directory, atomic
  writes, verification on arrival, quotas per organisation/room, deletion.
* :mod:`.transfer` (sans-IO) — the chunk request/response machine with credit
  flow control, progress and resume; :mod:`.wire` holds its messages.
* :mod:`.testing` — a reference node loop and a fake link for tests/benchmarks.

Sending a file::

    manifest, key = store.import_file(f, size, org=org, room=room)
    content = Attachment(Kind.DOCUMENT, describe(manifest, key, "application/pdf", "x.pdf"))

Receiving: ``Fetch(descriptor.content_hash)`` on a :class:`BlobTransfer`, answer its
events from the store (see :class:`.testing.TransferPeer`), then
``check_descriptor`` and ``store.export(root, descriptor.file_key, out)``.
docs/attachments.md has the byte formats and the protocol.
"""

from .errors import BlobIncompleteError as BlobIncompleteError
from .errors import BlobUnavailableError as BlobUnavailableError
from .errors import ChunkMismatchError as ChunkMismatchError
from .errors import FileTooLargeError as FileTooLargeError
from .errors import QuotaExceededError as QuotaExceededError
from .format import DEFAULT_CHUNK_SIZE as DEFAULT_CHUNK_SIZE
from .format import DEFAULT_MAX_FILE_SIZE as DEFAULT_MAX_FILE_SIZE
from .format import BlobEncryptor as BlobEncryptor
from .format import EncryptedBlob as EncryptedBlob
from .format import Manifest as Manifest
from .format import check_descriptor as check_descriptor
from .format import decrypt_blob as decrypt_blob
from .format import decrypt_chunk as decrypt_chunk
from .format import describe as describe
from .format import encrypt_blob as encrypt_blob
from .store import BlobStore as BlobStore
from .store import Quotas as Quotas
from .transfer import BlobTransfer as BlobTransfer
from .transfer import ChunkReceived as ChunkReceived
from .transfer import CloseSession as CloseSession
from .transfer import ConnectionClosed as ConnectionClosed
from .transfer import Fetch as Fetch
from .transfer import FetchComplete as FetchComplete
from .transfer import FetchFailed as FetchFailed
from .transfer import ManifestReceived as ManifestReceived
from .transfer import ObjectsRequested as ObjectsRequested
from .transfer import Progress as Progress
from .transfer import SendObjects as SendObjects
from .transfer import TransferConfig as TransferConfig

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_MAX_FILE_SIZE",
    "BlobEncryptor",
    "BlobIncompleteError",
    "BlobUnavailableError",
    "BlobStore",
    "BlobTransfer",
    "ChunkMismatchError",
    "ChunkReceived",
    "CloseSession",
    "ConnectionClosed",
    "EncryptedBlob",
    "Fetch",
    "FetchComplete",
    "FetchFailed",
    "FileTooLargeError",
    "Manifest",
    "ManifestReceived",
    "ObjectsRequested",
    "Progress",
    "QuotaExceededError",
    "Quotas",
    "SendObjects",
    "TransferConfig",
    "check_descriptor",
    "decrypt_blob",
    "decrypt_chunk",
    "describe",
    "encrypt_blob",
]
