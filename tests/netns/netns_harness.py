"""Two sites and a router in Linux network namespaces, for multi-host tests.

Topology (docs/testing-netns.md has the diagram)::

    a1 10.201.1.11 ┐                                               ┌ b1 10.201.2.11
                   ├ br0 [ns sa] ─ ra 10.201.1.1 [ns r] 10.201.2.1 rb ═ wanlink ═ br0 [ns sb] ┤
    a2 10.201.1.12 ┘                                               └ b2 10.201.2.12

Every node is its own namespace with one ``eth0``; each site is a namespace holding
a bridge (so nothing is added to the host's network); the router namespace routes
between the sites and forwards no multicast, so mDNS stays inside a site. The
router's site-B side is a userspace link (``wanlink.py``: two TAP devices) because
the test kernel lacks ``sch_netem``; it adds loss and latency, and
:meth:`Topology.cut` / :meth:`Topology.heal` set ``rb`` down / up.

Namespaces are named ``p2pm-<pid>-<random>-<role>``. Cleanup: :meth:`Topology.destroy`
(kills every process left in our namespaces, then deletes them) runs from the
fixture finalizer and from ``build`` itself on failure; :func:`sweep_stale` deletes
namespaces of earlier runs whose creating process is gone (so concurrent runs on
one machine never remove each other's namespaces).

Call :func:`unavailable_reason` first: it says why namespaces cannot be used here
(not root, no iproute2, ``ip netns add`` refused, no /dev/net/tun), or None.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

__all__ = [
    "PREFIX",
    "Host",
    "Topology",
    "list_namespaces",
    "sweep_stale",
    "unavailable_reason",
]

PREFIX = "p2pm-"
HERE = Path(__file__).resolve().parent
PROBE = HERE / "probe.py"
WANLINK = HERE / "wanlink.py"
_IP_TIMEOUT = 10.0


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=_IP_TIMEOUT, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def list_namespaces() -> list[str]:
    """Names of all network namespaces on this machine (``ip netns list``)."""
    out = _ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def unavailable_reason() -> str | None:
    """Why the netns tests cannot run on this machine, or None if they can."""
    if os.geteuid() != 0:
        return "network namespaces need root (run the netns tests as root; CI does)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"`{tool}` not found: install iproute2 (tools/ensure_netns_deps.sh)"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing (the WAN link emulator needs TAP devices)"
    name = f"{PREFIX}{os.getpid()}-probe"
    result = _ip("netns", "add", name, check=False)
    if result.returncode != 0:
        return f"`ip netns add` failed: {result.stderr.strip()}"
    _ip("netns", "del", name, check=False)
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_namespace_processes(ns: str) -> None:
    out = _ip("netns", "pids", ns, check=False).stdout
    for pid in (int(p) for p in out.split() if p.isdigit()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _delete_namespace(ns: str) -> None:
    _kill_namespace_processes(ns)
    _ip("netns", "del", ns, check=False)


def sweep_stale() -> list[str]:
    """Delete project namespaces whose creating process no longer runs; return them."""
    removed = []
    for ns in list_namespaces():
        if not ns.startswith(PREFIX):
            continue
        pid_text = ns[len(PREFIX) :].split("-", 1)[0]
        if pid_text.isdigit() and _pid_alive(int(pid_text)):
            continue
        _delete_namespace(ns)
        removed.append(ns)
    return removed


@dataclass(frozen=True, slots=True)
class Host:
    """One node's namespace: its name, site, and address on ``eth0``."""

    role: str
    ns: str
    site: str
    ip: str


