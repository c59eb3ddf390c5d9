"""``p2pmsg run``: the headless daemon loop.

Theory of operation
-------------------
:func:`run_daemon` builds everything a :class:`~p2pmsg.node.NodeConfig` needs from a
:class:`~p2pmsg.daemon.config.DaemonConfig`, then runs until SIGTERM/SIGINT:

1. signals are captured first (``trio.open_signal_receiver``), so a SIGTERM during
   start-up is also a clean stop;
2. the data directory's writer lock is taken (:func:`~p2pmsg.daemon.state.writer_lock`),
   the node key is loaded (``keyfile`` refuses group/world-readable keys), the
   device certificate is checked against ``node.org_id``, the ``SqliteStore`` opens;
3. network transports are built through their entry points
   (:func:`p2pmsg.net.base.load_transport`); a configured but missing plugin is a
   :class:`~p2pmsg.errors.TransportError` naming the package to install;
4. the node runs (:func:`p2pmsg.node.open_node`) with static peers; mDNS discovery,
   if enabled, is started *after* the transports are bound (it advertises their real
   ports) as ``async with mdns.running()`` and feeds ``node.add_peer``;
5. the metrics endpoint and the status-file writer start; with ``[api] enabled``
   the messenger and the local HTTP API start too (:mod:`p2pmsg.daemon.api`;
   ``api_ready url=...`` is logged, never the token, and the URL goes into
   ``status.json`` for the CLI); a ``ready`` event is logged with the bound
   addresses; the initial-sync progress reporter starts
   (:mod:`p2pmsg.daemon.progress`);
6. on a signal, the node's nursery is cancelled (sessions close), the store is
   closed. Every append acknowledged before that was already fsync'd by the store,
   so nothing acknowledged is lost; a restart reloads heads from the store and
   continues where it left off.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict
from functools import partial
from importlib.metadata import entry_points
from typing import Any

import trio

from ..blobs import BlobStore
from ..certs import decode_certificate, verify_certificate
from ..errors import CertificateError, DecodeError, Reason, TransportError
from ..governance.retention import device_orgs
from ..identity import Identity, short_id
from ..keyfile import load_identity
from ..messaging.org import control_topic
from ..net.base import Discovery, PeerHint, Transport, available_transports, load_transport
from ..node import Node, NodeConfig, audited_allow_peer, open_node
from ..node.audit import AuditSink
from ..node.blobs import RelayBlobFetcher
from ..node.config import system_wall_ms
from ..policy import AllowAllPolicy, Policy, TopicPolicy
from ..store.base import LogHead
from ..store.sqlite import SqliteStore
from .api import daemon_keyring, known_orgs, node_topics, serve_local_api
from .config import ConfigError, DaemonConfig
from .governance import Governance, org_states
from .logsetup import event
from .metrics import PurgeCounts, SyncLagTracker, serve_metrics
from .progress import report_initial_sync
from .state import pid_file, write_status, writer_lock

__all__ = ["build_policy", "check_certificate", "collect_values", "run_daemon"]

_PLUGIN_PACKAGES = {"tcp": "p2pmsg-tcp", "quic": "p2pmsg-quic", "mdns": "p2pmsg-mdns"}


def build_policy(config: DaemonConfig) -> Policy:
    """``TopicPolicy`` from the configured topic readers (static peers may connect)."""
    if config.allow_all:
        return AllowAllPolicy()
    return TopicPolicy(
        {t.topic: t.readers for t in config.topics},
        peers=[p.node_id for p in config.peers],
    )


def check_certificate(config: DaemonConfig, identity: Identity, now_ms: int) -> None:
    """Refuse to start with a certificate that is not for this key, org or time.

    Raises:
        CertificateError / DecodeError: invalid certificate.
        ConfigError: a certificate is configured without ``node.org_id``.
        OSError: the certificate file cannot be read.
    """
    if config.certificate is None:
        return
    if config.org_id is None:
        raise ConfigError(f"{config.path}: node.org_id is required with node.certificate")
    data = config.certificate.read_bytes()
    try:
        cert = decode_certificate(data)
    except DecodeError as exc:
        raise DecodeError(exc.reason, f"{config.certificate}: {exc.detail}") from None
    if cert.device != identity.public_key:
        raise CertificateError(
            Reason.CERT_WRONG_ISSUER, f"{config.certificate}: certificate is for another node key"
        )
    try:
        verify_certificate(cert, config.org_id, now_ms)
    except CertificateError as exc:
        raise CertificateError(exc.reason, f"{config.certificate}: {exc.detail}") from None


def _transports(config: DaemonConfig, identity: Identity, policy: Policy,
                audit: AuditSink | None = None) -> list[Transport]:
    installed = available_transports()
    result: list[Transport] = []
    for listen in config.listen:
        if listen.plugin not in installed:
            package = _PLUGIN_PACKAGES.get(listen.plugin, f"p2pmsg-{listen.plugin}")
            raise TransportError(
                f"[{listen.plugin}] is configured but the transport plugin {listen.plugin!r} "
                f"is not installed (pip install {package})"
            )
        result.append(load_transport(
            listen.plugin, identity=identity, host=listen.host, port=listen.port,
            allow_peer=audited_allow_peer(policy, audit, system_wall_ms),
        ))
    return result


def _mdns_factory() -> Callable[..., Discovery]:
    for ep in entry_points(group="p2pmsg.discovery"):
        if ep.name == "mdns":
            factory: Callable[..., Discovery] = ep.load()
            return factory
    raise TransportError(
        "mdns.enabled = true but the mDNS plugin is not installed (pip install p2pmsg-mdns)"
    )


def _ports(transports: list[Transport]) -> dict[str, int]:
    ports: dict[str, int] = {}
    for t in transports:
        for address in t.addresses():
            port = address.rsplit(":", 1)[-1]
            if port.isdigit():
                ports.setdefault(t.scheme, int(port))
    return ports


async def _take_invitations(node: Node, gov: Governance, org_id: bytes) -> None:
    """Replicate the rooms this node is invited to (a relay declared by a room admin)
    — what the API's messenger does for a device, for a node running without it."""
    while True:
        rooms = gov.invited_rooms(org_id)
        added = node.add_topics(rooms) if rooms else []
        if added:
            event("rooms_invited", rooms=len(added))
        await trio.sleep(gov.config.reload_interval)


