"""The organisation control topic: device certificates and revocations (pure).

Theory of operation
-------------------
Each organisation has one control topic, ``control_topic(org_root)`` (a
domain-separated BLAKE2b-256 of the root key). Its entries carry

* ``[CERTIFICATE, 1, cert_bytes]`` — a :class:`~p2pmsg.certs.DeviceCertificate`
  signed by the org root (several per device are fine: renewals);
* ``[REVOCATION, 1, device, effective_ts, [[topic, max_seq], ...], reason]`` — the
  device is revoked.

**Who may write.** Control entries count only if written by the org root key itself
or by an ADMIN device of the org that is acceptable at that entry (certificate valid
at the entry's time, not revoked before it). Entries are applied in the
deterministic :func:`~p2pmsg.messaging.order.total_order`; each control entry is
judged against the revocations applied *before* it (a later revocation does not
undo control entries already applied; re-issue if needed).

**Revocation point** (our choice; docs/security.md discusses it). An entry E by a
revoked device D is rejected if *either*

1. ``E.timestamp >= effective_ts`` (an HLC value: "from this moment on"), or
2. the revocation lists E's log in ``cutoffs`` and ``E.seq > max_seq`` (the log was
   *sealed* at the height the admin had seen).

Rule 1 alone cannot stop a thief from back-dating HLC timestamps; rule 2 pins the
logs the admin knows about exactly. Admins should list every log of D they hold
(:func:`compose_revocation` takes them) and choose ``effective_ts`` no later than
the suspected loss. Several revocations of one device combine: any of them rejects.

**Certificate validity** is checked at the entry's own time (``physical_ms`` of its
HLC timestamp), so a certificate expiring later does not retroactively reject old
entries, while entries stamped outside the window are rejected.

**Persons.** A version-2 certificate attributes its device to a pseudonymous
person id (:mod:`p2pmsg.certs`). A device's person is fixed by its *first accepted*
certificate in the total order (None for a version-1 certificate): a later
certificate for the same device key naming another person — or no person where the
first named one, or vice versa — is ignored (reason "certificate names another
person for this device"), so nobody can move a device, and the room memberships it
carries, between persons by re-certifying it. Renewals name the same person.
:meth:`OrgState.person_of` and :meth:`OrgState.devices_of` answer the mapping both
ways; rooms use them to make a person, not a device, the member (:mod:`.room`).

Build state with :meth:`OrgState.from_entries`; ask :meth:`OrgState.accepts` about
any entry (room or control) and :meth:`OrgState.active_devices` for the devices that
should receive the next epoch key.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

from ..certs import DeviceCertificate, Role, decode_certificate, verify_certificate
from ..entry import Entry
from ..errors import CertificateError, DecodeError, Reason
from ..hlc import physical_ms
from ._codec import check_fields, encode, is_b32, is_blob, is_str, is_uint, read_frame
from .kinds import CONTROL_KINDS, VERSIONS, Kind
from .order import total_order

__all__ = [
    "ControlPayload",
    "Device",
    "OrgState",
    "Revocation",
    "UnknownControl",
    "compose_certificate",
    "compose_revocation",
    "control_topic",
    "decode_control_payload",
]

_CONTROL_DOMAIN = b"p2pmsg/org-control/v1\x00"
MAX_CUTOFFS = 4096
MAX_REASON = 256


def control_topic(org_root: bytes) -> bytes:
    """The topic id of an organisation's control stream."""
    return hashlib.blake2b(_CONTROL_DOMAIN + org_root, digest_size=32).digest()


@dataclass(frozen=True, slots=True)
class Revocation:
    """"Device ``device`` is revoked": see the module docstring for the exact rule."""

    device: bytes
    effective_ts: int
    """HLC timestamp: entries stamped at or after it are rejected."""
    cutoffs: tuple[tuple[bytes, int], ...] = ()
    """(topic, max_seq) pairs, sorted: entries beyond max_seq in that log are rejected."""
    reason: str = ""

    def rejects(self, topic: bytes, seq: int, timestamp: int) -> bool:
        if timestamp >= self.effective_ts:
            return True
        return any(t == topic and seq > max_seq for t, max_seq in self.cutoffs)


@dataclass(frozen=True, slots=True)
class UnknownControl:
    """A control payload of a kind or version this implementation does not know."""

    kind: int
    version: int
    raw: bytes


ControlPayload: TypeAlias = DeviceCertificate | Revocation | UnknownControl


