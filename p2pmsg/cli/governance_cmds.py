"""GDPR and federation commands: federation lists, retention, erasure, export, audit.

``federation issue|show`` and ``verify-bundle`` need no node. The others read the
node's ``[governance]`` section (docs/operations.md). Commands that *write* the
store — ``retention purge`` without ``--dry-run`` and ``erase`` — take the data
directory's writer lock, so they run only while the node is stopped (exit 7
otherwise); the running daemon purges on its own timer. Reading commands
(``export``, ``exposure``, ``audit``, ``records``, ``retention purge --dry-run``)
work while the node runs. Output never contains message content, except the
export bundle file itself (mode 0600), which is the point of an export.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import sys
import time
import tomllib
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..blobs import BlobStore
from ..certs import PERSON_ID_SIZE
from ..daemon.api import daemon_keyring
from ..daemon.config import ConfigError, DaemonConfig, parse_key_hex
from ..daemon.governance import (
    GovernanceConfig,
    epoch_keys,
    load_federation_file,
    org_states,
    room_views,
    run_retention,
)
from ..daemon.state import writer_lock
from ..errors import P2PMsgError, StoreError
from ..governance.audit import AuditKind, AuditLog
from ..governance.breach import device_exposure
from ..governance.erasure import erase_person, shred_epoch_payloads
from ..governance.export import export_person, export_room, verify_bundle, write_bundle
from ..governance.federation import (
    DEFAULT_MAX_AGE_MS,
    FederationList,
    FederationRegistry,
    Organisation,
    OrgKind,
    decode_federation_list,
    issue_federation_list,
    verify_federation_list,
)
from ..governance.records import render_records
from ..identity import Identity, short_id
from ..keyfile import load_identity
from ..messaging.org import OrgState
from ..messaging.room import RoomView
from ..messenger.keyring import FileKeyring
from ..store.sqlite import SqliteStore

__all__ = [
    "add_governance_commands",
    "cmd_audit_export",
    "cmd_audit_list",
    "cmd_audit_verify",
    "cmd_erase",
    "cmd_export_person",
    "cmd_export_room",
    "cmd_exposure",
    "cmd_federation_issue",
    "cmd_federation_show",
    "cmd_records",
    "cmd_retention_purge",
    "cmd_verify_bundle",
]

_MAX_DESCRIPTION = 4 * 1024 * 1024


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _iso(ms: int) -> str:
    dt = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _gov(config: DaemonConfig) -> GovernanceConfig:
    if config.governance is None:
        raise ConfigError(f"{config.path}: no [governance] section (docs/operations.md)")
    return config.governance


def _open_store(config: DaemonConfig) -> SqliteStore:
    if not config.store_path.is_file():
        raise StoreError(f"{config.store_path}: no store file (create one with 'p2pmsg node init')")
    return SqliteStore(config.store_path)


def _open_audit(config: DaemonConfig, *, create: bool = True) -> AuditLog:
    path = _gov(config).audit_log
    if not create and not path.is_file():
        raise StoreError(f"{path}: no audit log yet (the daemon creates it on first run)")
    return AuditLog(path, load_identity(config.key))


def _trusted_list(config: DaemonConfig) -> FederationList | None:
    """The configured list if it verifies now, else None (with a warning on stderr)."""
    gov = _gov(config)
    try:
        registry = FederationRegistry(gov.issuer, load_federation_file(gov.federation_list),
                                      _now_ms())
    except OSError as exc:
        print(f"p2pmsg: warning: federation list not readable: {exc.strerror or exc}",
              file=sys.stderr)
        return None
    except P2PMsgError as exc:  # DecodeError / FederationError
        print(f"p2pmsg: warning: federation list refused: {exc}", file=sys.stderr)
        return None
    return registry.current


def _orgs(config: DaemonConfig, store: SqliteStore) -> dict[bytes, OrgState]:
    """The listed organisations' states (the list is read and checked once per call)."""
    flist = _trusted_list(config)
    return org_states(store, [o.org_id for o in flist.organisations] if flist else [])


