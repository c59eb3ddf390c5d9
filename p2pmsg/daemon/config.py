"""The daemon's configuration: one TOML file, every field overridable from the environment.

Load with :func:`load_config` (path + ``os.environ``); it returns a validated
:class:`DaemonConfig` or raises :class:`ConfigError` naming the offending field
(``tcp.listen: ...``). Relative paths in the file are resolved against the file's
directory, so a node directory can be moved as a whole. docs/operations.md
documents every field; :func:`render_config` writes the file ``p2pmsg node init``
creates.

Environment overrides: ``P2PMSG_<SECTION>_<FIELD>`` (upper case) replaces
``[section] field``, e.g. ``P2PMSG_NODE_DATA_DIR=/var/lib/p2pmsg`` or
``P2PMSG_MDNS_ENABLED=false`` or ``P2PMSG_API_PORT=8471``. Lists are comma-separated; peers are
``P2PMSG_PEERS=<node id hex>@<address>,...``. Topics are file-only (they carry
reader lists).
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import P2PMsgError
from .governance import SCALAR_FIELDS as _GOVERNANCE_SCALARS
from .governance import GovernanceConfig, parse_governance

__all__ = [
    "DEFAULT_API_PORT",
    "ENV_PREFIX",
    "LOG_LEVELS",
    "ApiSettings",
    "ConfigError",
    "DaemonConfig",
    "ListenConfig",
    "PeerConfig",
    "TopicConfig",
    "load_config",
    "parse_host_port",
    "parse_key_hex",
    "render_config",
]

ENV_PREFIX = "P2PMSG_"
LOG_LEVELS = ("debug", "info", "warning", "error")
TRANSPORT_SECTIONS = ("tcp", "quic")
DEFAULT_API_PORT = 8470
STATIC_AUTO = "auto"
_MAX_CONFIG_BYTES = 1 << 20


class ConfigError(P2PMsgError):
    """The configuration file or an environment override is missing or invalid."""


@dataclass(frozen=True, slots=True)
class ListenConfig:
    """One network transport to serve: ``[tcp]`` or ``[quic]``."""

    plugin: str
    """Entry-point name of the transport plugin (``tcp``, ``quic``)."""
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class PeerConfig:
    """A static peer: ``[[peers]] id = "<hex>" address = "tcp://host:port"``."""

    node_id: bytes
    address: str


@dataclass(frozen=True, slots=True)
class TopicConfig:
    """A topic this node replicates, and which peers may read it."""

    topic: bytes
    name: str
    readers: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """The ``[api]`` section: the local HTTP API hosted by ``p2pmsg run``.

    :func:`p2pmsg.daemon.api.serve_local_api` turns it into an
    :class:`p2pmsg.api.ApiConfig`; the CLI's ``rooms``/``send``/``read`` read it to
    find the API and its token."""

    enabled: bool = False
    host: str = "127.0.0.1"
    """Loopback only (``127.0.0.1``, ``::1``, ``localhost``): checked at load."""
    port: int = DEFAULT_API_PORT
    """0 = any free port (the CLI then reads the bound URL from ``status.json``)."""
    unix_socket: Path | None = None
    token_file: Path | None = None
    """None = ``<data_dir>/api.token`` (see :attr:`DaemonConfig.api_token_file`)."""
    static_dir: Path | str | None = STATIC_AUTO
    """A directory served at ``/``; ``"auto"`` = the installed ward-chat page if one
    is found (:func:`p2pmsg.daemon.api.find_static_dir`); None = no page."""
    orgs: tuple[bytes, ...] = ()
    """Other organisations whose devices this node's rooms include (their control
    topics are replicated and their certificates accepted)."""


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    """A validated configuration (see docs/operations.md for every field)."""

    path: Path
    """The file it was loaded from."""
    key: Path
    certificate: Path | None
    org_id: bytes | None
    name: str
    data_dir: Path
    pid_file: Path | None
    listen: tuple[ListenConfig, ...]
    peers: tuple[PeerConfig, ...]
    mdns_enabled: bool
    mdns_interfaces: tuple[str, ...] | str
    topics: tuple[TopicConfig, ...]
    allow_all: bool
    log_level: str
    log_format: str
    metrics_address: tuple[str, int] | None
    status_interval: float = 2.0
    governance: GovernanceConfig | None = None
    """The ``[governance]`` section, or None (then ``TopicPolicy`` from ``[[topics]]``)."""
    api: ApiSettings = ApiSettings()
    """The ``[api]`` section (disabled unless ``enabled = true``)."""
    fetch_attachments: bool = True
    """``[attachments] fetch``: fetch every blob the clear refs of stored rooms name
    (so this node can serve them when the sender is offline; within quotas)."""
    fetch_interval: float = 5.0
    """``[attachments] interval``: seconds between scans for new attachment refs."""

    @property
    def api_token_file(self) -> Path:
        """Where the API's bearer token lives (default ``<data_dir>/api.token``)."""
        return self.api.token_file if self.api.token_file is not None \
            else self.data_dir / "api.token"

    @property
    def store_path(self) -> Path:
        """The SQLite store inside the data directory."""
        return self.data_dir / "store.db"

    def topic_by_name(self, name_or_hex: str) -> bytes:
        """Resolve a topic given by configured name or 64 hex digits."""
        for t in self.topics:
            if t.name == name_or_hex:
                return t.topic
        try:
            return parse_key_hex(name_or_hex, "topic")
        except ConfigError:
            raise ConfigError(
                f"topic {name_or_hex!r}: neither a configured topic name nor 64 hex digits"
            ) from None

    def topic_name(self, topic: bytes) -> str:
        for t in self.topics:
            if t.topic == topic:
                return t.name
        return ""


