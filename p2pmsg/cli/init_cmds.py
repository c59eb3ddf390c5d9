"""``p2pmsg org init`` and ``p2pmsg node init``: keys, certificate, config, data directory.

An organisation directory holds ``org.key`` (the org root secret key, 0600 — keep it
offline after enrolling nodes), ``org.id`` (its public key in hex, shareable) and,
after the first ``node init``, ``control.db``: the organisation's **control log**,
root-signed entries publishing every device certificate issued so far.
A node directory holds ``node.key``, ``node.cert`` (device certificate signed by
the org root, role ``node``), ``p2pmsg.toml`` and ``data/store.db``.

``node init --person HANDLE`` issues a version-2 certificate naming the person id
``person_id(org root, HANDLE)`` (:mod:`p2pmsg.certs`): the node is then one of that
person's devices, and rooms count the person, not the device. The handle itself
(a staff number, a login) is never written anywhere; running ``node init`` again
with the same handle for another device gives the same id.

Why the control log: the messaging layer only trusts a device whose certificate
appears in its organisation's control topic, written by the root key (see
:mod:`p2pmsg.messenger.bootstrap`). ``node init`` holds the root key anyway, so it
appends the new certificate to ``control.db`` (seq n+1 of the root's log, so nodes
of one organisation never fork it) and copies the whole log into the new node's
store; nodes then replicate it to peers. Enrol nodes of one organisation one after
another from the same organisation directory.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from ..certs import DeviceCertificate, Role, issue_certificate, person_id
from ..daemon.config import ConfigError, parse_host_port, render_config
from ..entry import Entry, create_entry
from ..errors import KeyFileError
from ..hlc import COUNTER_BITS
from ..identity import Identity, short_id
from ..keyfile import load_identity, save_identity
from ..messaging import compose_certificate, control_topic
from ..store.sqlite import SqliteStore

__all__ = ["cmd_node_init", "cmd_org_init"]

_DAY_MS = 86_400_000


def _make_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.is_dir():
        raise NotADirectoryError(20, "Not a directory", str(path))


def _publish_certificate(org_dir: Path, org: Identity, cert: DeviceCertificate,
                         now_ms: int) -> tuple[list[Entry], dict[bytes, bytes]]:
    """Append ``cert`` to the organisation's control log in ``org_dir/control.db``;
    returns the whole log (entries, payloads) to load into the new node's store."""
    topic = control_topic(org.public_key)
    with SqliteStore(org_dir / "control.db") as log:
        head = log.head(org.public_key, topic)
        seq = 1 if head is None else head.header.seq + 1
        stamp = now_ms << COUNTER_BITS
        if head is not None:
            stamp = max(stamp, head.header.timestamp + 1)
        payload = compose_certificate(cert)
        entry = create_entry(org, topic, seq, None if head is None else head.id, stamp,
                             payload, [])
        log.append([entry], {entry.id: payload})
        entries = log.get_range(org.public_key, topic, 1, seq)
        payloads: dict[bytes, bytes] = {}
        for e in entries:
            value = log.get_payload(e.id)
            if isinstance(value, bytes):
                payloads[e.id] = value
    return entries, payloads


def cmd_org_init(args: argparse.Namespace) -> int:
    directory = Path(args.directory)
    _make_dir(directory)
    key_path = directory / "org.key"
    if key_path.exists():
        raise KeyFileError(f"{key_path}: already exists; refusing to overwrite an org key")
    org = Identity.generate()
    save_identity(key_path, org)
    (directory / "org.id").write_text(org.public_key.hex() + "\n", encoding="ascii")
    print(f"org id: {org.public_key.hex()}")
    print(f"org key: {key_path} (keep it offline once your nodes are enrolled)")
    return 0


def cmd_node_init(args: argparse.Namespace) -> int:
    org_path = Path(args.org)
    if org_path.is_dir():
        org_path = org_path / "org.key"
    org = load_identity(org_path)
    if args.api_port is not None and not 0 <= args.api_port <= 65535:
        raise ConfigError("--api-port: 0..65535")
    if args.tcp_listen:
        parse_host_port(args.tcp_listen, "--tcp-listen")
    if args.metrics:
        parse_host_port(args.metrics, "--metrics")
    if args.valid_days <= 0:
        raise ConfigError("--valid-days: must be positive")
    directory = Path(args.directory)
    _make_dir(directory)
    config_path = directory / "p2pmsg.toml"
    for existing in (directory / "node.key", directory / "node.cert", config_path):
        if existing.exists():
            raise KeyFileError(f"{existing}: already exists; refusing to overwrite a node")
    node = Identity.generate()
    name = args.name or f"node-{short_id(node.public_key)}"
    now = time.time_ns() // 1_000_000
    person = None
    if getattr(args, "person", None) is not None:
        try:
            person = person_id(org, args.person)
        except ValueError as exc:
            raise ConfigError(f"--person: {exc}") from None
    try:
        cert = issue_certificate(org, node.public_key, Role.NODE, name, now - 60_000,
                                 now + args.valid_days * _DAY_MS, person=person)
    except ValueError as exc:
        raise ConfigError(f"--name: {exc}") from None
    save_identity(directory / "node.key", node)
    fd = os.open(directory / "node.cert", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(cert.to_bytes())
    data_dir = directory / "data"
    _make_dir(data_dir)
    entries, payloads = _publish_certificate(org_path.parent, org, cert, now)
    with SqliteStore(data_dir / "store.db") as store:
        store.append(entries, payloads)
    config_text = render_config(
        key="node.key", certificate="node.cert", org_id=org.public_key, name=name,
        data_dir="data", tcp_listen=args.tcp_listen,
        metrics_address=None if args.no_metrics else args.metrics,
        api_port=args.api_port,
    )
    fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(config_text)
    print(f"node id: {node.public_key.hex()}")
    if person is not None:
        print(f"person id: {person.hex()}")
    print(f"org control log: {len(entries)} certificate(s) in {org_path.parent / 'control.db'}")
    print(f"config: {config_path}")
    print(f"start it with: p2pmsg run -c {config_path}")
    return 0
