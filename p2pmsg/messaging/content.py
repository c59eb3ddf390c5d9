"""Message contents: what members read, encoded *before* encryption (pure).

A content is the plaintext of a sealed room payload (:mod:`.crypto` encrypts it): a
canonical CBOR array ``[kind, version, *fields]``. Build one of the dataclasses below
and pass it to :func:`p2pmsg.messaging.compose.compose_message` (or call
:func:`encode_content` yourself); :func:`decode_content` is the inverse and raises
only :class:`~p2pmsg.errors.DecodeError`.

Kinds that modify another message (:class:`Edit`, :class:`Redaction`,
:class:`Reaction`, :class:`ReadReceipt`) name their target by entry id; the rules
for who may apply them live in :mod:`.timeline`. A content of a kind (or a version)
this implementation does not know decodes to :class:`UnknownContent`, which the
timeline keeps and shows as unknown.

Attachments (voice, image, document, video) carry only an
:class:`AttachmentDescriptor` — content hash, size, MIME type and the per-file key;
the encrypted file itself is transferred separately (:mod:`p2pmsg.blobs`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypeAlias

from ..errors import DecodeError, Reason
from ._codec import Frame, check_fields, encode, is_b32, is_str, is_uint, read_frame
from .kinds import CONTENT_KINDS, VERSIONS, Kind

__all__ = [
    "ATTACHMENT_KINDS",
    "MAX_TEXT",
    "Attachment",
    "AttachmentDescriptor",
    "Content",
    "Edit",
    "FhirCommunication",
    "Reaction",
    "ReadReceipt",
    "Redaction",
    "Reply",
    "Text",
    "UnknownContent",
    "decode_content",
    "encode_content",
]

MAX_TEXT = 65_536
"""Characters of a text, reply or edit body."""
MAX_FHIR_JSON = 512 * 1024
"""Characters of an inline FHIR resource; larger resources belong in an attachment."""
MAX_LABEL = 256
"""Characters of short strings: MIME type, file name, profile, reaction key, reason."""
ATTACHMENT_KINDS = frozenset({Kind.VOICE, Kind.IMAGE, Kind.DOCUMENT, Kind.VIDEO})
_MAX_FILE_SIZE = (1 << 63) - 1


@dataclass(frozen=True, slots=True)
class Text:
    """A plain text message."""

    text: str


@dataclass(frozen=True, slots=True)
class AttachmentDescriptor:
    """What a member needs to fetch, verify and decrypt one attached file."""

    content_hash: bytes
    """The blob root: BLAKE2b-256 of the blob's manifest root object, which commits to
    every encrypted chunk (content address; see p2pmsg.blobs and docs/attachments.md)."""
    size: int
    """Size of the plaintext file in bytes."""
    mime: str
    file_key: bytes
    """32-byte per-file key (XChaCha20-Poly1305); safe here: this is inside the ciphertext."""
    name: str = ""

    def _fields(self) -> list[Any]:
        return [self.content_hash, self.size, self.mime, self.file_key, self.name]


@dataclass(frozen=True, slots=True)
class Attachment:
    """A voice message, image, document or video (``kind`` says which)."""

    kind: Kind
    descriptor: AttachmentDescriptor
    caption: str = ""


@dataclass(frozen=True, slots=True)
class FhirCommunication:
    """A FHIR R4 ``Communication`` resource, inline as JSON, with a text fallback.

    ``fallback_text`` is what a client that cannot render FHIR shows; ``profile`` is
    the declared profile URL (may be empty) and ``fhir_version`` e.g. ``"4.0.1"``.
    """

    resource_json: str
    fallback_text: str
    profile: str = ""
    fhir_version: str = "4.0.1"


@dataclass(frozen=True, slots=True)
class Reply:
    """A text answering another message (thread reference by entry id)."""

    target: bytes
    text: str


@dataclass(frozen=True, slots=True)
class Edit:
    """A new text for an earlier text or reply; only its author's edits apply."""

    target: bytes
    text: str


@dataclass(frozen=True, slots=True)
class Redaction:
    """Delete-for-everyone of an earlier message, by its author or a room admin."""

    target: bytes
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Reaction:
    """A reaction (e.g. an emoji) to a message."""

    target: bytes
    key: str


@dataclass(frozen=True, slots=True)
class ReadReceipt:
    """"I have read everything up to and including this entry"."""

    up_to: bytes


@dataclass(frozen=True, slots=True)
class UnknownContent:
    """A content of a kind or version this implementation does not understand.

    Kept and shown as unknown (never dropped); ``raw`` is the exact plaintext bytes.
    """

    kind: int
    version: int
    raw: bytes


Content: TypeAlias = (
    Text | Attachment | FhirCommunication | Reply | Edit | Redaction | Reaction
    | ReadReceipt | UnknownContent
)


