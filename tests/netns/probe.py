"""Network probes run inside a namespace by the netns harness (no ping binary needed).

``python probe.py ping ADDR [TIMEOUT]`` — one ICMP echo over a raw socket (root);
exit 0 and ``reply RTT_SECONDS`` if answered, exit 1 and ``timeout`` otherwise.

``python probe.py mcast-recv IFADDR GROUP PORT SECONDS`` — joins GROUP on the
interface with address IFADDR, prints ``listening``, then after SECONDS prints the
number of datagrams received.

``python probe.py mcast-send IFADDR GROUP PORT COUNT TTL`` — sends COUNT datagrams
to GROUP:PORT out of the interface with address IFADDR, with the given TTL.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import time

__all__ = ["main"]


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return int(~total & 0xFFFF)


def ping(address: str, timeout: float) -> float | None:
    ident = os.getpid() & 0xFFFF
    header = struct.pack("!BBHHH", 8, 0, 0, ident, 1)
    body = b"p2pmsg-netns-probe"
    packet = struct.pack("!BBHHH", 8, 0, _checksum(header + body), ident, 1) + body
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        sock.settimeout(timeout)
        sent = time.monotonic()
        sock.sendto(packet, (address, 0))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data, source = sock.recvfrom(2048)
            except TimeoutError:
                return None
            ihl = (data[0] & 0x0F) * 4
            kind, _, _, rid, _ = struct.unpack("!BBHHH", data[ihl : ihl + 8])
            if kind == 0 and rid == ident and source[0] == address:
                return time.monotonic() - sent
    return None


def mcast_recv(ifaddr: str, group: str, port: int, seconds: float) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("", port))
        mreq = socket.inet_aton(group) + socket.inet_aton(ifaddr)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        print("listening", flush=True)
        count = 0
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                sock.recvfrom(2048)
            except TimeoutError:
                break
            count += 1
        return count


def mcast_send(ifaddr: str, group: str, port: int, count: int, ttl: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP) as sock:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(ifaddr))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
        for i in range(count):
            sock.sendto(b"p2pmsg-netns-mcast %d" % i, (group, port))
            time.sleep(0.02)


def main(argv: list[str]) -> int:
    cmd = argv[1]
    if cmd == "ping":
        rtt = ping(argv[2], float(argv[3]) if len(argv) > 3 else 1.0)
        print("timeout" if rtt is None else f"reply {rtt:.6f}", flush=True)
        return 1 if rtt is None else 0
    if cmd == "mcast-recv":
        print(mcast_recv(argv[2], argv[3], int(argv[4]), float(argv[5])), flush=True)
        return 0
    if cmd == "mcast-send":
        mcast_send(argv[2], argv[3], int(argv[4]), int(argv[5]), int(argv[6]))
        return 0
    print(f"unknown command {cmd!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