def _views(config: DaemonConfig, store: SqliteStore) -> list[RoomView]:
    return room_views(store, _orgs(config, store))


def _devices(values: list[str]) -> list[bytes]:
    return [parse_key_hex(v, "--device") for v in values]


def _person(text: str) -> bytes:
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError:
        raw = b""
    if len(raw) != PERSON_ID_SIZE:
        raise ConfigError(f"--person: expected {2 * PERSON_ID_SIZE} hex digits (a person id)")
    return raw


def _person_devices(orgs: Mapping[bytes, OrgState], persons: list[bytes]) -> list[bytes]:
    """Every device ever certified for ``persons`` in the known organisations
    (revoked and expired ones too: their content is the person's as well)."""
    found = [d for state in orgs.values() for p in persons for d in state.person_devices(p)]
    if not found:
        raise ConfigError("--person: no device of this person is certified in the "
                          "organisations this node knows")
    return found


# -- federation -------------------------------------------------------------------------

def _org_from(item: Any, index: int) -> Organisation:
    where = f"organisations[{index}]"
    if not isinstance(item, dict) or not {"id", "name", "kind"} <= set(item):
        raise ConfigError(f"{where}: needs 'id', 'name', 'kind' (and 'nodes', 'addresses')")
    try:
        kind = OrgKind(item["kind"])
    except ValueError:
        raise ConfigError(f"{where}.kind: one of {', '.join(k.value for k in OrgKind)}") from None
    nodes = item.get("nodes", [])
    addresses = item.get("addresses", [])
    if not isinstance(nodes, list) or not isinstance(addresses, list) \
            or not all(isinstance(a, str) for a in addresses) or not isinstance(item["name"], str):
        raise ConfigError(f"{where}: 'nodes'/'addresses' must be arrays of strings")
    return Organisation(parse_key_hex(item["id"], f"{where}.id"), item["name"], kind,
                        tuple(parse_key_hex(n, f"{where}.nodes") for n in nodes),
                        tuple(addresses))


def _read_description(path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        raw = fh.read(_MAX_DESCRIPTION + 1)
    if len(raw) > _MAX_DESCRIPTION:
        raise ConfigError(f"{path}: description larger than 4 MiB")
    try:
        text = raw.decode("utf-8")
        data: Any = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:  # TOMLDecodeError is a ValueError
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'}: "
                          f"{exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a table/object at the top")
    return data


def cmd_federation_issue(args: argparse.Namespace) -> int:
    path = Path(args.description)
    data = _read_description(path)
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ConfigError(f"{path}: version: a positive integer is required")
    issued = data.get("issued_ms", _now_ms())
    hours = data.get("max_age_hours", DEFAULT_MAX_AGE_MS / 3_600_000)
    if not isinstance(issued, int) or isinstance(hours, bool) \
            or not isinstance(hours, int | float) or hours <= 0:
        raise ConfigError(f"{path}: issued_ms must be an integer, max_age_hours positive")
    raw_orgs = data.get("organisations", [])
    if not isinstance(raw_orgs, list):
        raise ConfigError(f"{path}: organisations: an array of tables")
    orgs = [_org_from(o, i) for i, o in enumerate(raw_orgs)]
    issuer = load_identity(args.key)
    try:
        flist = issue_federation_list(issuer, version, issued, orgs,
                                      int(hours * 3_600_000))
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    out = Path(args.out)
    out.write_bytes(flist.raw)
    print(f"federation list version {flist.version}: {len(flist.organisations)} organisations, "
          f"issuer {flist.issuer.hex()}, expires {_iso(flist.expires_ms())} -> {out}")
    return 0


