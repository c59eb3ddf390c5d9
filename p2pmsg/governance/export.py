"""Export bundles (GDPR Art. 15/20) and their offline verification.

A bundle is one JSON document::

    {"format": "p2pmsg-export/1", "scope": "room" | "person", "created_ms": ...,
     "topic": hex | null, "devices": [hex, ...],
     "entries":  [{"id": hex, "entry": hex of the signed wire bytes,
                   "payload": hex | null, "payload_state": "present"|"missing"|"erased"}],
     "messages": [{"id", "author", "org", "timestamp", "status", "content": {...}|null,
                   "redacted_by"}],
     "attachments": [{"message": hex, "root": hex, "name", "mime", "size",
                      "data": base64 of the plaintext file,
                      "objects": {"root": b64, "pages": [b64], "chunks": [b64]}}]}

``entries`` are the signed headers (and payloads where present) that prove the
messages: :func:`verify_bundle` checks, with no node and no keys, that every entry
decodes, has the id it claims, carries a valid author signature, that consecutive
entries of a log are hash-linked, that every present payload matches its header's
hash, and that every message names an entry of the bundle by an author that signed
it. ``messages`` hold what *this* node could decrypt (it needs the member device's
identity, or the epoch keys); they are plaintext — the bundle is personal data and
must be handed over through a protected channel.

``attachments`` (present when a ``blobs`` store is given) hold, for every exported
attachment message whose blob is complete on this node and opens with its
descriptor's key, the plaintext file **and** the encrypted blob objects:
:func:`verify_bundle` checks that the objects hash to the descriptor's
``content_hash`` (the blob root), and that decrypting them with the descriptor's
``file_key`` gives exactly the exported file — so a changed file, object or
descriptor is reported. Files are held in memory (base64); attachments are bounded
by ``BlobStore.max_file_size``.

Build with :func:`export_room` or :func:`export_person`, write with
:func:`write_bundle` (records an EXPORT audit event), check with
:func:`verify_bundle`.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from ..blobs import BlobStore
from ..blobs.format import Manifest, decrypt_chunk, hash_object
from ..entry import Entry, decode_entry
from ..errors import DecodeError, StoreError, ValidationError
from ..identity import Identity
from ..messaging.content import Attachment, Content
from ..messaging.room import RoomView
from ..messaging.timeline import Message, decrypt_timeline
from ..store.base import PayloadState, Store
from ..validate import verify_link, verify_payload, verify_signature
from .audit import AuditKind, AuditLog
from .retention import iter_entries

__all__ = [
    "BUNDLE_FORMAT",
    "BundleReport",
    "export_person",
    "export_room",
    "verify_bundle",
    "verify_bundle_data",
    "write_bundle",
]

BUNDLE_FORMAT = "p2pmsg-export/1"


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if is_dataclass(value) and not isinstance(value, type):
        out = {"type": type(value).__name__}
        out.update({f.name: _jsonable(getattr(value, f.name)) for f in fields(value)})
        return out
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(_jsonable(k)): _jsonable(v) for k, v in value.items()}
    return value


def _entry_record(store: Store, entry: Entry) -> dict[str, Any]:
    payload = store.get_payload(entry.id)
    state = "present" if isinstance(payload, bytes) else payload.value
    return {"id": entry.id.hex(), "entry": entry.to_bytes().hex(),
            "payload": payload.hex() if isinstance(payload, bytes) else None,
            "payload_state": state}


def _message_record(m: Message) -> dict[str, Any]:
    content: Content | None = m.content
    return {"id": m.id.hex(), "author": m.author.hex(), "org": m.org.hex(),
            "timestamp": m.timestamp, "status": m.status.value,
            "content": _jsonable(content) if content is not None else None,
            "edited": m.edited,
            "redacted_by": m.redacted_by.hex() if m.redacted_by is not None else None}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _attachment_record(blobs: BlobStore, m: Message, topic: bytes) -> dict[str, Any] | None:
    """The file and blob objects of an attachment message, or None (blob absent,
    incomplete, of another room, or not opened by the descriptor's key)."""
    if not isinstance(m.content, Attachment):
        return None
    desc = m.content.descriptor
    root = desc.content_hash
    try:
        if blobs.room_of(root) != topic or blobs.missing(root):
            return None
        manifest = blobs.get_manifest(root)
        if manifest is None:
            return None
        chunks = [blobs.get(h) for h in manifest.chunk_hashes]
        present = [c for c in chunks if c is not None]
        if len(present) != len(chunks):
            return None
        plain = b"".join(decrypt_chunk(manifest, desc.file_key, i, c)
                         for i, c in enumerate(present))
    except (StoreError, ValidationError):
        return None
    return {"message": m.id.hex(), "root": root.hex(), "name": desc.name, "mime": desc.mime,
            "size": desc.size, "data": _b64(plain),
            "objects": {"root": _b64(manifest.root),
                        "pages": [_b64(p) for p in manifest.pages],
                        "chunks": [_b64(c) for c in present]}}


def _attachments(blobs: BlobStore | None, messages: Iterable[tuple[Message, bytes]],
                 ) -> list[dict[str, Any]]:
    if blobs is None:
        return []
    records = (_attachment_record(blobs, m, topic) for m, topic in messages)
    return [r for r in records if r is not None]


def export_room(
    store: Store,
    view: RoomView,
    reader: Identity | None,
    now_ms: int,
    keys: Mapping[bytes, bytes] | None = None,
    *,
    blobs: BlobStore | None = None,
) -> dict[str, Any]:
    """Bundle of a room: every stored entry of the topic and the messages ``reader`` sees.

    ``reader`` is a member device's identity (or None with explicit epoch ``keys``,
    or neither: headers only). With ``blobs``, readable attachments are included.
    """
    entries = [_entry_record(store, e) for e in iter_entries(store, [view.topic])]
    shown: list[Message] = []
    if reader is not None or keys is not None:
        ident = reader if reader is not None else Identity.generate()
        shown = list(decrypt_timeline(view, ident, keys,
                                      folded=store.folded(view.topic)).messages)
    bundle = {"format": BUNDLE_FORMAT, "scope": "room", "created_ms": now_ms,
              "topic": view.topic.hex(), "devices": [], "entries": entries,
              "messages": [_message_record(m) for m in shown]}
    if blobs is not None:
        bundle["attachments"] = _attachments(blobs, ((m, view.topic) for m in shown))
    return bundle


def export_person(
    store: Store,
    devices: Iterable[bytes],
    views: Iterable[RoomView],
    reader: Identity | None,
    now_ms: int,
    *,
    blobs: BlobStore | None = None,
) -> dict[str, Any]:
    """Bundle of everything authored by ``devices`` in any topic on this node.

    With ``blobs``, the attachments of their readable messages are included.
    """
    wanted = set(devices)
    entries = [_entry_record(store, e) for e in iter_entries(store) if e.author in wanted]
    shown: list[tuple[Message, bytes]] = []
    if reader is not None:
        for view in views:
            timeline = decrypt_timeline(view, reader, folded=store.folded(view.topic))
            shown += [(m, view.topic) for m in timeline.messages if m.author in wanted]
    bundle = {"format": BUNDLE_FORMAT, "scope": "person", "created_ms": now_ms, "topic": None,
              "devices": sorted(d.hex() for d in wanted), "entries": entries,
              "messages": [_message_record(m) for m, _ in shown]}
    if blobs is not None:
        bundle["attachments"] = _attachments(blobs, shown)
    return bundle


def write_bundle(
    bundle: Mapping[str, Any], path: str | os.PathLike[str], *,
    audit: AuditLog | None = None, request_ref: str = "",
) -> None:
    """Write ``bundle`` as JSON (fsync'd, mode 0600) and record an EXPORT audit event."""
    target = Path(path)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(bundle, out, indent=1, sort_keys=True)
        out.flush()
        os.fsync(out.fileno())
    if audit is not None:
        audit.append(AuditKind.EXPORT, int(bundle["created_ms"]), scope=str(bundle["scope"]),
                     topic=bundle.get("topic"), devices=list(bundle.get("devices", [])),
                     entries=len(bundle["entries"]), messages=len(bundle["messages"]),
                     attachments=len(bundle.get("attachments", [])), request=request_ref)


@dataclass
class BundleReport:
    """What :func:`verify_bundle` found. ``ok`` only if ``problems`` is empty."""

    entries: int = 0
    payloads_checked: int = 0
    links_checked: int = 0
    messages: int = 0
    attachments: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_bundle(path: str | os.PathLike[str]) -> BundleReport:
    """Verify a bundle file offline (no node, no keys). Never raises for bad content."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return BundleReport(problems=[f"cannot read bundle: {exc}"])
    return verify_bundle_data(data)


def verify_bundle_data(data: Any) -> BundleReport:
    """:func:`verify_bundle` for an already parsed JSON value."""
    report = BundleReport()
    if not isinstance(data, dict) or data.get("format") != BUNDLE_FORMAT:
        report.problems.append("not a p2pmsg export bundle")
        return report
    records = data.get("entries")
    messages = data.get("messages")
    if not isinstance(records, list) or not isinstance(messages, list):
        report.problems.append("bundle lacks entries or messages lists")
        return report
    by_id: dict[bytes, Entry] = {}
    for index, rec in enumerate(records):
        entry = _check_record(rec, index, report)
        if entry is not None:
            by_id[entry.id] = entry
    report.entries = len(by_id)
    by_pos = {(e.author, e.topic, e.seq): e for e in by_id.values()}
    for entry in by_id.values():
        prev = by_pos.get((entry.author, entry.topic, entry.seq - 1))
        if prev is None and entry.seq != 1:
            continue  # partial log (person export): its predecessor is not in the bundle
        try:
            verify_link(prev, entry)
            report.links_checked += 1
        except ValidationError as exc:
            report.problems.append(f"entry {entry.id.hex()[:16]}: {exc}")
    by_message: dict[str, Any] = {}
    for index, msg in enumerate(messages):
        try:
            entry = by_id.get(bytes.fromhex(msg["id"]))
            author = bytes.fromhex(msg["author"])
        except (TypeError, KeyError, ValueError):
            report.problems.append(f"message {index}: malformed")
            continue
        if entry is None:
            report.problems.append(f"message {index}: its entry is not in the bundle")
        elif entry.author != author:
            report.problems.append(f"message {index}: author differs from the signed entry")
        else:
            report.messages += 1
            by_message[msg["id"]] = msg
    attachments = data.get("attachments", [])
    if not isinstance(attachments, list):
        report.problems.append("bundle attachments is not a list")
        return report
    for index, rec in enumerate(attachments):
        problem = _check_attachment(rec, by_message)
        if problem is None:
            report.attachments += 1
        else:
            report.problems.append(f"attachment {index}: {problem}")
    return report


def _check_attachment(rec: Any, by_message: Mapping[str, Any]) -> str | None:
    """None if the file is what its message's descriptor names, else the problem."""
    try:
        msg = by_message.get(rec["message"])
        desc = msg["content"]["descriptor"] if msg is not None else None
        if desc is None:
            return "its message is not a verified message of the bundle"
        root = bytes.fromhex(desc["content_hash"])
        key = bytes.fromhex(desc["file_key"])
        data = base64.b64decode(rec["data"], validate=True)
        objects = rec["objects"]
        manifest = Manifest.from_objects(
            base64.b64decode(objects["root"], validate=True),
            [base64.b64decode(p, validate=True) for p in objects["pages"]])
        chunks = [base64.b64decode(c, validate=True) for c in objects["chunks"]]
    except (TypeError, KeyError, ValueError, AttributeError, binascii.Error,
            DecodeError, ValidationError):
        return "malformed"
    if manifest.root_hash != root or rec.get("root") != root.hex():
        return "blob objects do not hash to the descriptor's content hash"
    if len(chunks) != len(manifest.chunk_hashes) or any(
            hash_object(c) != h for c, h in zip(chunks, manifest.chunk_hashes, strict=False)):
        return "a blob chunk does not match its manifest"
    try:
        plain = b"".join(decrypt_chunk(manifest, key, i, c) for i, c in enumerate(chunks))
    except (ValidationError, ValueError):
        return "the blob does not decrypt with the descriptor's key"
    if plain != data or len(data) != desc.get("size"):
        return "the file differs from the decrypted blob"
    return None


def _check_record(rec: Any, index: int, report: BundleReport) -> Entry | None:
    try:
        raw = bytes.fromhex(rec["entry"])
        claimed = bytes.fromhex(rec["id"])
        payload_hex = rec.get("payload")
        payload = bytes.fromhex(payload_hex) if payload_hex is not None else None
    except (TypeError, KeyError, ValueError, AttributeError):
        report.problems.append(f"entry record {index}: malformed")
        return None
    try:
        entry = decode_entry(raw)
        verify_signature(entry)
    except ValidationError as exc:
        report.problems.append(f"entry record {index}: {exc}")
        return None
    if entry.id != claimed:
        report.problems.append(f"entry record {index}: id does not match the signed header")
        return None
    if payload is not None:
        try:
            verify_payload(entry.header, payload)
            report.payloads_checked += 1
        except ValidationError as exc:
            report.problems.append(f"entry record {index}: {exc}")
    elif rec.get("payload_state") not in {PayloadState.MISSING.value,
                                          PayloadState.ERASED.value}:
        report.problems.append(f"entry record {index}: payload absent without a reason")
    return entry
