"""The listening ports of `lingtan up` and `lingtan api`: bound early, a busy one explained."""

from __future__ import annotations

import errno
import socket

#: MQTT's registered port, what `lingtan up` gives its broker when it is free
MQTT_PORT = 1883


class PortInUse(RuntimeError):
    """A port lingtan must listen on is taken; the message says what to change."""


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when a listening socket could be bound to (host, port) now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel considers free on `host` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def broker_port() -> tuple[int, str]:
    """The port for a broker `lingtan up` starts: 1883, or a free one and the reason why."""
    if port_free(MQTT_PORT):
        return MQTT_PORT, ""
    port = free_port()
    return port, (
        f"port {MQTT_PORT} is in use, so it listens on {port}:"
        f" gateways and mosquitto_pub connect with -p {port}"
    )


def api_in_use_message(host: str, port: int) -> str:
    return (
        f"port {port} on {host} is in use (another lingtan, or another program):"
        f" set LINGTAN_API_PORT or pass --api-port"
    )


def bind_api_socket(host: str, port: int) -> socket.socket:
    """The API's listening socket, bound before anything else starts so that a busy port is
    reported plainly (uvicorn would only log `[Errno 98]` and exit)."""
    family, kind, proto, _, addr = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    # as uvicorn does: a restart may reuse the port while old connections are in TIME_WAIT
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(api_in_use_message(host, port)) from None
        raise PortInUse(
            f"cannot listen on {host}:{port} ({exc.strerror}):"
            f" set LINGTAN_API_PORT / LINGTAN_API_HOST or pass --api-port / --api-host"
        ) from None
    return sock
