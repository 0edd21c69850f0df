"""Fixtures of the HTTP tests: an engine on its own thread (the official SDK is blocking and
runs its own loop thread) with short REST timers, and a guard that keeps every test on loopback.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from http_helpers import NO_RESPONSE_GRACE_MS, REST_TIMEOUT_MS

from iii_rx.engine import Engine, EngineThread


@pytest.fixture
def engine() -> Iterator[EngineThread]:
    handle = Engine.start_in_thread(
        port=0, namespace_grace_ms=100, rest_timeout_ms=REST_TIMEOUT_MS,
        http_no_response_grace_ms=NO_RESPONSE_GRACE_MS, functions_available_poll_ms=50,
        provider_ack_timeout_ms=500,
        http_secret_env_allowlist=("IIIRX_T_*",))  # the HTTP-invoked tests' secrets
    try:
        yield handle
    finally:
        handle.stop()


def _is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse every connection and name lookup beyond loopback, in every thread.

    The URL-policy tests name private and public addresses (and an ``.invalid`` host) to see
    them refused; if a refusal ever regressed, the request must fail here rather than leave
    the machine. A lookup of any name but ``localhost`` fails as an unknown name would.
    """
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def check(address: Any) -> None:
        if isinstance(address, tuple) and not _is_loopback(str(address[0])):
            raise OSError(errno.ENETUNREACH, f"test guard: {address[0]} is not loopback")

    def connect(self: socket.socket, address: Any) -> None:
        check(address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and name.rstrip(".").lower() != "localhost" \
                and not _is_loopback(name):
            raise socket.gaierror(socket.EAI_NONAME, f"test guard: no lookup of {name}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
