"""The federation list: which organisations exist and which node keys speak for them (pure).

Theory of operation
-------------------
A federation list is a statement by an **issuer** (a governance key the operator
configures, or an organisation's own root for its local allowlist): "at
``issued_ms``, version ``version`` of the federation has these organisations, each
with its root key (= org id), display name, kind, node keys and node addresses;
trust this for at most ``max_age_ms``". It is a canonical CBOR array
``[body, signature]`` where ``body`` is the canonical CBOR array ::

    [1, issuer, version, issued_ms, max_age_ms,
     [[org_id, name, kind, [node_key, ...], [address, ...]], ...]]

organisations sorted by id, node keys sorted, no key listed twice anywhere (a node
key belongs to exactly one organisation). The signature is the issuer's Ed25519
signature in :attr:`~p2pmsg.identity.Domain.FEDERATION`.

:class:`FederationRegistry` holds the list a node currently trusts.
:meth:`FederationRegistry.accept` takes new list bytes and either replaces the list
or raises (and changes nothing):

* :class:`~p2pmsg.errors.DecodeError` — not a well-formed, canonical list;
* :class:`FederationError` with reason WRONG_ISSUER, BAD_SIGNATURE, EXPIRED (older
  than its own maximum age at ``now_ms``) or ROLLBACK (a version not higher than
  the trusted one; an equal version with identical bytes is a no-op, not an error).

**Fail closed.** :meth:`FederationRegistry.lookup` answers for a peer's node key at
``now_ms`` with a :class:`PeerLookup` carrying an explicit :class:`FederationStatus`:
only ``KNOWN`` (a still-valid list names the key) admits a peer. Once the list is
older than its maximum age (default 72 h, as TI-Messenger), *every* peer is
refused with status ``STALE`` until a newer list is accepted: a node never trusts
an organisation set it cannot show to be current. ``UNKNOWN`` tells the node to
refetch the list (a newly federated organisation).

Next: :class:`p2pmsg.governance.policy.GovernancePolicy` combines this with the
local allow/deny policy and room membership.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .. import _cbor
from ..errors import DecodeError, Reason, ValidationError
from ..identity import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, Domain, Identity, verify

__all__ = [
    "DEFAULT_MAX_AGE_MS",
    "LIST_FORMAT",
    "MAX_LIST_SIZE",
    "FederationError",
    "FederationList",
    "FederationRegistry",
    "FederationStatus",
    "OrgKind",
    "Organisation",
    "PeerLookup",
    "decode_federation_list",
    "issue_federation_list",
    "verify_federation_list",
]

LIST_FORMAT = 1
DEFAULT_MAX_AGE_MS = 72 * 3600 * 1000
"""72 hours: TI-Messenger's maximum age of a federation list."""
MAX_LIST_SIZE = 4 * 1024 * 1024
MAX_ORGS = 10_000
MAX_NODES_PER_ORG = 256
MAX_ADDRESSES_PER_ORG = 256
MAX_NAME = 256
MAX_ADDRESS = 512
_U64 = (1 << 64) - 1


class OrgKind(enum.Enum):
    """What kind of organisation a member of the federation is. Values are stable."""

    HOSPITAL = "hospital"
    CLINIC = "clinic"
    PRACTICE = "practice"
    PHARMACY = "pharmacy"
    INSURER = "insurer"
    DEVICE_MAKER = "device_maker"
    LAB = "lab"
    OTHER = "other"


class FederationError(ValidationError):
    """A federation list was refused (WRONG_ISSUER, BAD_SIGNATURE, EXPIRED, ROLLBACK).

    Raised by :meth:`FederationRegistry.accept` and :func:`verify_federation_list`;
    when it is raised, the trusted list has not changed.
    """


@dataclass(frozen=True, slots=True)
class Organisation:
    """One member organisation of the federation."""

    org_id: bytes
    """The organisation's root public key (32 bytes): it certifies its devices."""
    name: str
    kind: OrgKind
    node_keys: tuple[bytes, ...] = ()
    """Ed25519 keys of the organisation's nodes, sorted."""
    addresses: tuple[str, ...] = ()
    """Where its nodes listen (``quic://host:port`` ...): hints, identity is the key."""

    def _fields(self) -> list[Any]:
        return [self.org_id, self.name, self.kind.value, list(self.node_keys),
                list(self.addresses)]


