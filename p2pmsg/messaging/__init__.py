"""Messaging: organisations, devices, rooms, membership, message kinds, E2E encryption.

Pure functions over log entries — no trio, store, sockets or clock reads (time is an
argument). The node appends the payload bytes these functions compose and feeds the
stored entries back in; every displayed thing is a deterministic function of the
set of entries. docs/messaging.md has the walk-through; docs/security.md the threat
model.

Modules, bottom up: :mod:`.kinds` (codes), :mod:`.content` (message contents),
:mod:`.payloads` (room payloads), :mod:`.order` (total order), :mod:`.crypto`
(epoch keys, sealing, AEAD), :mod:`.org` (control topic), :mod:`.room` (membership
resolution), :mod:`.timeline` (reading), :mod:`.compose` (writing).
"""

from .compose import compose_add as compose_add
from .compose import compose_leave as compose_leave
from .compose import compose_message as compose_message
from .compose import compose_rekey as compose_rekey
from .compose import compose_remove as compose_remove
from .compose import compose_role as compose_role
from .compose import compose_room as compose_room
from .compose import compose_text as compose_text
from .content import Attachment as Attachment
from .content import AttachmentDescriptor as AttachmentDescriptor
from .content import Content as Content
from .content import Edit as Edit
from .content import FhirCommunication as FhirCommunication
from .content import Reaction as Reaction
from .content import ReadReceipt as ReadReceipt
from .content import Redaction as Redaction
from .content import Reply as Reply
from .content import Text as Text
from .content import UnknownContent as UnknownContent
from .content import decode_content as decode_content
from .content import encode_content as encode_content
from .crypto import decrypt_for_entry as decrypt_for_entry
from .crypto import encrypt_for_entry as encrypt_for_entry
from .errors import DecryptionError as DecryptionError
from .errors import NotPermitted as NotPermitted
from .errors import RekeyRequired as RekeyRequired
from .kinds import Kind as Kind
from .order import total_order as total_order
from .org import OrgState as OrgState
from .org import Revocation as Revocation
from .org import compose_certificate as compose_certificate
from .org import compose_revocation as compose_revocation
from .org import control_topic as control_topic
from .org import decode_control_payload as decode_control_payload
from .payloads import MemberSpec as MemberSpec
from .payloads import RoomKind as RoomKind
from .payloads import RoomRole as RoomRole
from .payloads import decode_room_payload as decode_room_payload
from .payloads import room_topic as room_topic
from .room import Member as Member
from .room import Rejection as Rejection
from .room import RekeyPolicy as RekeyPolicy
from .room import RekeyReason as RekeyReason
from .room import RoomState as RoomState
from .room import RoomView as RoomView
from .room import resolve_room as resolve_room
from .timeline import Message as Message
from .timeline import MessageStatus as MessageStatus
from .timeline import Timeline as Timeline
from .timeline import decrypt_messages as decrypt_messages
from .timeline import decrypt_timeline as decrypt_timeline
from .timeline import open_epoch_keys as open_epoch_keys

__all__ = [
    "Attachment",
    "AttachmentDescriptor",
    "Content",
    "DecryptionError",
    "Edit",
    "FhirCommunication",
    "Kind",
    "Member",
    "MemberSpec",
    "Message",
    "MessageStatus",
    "NotPermitted",
    "OrgState",
    "Reaction",
    "ReadReceipt",
    "Redaction",
    "RekeyPolicy",
    "RekeyReason",
    "RekeyRequired",
    "Rejection",
    "Reply",
    "Revocation",
    "RoomKind",
    "RoomRole",
    "RoomState",
    "RoomView",
    "Text",
    "Timeline",
    "UnknownContent",
    "compose_add",
    "compose_certificate",
    "compose_leave",
    "compose_message",
    "compose_rekey",
    "compose_remove",
    "compose_revocation",
    "compose_role",
    "compose_room",
    "compose_text",
    "control_topic",
    "decode_content",
    "decode_control_payload",
    "decode_room_payload",
    "decrypt_for_entry",
    "decrypt_messages",
    "decrypt_timeline",
    "encode_content",
    "encrypt_for_entry",
    "open_epoch_keys",
    "resolve_room",
    "room_topic",
    "total_order",
]
