"""Epoch keys this device has opened: the :class:`Keyring` interface and the in-memory one.

Why a keyring at all: every epoch key can be re-derived from the room's EPOCH_KEYS
entry and the device's private key, so caching is an optimisation — *except* for
crypto-shredding (GDPR Art. 17, :func:`p2pmsg.governance.erase_person`): once an
epoch is forgotten it must stay forgotten, so the keyring also remembers which
epochs were shredded and the messenger never re-opens them.

At-rest protection (later): a durable keyring implements the same four methods over
an encrypted file or the OS key store; the messenger only ever calls this interface.
:class:`MemoryKeyring` keeps keys in process memory only (lost on restart, which is
harmless: they are re-opened from the room entries on demand).

Keyrings also satisfy :class:`p2pmsg.governance.EpochSecretStore` (``epochs`` and
``forget``), so the same object can be handed to ``erase_person``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

__all__ = ["Keyring", "MemoryKeyring"]


@runtime_checkable
class Keyring(Protocol):
    """Where the messenger keeps opened epoch keys (epoch id -> 32-byte AEAD key)."""

    def get(self, epoch_id: bytes) -> bytes | None:
        """The key of ``epoch_id``, or None if not held."""
        ...

    def put(self, epoch_id: bytes, key: bytes) -> None:
        """Remember a key. Must ignore epochs that were forgotten (shredded)."""
        ...

    def is_forgotten(self, epoch_id: bytes) -> bool:
        """True if ``epoch_id`` was shredded: never open it again."""
        ...

    def epochs(self) -> frozenset[bytes]:
        """Ids of every epoch whose key is held."""
        ...

    def forget(self, epoch_ids: Iterable[bytes]) -> list[bytes]:
        """Destroy these epochs' keys (and refuse them from now on); held ids, sorted."""
        ...


class MemoryKeyring:
    """A :class:`Keyring` in process memory. Nothing is written to disk."""

    __slots__ = ("_forgotten", "_keys")

    def __init__(self) -> None:
        self._keys: dict[bytes, bytes] = {}
        self._forgotten: set[bytes] = set()

    def get(self, epoch_id: bytes) -> bytes | None:
        return self._keys.get(epoch_id)

    def put(self, epoch_id: bytes, key: bytes) -> None:
        if epoch_id not in self._forgotten:
            self._keys[epoch_id] = key

    def is_forgotten(self, epoch_id: bytes) -> bool:
        return epoch_id in self._forgotten

    def epochs(self) -> frozenset[bytes]:
        return frozenset(self._keys)

    def forget(self, epoch_ids: Iterable[bytes]) -> list[bytes]:
        gone: list[bytes] = []
        for epoch_id in epoch_ids:
            self._forgotten.add(epoch_id)
            if self._keys.pop(epoch_id, None) is not None:
                gone.append(epoch_id)
        return sorted(gone)

    def __repr__(self) -> str:  # never show key bytes
        return f"MemoryKeyring({len(self._keys)} epochs, {len(self._forgotten)} forgotten)"