def cmd_federation_show(config: DaemonConfig | None, args: argparse.Namespace) -> int:
    data = load_federation_file(Path(args.file))
    flist = decode_federation_list(data)
    if args.issuer:
        issuer, origin = parse_key_hex(args.issuer, "--issuer"), "--issuer"
    elif config is not None and config.governance is not None:
        issuer, origin = config.governance.issuer, "configured issuer"
    else:
        issuer, origin = flist.issuer, "the list's own issuer key (integrity, not origin)"
    verify_federation_list(flist, issuer, _now_ms())
    print(f"federation list version {flist.version} from issuer {flist.issuer.hex()}")
    print(f"verified against: {origin}")
    print(f"issued {_iso(flist.issued_ms)}, valid until {_iso(flist.expires_ms())}")
    for org in flist.organisations:
        print(f"{org.org_id.hex()}  {org.kind.value:12}  {org.name}  nodes={len(org.node_keys)}"
              f"  {' '.join(org.addresses) or '-'}")
        for key in org.node_keys:
            print(f"    node {key.hex()}")
    return 0


# -- retention and erasure ------------------------------------------------------------------

def _existing_keyring(config: DaemonConfig, identity: Identity) -> FileKeyring | None:
    path = config.data_dir / "keyring.db"
    return FileKeyring(path, identity) if path.exists() else None


def cmd_retention_purge(config: DaemonConfig, args: argparse.Namespace) -> int:
    gov = _gov(config)
    now = _now_ms()
    identity = load_identity(config.key)
    with contextlib.ExitStack() as stack:
        if not args.dry_run:
            stack.enter_context(writer_lock(config.data_dir))
        store = stack.enter_context(_open_store(config))
        audit = None if args.dry_run else stack.enter_context(_open_audit(config))
        blobs = stack.enter_context(_open_blobs(config))
        run = run_retention(gov, store, now, identity=identity, orgs=_orgs(config, store),
                            audit=audit, blobs=blobs,
                            keyring=_existing_keyring(config, identity), dry_run=args.dry_run)
    plan = run.plan
    verb = "would erase" if args.dry_run else "erased"
    per_room = Counter(c.topic for c in plan.erase)
    for topic, count in sorted(per_room.items()):
        name = config.topic_name(topic) or "-"
        print(f"{topic.hex()}  {name:16}  {verb} {count} payloads")
    print(f"{verb} {len(plan.erase)} payloads; {plan.held} held (legal hold), "
          f"{plan.kept_structure} structure kept, {plan.kept_unknown} unknown kept")
    blob_verb = "would delete" if args.dry_run else "deleted"
    print(f"attachments: {blob_verb} {plan.blobs_deleted} of purged messages, "
          f"{len(run.expired.deleted)} past retention ({run.expired.held} held)")
    if gov.audit_retention_ms is not None and not args.dry_run:
        print(f"audit log: pruned {run.audit_pruned} records older than the retention")
    return 0


def cmd_erase(config: DaemonConfig, args: argparse.Namespace) -> int:
    _gov(config)
    devices = _devices(args.device)
    persons = [_person(v) for v in args.person]
    if not devices and not persons:
        raise ConfigError("erase: give at least one --device or --person")
    now = _now_ms()
    with writer_lock(config.data_dir), _open_store(config) as store, \
            _open_audit(config) as audit, contextlib.ExitStack() as stack:
        identity = load_identity(config.key)
        orgs = _orgs(config, store)
        if persons:
            devices += _person_devices(orgs, persons)
        # Crypto-shredding: forget the epochs only the erased content needed in the
        # daemon's keyring (data_dir/keyring.db, created if missing so the shredding
        # sticks); the keys it still holds first let the attachments of the erased
        # messages be found.
        secrets = daemon_keyring(config, identity)
        blobs = stack.enter_context(_open_blobs(config))
        views = room_views(store, orgs)
        keys = epoch_keys(views, identity, secrets) if blobs is not None else {}
        stone = erase_person(store, devices, identity, args.request, now, now,
                             secrets=secrets, audit=audit, blobs=blobs, keys=keys)
        # the shredded epochs' secrets are also sealed to this node in the room log
        shredded = shred_epoch_payloads(store, views, stone.shredded, identity.public_key)
        if shredded:
            audit.append(AuditKind.KEY_ROTATED, now, forgotten=len(stone.shredded),
                         epoch_payloads=len(shredded), reason="erasure",
                         tombstone=stone.digest().hex())
    if args.out:
        Path(args.out).write_bytes(stone.to_bytes())
    print(json.dumps({
        "tombstone": stone.to_bytes().hex(), "digest": stone.digest().hex(),
        "node": stone.node.hex(), "request": stone.request_ref,
        "devices": [d.hex() for d in stone.devices], "erased": len(stone.erased),
        "shredded": len(stone.shredded), "executed_ms": stone.executed_ms,
    }, sort_keys=True))
    return 0


