"""Free local ports, so test labs never collide with a hand-run lab or each other."""

from __future__ import annotations

import socket


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(tcp: int, udp: int) -> tuple[list[int], list[int]]:
    """Distinct free ports; all sockets are held until every port is chosen (no duplicates)."""
    held: list[socket.socket] = []
    try:
        tcp_ports: list[int] = []
        udp_ports: list[int] = []
        for kind, count, out in (
            (socket.SOCK_STREAM, tcp, tcp_ports),
            (socket.SOCK_DGRAM, udp, udp_ports),
        ):
            while len(out) < count:
                sock = socket.socket(socket.AF_INET, kind)
                held.append(sock)
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
                if port not in tcp_ports and port not in udp_ports:
                    out.append(port)
        return tcp_ports, udp_ports
    finally:
        for sock in held:
            sock.close()


def tcp_port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def udp_port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