def compose_certificate(cert: DeviceCertificate) -> bytes:
    """The control payload publishing ``cert``."""
    return encode(Kind.CERTIFICATE, VERSIONS[Kind.CERTIFICATE], cert.to_bytes())


def compose_revocation(
    device: bytes,
    effective_ts: int,
    cutoffs: Mapping[bytes, int] | None = None,
    reason: str = "",
) -> bytes:
    """The control payload revoking ``device`` (append it with the root or an admin key).

    ``cutoffs`` maps topic -> the last seq of ``device``'s log in that topic to keep.
    """
    pairs = sorted((cutoffs or {}).items())
    data = encode(Kind.REVOCATION, VERSIONS[Kind.REVOCATION], device, effective_ts,
                  [list(p) for p in pairs], reason)
    try:
        decode_control_payload(data)
    except DecodeError as exc:
        raise ValueError(str(exc)) from exc
    return data


def _is_cutoffs(value: object) -> bool:
    if type(value) is not list or len(value) > MAX_CUTOFFS:
        return False
    ok = all(type(c) is list and len(c) == 2 and is_b32(c[0]) and is_uint(c[1]) for c in value)
    return ok and all(a[0] < b[0] for a, b in itertools.pairwise(value))


def decode_control_payload(data: bytes) -> ControlPayload:
    """Parse a control-topic payload. Raises only :class:`DecodeError`.

    A certificate is only *parsed* here; :class:`OrgState` checks its signature. A
    certificate of a version this implementation does not know (newer than
    :data:`~p2pmsg.certs.CERT_VERSION`) is kept as :class:`UnknownControl`.
    """
    frame = read_frame(data, "control payload")
    if frame.kind not in CONTROL_KINDS or frame.version > VERSIONS[Kind(frame.kind)]:
        return UnknownControl(frame.kind, frame.version, bytes(data))
    if frame.kind == Kind.CERTIFICATE:
        (cert_bytes,) = check_fields(frame, "control certificate", [is_blob(1024)])
        try:
            return decode_certificate(cert_bytes)
        except DecodeError as exc:
            if exc.reason is Reason.UNKNOWN_VERSION:
                return UnknownControl(frame.kind, frame.version, bytes(data))
            raise
    device, ts, cutoffs, reason = check_fields(
        frame, "control revocation", [is_b32, is_uint, _is_cutoffs, is_str(MAX_REASON)]
    )
    return Revocation(device, ts, tuple((t, s) for t, s in cutoffs), reason)


@dataclass(frozen=True, slots=True)
class Device:
    """What the organisation says about one device key."""

    key: bytes
    org: bytes
    certificates: tuple[DeviceCertificate, ...]
    revocations: tuple[Revocation, ...] = ()

    def certificate_at(self, ms: int) -> DeviceCertificate | None:
        """The newest certificate valid at ``ms`` (milliseconds), if any."""
        valid = [c for c in self.certificates if c.valid_from <= ms < c.valid_until]
        return max(valid, key=lambda c: (c.valid_from, c.signature), default=None)

    @property
    def revoked(self) -> bool:
        return bool(self.revocations)

    @property
    def person(self) -> bytes | None:
        """The person fixed by the first accepted certificate (None: device only)."""
        return self.certificates[0].person if self.certificates else None