# -- export ------------------------------------------------------------------------------------

def _reader(args: argparse.Namespace) -> Identity | None:
    return load_identity(args.reader_key) if args.reader_key else None


def _open_blobs(config: DaemonConfig) -> contextlib.AbstractContextManager[BlobStore | None]:
    """The node's BlobStore (data_dir/blobs) if it exists, for attachment export."""
    path = config.data_dir / "blobs"
    return BlobStore(path) if path.is_dir() else contextlib.nullcontext()


def cmd_export_room(config: DaemonConfig, args: argparse.Namespace) -> int:
    _gov(config)
    topic = config.topic_by_name(args.topic)
    with _open_store(config) as store:
        views = _views(config, store)
        view = next((v for v in views if v.topic == topic), None)
        if view is None:
            raise StoreError(f"no room with topic {topic.hex()[:16]} is stored on this node")
        with _open_blobs(config) as blobs:
            bundle = export_room(store, view, _reader(args), _now_ms(), blobs=blobs)
    with _open_audit(config) as audit:
        write_bundle(bundle, args.out, audit=audit, request_ref=args.request)
    print(f"room export: {len(bundle['entries'])} entries, {len(bundle['messages'])} messages "
          f"-> {args.out} (mode 0600; personal data: hand it over protected)")
    return 0


def cmd_export_person(config: DaemonConfig, args: argparse.Namespace) -> int:
    _gov(config)
    devices = _devices(args.device)
    persons = [_person(v) for v in args.person]
    if not devices and not persons:
        raise ConfigError("export person: give at least one --device or --person")
    with _open_store(config) as store:
        orgs = _orgs(config, store)
        if persons:
            devices += _person_devices(orgs, persons)
        views = room_views(store, orgs)
        with _open_blobs(config) as blobs:
            bundle = export_person(store, devices, views, _reader(args), _now_ms(),
                                   blobs=blobs)
    with _open_audit(config) as audit:
        write_bundle(bundle, args.out, audit=audit, request_ref=args.request)
    print(f"person export: {len(bundle['entries'])} entries, {len(bundle['messages'])} messages "
          f"-> {args.out} (mode 0600; personal data: hand it over protected)")
    return 0


def cmd_verify_bundle(args: argparse.Namespace) -> int:
    report = verify_bundle(args.file)
    for problem in report.problems:
        print(f"FAIL {problem}")
    print(f"{args.file}: {report.entries} entries, {report.links_checked} links, "
          f"{report.payloads_checked} payloads, {report.messages} messages checked; "
          f"{len(report.problems)} problems")
    return 0 if report.ok else 8


# -- audit -------------------------------------------------------------------------------------

def _since(text: str | None) -> int | None:
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    try:
        dt = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--since: milliseconds or an ISO date/time, got {text!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.UTC)
    return int(dt.timestamp() * 1000)


