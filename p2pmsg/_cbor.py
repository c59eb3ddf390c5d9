"""Canonical CBOR helpers: one value, one encoding.

p2pmsg encodes every signed structure as a CBOR *array* of integers, byte strings,
text strings, null and nested arrays (no maps, no floats, no tags), so the canonical
form is simply "shortest integer/length heads, definite lengths" (RFC 8949 §4.2.1).

:func:`loads_canonical` decodes and then re-encodes: input whose bytes differ from
the canonical re-encoding (longer heads, indefinite lengths, trailing bytes) is
rejected as NON_CANONICAL; bytes that are not CBOR at all are MALFORMED. Every
failure is a :class:`DecodeError`. docs/protocol.md states these rules.
"""

from __future__ import annotations

from typing import Any

import cbor2

from .errors import DecodeError, Reason

__all__ = ["dumps", "loads_canonical"]


def dumps(value: Any) -> bytes:
    """Canonical encoding of ``value`` (arrays/ints/bytes/str/None only)."""
    return cbor2.dumps(value, canonical=True)


def loads_canonical(data: bytes, what: str, max_size: int) -> Any:
    """Decode one canonical CBOR item that is exactly ``data``.

    Raises :class:`DecodeError` (TOO_LARGE, MALFORMED or NON_CANONICAL); nothing else.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(Reason.MALFORMED, f"{what}: expected bytes, got {type(data).__name__}")
    if len(data) > max_size:
        raise DecodeError(Reason.TOO_LARGE, f"{what}: {len(data)} bytes > limit {max_size}")
    data = bytes(data)
    try:
        # Indefinite lengths are decoded (not refused) so that the re-encoding check
        # below reports them as NON_CANONICAL: they are well-formed, just not canonical.
        value = cbor2.loads(
            data, max_depth=8, allow_indefinite=True, allow_duplicate_keys=False
        )
    except (cbor2.CBORError, ValueError, TypeError, OverflowError, RecursionError,
            MemoryError, IndexError, KeyError, UnicodeDecodeError) as exc:
        problem = f"{what}: not valid CBOR ({type(exc).__name__})"
        raise DecodeError(Reason.MALFORMED, problem) from exc
    try:
        again = cbor2.dumps(value, canonical=True)
    except (cbor2.CBORError, ValueError, TypeError, OverflowError) as exc:
        raise DecodeError(Reason.MALFORMED, f"{what}: unsupported CBOR value") from exc
    if again != data:
        raise DecodeError(Reason.NON_CANONICAL, f"{what}: not canonical CBOR")
    return value