@dataclass(frozen=True, slots=True)
class FederationList:
    """A decoded (not necessarily verified) federation list."""

    issuer: bytes
    version: int
    issued_ms: int
    max_age_ms: int
    organisations: tuple[Organisation, ...]
    signature: bytes = b""
    raw: bytes = b""
    """The exact bytes it was decoded from (or issued as)."""

    def body(self) -> bytes:
        return _cbor.dumps([
            LIST_FORMAT, self.issuer, self.version, self.issued_ms, self.max_age_ms,
            [o._fields() for o in self.organisations],
        ])

    def expires_ms(self) -> int:
        """The first millisecond at which the list is no longer trusted."""
        return self.issued_ms + self.max_age_ms

    def is_fresh(self, now_ms: int) -> bool:
        return self.issued_ms <= now_ms + _CLOCK_SKEW_MS and now_ms < self.expires_ms()

    def org_of_node(self, node_key: bytes) -> Organisation | None:
        """The organisation that lists ``node_key`` as one of its nodes."""
        for org in self.organisations:
            if node_key in org.node_keys:
                return org
        return None

    def by_id(self) -> dict[bytes, Organisation]:
        return {o.org_id: o for o in self.organisations}


_CLOCK_SKEW_MS = 5 * 60 * 1000
"""A list issued up to 5 minutes in our future is accepted (clocks differ)."""


def issue_federation_list(
    issuer: Identity,
    version: int,
    issued_ms: int,
    organisations: Iterable[Organisation],
    max_age_ms: int = DEFAULT_MAX_AGE_MS,
) -> FederationList:
    """Sign a federation list. Sorts organisations and node keys; ValueError if invalid."""
    orgs = tuple(sorted(
        (Organisation(o.org_id, o.name, o.kind, tuple(sorted(o.node_keys)), tuple(o.addresses))
         for o in organisations),
        key=lambda o: o.org_id,
    ))
    unsigned = FederationList(issuer.public_key, version, issued_ms, max_age_ms, orgs)
    body = unsigned.body()
    signature = issuer.sign(Domain.FEDERATION, body)
    raw = _cbor.dumps([body, signature])
    try:
        return decode_federation_list(raw)
    except DecodeError as exc:
        raise ValueError(f"not a valid federation list: {exc}") from exc


def _is_key(value: object) -> bool:
    return type(value) is bytes and len(value) == PUBLIC_KEY_SIZE


def _is_u64(value: object) -> bool:
    return type(value) is int and 0 <= value <= _U64


def _is_text(value: object, limit: int) -> bool:
    return type(value) is str and 0 < len(value) <= limit


def _decode_org(value: object) -> Organisation:
    if type(value) is not list or len(value) != 5:
        raise DecodeError(Reason.MALFORMED, "federation list: an organisation is not a 5-array")
    org_id, name, kind, nodes, addresses = value
    ok = (
        _is_key(org_id) and _is_text(name, MAX_NAME) and type(kind) is str
        and type(nodes) is list and len(nodes) <= MAX_NODES_PER_ORG and all(map(_is_key, nodes))
        and all(a < b for a, b in itertools.pairwise(nodes))
        and type(addresses) is list and len(addresses) <= MAX_ADDRESSES_PER_ORG
        and all(_is_text(a, MAX_ADDRESS) for a in addresses)
    )
    if not ok:
        raise DecodeError(Reason.MALFORMED, "federation list: an organisation field is invalid")
    try:
        kind_value = OrgKind(kind)
    except ValueError as exc:
        raise DecodeError(Reason.MALFORMED, "federation list: unknown organisation kind") from exc
    return Organisation(org_id, name, kind_value, tuple(nodes), tuple(addresses))


def decode_federation_list(data: bytes) -> FederationList:
    """Parse list bytes (structure only, no signature check). Raises only DecodeError."""
    outer = _cbor.loads_canonical(data, "federation list", MAX_LIST_SIZE)
    if type(outer) is not list or len(outer) != 2 or not all(type(x) is bytes for x in outer):
        raise DecodeError(Reason.MALFORMED, "federation list: expected [body, signature]")
    body_bytes, signature = outer
    if len(signature) != SIGNATURE_SIZE:
        raise DecodeError(Reason.MALFORMED, "federation list: signature is not 64 bytes")
    body = _cbor.loads_canonical(body_bytes, "federation list body", MAX_LIST_SIZE)
    if type(body) is not list or not body or type(body[0]) is not int:
        raise DecodeError(Reason.MALFORMED, "federation list body: expected [format, ...]")
    if body[0] != LIST_FORMAT:
        raise DecodeError(Reason.UNKNOWN_VERSION, f"federation list format {body[0]}")
    if len(body) != 6:
        raise DecodeError(Reason.MALFORMED, "federation list body: expected 6 fields")
    _, issuer, version, issued, max_age, orgs = body
    ok = (_is_key(issuer) and _is_u64(version) and _is_u64(issued) and _is_u64(max_age)
          and max_age > 0 and issued + max_age <= _U64)
    if not ok or type(orgs) is not list or len(orgs) > MAX_ORGS:
        raise DecodeError(Reason.MALFORMED, "federation list body: a field is invalid")
    decoded = tuple(_decode_org(o) for o in orgs)
    if not all(a.org_id < b.org_id for a, b in itertools.pairwise(decoded)):
        raise DecodeError(Reason.MALFORMED, "federation list: organisations not sorted/unique")
    keys = [k for o in decoded for k in o.node_keys] + [o.org_id for o in decoded]
    if len(set(keys)) != len(keys):
        raise DecodeError(Reason.MALFORMED, "federation list: a key is listed twice")
    return FederationList(issuer, version, issued, max_age, decoded, signature, bytes(data))