def cmd_audit_list(config: DaemonConfig, args: argparse.Namespace) -> int:
    kinds = None
    if args.kind:
        try:
            kinds = [AuditKind(k) for k in args.kind]
        except ValueError:
            raise ConfigError(f"--kind: one of {', '.join(k.value for k in AuditKind)}") from None
    with _open_audit(config, create=False) as audit:
        records = audit.query(kinds=kinds, since_ms=_since(args.since))
    for r in records:
        details = json.dumps(dict(r.details), sort_keys=True, separators=(",", ":"))
        print(f"{r.seq:>6}  {_iso(r.at_ms)}  {r.kind.value:24}  {details}")
    return 0


def cmd_audit_verify(config: DaemonConfig, args: argparse.Namespace) -> int:
    anchor = _anchor(args.anchor) if args.anchor else None
    with _open_audit(config, create=False) as audit:
        count = audit.verify()
        if anchor is not None:
            audit.check_anchor(*anchor)
        seq, digest = audit.head()
    checked = f"; anchor {anchor[0]} matches" if anchor is not None else ""
    print(f"audit log verified: {count} records, head {seq} {digest.hex()}{checked} "
          "(anchor this head elsewhere to detect truncation)")
    return 0


def _anchor(text: str) -> tuple[int, bytes]:
    """``SEQ:DIGEST`` as printed by ``audit verify`` (and logged as ``audit_head``)."""
    seq_text, _, digest_text = text.partition(":")
    try:
        seq, digest = int(seq_text), bytes.fromhex(digest_text)
    except ValueError:
        seq, digest = -1, b""
    if seq < 0 or len(digest) != 32:
        raise ConfigError("--anchor: expected SEQ:DIGEST (a number, ':', 64 hex digits)")
    return seq, digest


def cmd_audit_export(config: DaemonConfig, args: argparse.Namespace) -> int:
    with _open_audit(config, create=False) as audit, \
            open(args.out, "x", encoding="utf-8") as out:
        count = audit.export_jsonl(out)
    print(f"audit export: {count} records -> {args.out}")
    return 0


# -- breach and records ----------------------------------------------------------------------------

def cmd_exposure(config: DaemonConfig, args: argparse.Namespace) -> int:
    _gov(config)
    device = parse_key_hex(args.device, "--device")
    with _open_store(config) as store:
        views = _views(config, store)
    rooms = device_exposure(device, views)
    print(f"device {short_id(device)}: {len(rooms)} rooms")
    for room in rooms:
        name = config.topic_name(room.topic) or "-"
        print(f"{room.topic.hex()}  {name:16}  member_now={room.member_now}  "
              f"epochs={len(room.epochs)}  messages={room.messages}")
        for e in room.epochs:
            print(f"    epoch {e.index} {e.epoch.hex()[:16]} messages={e.messages}")
    return 0