async def _fetch_attachments(node: Node, store: SqliteStore, org_ids: list[bytes],
                             interval: float, counts: PurgeCounts | None = None) -> None:
    """Fetch the blobs that clear attachment refs of stored rooms name, so this node
    can serve them when their sender is offline (docs/attachments.md, "Relays").
    Blobs are charged to the author's organisation (re-read from the control topics
    when one of them grew)."""
    fetcher = RelayBlobFetcher(node)
    ids = [o for o in org_ids if o]
    marks: list[list[LogHead]] | None = None
    while True:
        now = [store.heads(control_topic(o)) for o in ids]
        if now != marks:
            fetcher.authors, marks = device_orgs(org_states(store, ids)), now
        report = await fetcher.run_once()
        if report.fetched:
            event("attachments_fetched", blobs=len(report.fetched))
            if counts is not None:
                counts.fetched += len(report.fetched)
        await trio.sleep(interval)


def collect_values(node: Node, store: SqliteStore, started: float, *,
                   lag: SyncLagTracker | None = None,
                   purges: PurgeCounts | None = None) -> dict[str, float]:
    """The numbers exported as metrics (see :data:`p2pmsg.daemon.metrics.METRICS`).

    ``lag`` is sampled here (so at scrape time); ``purges`` is only given when
    ``[governance]`` runs a purge timer (otherwise no purge series are exported)."""
    stats = node.statistics()
    values: dict[str, float] = {
        k: float(v) for k, v in asdict(stats).items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    if lag is not None:
        values["sync_lag"] = lag.observe(stats.entries_received, time.monotonic())
    if purges is not None:
        values.update(purges.values())
    values["peers"] = float(len(node.connected_peers()))
    values["stored_forks"] = float(len(store.forks()))
    values["uptime"] = round(time.monotonic() - started, 3)
    return values


def _status(config: DaemonConfig, node: Node, store: SqliteStore,
            transports: list[Transport], started_wall: float, *,
            api_url: str | None = None) -> dict[str, Any]:
    topics = []
    for topic in store.topics():
        heads = store.heads(topic)
        topics.append({"id": topic.hex(), "name": config.topic_name(topic),
                       "logs": len(heads), "entries": sum(h.seq for h in heads)})
    return {
        "pid": os.getpid(),
        "node_id": node.id.hex(),
        "name": config.name,
        "started": started_wall,
        "updated": time.time(),
        "listen": [a for t in transports for a in t.addresses()],
        "connected_peers": sorted(p.hex() for p in node.connected_peers()),
        "configured_peers": [{"id": p.node_id.hex(), "address": p.address}
                             for p in config.peers],
        "statistics": asdict(node.statistics()),
        "topics": topics,
        "api_url": api_url,
    }


async def _status_loop(config: DaemonConfig, node: Node, store: SqliteStore,
                       transports: list[Transport], started_wall: float, *,
                       api_url: str | None) -> None:
    while True:
        try:
            write_status(config.data_dir, _status(config, node, store, transports, started_wall,
                                                  api_url=api_url))
        except OSError as exc:
            event("status_write_failed", logging.WARNING, error=exc.strerror or str(exc))
        await trio.sleep(config.status_interval)


@asynccontextmanager
async def _mdns(config: DaemonConfig, node: Node,
                transports: list[Transport]) -> AsyncIterator[None]:
    if not config.mdns_enabled:
        yield
        return
    if config.org_id is None:
        raise ConfigError(f"{config.path}: mdns.enabled needs node.org_id")
    factory = _mdns_factory()
    interfaces = config.mdns_interfaces if isinstance(config.mdns_interfaces, str) \
        else list(config.mdns_interfaces)
    mdns: Any = factory(node_id=node.id, org_id=config.org_id, ports=_ports(transports),
                        interfaces=interfaces)
    async with mdns.running(), trio.open_nursery() as nursery:
        async def feed() -> None:
            async for hint in mdns.hints():
                node.add_peer(hint)
        nursery.start_soon(feed)
        event("mdns_started", interfaces=interfaces if isinstance(interfaces, str)
              else ",".join(interfaces))
        try:
            yield
        finally:
            nursery.cancel_scope.cancel()


async def run_daemon(
    config: DaemonConfig, *, task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED
) -> int:
    """Run the node described by ``config`` until SIGTERM/SIGINT; returns the exit code 0.

    Raises the library's errors (ConfigError, KeyFileError, CertificateError,
    StoreError, TransportError, NodeRunningError) and OSError for start-up problems;
    the CLI turns them into one line and an exit code.
    """
    started = time.monotonic()
    started_wall = time.time()
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        if not config.data_dir.is_dir():
            raise ConfigError(
                f"{config.path}: node.data_dir {config.data_dir} is not a directory "
                "(create it with 'p2pmsg node init')"
            )
        with writer_lock(config.data_dir), pid_file(config.pid_file):
            identity = load_identity(config.key)
            check_certificate(config, identity, time.time_ns() // 1_000_000)
            with SqliteStore(config.store_path) as store, contextlib.ExitStack() as closing:
                gov: Governance | None = None
                purges: PurgeCounts | None = None
                policy = build_policy(config)
                if config.governance is not None:
                    purges = PurgeCounts()
                    gov = Governance(config.governance, identity, store, system_wall_ms,
                                     counts=purges)
                    closing.callback(gov.close)
                    policy = gov.policy
                    gov.check_fresh()
                transports = _transports(config, identity, policy,
                                         gov.audit if gov is not None else None)
                orgs = known_orgs(config, gov)
                # the blob store: attachments sent/downloaded through the API, blobs
                # this node serves or relays, and what retention deletes
                blobs = closing.enter_context(BlobStore(config.data_dir / "blobs"))
                # one keyring object for the API's messenger and the retention run
                keyring = daemon_keyring(config, identity)
                if gov is not None:
                    gov.blobs = blobs
                    gov.keyring = keyring
                node_config = NodeConfig(
                    identity=identity, store=store, transports=transports,
                    peers=[PeerHint(p.node_id, p.address) for p in config.peers],
                    policy=policy,
                    topics=node_topics(config, store, identity.public_key, orgs),
                    name=config.name or short_id(identity.public_key),
                    audit=gov.audit if gov is not None else None,
                    blob_store=blobs,
                )
                async with AsyncExitStack() as stack:
                    node = await stack.enter_async_context(open_node(node_config))
                    await stack.enter_async_context(_mdns(config, node, transports))
                    nursery = await stack.enter_async_context(trio.open_nursery())
                    metrics = "off"
                    if config.metrics_address is not None:
                        host, port = config.metrics_address
                        bound = await nursery.start(
                            serve_metrics, host, port,
                            partial(collect_values, node, store, started,
                                    lag=SyncLagTracker(started), purges=purges))
                        metrics = f"{bound[0]}:{bound[1]}"
                    api_url: str | None = None
                    if config.api.enabled:
                        server = await nursery.start(
                            partial(serve_local_api, keyring=keyring), config, node, orgs)
                        api_url = server.url
                        event("api_ready", url=api_url,
                              unix=str(config.api.unix_socket or "-"),
                              token_file=str(config.api_token_file), orgs=len(orgs))
                    nursery.start_soon(partial(_status_loop, config, node, store, transports,
                                               started_wall, api_url=api_url))
                    if gov is not None:
                        nursery.start_soon(gov.run)
                    if gov is not None and config.org_id and not config.api.enabled:
                        # no messenger here: take room invitations (relay declarations)
                        nursery.start_soon(partial(_take_invitations, node, gov,
                                                   config.org_id))
                    if config.fetch_attachments:
                        nursery.start_soon(partial(_fetch_attachments, node, store,
                                                   [config.org_id or b"", *orgs],
                                                   config.fetch_interval, purges))
                    event("ready", node=short_id(node.id), node_name=config.name,
                          pid=os.getpid(), metrics=metrics,
                          listen=",".join(a for t in transports for a in t.addresses()) or "-",
                          peers=len(config.peers), topics=len(config.topics),
                          mdns=config.mdns_enabled, governance=gov is not None,
                          api=api_url or "off", replicated_topics=len(node.topics))
                    nursery.start_soon(report_initial_sync, node,
                                       [p.node_id for p in config.peers])
                    task_status.started(node)
                    async for signum in signals:
                        if signum == signal.SIGHUP:
                            if gov is None:
                                event("sighup_ignored", reason="no [governance] section")
                            else:
                                event("reloading", signal="SIGHUP")
                                gov.reload(force=True)
                                gov.check_fresh()
                            continue
                        event("stopping", signal=signal.Signals(signum).name)
                        break
                    nursery.cancel_scope.cancel()
                stats = node.statistics()
            (config.data_dir / "status.json").unlink(missing_ok=True)
            event("stopped", entries_appended=stats.entries_appended,
                  entries_received=stats.entries_received)
    return 0