def parse_key_hex(text: str, what: str) -> bytes:
    """32 bytes from 64 hex digits, or ConfigError naming ``what``."""
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError:
        raise ConfigError(f"{what}: not hexadecimal") from None
    if len(raw) != 32:
        raise ConfigError(f"{what}: expected 64 hex digits (32 bytes), got {len(raw)} bytes")
    return raw


def parse_host_port(text: str, what: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port) with a clear error."""
    value = text.strip()
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
        ok = bool(sep and port_text)
    else:
        host, sep, port_text = value.rpartition(":")
        ok = bool(sep and host and ":" not in host)
    if not ok:
        raise ConfigError(f"{what}: expected host:port, got {text!r}")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"{what}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{what}: port {port} out of range 0..65535")
    return host, port


# -- reading --------------------------------------------------------------------------

_SCALAR_SECTIONS: dict[str, dict[str, type]] = {
    "node": {"key": str, "certificate": str, "org_id": str, "name": str,
             "data_dir": str, "pid_file": str},
    "tcp": {"listen": str, "enabled": bool},
    "quic": {"listen": str, "enabled": bool},
    "mdns": {"enabled": bool, "interfaces": list},
    "policy": {"allow_all": bool},
    "log": {"level": str, "format": str},
    "metrics": {"address": str},
    "status": {"interval": float},
    "api": {"enabled": bool, "host": str, "port": int, "unix_socket": str,
            "token_file": str, "static_dir": str, "orgs": list},
    "attachments": {"fetch": bool, "interval": float},
}


def _env_value(raw: str, kind: type, name: str) -> Any:
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"{name}: expected true/false, got {raw!r}")
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{name}: expected an integer, got {raw!r}") from None
    if kind is float:
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{name}: expected a number, got {raw!r}") from None
    if kind is list:
        items = [p.strip() for p in raw.split(",") if p.strip()]
        return items
    return raw


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> None:
    sections = {**_SCALAR_SECTIONS, "governance": _GOVERNANCE_SCALARS}
    for section, fields in sections.items():
        for fname, kind in fields.items():
            var = f"{ENV_PREFIX}{section.upper()}_{fname.upper()}"
            if var in env:
                table = data.setdefault(section, {})
                if not isinstance(table, dict):
                    raise ConfigError(f"{section}: must be a table")
                table[fname] = _env_value(env[var], kind, var)
    var = f"{ENV_PREFIX}PEERS"
    if var in env:
        peers = []
        for item in (p.strip() for p in env[var].split(",")):
            if not item:
                continue
            node_id, sep, address = item.partition("@")
            if not sep:
                raise ConfigError(f"{var}: expected <node id hex>@<address>, got {item!r}")
            peers.append({"id": node_id, "address": address})
        data["peers"] = peers


def _table(data: Mapping[str, Any], section: str) -> dict[str, Any]:
    value = data.get(section, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{section}: must be a table ([{section}])")
    allowed = _SCALAR_SECTIONS[section]
    for key in value:
        if key not in allowed:
            raise ConfigError(
                f"{section}.{key}: unknown field (known: {', '.join(sorted(allowed))})"
            )
    for key, kind in allowed.items():
        if key in value:
            v = value[key]
            ok = (isinstance(v, (int, float)) and not isinstance(v, bool)) if kind is float \
                else isinstance(v, kind) and not (kind is int and isinstance(v, bool))
            if kind is list and isinstance(v, str):
                ok = True
            if not ok:
                raise ConfigError(
                    f"{section}.{key}: expected {kind.__name__}, got {type(v).__name__}"
                )
    return value


def _path(base: Path, text: str) -> Path:
    p = Path(text).expanduser()
    return p if p.is_absolute() else base / p


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> DaemonConfig:
    """Read, override from ``env`` (default ``os.environ``) and validate a config file.

    Raises:
        ConfigError: the file is missing or unreadable, not TOML, or a field is invalid.
    """
    env = os.environ if env is None else env
    source = Path(path)
    try:
        with source.open("rb") as fh:
            raw = fh.read(_MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such configuration file") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read configuration ({exc.strerror})") from None
    if len(raw) > _MAX_CONFIG_BYTES:
        raise ConfigError(f"{source}: configuration file larger than 1 MiB")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    for key in data:
        if key not in _SCALAR_SECTIONS and key not in ("peers", "topics", "governance"):
            raise ConfigError(f"{source}: unknown section [{key}]")
    _apply_env(data, env)
    try:
        return _validate(source, data)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _validate(source: Path, data: dict[str, Any]) -> DaemonConfig:
    base = source.resolve().parent
    node = _table(data, "node")
    if "key" not in node:
        raise ConfigError("node.key: required (path of the node's secret key file)")
    if "data_dir" not in node:
        raise ConfigError("node.data_dir: required (directory of the SQLite store)")
    org_id = parse_key_hex(node["org_id"], "node.org_id") if node.get("org_id") else None
    listen: list[ListenConfig] = []
    for section in TRANSPORT_SECTIONS:
        t = _table(data, section)
        if t.get("enabled", "listen" in t) and "listen" in t:
            host, port = parse_host_port(t["listen"], f"{section}.listen")
            listen.append(ListenConfig(section, host, port))
        elif t.get("enabled") and "listen" not in t:
            raise ConfigError(f"{section}.listen: required when {section}.enabled = true")
    peers_raw = data.get("peers", [])
    if not isinstance(peers_raw, list):
        raise ConfigError("peers: must be an array of tables ([[peers]])")
    peers: list[PeerConfig] = []
    for i, p in enumerate(peers_raw):
        where = f"peers[{i}]"
        if not isinstance(p, dict) or set(p) - {"id", "address"} or "id" not in p \
                or "address" not in p:
            raise ConfigError(f"{where}: needs exactly 'id' and 'address'")
        if not isinstance(p["id"], str) or not isinstance(p["address"], str):
            raise ConfigError(f"{where}: 'id' and 'address' must be strings")
        scheme, sep, rest = p["address"].partition("://")
        if not sep or not scheme or not rest:
            raise ConfigError(f"{where}.address: expected scheme://host:port, got {p['address']!r}")
        peers.append(PeerConfig(parse_key_hex(p["id"], f"{where}.id"), p["address"]))
    topics_raw = data.get("topics", [])
    if not isinstance(topics_raw, list):
        raise ConfigError("topics: must be an array of tables ([[topics]])")
    topics: list[TopicConfig] = []
    for i, t in enumerate(topics_raw):
        where = f"topics[{i}]"
        if not isinstance(t, dict) or "id" not in t or set(t) - {"id", "name", "readers"}:
            raise ConfigError(f"{where}: needs 'id' (and optional 'name', 'readers')")
        name = t.get("name", "")
        readers = t.get("readers", [])
        if not isinstance(name, str) or not isinstance(readers, list) \
                or not isinstance(t["id"], str):
            raise ConfigError(f"{where}: 'id'/'name' must be strings, 'readers' an array")
        topics.append(TopicConfig(
            parse_key_hex(t["id"], f"{where}.id"), name,
            tuple(parse_key_hex(r, f"{where}.readers") if isinstance(r, str)
                  else _bad(f"{where}.readers") for r in readers),
        ))
    names = [t.name for t in topics if t.name]
    if len(names) != len(set(names)):
        raise ConfigError("topics: duplicate topic names")
    mdns = _table(data, "mdns")
    interfaces: tuple[str, ...] | str = "all"
    if "interfaces" in mdns:
        iv = mdns["interfaces"]
        if isinstance(iv, str):
            if iv not in ("all", "default"):
                raise ConfigError("mdns.interfaces: 'all', 'default' or a list of interface IPs")
            interfaces = iv
        else:
            for ip in iv:
                try:
                    ipaddress.ip_address(ip)
                except (ValueError, TypeError):
                    raise ConfigError(f"mdns.interfaces: {ip!r} is not an IP address") from None
            interfaces = tuple(iv)
    log = _table(data, "log")
    level = log.get("level", "info").lower()
    if level not in LOG_LEVELS:
        raise ConfigError(f"log.level: one of {', '.join(LOG_LEVELS)}, got {level!r}")
    fmt = log.get("format", "kv").lower()
    if fmt not in ("kv", "json"):
        raise ConfigError(f"log.format: 'kv' or 'json', got {fmt!r}")
    metrics = _table(data, "metrics")
    metrics_address = None
    if metrics.get("address"):
        metrics_address = parse_host_port(metrics["address"], "metrics.address")
    status = _table(data, "status")
    interval = float(status.get("interval", 2.0))
    if not 0.05 <= interval <= 3600:
        raise ConfigError("status.interval: between 0.05 and 3600 seconds")
    name = node.get("name", "")
    if len(name) > 128:
        raise ConfigError("node.name: at most 128 characters")
    data_dir = _path(base, node["data_dir"])
    governance = None
    if "governance" in data:
        gov_raw = data["governance"]
        if not isinstance(gov_raw, dict):
            raise ConfigError("governance: must be a table ([governance])")

        def resolve(text: str, where: str) -> bytes:
            for t in topics:
                if t.name and t.name == text:
                    return t.topic
            return parse_key_hex(text, where)

        try:
            governance = parse_governance(gov_raw, base, data_dir, resolve)
        except P2PMsgError as exc:
            raise ConfigError(str(exc)) from None
    attachments = _table(data, "attachments")
    fetch_interval = attachments.get("interval", 5.0)
    if (isinstance(fetch_interval, bool) or not isinstance(fetch_interval, int | float)
            or not 0.05 <= fetch_interval <= 3600):
        raise ConfigError("attachments.interval: between 0.05 and 3600 seconds")
    api = _api_settings(base, _table(data, "api"))
    if api.enabled and org_id is None:
        raise ConfigError("api.enabled needs node.org_id (the messenger's organisation)")
    return DaemonConfig(
        path=source,
        key=_path(base, node["key"]),
        certificate=_path(base, node["certificate"]) if node.get("certificate") else None,
        org_id=org_id,
        name=name,
        data_dir=data_dir,
        pid_file=_path(base, node["pid_file"]) if node.get("pid_file") else None,
        listen=tuple(listen),
        peers=tuple(peers),
        mdns_enabled=bool(mdns.get("enabled", False)),
        mdns_interfaces=interfaces,
        topics=tuple(topics),
        allow_all=bool(_table(data, "policy").get("allow_all", False)),
        log_level=level,
        log_format=fmt,
        metrics_address=metrics_address,
        status_interval=interval,
        governance=governance,
        api=api,
        fetch_attachments=bool(attachments.get("fetch", True)),
        fetch_interval=float(fetch_interval),
    )


def _api_settings(base: Path, api: dict[str, Any]) -> ApiSettings:
    host = api.get("host", "127.0.0.1")
    try:
        loopback = ipaddress.ip_address("127.0.0.1" if host == "localhost" else host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(f"api.host: must be a loopback address (127.0.0.1, ::1, localhost), "
                          f"got {host!r}; put a TLS reverse proxy in front for remote access")
    port = api.get("port", DEFAULT_API_PORT)
    if not 0 <= port <= 65535:
        raise ConfigError(f"api.port: {port} out of range 0..65535")
    static_raw = api.get("static_dir", STATIC_AUTO)
    static: Path | str | None
    if static_raw == STATIC_AUTO:
        static = STATIC_AUTO
    elif static_raw == "":
        static = None
    else:
        static = _path(base, static_raw)
    orgs_raw = api.get("orgs", [])
    if isinstance(orgs_raw, str):
        orgs_raw = [o for o in (p.strip() for p in orgs_raw.split(",")) if o]
    orgs = tuple(parse_key_hex(o, "api.orgs") if isinstance(o, str) else _bad("api.orgs")
                 for o in orgs_raw)
    return ApiSettings(
        enabled=bool(api.get("enabled", False)),
        host=host,
        port=port,
        unix_socket=_path(base, api["unix_socket"]) if api.get("unix_socket") else None,
        token_file=_path(base, api["token_file"]) if api.get("token_file") else None,
        static_dir=static,
        orgs=orgs,
    )


def _bad(where: str) -> bytes:
    raise ConfigError(f"{where}: ids must be strings of 64 hex digits")


def render_config(
    *, key: str, certificate: str, org_id: bytes, name: str, data_dir: str,
    tcp_listen: str | None = None, metrics_address: str | None = "127.0.0.1:9464",
    api_port: int | None = None,
) -> str:
    """The commented TOML file written by ``p2pmsg node init``."""
    tcp = (f'[tcp]\nlisten = "{tcp_listen}"\n' if tcp_listen
           else '# [tcp]\n# listen = "0.0.0.0:7420"\n')
    metrics = (f'address = "{metrics_address}"' if metrics_address
               else '# address = "127.0.0.1:9464"')
    api = (f"enabled = true\nport = {api_port}" if api_port is not None
           else f"enabled = false             # true: serve the local HTTP API\n"
                f"# port = {DEFAULT_API_PORT}")
    return f"""\