class Topology:
    """Builds, drives and destroys the two-site topology. Use :meth:`build` first."""

    SUBNETS: ClassVar[dict[str, str]] = {"a": "10.201.1", "b": "10.201.2"}
    HOSTS = ("a1", "a2", "b1", "b2")

    def __init__(self, *, seed: int = 0) -> None:
        self.run_id = f"{os.getpid()}-{secrets.token_hex(2)}"
        self.prefix = f"{PREFIX}{self.run_id}-"
        self.router = self.prefix + "r"
        self.sites = {s: self.prefix + "s" + s for s in self.SUBNETS}
        self.hosts = {
            role: Host(role, self.prefix + role, role[0],
                       f"{self.SUBNETS[role[0]]}.{11 + int(role[1]) - 1}")
            for role in self.HOSTS
        }
        self.gateways = {s: f"{net}.1" for s, net in self.SUBNETS.items()}
        self.seed = seed
        self._wanlink: subprocess.Popen[str] | None = None
        self._created: list[str] = []

    @property
    def namespaces(self) -> list[str]:
        """Every namespace this topology owns (whether created yet or not)."""
        return [self.router, *self.sites.values(), *(h.ns for h in self.hosts.values())]

    # -- lifecycle ------------------------------------------------------------------

    def build(self) -> Topology:
        """Create namespaces, links, addresses and routes; destroy all on failure."""
        try:
            self._build()
        except BaseException:
            self.destroy()
            raise
        return self

    def _add_ns(self, ns: str) -> None:
        _ip("netns", "add", ns)
        self._created.append(ns)
        _ip("-n", ns, "link", "set", "lo", "up")

    def _build(self) -> None:
        for ns in self.namespaces:
            self._add_ns(ns)
        r = self.router
        for ns in self.sites.values():
            # No STP, no IGMP snooping: a plain switch floods multicast to every port.
            _ip("-n", ns, "link", "add", "br0", "type", "bridge",
                "stp_state", "0", "mcast_snooping", "0")
            _ip("-n", ns, "link", "set", "br0", "up")
        for host in self.hosts.values():
            site_ns = self.sites[host.site]
            port = "p-" + host.role
            _ip("-n", site_ns, "link", "add", port, "type", "veth",
                "peer", "name", "eth0", "netns", host.ns)
            _ip("-n", site_ns, "link", "set", port, "master", "br0", "up")
            _ip("-n", host.ns, "addr", "add", host.ip + "/24", "dev", "eth0")
            _ip("-n", host.ns, "link", "set", "eth0", "up")
            _ip("-n", host.ns, "route", "add", "default", "via", self.gateways[host.site])
        # Site A <-> router: a plain veth.
        _ip("-n", self.sites["a"], "link", "add", "uplink", "type", "veth",
            "peer", "name", "ra", "netns", r)
        _ip("-n", self.sites["a"], "link", "set", "uplink", "master", "br0", "up")
        _ip("-n", r, "addr", "add", self.gateways["a"] + "/24", "dev", "ra")
        _ip("-n", r, "link", "set", "ra", "up")
        # Router <-> site B: the emulated WAN link (two TAPs joined in userspace).
        self._wanlink = subprocess.Popen(
            ["ip", "netns", "exec", r, sys.executable, str(WANLINK), "rb", "uplink",
             str(self.seed)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert self._wanlink.stdout is not None
        if self._wanlink.stdout.readline().strip() != "ready":
            raise RuntimeError("wanlink did not start")
        _ip("-n", r, "link", "set", "uplink", "netns", self.sites["b"])
        _ip("-n", self.sites["b"], "link", "set", "uplink", "master", "br0", "up")
        _ip("-n", r, "addr", "add", self.gateways["b"] + "/24", "dev", "rb")
        _ip("-n", r, "link", "set", "rb", "up")
        self.exec(r, "sysctl", "-qw", "net.ipv4.ip_forward=1")

    def destroy(self) -> None:
        """Kill every process in our namespaces and delete them. Idempotent."""
        if self._wanlink is not None:
            self._wanlink.kill()
            self._wanlink.wait(timeout=5)
            for pipe in (self._wanlink.stdin, self._wanlink.stdout):
                if pipe is not None:
                    pipe.close()
            self._wanlink = None
        existing = set(list_namespaces())
        for ns in self.namespaces:
            if ns in existing:
                _delete_namespace(ns)
        self._created.clear()

    # -- running things inside ------------------------------------------------------

    def netns_exec(self, ns: str) -> list[str]:
        """The argv prefix that runs a command inside namespace ``ns``."""
        return ["ip", "netns", "exec", ns]

    def exec(self, ns: str, *argv: str, timeout: float = 20.0) -> str:
        """Run ``argv`` inside ``ns``; return stdout; raise on a non-zero exit."""
        result = subprocess.run(
            [*self.netns_exec(ns), *argv], capture_output=True, text=True,
            timeout=timeout, check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{argv} in {ns} failed ({result.returncode}): "
                               f"{result.stdout.strip()} {result.stderr.strip()}")
        return result.stdout

    def ping(self, ns: str, address: str, *, timeout: float = 1.0, attempts: int = 3) -> bool:
        """True if ``address`` answers an ICMP echo sent from ``ns``."""
        return self.ping_rtt(ns, address, timeout=timeout, attempts=attempts) is not None

    def ping_rtt(
        self, ns: str, address: str, *, timeout: float = 1.0, attempts: int = 3
    ) -> float | None:
        """Round-trip seconds of the first answered ICMP echo, or None."""
        for _ in range(attempts):
            result = subprocess.run(
                [*self.netns_exec(ns), sys.executable, str(PROBE), "ping", address,
                 str(timeout)],
                capture_output=True, text=True, timeout=timeout + 10, check=False,
            )
            if result.returncode == 0:
                return float(result.stdout.split()[1])
        return None

    def multicast_reach(
        self, sender: str, receivers: list[str], group: str, port: int, *, ttl: int,
        count: int = 5,
    ) -> dict[str, int]:
        """Send ``count`` datagrams to ``group`` from host ``sender``; datagrams per receiver."""
        listeners: dict[str, subprocess.Popen[str]] = {}
        try:
            for role in receivers:
                host = self.hosts[role]
                proc = subprocess.Popen(
                    [*self.netns_exec(host.ns), sys.executable, str(PROBE), "mcast-recv",
                     host.ip, group, str(port), "0.8"],
                    stdout=subprocess.PIPE, text=True,
                )
                listeners[role] = proc
                assert proc.stdout is not None
                if proc.stdout.readline().strip() != "listening":
                    raise RuntimeError(f"multicast listener on {role} did not start")
            src = self.hosts[sender]
            self.exec(src.ns, sys.executable, str(PROBE), "mcast-send", src.ip, group,
                      str(port), str(count), str(ttl))
            counts = {}
            for role, proc in listeners.items():
                out, _ = proc.communicate(timeout=10)
                counts[role] = int(out.strip())
            return counts
        finally:
            for proc in listeners.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()

    # -- the inter-site link --------------------------------------------------------

    def _wan(self, command: dict[str, object]) -> str:
        proc = self._wanlink
        if proc is None or proc.stdin is None or proc.stdout is None:
            raise RuntimeError("the WAN link is not running")
        proc.stdin.write(json.dumps(command) + "\n")
        proc.stdin.flush()
        reply = proc.stdout.readline().strip()
        if not reply.startswith("ok"):
            raise RuntimeError(f"wanlink answered {reply!r}")
        return reply

    def impair(self, *, delay_ms: float, loss: float) -> None:
        """Per direction on the inter-site link: constant delay and random loss (0..1)."""
        self._wan({"delay_ms": delay_ms, "loss": loss})

    def wan_statistics(self) -> dict[str, int]:
        """Frames forwarded / dropped by the WAN link so far."""
        reply = self._wan({"stats": True})
        stats: dict[str, int] = json.loads(reply[2:])
        return stats

    def cut(self) -> None:
        """Partition the sites: the router's site-B interface goes down."""
        _ip("-n", self.router, "link", "set", "rb", "down")

    def heal(self) -> None:
        """Undo :meth:`cut` (the connected route to site B comes back with the link)."""
        _ip("-n", self.router, "link", "set", "rb", "up")
        # The connected route reappears with the link; wait until it is there.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            routes = _ip("-n", self.router, "route", "show", "dev", "rb", check=False).stdout
            if self.SUBNETS["b"] in routes:
                return
            time.sleep(0.05)
        raise RuntimeError("route to site B did not come back after heal")
