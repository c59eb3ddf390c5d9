"""JSON views of the messenger's objects (pure): what the API answers.

Each function returns plain dicts matching a schema of :mod:`.openapi` (``Room``,
``Member``, ``Message``, ...). Ids are lowercase hex. FHIR content is returned as
the parsed resource object.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..certs import DeviceCertificate
from ..hlc import COUNTER_BITS
from ..messaging import (
    Attachment,
    Content,
    FhirCommunication,
    Message,
    Reply,
    Text,
    UnknownContent,
)
from ..messenger import Room

__all__ = ["device_view", "message_view", "room_view"]


def room_view(room: Room, replicated: bool) -> dict[str, Any]:
    """A ``Room``: ``replicated`` says whether the node asks peers for its topic."""
    return {
        "id": room.topic.hex(),
        "kind": room.kind.value,
        "creator": room.creator.hex(),
        "members": [
            {"device": m.device.hex(), "person": None if m.person is None else m.person.hex(),
             "org": m.org.hex(), "role": m.role.value, "active": m.device not in room.inactive}
            for m in sorted(room.members.values(), key=lambda m: m.device)
        ],
        "epoch": room.epoch,
        "joined": room.joined,
        "name": room.name,
        "replicated": replicated,
    }


def _content(content: Content | None) -> tuple[str | None, dict[str, Any] | None]:
    match content:
        case None:
            return None, None
        case Text(text):
            return "text", {"text": text}
        case Reply(target, text):
            return "reply", {"target": target.hex(), "text": text}
        case FhirCommunication(resource_json, fallback, profile, version):
            try:
                resource: Any = json.loads(resource_json)
            except ValueError:
                resource = None  # a peer sent a non-JSON resource: show the fallback
            return "fhir", {"resource": resource, "fallback_text": fallback,
                            "profile": profile, "fhir_version": version}
        case Attachment(kind, d, caption):
            return kind.name.lower(), {"content_hash": d.content_hash.hex(), "size": d.size,
                                       "mime": d.mime, "name": d.name, "caption": caption}
        case UnknownContent(code, version, _raw):
            return "unknown", {"code": code, "version": version}
    return "unknown", {}  # a modifier kind never shown as a message; kept total


def message_view(msg: Message) -> dict[str, Any]:
    """A ``Message``."""
    kind, content = _content(msg.content)
    return {
        "id": msg.id.hex(),
        "author": msg.author.hex(),
        "person": None if msg.person is None else msg.person.hex(),
        "org": msg.org.hex(),
        "timestamp": msg.timestamp,
        "time_ms": msg.timestamp >> COUNTER_BITS,
        "status": msg.status.value,
        "kind": kind,
        "content": content,
        "edited": msg.edited,
        "redacted_by": None if msg.redacted_by is None else msg.redacted_by.hex(),
        "reactions": {k: [d.hex() for d in who] for k, who in sorted(msg.reactions.items())},
    }


def device_view(certs: Mapping[bytes, DeviceCertificate]) -> list[dict[str, Any]]:
    """``Device`` items of one organisation, by device key."""
    return [{"device": d.hex(), "person": None if c.person is None else c.person.hex(),
             "role": c.role.value, "name": c.display_name}
            for d, c in sorted(certs.items())]
