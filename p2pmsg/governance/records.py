"""Records of processing activities (GDPR Art. 30) generated from configuration (pure).

Fill a :class:`ProcessingConfig` from the node's configuration (its federation
list gives the recipients, its :class:`~.retention.RetentionConfig` the periods)
and call :func:`render_records` for a Markdown document the data-protection officer
completes and signs. Fields the software cannot know (legal basis details, contact
persons) are explicit inputs, never guessed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .federation import Organisation
from .retention import DAY_MS, RetentionConfig

__all__ = ["DEFAULT_MEASURES", "ProcessingConfig", "render_records"]

DEFAULT_MEASURES = (
    "End-to-end encryption of all message content (XChaCha20-Poly1305 epoch keys, "
    "sealed per device; rekey on every membership change or revocation).",
    "Signed append-only logs (Ed25519, BLAKE2b-256): integrity and authorship verifiable.",
    "Federation list signed by the governance issuer, maximum age enforced (fail closed).",
    "Need-to-know replication: an organisation receives a room only if one of its "
    "devices is a member or it is a declared relay.",
    "Retention purge and erasure delete payloads with SQLite secure_delete and WAL "
    "truncation; crypto-shredding of epoch secrets.",
    "Tamper-evident, node-signed audit log without message content.",
)


@dataclass(frozen=True, slots=True)
class ProcessingConfig:
    controller: str
    """Name and address of the controller (the organisation running the node)."""
    dpo_contact: str
    purposes: tuple[str, ...] = ("Communication between healthcare professionals about "
                                 "patient care",)
    legal_basis: str = "Art. 6(1)(c),(e) and Art. 9(2)(h),(3) GDPR; national law (e.g. §22 BDSG)"
    data_subjects: tuple[str, ...] = ("Patients", "Staff of participating organisations")
    data_categories: tuple[str, ...] = ("Health data (Art. 9) in message content",
                                        "Device keys and organisation identifiers",
                                        "Connection metadata in the audit log")
    recipients: tuple[Organisation, ...] = ()
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    room_names: Mapping[bytes, str] = field(default_factory=dict)
    """Optional labels for rooms with their own retention (never patient names)."""
    third_countries: str = "None: all nodes and relays are operated in the EU/EEA."
    measures: tuple[str, ...] = DEFAULT_MEASURES


def _period(ms: int | None) -> str:
    if ms is None:
        return "kept until erased (no automatic purge)"
    days = ms / DAY_MS
    return f"{days:g} days" if days >= 1 else f"{ms} ms"


def _bullets(items: Iterable[str]) -> list[str]:
    return [f"- {item}" for item in items]


def render_records(config: ProcessingConfig) -> str:
    """The Markdown record of processing for ``config`` (deterministic)."""
    ret = config.retention
    lines = ["# Record of processing activities (Art. 30 GDPR)", "",
             f"**Controller:** {config.controller}  ", f"**DPO contact:** {config.dpo_contact}",
             "", "## Purposes", *_bullets(config.purposes), "",
             "## Legal basis", config.legal_basis, "",
             "## Categories of data subjects", *_bullets(config.data_subjects), "",
             "## Categories of personal data", *_bullets(config.data_categories), "",
             "## Recipients (federated organisations)", ""]
    if config.recipients:
        lines += ["| organisation | kind | organisation id | nodes |", "|---|---|---|---|"]
        for org in sorted(config.recipients, key=lambda o: o.name):
            lines.append(f"| {org.name} | {org.kind.value} | `{org.org_id.hex()[:16]}…` | "
                         f"{len(org.node_keys)} |")
        lines += ["", "Each receives only the rooms one of its devices is a member of."]
    else:
        lines.append("None configured.")
    lines += ["", "## Transfers to third countries", config.third_countries, "",
              "## Retention periods", f"- Default: {_period(ret.default_ms)}"]
    for org_id, ms in sorted(ret.per_author_org.items()):
        name = next((o.name for o in config.recipients if o.org_id == org_id),
                    org_id.hex()[:16])
        lines.append(f"- Content written by {name}: {_period(ms)}")
    for topic, ms in sorted(ret.per_room.items()):
        label = config.room_names.get(topic, f"room {topic.hex()[:16]}")
        lines.append(f"- {label}: {_period(ms)}")
    if ret.legal_holds:
        lines.append(f"- Legal hold (purge suspended): {len(ret.legal_holds)} room(s)")
    lines += ["- Membership, key distribution and certificates: kept for the life of the "
              "room (needed to verify it; contain no content)",
              "- Purge is local to this node; other organisations apply their own periods.",
              "", "## Technical and organisational measures (Art. 32)",
              *_bullets(config.measures), ""]
    return "\n".join(lines)
