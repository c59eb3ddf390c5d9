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
"""

from __future__ import annotations

from .. import _cbor
from ..entry import TOPIC_SIZE
from ..errors import DecodeError
from ..identity import Identity
from ..messaging.crypto import open_secret, seal_secret
from ..messaging.errors import DecryptionError

__all__ = ["INVITATION_TAG", "compose_invitation", "open_invitation"]

INVITATION_TAG = "p2pmsg/invitation/v1"
_MAX_SIZE = 256


def compose_invitation(invitee: bytes, topic: bytes) -> bytes:
    """The payload inviting device ``invitee`` to room ``topic``.

    Raises ValueError for a topic that is not 32 bytes or a key without an X25519 form.
    """
    if len(topic) != TOPIC_SIZE:
        raise ValueError(f"a room topic is {TOPIC_SIZE} bytes")
    return _cbor.dumps([INVITATION_TAG, seal_secret(invitee, topic)])


def open_invitation(identity: Identity, payload: bytes) -> bytes | None:
    """The room topic if ``payload`` is an invitation sealed to ``identity``, else None
    (another payload, another device's invitation, or garbage — never an error)."""
    try:
        value = _cbor.loads_canonical(payload, "invitation", _MAX_SIZE)
    except DecodeError:
        return None
    if (type(value) is not list or len(value) != 2 or value[0] != INVITATION_TAG
            or type(value[1]) is not bytes):
        return None
    try:
        topic = open_secret(identity, value[1])
    except DecryptionError:
        return None
    return topic if len(topic) == TOPIC_SIZE else None