def cmd_records(config: DaemonConfig, args: argparse.Namespace) -> int:
    gov = _gov(config)
    text = render_records(gov.processing(_trusted_list(config)))
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"records of processing -> {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def add_governance_commands(sub: Any, cfg: argparse.ArgumentParser) -> None:
    """Register the commands above on the top-level subparsers ``sub``."""
    fed = sub.add_parser("federation", help="sign and inspect federation lists")
    fed_sub = fed.add_subparsers(dest="federation_command", metavar="ACTION", required=True)
    p = fed_sub.add_parser("issue", help="sign a federation list from a TOML/JSON description")
    p.add_argument("description", metavar="DESC", help="TOML (or .json) description")
    p.add_argument("--key", required=True, metavar="KEYFILE", help="issuer secret key file")
    p.add_argument("--out", required=True, metavar="FILE", help="list file to write")
    p.set_defaults(handler=cmd_federation_issue, needs_config=False)
    p = fed_sub.add_parser("show", parents=[cfg], help="verify and print a federation list")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--issuer", metavar="HEX",
                   help="expected issuer (default: [governance].issuer if configured)")
    p.set_defaults(handler=cmd_federation_show, needs_config=None)

    ret = sub.add_parser("retention", help="retention purge")
    ret_sub = ret.add_subparsers(dest="retention_command", metavar="ACTION", required=True)
    p = ret_sub.add_parser("purge", parents=[cfg],
                           help="purge payloads past retention (node stopped unless --dry-run)")
    p.add_argument("--dry-run", action="store_true", help="only plan and print")
    p.set_defaults(handler=cmd_retention_purge, needs_config=True)

    p = sub.add_parser("erase", parents=[cfg],
                       help="erase a person's content (Art. 17; node must be stopped)")
    p.add_argument("--device", action="append", default=[], metavar="KEY",
                   help="the person's device key (hex); repeat for several")
    p.add_argument("--person", action="append", default=[], metavar="ID",
                   help="a person id (32 hex, from 'node init --person'): every device "
                        "certified for that person; repeatable, combines with --device")
    p.add_argument("--request", default="", metavar="REF", help="erasure request reference")
    p.add_argument("--out", metavar="FILE", help="also write the tombstone bytes here")
    p.set_defaults(handler=cmd_erase, needs_config=True)

    exp = sub.add_parser("export", help="Art. 15/20 export bundles")
    exp_sub = exp.add_subparsers(dest="export_command", metavar="SCOPE", required=True)
    p = exp_sub.add_parser("room", parents=[cfg], help="export one room")
    p.add_argument("topic", help="configured topic name or 64 hex digits")
    for q in (p, exp_sub.add_parser("person", parents=[cfg], help="export a person")):
        q.add_argument("--out", required=True, metavar="FILE")
        q.add_argument("--reader-key", metavar="KEYFILE",
                       help="a member device's key file, to include decrypted messages")
        q.add_argument("--request", default="", metavar="REF", help="request reference")
        q.set_defaults(needs_config=True)
        if q is not p:
            q.add_argument("--device", action="append", default=[], metavar="KEY",
                           help="a device key of the person (hex); repeatable")
            q.add_argument("--person", action="append", default=[], metavar="ID",
                           help="a person id (32 hex): every device certified for it")
            q.set_defaults(handler=cmd_export_person)
    p.set_defaults(handler=cmd_export_room)

    p = sub.add_parser("verify-bundle", help="verify an export bundle offline (no node needed)")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(handler=cmd_verify_bundle, needs_config=False)

    aud = sub.add_parser("audit", help="the audit log")
    aud_sub = aud.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    p = aud_sub.add_parser("list", parents=[cfg], help="list records (no content)")
    p.add_argument("--kind", action="append", metavar="K", help="only this kind (repeatable)")
    p.add_argument("--since", metavar="T", help="ms since the epoch or ISO date/time (UTC)")
    p.set_defaults(handler=cmd_audit_list, needs_config=True)
    p = aud_sub.add_parser("verify", parents=[cfg], help="check the chain and every signature")
    p.add_argument("--anchor", metavar="SEQ:DIGEST",
                   help="also check a head remembered elsewhere (detects a truncated tail)")
    p.set_defaults(handler=cmd_audit_verify, needs_config=True)
    p = aud_sub.add_parser("export", parents=[cfg], help="export as JSON lines")
    p.add_argument("--out", required=True, metavar="FILE", help="new file to write")
    p.set_defaults(handler=cmd_audit_export, needs_config=True)

    p = sub.add_parser("exposure", parents=[cfg], help="what could a device read (Art. 33)")
    p.add_argument("--device", required=True, metavar="KEY")
    p.set_defaults(handler=cmd_exposure, needs_config=True)

    p = sub.add_parser("records", parents=[cfg],
                       help="records of processing (Art. 30) from the configuration")
    p.add_argument("--out", metavar="FILE", help="write to FILE instead of stdout")
    p.set_defaults(handler=cmd_records, needs_config=True)
