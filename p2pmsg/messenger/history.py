"""History shares: a person's device hands its room's past epoch keys to a sibling (pure).

Why this exists
---------------
A device newly certified for a member person receives every epoch opened after it
is certified (rooms count the person; docs/messaging.md, "Persons and devices"),
but not the earlier ones: their secrets were sealed to the devices that existed
then. Nothing re-shares them automatically — that would hand the whole history to
any device an organisation admin certifies for the person. Instead the person
*approves* the new device from one they already hold
(:meth:`p2pmsg.messenger.Messenger.share_history`), which writes a **history
share** to the organisation's control topic (which every device of the
organisation replicates, as for invitations, :mod:`.invitations`):

    canonical CBOR [ "p2pmsg/history-share/v1",
                     SealedBox(recipient X25519 key,
                               CBOR [ room topic, [[epoch id, epoch AEAD key], ...] ]) ]

The sealed box (libsodium ``crypto_box_seal``, as epoch secrets and invitations
use) hides the room, the epochs and the keys from every other reader of the control
topic; they learn only that the author device wrote something to some device.

The recipient's messenger opens shares addressed to it only if their author is an
active device of **its own person** in its own organisation, and then uses a
shared key only for epochs that were not sealed to it directly and that it has not
shredded (:class:`~p2pmsg.messenger.keyring.Keyring`), so a sibling cannot shadow
a key the device holds itself. OrgState ignores these entries (their author is not
the root or an ADMIN, and the payload is no control payload).
"""

from __future__ import annotations

from collections.abc import Mapping

from .. import _cbor
from ..entry import TOPIC_SIZE
from ..errors import DecodeError
from ..identity import Identity
from ..messaging.crypto import open_sealed, seal_bytes
from ..messaging.errors import DecryptionError

__all__ = ["HISTORY_TAG", "MAX_SHARED_EPOCHS", "compose_history_share", "open_history_share"]

HISTORY_TAG = "p2pmsg/history-share/v1"
MAX_SHARED_EPOCHS = 8192
"""Epochs in one share (64 bytes each: the payload stays well under 1 MiB)."""
_KEY_SIZE = 32
_ID_SIZE = 32
_MAX_SIZE = 64 + 48 + MAX_SHARED_EPOCHS * 80  # CBOR overhead is 3-4 bytes per pair


def compose_history_share(recipient: bytes, topic: bytes, keys: Mapping[bytes, bytes]) -> bytes:
    """The payload sharing ``keys`` (epoch id -> 32-byte epoch AEAD key) of room
    ``topic`` with device ``recipient``.

    Raises ValueError for a bad topic, key or id size, too many epochs, or a
    recipient key without an X25519 form."""
    if len(topic) != TOPIC_SIZE:
        raise ValueError(f"a room topic is {TOPIC_SIZE} bytes")
    if not 0 < len(keys) <= MAX_SHARED_EPOCHS:
        raise ValueError(f"share 1..{MAX_SHARED_EPOCHS} epochs")
    if any(len(e) != _ID_SIZE or len(k) != _KEY_SIZE for e, k in keys.items()):
        raise ValueError("epoch ids and keys are 32 bytes")
    plain = _cbor.dumps([topic, [[e, keys[e]] for e in sorted(keys)]])
    return _cbor.dumps([HISTORY_TAG, seal_bytes(recipient, plain)])


def open_history_share(
    identity: Identity, payload: bytes
) -> tuple[bytes, dict[bytes, bytes]] | None:
    """(room topic, {epoch id: key}) if ``payload`` is a history share sealed to
    ``identity``, else None (another payload, another device's share, or garbage —
    never an error). The caller checks who wrote it."""
    try:
        value = _cbor.loads_canonical(payload, "history share", _MAX_SIZE)
    except DecodeError:
        return None
    if (type(value) is not list or len(value) != 2 or value[0] != HISTORY_TAG
            or type(value[1]) is not bytes):
        return None
    try:
        inner = _cbor.loads_canonical(open_sealed(identity, value[1]), "history share body",
                                      _MAX_SIZE)
    except (DecryptionError, DecodeError):
        return None
    if type(inner) is not list or len(inner) != 2:
        return None
    topic, pairs = inner
    if type(topic) is not bytes or len(topic) != TOPIC_SIZE or type(pairs) is not list:
        return None
    if not 0 < len(pairs) <= MAX_SHARED_EPOCHS:
        return None
    keys: dict[bytes, bytes] = {}
    for pair in pairs:
        if (type(pair) is not list or len(pair) != 2 or type(pair[0]) is not bytes
                or type(pair[1]) is not bytes or len(pair[0]) != _ID_SIZE
                or len(pair[1]) != _KEY_SIZE or pair[0] in keys):
            return None
        keys[pair[0]] = pair[1]
    return topic, keys
