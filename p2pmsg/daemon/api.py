"""The daemon's ``[api]`` section at run time: the messenger and the local HTTP API.

Theory of operation
-------------------
When ``[api] enabled = true``, ``p2pmsg run`` hosts one device's messaging layer:

* **one node per device** — the node key *is* the device key, and the device
  certificate is the one ``p2pmsg node init`` issued (it also wrote the
  organisation's root-signed control entries publishing that certificate into the
  store, so peers can verify this device);
* :func:`node_topics` computes, *before* the node opens, the topics it asks peers
  for: the ``[[topics]]`` of the file, the control topics of its own and every
  known organisation (:func:`known_orgs`), and every stored room this device is in
  or created (a restart therefore keeps replicating rooms created at run time);
* :func:`serve_local_api` opens a :class:`~p2pmsg.messenger.Messenger` over the
  running node — its epoch keys in :func:`daemon_keyring` (``<data_dir>/keyring.db``,
  so shredded epochs stay shredded across restarts) — and starts
  :func:`p2pmsg.api.serve_api` in the daemon's nursery; it
  reports the :class:`~p2pmsg.api.ApiServer` (URL; the token is never logged) and
  stops when that nursery is cancelled (SIGTERM).

The static page served at ``/`` is found by :func:`find_static_dir` (see
docs/operations.md, "[api]").
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from ..identity import Identity
from ..messenger import messenger_topics, open_messenger
from ..messenger.keyring import FileKeyring
from ..node import Node
from ..store.base import Store
from .config import STATIC_AUTO, ConfigError, DaemonConfig
from .governance import Governance, org_states, room_views

if TYPE_CHECKING:
    from ..api import ApiServer

__all__ = ["daemon_keyring", "find_static_dir", "known_orgs", "node_topics", "serve_local_api",
           "static_candidates"]


def static_candidates() -> list[Path]:
    """Where ``static_dir = "auto"`` looks for the ward-chat page, in order:
    ``<sys.prefix>/share/p2pmsg/ward-chat`` (an installed data directory) and the
    source checkout's ``examples/ward-chat`` (editable installs, running from git)."""
    package = Path(__file__).resolve().parent.parent
    return [Path(sys.prefix) / "share" / "p2pmsg" / "ward-chat",
            package.parent / "examples" / "ward-chat"]


def find_static_dir(setting: Path | str | None) -> Path | None:
    """The directory to serve at ``/`` for an ``[api] static_dir`` setting.

    ``"auto"``: the first of :func:`static_candidates` holding an ``index.html``,
    or None (the API then serves no page). A configured path must be a directory.

    Raises:
        ConfigError: a configured ``static_dir`` is not a directory.
    """
    if setting is None:
        return None
    if setting == STATIC_AUTO:
        for candidate in static_candidates():
            if (candidate / "index.html").is_file():
                return candidate
        return None
    path = Path(setting)
    if not path.is_dir():
        raise ConfigError(f"api.static_dir: {path} is not a directory")
    return path


def known_orgs(config: DaemonConfig, governance: Governance | None) -> list[bytes]:
    """Other organisations the messenger knows: ``[api] orgs`` plus, with a
    ``[governance]`` section, every organisation of the current federation list."""
    orgs = set(config.api.orgs)
    if governance is not None and governance.registry.current is not None:
        orgs.update(o.org_id for o in governance.registry.current.organisations)
    if config.org_id is not None:
        orgs.discard(config.org_id)
    return sorted(orgs)


def node_topics(config: DaemonConfig, store: Store, device: bytes,
                orgs: Iterable[bytes]) -> list[bytes]:
    """The topics the node asks peers for: configured ones, and with ``[api]``
    enabled the control topics of ``org_id`` and ``orgs`` plus the stored rooms
    ``device`` is a member of or created. A relay (``[governance]`` without
    ``[api]``) asks for the control topics too: its invitations arrive in its own
    organisation's, and the inviters' certificates in theirs (the rooms themselves
    are added at run time as their invitations are taken, also after a restart)."""
    topics = {t.topic for t in config.topics}
    if config.org_id is None or not (config.api.enabled or config.governance is not None):
        return sorted(topics)
    every = [config.org_id, *orgs]
    if not config.api.enabled:
        return sorted(topics | set(messenger_topics(every)))
    rooms = [v.topic for v in room_views(store, org_states(store, every))
             if device in v.members or (v.create is not None and v.create.creator == device)]
    return sorted(topics | set(messenger_topics(every, rooms)))


def daemon_keyring(config: DaemonConfig, identity: Identity) -> FileKeyring:
    """The daemon's epoch keyring: ``<data_dir>/keyring.db``, sealed under ``identity``.

    Durable so that epochs shredded by the messenger stay shredded across restarts.
    Raises :class:`~p2pmsg.errors.KeyFileError` on a corrupt or foreign file.
    """
    return FileKeyring(config.data_dir / "keyring.db", identity)


async def serve_local_api(
    config: DaemonConfig, node: Node, orgs: Iterable[bytes], *,
    keyring: FileKeyring | None = None,
    task_status: trio.TaskStatus[ApiServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Open the messenger over ``node`` and serve the HTTP API until cancelled.

    ``await nursery.start(serve_local_api, config, node, orgs)`` returns the
    :class:`~p2pmsg.api.ApiServer` once the socket listens. ``keyring``: the
    daemon's one :class:`FileKeyring` object (shared with the retention run, so a
    key forgotten there is not written back from a stale copy); default: open it.

    Raises:
        ConfigError: ``node.org_id`` missing or a bad ``static_dir``.
        KeyFileError: the token file is accessible by group/others or malformed, or
            ``<data_dir>/keyring.db`` is corrupt or from another device key.
        OSError: the address is in use.
    """
    from ..api import ApiConfig, serve_api  # hypercorn/starlette: only when enabled

    if config.org_id is None:
        raise ConfigError("api.enabled needs node.org_id")
    api_config = ApiConfig(
        host=config.api.host, port=config.api.port, token_file=config.api_token_file,
        unix_socket=config.api.unix_socket, static_dir=find_static_dir(config.api.static_dir),
    )
    if keyring is None:
        keyring = daemon_keyring(config, node.identity)
    async with open_messenger(node, config.org_id, orgs=orgs, keyring=keyring) as messenger, \
            trio.open_nursery() as nursery:
        server: ApiServer = await nursery.start(serve_api, messenger, api_config)
        task_status.started(server)
        await trio.sleep_forever()