def _check_fhir(resource_json: str, what: str) -> None:
    """Raise DecodeError unless ``resource_json`` is a JSON Communication resource."""
    try:
        resource = json.loads(resource_json)
    except (ValueError, RecursionError) as exc:
        raise DecodeError(Reason.MALFORMED, f"{what}: resource is not JSON") from exc
    if type(resource) is not dict or resource.get("resourceType") != "Communication":
        raise DecodeError(Reason.MALFORMED, f"{what}: resource is not a FHIR Communication")


def encode_content(content: Content) -> bytes:
    """Canonical plaintext bytes of ``content``. Raises ``ValueError`` for bad values.

    The result always decodes back to an equal value (tests check it).
    """
    data = _encode(content)
    decode_content(data)  # one set of rules: refuse to write what peers would refuse
    return data


def _encode(content: Content) -> bytes:
    v = VERSIONS
    match content:
        case Text(text):
            return encode(Kind.TEXT, v[Kind.TEXT], text)
        case Attachment(kind, descriptor, caption):
            if kind not in ATTACHMENT_KINDS:
                raise ValueError(f"{kind!r} is not an attachment kind")
            return encode(kind, v[kind], descriptor._fields(), caption)
        case FhirCommunication(resource_json, fallback, profile, fhir_version):
            try:
                _check_fhir(resource_json, "fhir")
            except DecodeError as exc:
                raise ValueError(str(exc)) from exc
            return encode(Kind.FHIR, v[Kind.FHIR], resource_json, fallback, profile, fhir_version)
        case Reply(target, text):
            return encode(Kind.REPLY, v[Kind.REPLY], target, text)
        case Edit(target, text):
            return encode(Kind.EDIT, v[Kind.EDIT], target, text)
        case Redaction(target, reason):
            return encode(Kind.REDACTION, v[Kind.REDACTION], target, reason)
        case Reaction(target, key):
            return encode(Kind.REACTION, v[Kind.REACTION], target, key)
        case ReadReceipt(up_to):
            return encode(Kind.READ_RECEIPT, v[Kind.READ_RECEIPT], up_to)
        case UnknownContent():
            raise ValueError("an unknown content cannot be written")
    raise ValueError(f"not a content: {type(content).__name__}")


def _is_descriptor(value: Any) -> bool:
    return (
        type(value) is list
        and len(value) == 5
        and is_b32(value[0])
        and is_uint(value[1])
        and value[1] <= _MAX_FILE_SIZE
        and is_str(MAX_LABEL, allow_empty=False)(value[2])
        and is_b32(value[3])
        and is_str(MAX_LABEL)(value[4])
    )


def decode_content(data: bytes) -> Content:
    """Parse decrypted plaintext into a content. Raises only :class:`DecodeError`."""
    frame = read_frame(data, "content")
    if frame.kind not in CONTENT_KINDS:
        if Kind.ROOM_CREATE <= frame.kind < 96:  # a known non-content kind: a layer mix-up
            raise DecodeError(Reason.MALFORMED, f"content: kind {frame.kind} is not a content")
        return UnknownContent(frame.kind, frame.version, bytes(data))
    kind = Kind(frame.kind)
    if frame.version > VERSIONS[kind]:
        return UnknownContent(frame.kind, frame.version, bytes(data))
    return _decode_known(kind, frame)


def _decode_known(kind: Kind, frame: Frame) -> Content:
    what = f"content {kind.name.lower()}"
    text = is_str(MAX_TEXT)
    label = is_str(MAX_LABEL)
    if kind is Kind.TEXT:
        (body,) = check_fields(frame, what, [text])
        return Text(body)
    if kind in ATTACHMENT_KINDS:
        desc, caption = check_fields(frame, what, [_is_descriptor, text])
        return Attachment(kind, AttachmentDescriptor(*desc), caption)
    if kind is Kind.FHIR:
        resource, fallback, profile, version = check_fields(
            frame, what, [is_str(MAX_FHIR_JSON, allow_empty=False), text, label, label]
        )
        _check_fhir(resource, what)
        return FhirCommunication(resource, fallback, profile, version)
    if kind is Kind.REPLY:
        target, body = check_fields(frame, what, [is_b32, text])
        return Reply(target, body)
    if kind is Kind.EDIT:
        target, body = check_fields(frame, what, [is_b32, text])
        return Edit(target, body)
    if kind is Kind.REDACTION:
        target, reason = check_fields(frame, what, [is_b32, label])
        return Redaction(target, reason)
    if kind is Kind.REACTION:
        target, key = check_fields(frame, what, [is_b32, is_str(MAX_LABEL, allow_empty=False)])
        return Reaction(target, key)
    (up_to,) = check_fields(frame, what, [is_b32])  # READ_RECEIPT: the last content kind
    return ReadReceipt(up_to)
