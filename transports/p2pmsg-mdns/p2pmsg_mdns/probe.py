"""Check whether IPv4 multicast works on an interface, before blaming mDNS.

mDNS needs multicast to 224.0.0.251 to leave *and come back* (``IP_MULTICAST_LOOP``)
on the chosen interface. Containers, some VPNs and hardened hosts block that.
:func:`multicast_unavailable_reason` sends one datagram to a multicast group on an
ephemeral port and waits for it; the tests use it to skip with the real reason,
and site IT can run ``python -m p2pmsg_mdns.probe [interface-ip]``.
"""

from __future__ import annotations

import os
import socket
import sys

__all__ = ["MDNS_GROUP", "multicast_unavailable_reason"]

MDNS_GROUP = "224.0.0.251"
"""The IPv4 mDNS multicast group (RFC 6762)."""


def multicast_unavailable_reason(
    interface_ip: str = "127.0.0.1", timeout: float = 1.0
) -> str | None:
    """``None`` if a multicast datagram sent on ``interface_ip`` loops back, else why not.

    Blocks for at most ``timeout`` seconds. Uses an ephemeral port, so it does not
    disturb (or need) UDP 5353; it tests routing and group membership only.
    """
    token = os.urandom(16)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("", 0))
            port = sock.getsockname()[1]
            group = socket.inet_aton(MDNS_GROUP) + socket.inet_aton(interface_ip)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, group)
            sock.setsockopt(
                socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface_ip)
            )
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
            sock.settimeout(timeout)
            sock.sendto(token, (MDNS_GROUP, port))
            while True:
                data, _ = sock.recvfrom(64)
                if data == token:
                    return None
    except TimeoutError:
        return f"multicast to {MDNS_GROUP} on {interface_ip} did not loop back within {timeout}s"
    except OSError as exc:
        return f"multicast on {interface_ip} failed: {exc}"


def main(argv: list[str] | None = None) -> int:
    """``python -m p2pmsg_mdns.probe [interface-ip]``: exit 0 if multicast works."""
    args = sys.argv[1:] if argv is None else argv
    interface_ip = args[0] if args else "127.0.0.1"
    reason = multicast_unavailable_reason(interface_ip)
    if reason is None:
        print(f"multicast works on {interface_ip}")
        return 0
    print(reason)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
