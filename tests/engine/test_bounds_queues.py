"""Issue 12 item 6: what waits to be sent to one peer is bounded in bytes.

A peer that does not read is simulated by a raw worker whose socket has a small receive buffer
and whose transport stops reading (the kernel and the engine's socket buffer fill, then the
engine's own queue). The assertions read the engine's accounting of its queue
(``WorkerConnection.queued_bytes`` / ``peak_queued_bytes``), not the process's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest
from raw_engine_client import Frame, RawWorker, wait_until
from websockets.exceptions import ConnectionClosed

from iii_rx.engine import Engine
from iii_rx.engine.connection import QUEUE_FULL, WorkerConnection
from iii_rx.errors import IIIInvocationError

LIMIT = 256 * 1024
PAYLOAD = {"blob": "x" * 32 * 1024}
MAX_CALLS = 2000  # 64 MB: far more than kernel, socket and queue can hold before the bound


def bounded_engine(**options: Any) -> Engine:
    options = {"stuck_timeout_ms": 0, "ping_interval_ms": 0, **options}
    return Engine(port=0, namespace_grace_ms=300, max_queue_bytes=LIMIT, **options)


async def deaf(url: str) -> RawWorker:
    """A raw peer with a small receive buffer; call ``stop_reading`` to make it deaf."""
    host, port = url.removeprefix("ws://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    return await RawWorker.connect(url, sock=sock)


_deaf: list[RawWorker] = []


def stop_reading(peer: RawWorker) -> None:
    peer.ws.transport.pause_reading()
    _deaf.append(peer)


@pytest.fixture(autouse=True)
async def _hear_again() -> AsyncIterator[None]:
    """Let deaf peers read again so that closing them does not wait out a close timeout."""
    yield
    while _deaf:
        transport = _deaf.pop().ws.transport
        if not transport.is_closing():
            transport.resume_reading()


async def answers(caller: RawWorker, ids: Iterable[str], timeout: float = 10.0) -> dict[str, Frame]:
    """The ``invocationresult`` of every id (fails if one does not come)."""
    wanted = set(ids)
    got: dict[str, Frame] = {}
    while wanted - got.keys():
        frame = await caller.recv("invocationresult", timeout=timeout,
                                  where=lambda f: f.get("invocation_id") in wanted)
        got[frame["invocation_id"]] = frame
    return got


def code(frame: Frame) -> str | None:
    error = frame.get("error")
    return error.get("code") if isinstance(error, dict) else None


async def setup(engine: Engine, handler: RawWorker, caller: RawWorker) -> WorkerConnection:
    await handler.register_function("bound::echo")
    await handler.register("bound-handler")
    await caller.register("bound-caller")
    await wait_until(lambda: ("default", "bound::echo") in engine.registry.functions)
    return engine.registry.workers[handler.worker_id]


async def call_until(caller: RawWorker, done: Any) -> list[str]:
    """Send calls until ``done()`` (checked between sends) and return their ids."""
    ids = []
    for _ in range(MAX_CALLS):
        if done():
            break
        try:
            ids.append(await caller.invoke("bound::echo", PAYLOAD))
        except ConnectionClosed:
            break
    await wait_until(done)
    return ids


@contextlib.asynccontextmanager
async def serving(worker: RawWorker) -> AsyncIterator[None]:
    """Echo every invocation ``worker`` gets while the block runs."""

    async def serve() -> None:
        while True:
            await worker.serve_once(timeout=60)

    task = asyncio.ensure_future(serve())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
            await task


async def test_calls_to_a_worker_that_does_not_read_are_refused_then_delivered() -> None:
    async with bounded_engine() as engine:
        handler = await deaf(engine.url)
        caller = await RawWorker.connect(engine.url)
        conn = await setup(engine, handler, caller)
        stop_reading(handler)

        sent = await call_until(caller, lambda: conn.queued_bytes > conn.call_limit)
        # Past half the bound, calls are answered at once instead of queued.
        extra = [await caller.invoke("bound::echo", PAYLOAD) for _ in range(5)]
        refused = await answers(caller, extra)
        assert {code(f) for f in refused.values()} == {QUEUE_FULL}
        assert "not reading" in refused[extra[0]]["error"]["message"]
        with pytest.raises(IIIInvocationError) as raised:
            await engine.call("bound::echo", {}, timeout=5)
        assert raised.value.code == QUEUE_FULL
        assert conn.peak_queued_bytes <= LIMIT
        assert conn.dropped is None

        # It reads again: every call that was sent is delivered and answered.
        handler.ws.transport.resume_reading()
        async with serving(handler):
            results = await answers(caller, sent, timeout=30)
        codes = [code(f) for f in results.values()]
        assert set(codes) <= {None, QUEUE_FULL}
        assert None in codes
        assert all(f["result"]["blob"] == PAYLOAD["blob"] for f in results.values()
                   if code(f) is None)


async def test_a_stuck_worker_is_dropped_and_its_calls_stopped() -> None:
    async with bounded_engine(stuck_timeout_ms=300) as engine:
        handler = await deaf(engine.url)
        caller = await RawWorker.connect(engine.url)
        conn = await setup(engine, handler, caller)
        stop_reading(handler)

        sent = await call_until(caller, lambda: conn.queued_bytes > 0)
        await wait_until(lambda: handler.worker_id not in engine.registry.workers, timeout=10)
        assert conn.dropped is not None and "none could be written" in conn.dropped
        results = await answers(caller, sent)
        codes = [code(f) for f in results.values()]
        assert set(codes) <= {"invocation_stopped", QUEUE_FULL}
        assert "invocation_stopped" in codes
        gone = await caller.call("bound::echo", {})
        assert code(gone) == "function_not_found"
        assert not engine.router.pending_count()


async def test_a_caller_that_does_not_read_its_results_is_dropped() -> None:
    async with bounded_engine() as engine:
        handler = await RawWorker.connect(engine.url)
        caller = await deaf(engine.url)
        await setup(engine, handler, caller)
        conn = engine.registry.workers[caller.worker_id]
        stop_reading(caller)

        async with serving(handler):
            await call_until(caller, lambda: conn.dropped is not None)
            assert "does not read" in (conn.dropped or "")
            assert conn.peak_queued_bytes <= LIMIT
            await wait_until(lambda: caller.worker_id not in engine.registry.workers)

            # The worker it called is unharmed.
            other = await RawWorker.connect(engine.url)
            answer = await other.call("bound::echo", {"n": 1}, timeout=10)
            assert answer["result"]["n"] == 1
        assert not engine.router.pending_count()