@dataclass
class OrgState:
    """The organisation's device set as its control topic says. Deterministic.

    Build with :meth:`from_entries`; it is a pure function of the set of entries.
    """

    root: bytes
    devices: dict[bytes, Device] = field(default_factory=dict)
    ignored: dict[bytes, str] = field(default_factory=dict)
    """Control entries that did not count, by id, with a short reason."""
    unknown: tuple[bytes, ...] = ()
    """Ids of entries with payloads of unknown kinds (kept, not interpreted)."""
    persons: dict[bytes, tuple[bytes, ...]] = field(default_factory=dict)
    """person id -> every certified device key of that person, in acceptance order."""

    @classmethod
    def from_entries(
        cls, root: bytes, items: Iterable[tuple[Entry, bytes | None]]
    ) -> OrgState:
        """Resolve the control topic from (entry, payload or None) pairs.

        Entries of other topics and entries without payloads are ignored (reported
        in :attr:`ignored`). Signatures and log linkage must already be verified
        (the store holds only verified entries).
        """
        state = cls(root)
        topic = control_topic(root)
        payloads: dict[bytes, bytes | None] = {}
        entries: list[Entry] = []
        for entry, payload in items:
            if entry.topic != topic:
                state.ignored[entry.id] = "wrong topic"
                continue
            entries.append(entry)
            if payloads.get(entry.id) is None:
                payloads[entry.id] = payload
        unknown: list[bytes] = []
        for entry in total_order(entries):
            reason = state._apply(entry, payloads[entry.id], unknown)
            if reason is not None:
                state.ignored[entry.id] = reason
        state.unknown = tuple(unknown)
        return state

    def _apply(self, entry: Entry, payload: bytes | None, unknown: list[bytes]) -> str | None:
        if not self._may_administer(entry):
            return "author is not the root or an admin device"
        if payload is None:
            return "payload missing"
        try:
            item = decode_control_payload(payload)
        except DecodeError:
            return "payload malformed"
        if isinstance(item, UnknownControl):
            unknown.append(entry.id)
            return None
        if isinstance(item, Revocation):
            if item.device == self.root:
                return "the root key cannot be revoked here"
            old = self.devices.get(item.device) or Device(item.device, self.root, ())
            self.devices[item.device] = Device(
                old.key, old.org, old.certificates, (*old.revocations, item)
            )
            return None
        try:
            verify_certificate(item, self.root, item.valid_from)  # issuer + signature only
        except CertificateError:
            return "certificate does not verify for this organisation"
        old = self.devices.get(item.device) or Device(item.device, self.root, ())
        if old.certificates and item.person != old.person:
            return "certificate names another person for this device"
        if item not in old.certificates:
            self.devices[item.device] = Device(
                old.key, old.org, (*old.certificates, item), old.revocations
            )
            if item.person is not None and not old.certificates:
                self.persons[item.person] = (*self.persons.get(item.person, ()), item.device)
        return None

    def _may_administer(self, entry: Entry) -> bool:
        if entry.author == self.root:
            return True
        h = entry.header
        cert = self._valid_cert(entry.author, h.topic, h.seq, h.timestamp)
        return cert is not None and cert.role is Role.ADMIN

    def _valid_cert(
        self, device: bytes, topic: bytes, seq: int, timestamp: int
    ) -> DeviceCertificate | None:
        known = self.devices.get(device)
        if known is None:
            return None
        if any(r.rejects(topic, seq, timestamp) for r in known.revocations):
            return None
        return known.certificate_at(physical_ms(timestamp))

    def accepts(self, author: bytes, topic: bytes, seq: int, timestamp: int) -> bool:
        """True iff an entry by ``author`` at (topic, seq, HLC timestamp) is acceptable:
        a certificate of this org is valid at its time and no revocation rejects it."""
        return self._valid_cert(author, topic, seq, timestamp) is not None

    def accepts_entry(self, entry: Entry) -> bool:
        """:meth:`accepts` for an entry's header."""
        h = entry.header
        return self.accepts(h.author, h.topic, h.seq, h.timestamp)

    def is_active(self, device: bytes, now_ms: int) -> bool:
        """True iff ``device`` has a certificate valid now and was never revoked.

        Active devices are the ones that may receive a new epoch key.
        """
        known = self.devices.get(device)
        return known is not None and not known.revoked and known.certificate_at(now_ms) is not None

    def person_of(self, device: bytes) -> bytes | None:
        """The person ``device`` belongs to (fixed by its first accepted certificate),
        or None (unknown device, or certified without a person)."""
        known = self.devices.get(device)
        return None if known is None else known.person

    def person_devices(self, person: bytes) -> tuple[bytes, ...]:
        """Every device ever certified for ``person``, active or not, in acceptance order."""
        return self.persons.get(person, ())

    def devices_of(self, person: bytes, now_ms: int) -> dict[bytes, DeviceCertificate]:
        """The *active* devices of ``person`` (:meth:`is_active`) with their current
        certificates."""
        result: dict[bytes, DeviceCertificate] = {}
        for key in self.person_devices(person):
            device = self.devices[key]
            cert = device.certificate_at(now_ms)
            if cert is not None and not device.revoked:
                result[key] = cert
        return result

    def active_devices(self, now_ms: int) -> dict[bytes, DeviceCertificate]:
        """Every active device with its current certificate (role, display name)."""
        result: dict[bytes, DeviceCertificate] = {}
        for key, device in self.devices.items():
            cert = device.certificate_at(now_ms)
            if cert is not None and not device.revoked:
                result[key] = cert
        return result