# p2pmsg node configuration (docs/operations.md documents every field).
# Every field can be overridden by P2PMSG_<SECTION>_<FIELD>, e.g. P2PMSG_LOG_LEVEL=debug.
# Relative paths are relative to this file's directory.

[node]
key = "{key}"
certificate = "{certificate}"
org_id = "{org_id.hex()}"
name = "{name}"
data_dir = "{data_dir}"
# pid_file = "p2pmsg.pid"

{tcp}
# [quic]
# listen = "0.0.0.0:4433"

[mdns]
enabled = false
# interfaces = "all"        # or "default", or ["10.1.2.3"]

[policy]
allow_all = false           # true: every peer may read every topic (tests/demos only)

[log]
level = "info"              # debug, info, warning, error
format = "kv"               # kv (key=value) or json

[metrics]
{metrics}

[api]                       # local HTTP API for apps and the rooms/send/read commands
{api}
# token_file = "data/api.token"   # default: <data_dir>/api.token (mode 0600)
# static_dir = "auto"             # the installed ward-chat page; "" = none
# orgs = ["<64 hex digits: another organisation's id>"]

# [[peers]]
# id = "<64 hex digits: the peer's node id>"
# address = "tcp://192.0.2.11:7420"

# [[topics]]
# id = "<64 hex digits>"
# name = "ward-chat"
# readers = ["<node id hex>"]
"""
