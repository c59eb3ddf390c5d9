"""Shared framing for messaging payloads: ``[kind, version, *fields]`` in canonical CBOR.

Private helpers used by :mod:`.content`, :mod:`.payloads` and :mod:`.org`. The
field checkers raise only :class:`~p2pmsg.errors.DecodeError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .. import _cbor
from ..entry import MAX_PAYLOAD_SIZE
from ..errors import DecodeError, Reason

__all__ = [
    "Frame",
    "check_fields",
    "is_b32",
    "read_frame",
]

Checker = Callable[[Any], bool]


@dataclass(frozen=True, slots=True)
class Frame:
    """A decoded ``[kind, version, *fields]`` array."""

    kind: int
    version: int
    fields: tuple[Any, ...]


def read_frame(data: bytes, what: str, max_size: int = MAX_PAYLOAD_SIZE) -> Frame:
    """Decode canonical CBOR ``[kind, version, *fields]``. Raises only DecodeError."""
    value = _cbor.loads_canonical(data, what, max_size)
    if type(value) is not list or len(value) < 2:
        raise DecodeError(Reason.MALFORMED, f"{what}: expected [kind, version, ...]")
    kind, version = value[0], value[1]
    if type(kind) is not int or kind < 0:
        raise DecodeError(Reason.MALFORMED, f"{what}: kind is not an unsigned integer")
    if type(version) is not int or version < 1:
        raise DecodeError(Reason.MALFORMED, f"{what}: version is not a positive integer")
    return Frame(kind, version, tuple(value[2:]))


def check_fields(frame: Frame, what: str, checkers: Sequence[Checker]) -> tuple[Any, ...]:
    """The frame's fields if there are exactly ``len(checkers)`` and each passes."""
    if len(frame.fields) != len(checkers):
        raise DecodeError(
            Reason.MALFORMED, f"{what}: expected {len(checkers)} fields, got {len(frame.fields)}"
        )
    for index, (value, check) in enumerate(zip(frame.fields, checkers, strict=True)):
        if not check(value):
            raise DecodeError(Reason.MALFORMED, f"{what}: field {index} has the wrong type or size")
    return frame.fields


def is_b32(value: Any) -> bool:
    return type(value) is bytes and len(value) == 32


def is_bytes(size: int) -> Checker:
    return lambda value: type(value) is bytes and len(value) == size


def is_str(max_chars: int, *, allow_empty: bool = True) -> Checker:
    low = 0 if allow_empty else 1
    return lambda value: type(value) is str and low <= len(value) <= max_chars


def is_uint(value: Any) -> bool:
    return type(value) is int and 0 <= value < (1 << 64)


def is_blob(max_size: int) -> Checker:
    return lambda value: type(value) is bytes and len(value) <= max_size


def encode(kind: int, version: int, *fields: Any) -> bytes:
    """Canonical bytes of ``[kind, version, *fields]``."""
    return _cbor.dumps([kind, version, *fields])
