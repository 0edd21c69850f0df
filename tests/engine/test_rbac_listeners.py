"""Several worker listeners over real sockets: one shared router, channels on each."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from raw_engine_client import RawWorker, wait_until
from websockets.asyncio.client import connect as ws_connect

from iii_rx.engine import Engine
from iii_rx.engine.listeners import Listener
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