def verify_federation_list(flist: FederationList, issuer: bytes, now_ms: int) -> None:
    """Raise :class:`FederationError` unless ``flist`` is ``issuer``'s and fresh at ``now_ms``."""
    if flist.issuer != issuer:
        raise FederationError(Reason.WRONG_ISSUER, "federation list from another issuer")
    if not verify(issuer, Domain.FEDERATION, flist.body(), flist.signature):
        raise FederationError(Reason.BAD_SIGNATURE, "federation list signature invalid")
    if not flist.is_fresh(now_ms):
        raise FederationError(
            Reason.EXPIRED,
            f"federation list version {flist.version} is not valid at this time "
            f"(issued {flist.issued_ms}, expires {flist.expires_ms()})",
        )


class FederationStatus(enum.Enum):
    """What the trusted list says about a peer. Only KNOWN admits it. Values are stable."""

    KNOWN = "known"
    """A still-valid list names the peer's node key."""
    UNKNOWN = "unknown"
    """The list is valid but does not name the key: refuse, and refetch the list."""
    STALE = "stale"
    """The list is older than its maximum age: every peer is refused (fail closed)."""
    NO_LIST = "no_list"
    """No list was ever accepted: every peer is refused."""


@dataclass(frozen=True, slots=True)
class PeerLookup:
    """The answer of :meth:`FederationRegistry.lookup`, with a reason to log/audit."""

    status: FederationStatus
    org: Organisation | None
    reason: str

    @property
    def allowed(self) -> bool:
        return self.status is FederationStatus.KNOWN


class FederationRegistry:
    """The federation list this node trusts, from one configured issuer.

    Feed it list bytes with :meth:`accept` (from a file, a URL fetcher, or a peer —
    the source does not matter, the signature does) and ask :meth:`lookup`.
    """

    __slots__ = ("_current", "issuer")

    def __init__(self, issuer: bytes, initial: bytes | None = None, now_ms: int = 0) -> None:
        if len(issuer) != PUBLIC_KEY_SIZE:
            raise ValueError("issuer must be a 32-byte Ed25519 public key")
        self.issuer = issuer
        self._current: FederationList | None = None
        if initial is not None:
            self.accept(initial, now_ms)

    @property
    def current(self) -> FederationList | None:
        """The trusted list (possibly stale by now), or None."""
        return self._current

    def accept(self, data: bytes, now_ms: int) -> bool:
        """Verify ``data`` and make it the trusted list. True if it replaced the list.

        Returns False for a re-delivery of the trusted list (same version, same bytes).
        Raises DecodeError or :class:`FederationError`; the trusted list is then unchanged.
        """
        flist = decode_federation_list(data)
        verify_federation_list(flist, self.issuer, now_ms)
        current = self._current
        if current is not None:
            if flist.version == current.version and flist.raw == current.raw:
                return False
            if flist.version <= current.version:
                raise FederationError(
                    Reason.ROLLBACK,
                    f"federation list version {flist.version} does not replace "
                    f"version {current.version}",
                )
        self._current = flist
        return True

    def status(self, now_ms: int) -> tuple[FederationStatus, str]:
        """The list's own state at ``now_ms``: KNOWN if fresh, else STALE or NO_LIST."""
        current = self._current
        if current is None:
            return FederationStatus.NO_LIST, "no federation list accepted yet: refusing all peers"
        if not current.is_fresh(now_ms):
            return FederationStatus.STALE, (
                f"federation list version {current.version} expired at {current.expires_ms()} "
                f"ms: refusing all peers until a newer list is accepted"
            )
        return FederationStatus.KNOWN, f"federation list version {current.version} is valid"

    def lookup(self, node_key: bytes, now_ms: int) -> PeerLookup:
        """May the node with ``node_key`` be trusted as a federation member now?"""
        status, reason = self.status(now_ms)
        if status is not FederationStatus.KNOWN:
            return PeerLookup(status, None, reason)
        assert self._current is not None
        org = self._current.org_of_node(node_key)
        if org is None:
            return PeerLookup(FederationStatus.UNKNOWN, None,
                              "node key not in the federation list: refused (refetch the list)")
        return PeerLookup(FederationStatus.KNOWN, org, f"node of listed organisation {org.name!r}")

    def organisations(self, now_ms: int) -> Mapping[bytes, Organisation]:
        """Organisations of the trusted list by id; empty unless the list is fresh."""
        if self._current is None or not self._current.is_fresh(now_ms):
            return {}
        return self._current.by_id()
