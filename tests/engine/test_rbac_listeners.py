"""Several worker listeners over real sockets: one shared router, channels on each."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest
from raw_engine_client import RawWorker, wait_until
from websockets.asyncio.client import connect as ws_connect

import iii_rx
from iii_rx.engine import Engine
from iii_rx.engine.listeners import DEFAULT_HANDSHAKE_TIMEOUT_MS, Listener
from iii_rx.engine.rbac_config import FunctionFilter, RbacConfig


async def test_workers_on_different_listeners_call_each_other() -> None:
    listeners = (Listener(port=0), Listener(port=0))
    async with Engine(port=0, namespace_grace_ms=300, listeners=listeners) as engine:
        urls = engine.listener_urls
        assert len(urls) == 3 and len(set(urls)) == 3
        assert all(url.startswith("ws://127.0.0.1:") for url in urls)
        a = await RawWorker.connect(urls[1])
        b = await RawWorker.connect(urls[2])
        await b.register(name="on-b")
        await b.register_function("b::echo")
        await wait_until(lambda: ("default", "b::echo") in engine.registry.functions)
        call = asyncio.create_task(a.call("b::echo", {"v": 1}))
        await b.serve_once()
        frame = await call
        assert frame["result"]["v"] == 1
        # the main port routes to them too
        main = await RawWorker.connect(urls[0])
        call = asyncio.create_task(main.call("b::echo", 2))
        await b.serve_once()
        assert (await call)["result"] == 2


async def test_channels_are_mounted_on_every_listener() -> None:
    async with Engine(port=0, listeners=(Listener(port=0),)) as engine:
        worker = await RawWorker.connect(engine.listener_urls[1])
        refs = await worker.result_of("engine::channels::create", {})
        writer, reader = refs["writer"], refs["reader"]
        base = engine.listener_urls[1]
        async with ws_connect(f"{base}/ws/channels/{writer['channel_id']}?key="
                              f"{writer['access_key']}&dir=write") as w, \
                ws_connect(f"{base}/ws/channels/{reader['channel_id']}?key="
                           f"{reader['access_key']}&dir=read") as r:
            await w.send(b"through the second listener")
            assert await asyncio.wait_for(r.recv(), 5) == b"through the second listener"


async def test_a_listener_that_cannot_bind_fails_the_start() -> None:
    async with Engine(port=0) as first:
        engine = Engine(port=0, listeners=(Listener(port=first.port),))
        with pytest.raises(OSError):
            await engine.start()
        # the start undid itself: the main port it had opened is closed again
        with pytest.raises(OSError):
            await RawWorker.connect(engine.listener_urls[0])


async def test_the_main_port_itself_may_be_guarded() -> None:
    rbac = RbacConfig(expose_functions=(FunctionFilter.match("engine::functions::*"),))
    async with Engine(port=0, rbac=rbac) as engine:
        worker = await RawWorker.connect(engine.url)
        assert "error" not in await worker.call("engine::functions::list", {})
        denied = await worker.call("engine::workers::list", {})
        assert denied["error"]["code"] == "FORBIDDEN"


async def test_telemetry_is_taken_on_every_listener() -> None:
    """A worker exports to its own listener's ``/otel`` (its URL + ``/otel``): the frames of
    the further listeners reach the same intake as the main port's."""
    metrics = b'MTRC{"resourceMetrics": []}'
    async with Engine(port=0, listeners=(Listener(port=0),)) as engine:
        def taken(count: int) -> Callable[[], bool]:
            return lambda: engine.otel.frames == count

        for n, url in enumerate(engine.listener_urls, 1):
            async with ws_connect(f"{url}/otel") as otel:
                await otel.send(metrics)
                await engine.otel.wait_for(taken(n))
        assert engine.otel.rejected == 0


async def _dropped(url: str, sent: bytes) -> None:
    """Open a raw TCP connection to ``url``'s port, send ``sent`` and read until the engine
    drops it (EOF or a reset); 5 s is half the default deadline, so only the configured one
    ends the read in time."""
    port = int(url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(sent)
        await writer.drain()

        async def until_closed() -> None:
            try:
                while await reader.read(4096):
                    pass
            except ConnectionResetError:
                pass

        await asyncio.wait_for(until_closed(), 5)
    finally:
        writer.close()


async def test_a_socket_that_stalls_before_the_upgrade_is_dropped() -> None:
    """``handshake_timeout_ms`` of the main port and of a further listener: a socket that sends
    nothing, or half an upgrade request, is closed; an established worker is not."""
    assert DEFAULT_HANDSHAKE_TIMEOUT_MS == Listener().handshake_timeout_ms == 10_000
    async with Engine(port=0, handshake_timeout_ms=100,
                      listeners=(Listener(port=0, handshake_timeout_ms=100),)) as engine:
        for url in engine.listener_urls:
            worker = await RawWorker.connect(url)  # a short deadline still lets workers in
            await _dropped(url, b"")
            await _dropped(url, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            # both stalled sockets outlived the deadline after the worker connected: the
            # worker's session did not meet it
            assert "error" not in await worker.call("engine::workers::list", {})


def test_a_handshake_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="handshake_timeout_ms"):
        Listener(handshake_timeout_ms=0)
    with pytest.raises(ValueError, match="handshake_timeout_ms"):
        Engine(handshake_timeout_ms=-1)


async def test_until_its_session_is_granted_a_connection_sends_small_messages_only() -> None:
    """Nothing reads a guarded socket while its auth function runs, so what it sends waits in
    memory: 64 messages of the port's 64 MiB let anyone without credentials hold 4 GiB. Until
    the session is granted a message may be 1 MiB; after, the port's bound is back."""
    release = asyncio.Event()
    guarded = Listener(port=0, rbac=RbacConfig(auth_function_id="t::slow-auth"))
    async with Engine(port=0, namespace_grace_ms=300, listeners=(guarded,)) as engine, \
            iii_rx.connect(engine.url, name="trusted") as trusted:
        async def slow_auth(data: object) -> dict[str, object]:
            await release.wait()
            return {}

        trusted.register_function("t::slow-auth", slow_auth)
        await wait_until(lambda: ("default", "t::slow-auth") in engine.registry.functions)
        big = json.dumps({"type": "registerservice", "id": "s", "description": "x" * 2**21})
        async with ws_connect(engine.listener_urls[1], max_size=None) as early:
            await early.send(big)  # while the auth function still runs
            await early.wait_closed()
            assert early.close_code == 1009
        release.set()
        async with ws_connect(engine.listener_urls[1], max_size=None) as admitted:
            assert json.loads(await admitted.recv())["type"] == "workerregistered"
            await admitted.send(big)
            await asyncio.wait_for(await admitted.ping(), 5)  # still open: the bound is back
