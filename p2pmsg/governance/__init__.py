"""Governance: federation list, need-to-know policy, retention, erasure, export, audit.

What makes p2pmsg acceptable to a data-protection officer; docs/gdpr.md maps each
GDPR article to the module below that supports it, and its limits.

Pure (no I/O; time is an argument): :mod:`.federation` (signed, versioned list of
organisations; fail closed when stale), :mod:`.policy` (:class:`GovernancePolicy`,
the node's :class:`p2pmsg.policy.Policy`), :func:`.retention.plan_purge`,
:mod:`.breach` (what could a device read), :mod:`.records` (Art. 30 document).

Store / file I/O (outside the sans-IO core): :mod:`.audit` (hash-chained signed
audit log in its own SQLite file), :func:`.retention.run_purge`,
:mod:`.erasure` (Art. 17 with tombstone and crypto-shredding), :mod:`.redaction`
(erase what a room's redactions removed; planned by
:func:`p2pmsg.messaging.redaction.plan_redactions`), :mod:`.export`
(Art. 15/20 bundles, offline verification).
"""

from .audit import AuditError as AuditError
from .audit import AuditKind as AuditKind
from .audit import AuditLog as AuditLog
from .audit import verify_audit_export as verify_audit_export
from .breach import device_exposure as device_exposure
from .breach import node_exposure as node_exposure
from .erasure import EpochSecretStore as EpochSecretStore
from .erasure import MemoryEpochSecrets as MemoryEpochSecrets
from .erasure import ShredScope as ShredScope
from .erasure import Tombstone as Tombstone
from .erasure import erase_person as erase_person
from .erasure import verify_tombstone as verify_tombstone
from .export import export_person as export_person
from .export import export_room as export_room
from .export import verify_bundle as verify_bundle
from .export import write_bundle as write_bundle
from .federation import FederationError as FederationError
from .federation import FederationList as FederationList
from .federation import FederationRegistry as FederationRegistry
from .federation import FederationStatus as FederationStatus
from .federation import Organisation as Organisation
from .federation import OrgKind as OrgKind
from .federation import decode_federation_list as decode_federation_list
from .federation import issue_federation_list as issue_federation_list
from .policy import GovernancePolicy as GovernancePolicy
from .policy import LocalDefault as LocalDefault
from .policy import LocalPolicy as LocalPolicy
from .records import ProcessingConfig as ProcessingConfig
from .records import render_records as render_records
from .redaction import RedactionResult as RedactionResult
from .redaction import erase_redactions as erase_redactions
from .retention import PayloadClass as PayloadClass
from .retention import RetentionConfig as RetentionConfig
from .retention import classify_payload as classify_payload
from .retention import plan_purge as plan_purge
from .retention import run_purge as run_purge

__all__ = [
    "AuditError",
    "AuditKind",
    "AuditLog",
    "EpochSecretStore",
    "FederationError",
    "FederationList",
    "FederationRegistry",
    "FederationStatus",
    "GovernancePolicy",
    "LocalDefault",
    "LocalPolicy",
    "MemoryEpochSecrets",
    "OrgKind",
    "Organisation",
    "PayloadClass",
    "ProcessingConfig",
    "RedactionResult",
    "RetentionConfig",
    "ShredScope",
    "Tombstone",
    "classify_payload",
    "decode_federation_list",
    "device_exposure",
    "erase_person",
    "erase_redactions",
    "export_person",
    "export_room",
    "issue_federation_list",
    "node_exposure",
    "plan_purge",
    "render_records",
    "run_purge",
    "verify_audit_export",
    "verify_bundle",
    "verify_tombstone",
    "write_bundle",
]
