"""Room invitations: how a device learns it was added to a room (pure, no I/O).

Why this exists
---------------
A room's topic is a hash nobody can guess, and a node replicates only the topics it
asks for, so a device added to a room on another node would never ask for it. The
inviter therefore also appends an **invitation** to the invitee organisation's
control topic, which every device of that organisation replicates anyway (it holds
the organisation's certificates). The invitation is the room topic sealed to the
invitee device's key (libsodium sealed box, as epoch secrets are), so other readers
of the control topic learn only that *some* device was invited by the author.

Control-topic resolution (:class:`~p2pmsg.messaging.OrgState`) ignores invitations:
their authors are not the organisation's root or ADMIN devices, and their payload is
no control payload. The messenger opens every control-topic entry addressed to its
device (:func:`open_invitation`), checks that the author is an active device of a
known organisation, and adds the room topic to the node's interest; the room's own
entries then decide whether the device really is a member.

**Formats.** v1: ``["p2pmsg/invitation/v1", sealed(topic)]``. v2:
``["p2pmsg/invitation/v2", sealed(CBOR [topic, [org id, ...]])]`` — the sealed body
also names the organisations taking part as the inviter saw them (members' and
declared relays', sorted, at most :data:`MAX_INVITATION_ORGS`), so the invitee's
policy (``expect_room``) lets their nodes hold the room — a relay of a third
organisation included — before the invitee has any of the room's entries. Both are
read; the messenger writes v2.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import _cbor
from ..entry import TOPIC_SIZE
from ..errors import DecodeError
from ..identity import Identity
from ..messaging.crypto import open_sealed, open_secret, seal_bytes, seal_secret
from ..messaging.errors import DecryptionError

__all__ = ["INVITATION_TAG", "INVITATION_TAG_V2", "MAX_INVITATION_ORGS", "Invitation",
           "compose_invitation", "open_invitation"]

INVITATION_TAG = "p2pmsg/invitation/v1"
INVITATION_TAG_V2 = "p2pmsg/invitation/v2"
MAX_INVITATION_ORGS = 64
_MAX_SIZE = 4096
_ORG_SIZE = 32


@dataclass(frozen=True, slots=True)
class Invitation:
    """An opened invitation: the room, and the organisations taking part in it as
    the inviter saw it (member and relay organisations; v2, else empty)."""

    topic: bytes
    orgs: tuple[bytes, ...] = ()


def compose_invitation(invitee: bytes, topic: bytes, orgs: tuple[bytes, ...] = ()) -> bytes:
    """The payload inviting device ``invitee`` to room ``topic``.

    ``orgs``: the organisations taking part (members' and declared relays'), so the
    invitee's policy lets it fetch the room from any of their nodes before it holds
    the room's own entries (v2; without them the v1 format: the topic alone).
    Raises ValueError for a topic that is not 32 bytes, bad org ids, or a key
    without an X25519 form.
    """
    if len(topic) != TOPIC_SIZE:
        raise ValueError(f"a room topic is {TOPIC_SIZE} bytes")
    if not orgs:
        return _cbor.dumps([INVITATION_TAG, seal_secret(invitee, topic)])
    if len(orgs) > MAX_INVITATION_ORGS or any(len(o) != _ORG_SIZE for o in orgs):
        raise ValueError(f"at most {MAX_INVITATION_ORGS} organisation ids of 32 bytes")
    inner = _cbor.dumps([topic, sorted(set(orgs))])
    return _cbor.dumps([INVITATION_TAG_V2, seal_bytes(invitee, inner)])


def open_invitation(identity: Identity, payload: bytes) -> Invitation | None:
    """The invitation if ``payload`` is one sealed to ``identity``, else None
    (another payload, another device's invitation, or garbage — never an error)."""
    try:
        value = _cbor.loads_canonical(payload, "invitation", _MAX_SIZE)
    except DecodeError:
        return None
    if (type(value) is not list or len(value) != 2 or type(value[1]) is not bytes
            or value[0] not in (INVITATION_TAG, INVITATION_TAG_V2)):
        return None
    if value[0] == INVITATION_TAG:
        try:
            topic = open_secret(identity, value[1])
        except DecryptionError:
            return None
        return Invitation(topic) if len(topic) == TOPIC_SIZE else None
    try:
        inner = _cbor.loads_canonical(open_sealed(identity, value[1]), "invitation",
                                      _MAX_SIZE)
    except (DecryptionError, DecodeError):
        return None
    if (type(inner) is not list or len(inner) != 2 or type(inner[0]) is not bytes
            or len(inner[0]) != TOPIC_SIZE or type(inner[1]) is not list
            or len(inner[1]) > MAX_INVITATION_ORGS
            or not all(type(o) is bytes and len(o) == _ORG_SIZE for o in inner[1])):
        return None
    return Invitation(inner[0], tuple(inner[1]))
