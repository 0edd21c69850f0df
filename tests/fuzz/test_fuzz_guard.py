"""The loopback-only rules of the fuzz harness hold: nothing here can reach off the machine."""

from __future__ import annotations

import asyncio
import json
import socket

import aiohttp
import aiohttp.resolver
import pytest
from fuzz_strategies import PORT_PLACEHOLDER, frame_dicts, fuzz_settings
from fuzz_support import LoopbackGuard, Msg
from fuzz_targets import LOOPBACK_URL, EngineEnv
from hypothesis import given

from iii_rx.protocol import RegisterFunction, decode


def test_aiohttp_resolves_through_the_guarded_getaddrinfo() -> None:
    """aiohttp's threaded resolver calls ``socket.getaddrinfo``; an installed aiodns would
    make it the c-ares resolver, which the guard cannot see."""
    assert aiohttp.resolver.DefaultResolver is aiohttp.resolver.ThreadedResolver


def test_guard_refuses_and_records_every_way_off_the_machine() -> None:
    with LoopbackGuard() as guard:
        with pytest.raises(OSError):
            socket.create_connection(("192.0.2.1", 9), timeout=1)
        with pytest.raises(OSError), socket.socket() as sock:
            sock.connect(("10.0.0.1", 9))
        with pytest.raises(OSError):
            socket.getaddrinfo("example.com", 443)

        async def from_asyncio() -> None:
            with pytest.raises(OSError):
                await asyncio.open_connection("192.0.2.1", 80)
            async with aiohttp.ClientSession() as session:
                with pytest.raises(aiohttp.ClientError):
                    await session.get("https://example.com/")

        asyncio.run(from_asyncio())
        assert len(guard.violations) == 5, guard.violations
        guard.violations.clear()


def test_guard_lets_loopback_through() -> None:
    with LoopbackGuard() as guard, socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname(), timeout=1):
            pass
        assert socket.getaddrinfo("127.0.0.1", 80)
        assert guard.violations == []


def _env_with_ports() -> EngineEnv:
    env = EngineEnv()
    env.ports = [1111, 1111, 2222, 3333]
    env.stub_port = 1111
    return env


@pytest.mark.parametrize("url", ["https://example.com/x", "http://10.0.0.1/", "http://[::1]:1/",
                                 "http://127.0.0.1:80@evil.example/", "http://localhost:1/",
                                 "http://127.0.0.1.nip.io/", "http://2130706433/",
                                 "http://127.0.0.1\\@evil.example/"])
def test_non_loopback_invocation_urls_are_rewritten(url: str) -> None:
    env = _env_with_ports()
    frame = {"type": "registerfunction", "id": "f", "invocation": {"url": url}}
    for msg in (Msg(json.dumps(frame)), Msg(json.dumps(frame).encode())):
        sent = decode(env.materialize(msg).data)
        assert isinstance(sent, RegisterFunction) and sent.invocation is not None
        assert sent.invocation.url == "http://127.0.0.1:1111/rewritten"


@fuzz_settings(60)
@given(frame_dicts(["registerfunction"]))
def test_every_generated_invocation_url_is_loopback(frame: dict) -> None:
    env = _env_with_ports()
    text = json.dumps(frame)
    assert PORT_PLACEHOLDER not in env.materialize(Msg(text)).data
    try:
        sent = decode(env.materialize(Msg(text)).data)
    except ValueError:
        return
    if isinstance(sent, RegisterFunction) and sent.invocation is not None:
        assert LOOPBACK_URL.match(sent.invocation.url), sent.invocation.url
