"""REST clients that leave before their answer (resource-abuse hunt, D2), over real sockets on
127.0.0.1: a request whose client closed or reset its connection frees its concurrency slot at
once and withdraws its pending call (a late answer of the worker is dropped quietly), also while
a streamed response waits for its next chunk; a client that merely does not read yet is not
gone."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from http_helpers import exchange, request, status
from websockets.asyncio.client import ClientConnection, connect

from iii_rx.engine import Engine
from iii_rx.engine.registry import CallContext

REST_TIMEOUT_MS = 10_000
"""Far beyond every bounded wait below: an answer within them did not wait for the 504."""
PROMPT = 3.0


async def open_request(port: int, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A GET of ``path`` on a connection left open (the test decides how its client leaves)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request("GET", path))
    await writer.drain()
    return reader, writer


async def fetch(port: int, path: str) -> bytes:
    return await exchange(port, request("GET", path))


class Worker:
    """A raw-frame worker: ``t::never`` is never answered (its invocation ids are kept),
    ``t::fast`` at once."""

    def __init__(self, ws: ClientConnection, expected: int) -> None:
        self.ws = ws
        self.never: list[str] = []
        self.expected = expected
        self.all_arrived = asyncio.Event()
        """``expected`` calls of ``t::never`` arrived."""

    async def serve(self) -> None:
        async for message in self.ws:
            frame = json.loads(message)
            if frame.get("type") != "invokefunction" or not frame.get("invocation_id"):
                continue
            if frame["function_id"] == "t::fast":
                await self.answer(frame["invocation_id"], "t::fast")
            else:
                self.never.append(frame["invocation_id"])
                if len(self.never) >= self.expected:
                    self.all_arrived.set()

    async def answer(self, invocation_id: str, function_id: str) -> None:
        await self.ws.send(json.dumps({
            "type": "invocationresult", "invocation_id": invocation_id,
            "function_id": function_id, "result": {"status_code": 200, "body": "late or not"}}))


def http_bound(engine: Engine) -> set[str]:
    return {b.function_id for b in engine.triggers.bindings.values()
            if b.trigger_type == "http" and not b.parked}


async def until(condition: Any, what: str, timeout: float = PROMPT) -> None:
    """Wait (bounded) for an engine table to reach a state no event announces."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def worker_engine(slots: int) -> AsyncIterator[tuple[Engine, Worker, int]]:
    async with Engine(port=0, namespace_grace_ms=50, rest_timeout_ms=REST_TIMEOUT_MS,
                      rest_max_concurrency=slots) as engine, \
            connect(engine.url, compression=None) as ws:
        json.loads(await ws.recv())  # workerregistered
        worker = Worker(ws, slots)
        for function_id, path in (("t::never", "never"), ("t::fast", "fast")):
            await ws.send(json.dumps({"type": "registerfunction", "id": function_id}))
            await ws.send(json.dumps({
                "type": "registertrigger", "id": f"tr-{path}", "trigger_type": "http",
                "function_id": function_id,
                "config": {"api_path": path, "http_method": "GET"}}))
        serving = asyncio.ensure_future(worker.serve())
        try:
            await until(lambda: {"t::never", "t::fast"} <= http_bound(engine), "http routes")
            assert engine.rest_port
            yield engine, worker, engine.rest_port
        finally:
            serving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await serving


@pytest.mark.parametrize("leave", ["reset", "close"])
async def test_departed_clients_free_their_slots_and_pending_calls(
        leave: str, caplog: pytest.LogCaptureFixture) -> None:
    """Twice as many requests as slots to a function that never answers; their clients leave
    (RST, or an orderly close): a request to a fast function is answered at once, not after
    the 504 of the departed ones, and the engine keeps no pending call for them. The worker's
    late answers to the withdrawn calls are dropped without a line."""
    slots = 2
    caplog.set_level(logging.WARNING)
    async with worker_engine(slots) as (engine, worker, port):
        clients = [await open_request(port, "/never") for _ in range(2 * slots)]
        await asyncio.wait_for(worker.all_arrived.wait(), PROMPT)  # every slot is taken
        assert engine.router.pending_count() == slots
        for _, writer in clients:
            if leave == "reset":
                writer.transport.abort()
            else:
                writer.close()
        answer = await asyncio.wait_for(fetch(port, "/fast"), PROMPT)
        assert status(answer) == 200

        stats = engine.router.metrics.functions[("default", "t::never")]
        await until(lambda: engine.router.pending_count() == 0 and stats.in_flight == 0,
                    "the withdrawn calls to leave the pending tables")
        assert not any(conn.outbound for conn in engine.registry.workers.values())
        assert stats.errors == 0  # withdrawn, not failed

        for invocation_id in worker.never:
            await worker.answer(invocation_id, "t::never")
        answer = await asyncio.wait_for(fetch(port, "/fast"), PROMPT)  # after the late answers
        assert status(answer) == 200
        assert engine.router.pending_count() == 0
    assert [r.getMessage() for r in caplog.records if r.name.startswith("iii_rx")] == []


async def test_a_streamed_response_whose_client_left_ends_and_withdraws_its_call() -> None:
    """The response head and a first chunk went out, the handler has not written the next
    one: the client's departure ends the request and cancels the handler's call, instead of
    both waiting for a chunk nobody will read."""
    async with Engine(port=0, namespace_grace_ms=50, rest_timeout_ms=REST_TIMEOUT_MS,
                      rest_max_concurrency=1) as engine:
        streaming = asyncio.Event()
        withdrawn = asyncio.Event()

        async def slow_stream(data: Any, ctx: CallContext) -> Any:
            writer = engine.hub.local_writer(data["response"]["channel_id"])
            await writer.write(b"first chunk")
            streaming.set()
            try:
                await asyncio.Event().wait()  # the next chunk never comes
            except asyncio.CancelledError:
                withdrawn.set()
                raise

        async def fast(data: Any, ctx: CallContext) -> Any:
            return {"status_code": 200, "body": "fast"}

        engine.services.add_worker("t-departed")
        for function_id, handler in (("t::stream", slow_stream), ("t::fast", fast)):
            engine.services.add_function(function_id, handler, worker="t-departed")
            await engine.call("engine::register_trigger", {
                "trigger_type": "http", "function_id": function_id,
                "config": {"api_path": function_id[3:], "http_method": "GET"}})
        assert engine.rest_port
        port = engine.rest_port
        reader, writer = await open_request(port, "/stream")
        await asyncio.wait_for(streaming.wait(), PROMPT)
        head = await asyncio.wait_for(reader.readuntil(b"first chunk"), PROMPT)
        assert head.startswith(b"HTTP/1.1 200")
        writer.transport.abort()
        await asyncio.wait_for(withdrawn.wait(), PROMPT)
        assert status(await asyncio.wait_for(fetch(port, "/fast"), PROMPT)) == 200
        await until(lambda: not engine.hub._channels, "the request's channels to be removed")


async def test_a_client_that_does_not_read_yet_is_not_gone() -> None:
    """A client that reads nothing until the handler has written its whole streamed response
    and returned still gets all of it: only a closed connection counts as departure."""
    async with Engine(port=0, namespace_grace_ms=50, rest_timeout_ms=REST_TIMEOUT_MS) as engine:
        done = asyncio.Event()

        async def stream(data: Any, ctx: CallContext) -> Any:
            writer = engine.hub.local_writer(data["response"]["channel_id"])
            for i in range(20):
                await writer.write(f"chunk {i};".encode())
            await writer.close()
            done.set()
            return None

        engine.services.add_worker("t-departed")
        engine.services.add_function("t::stream", stream, worker="t-departed")
        await engine.call("engine::register_trigger", {
            "trigger_type": "http", "function_id": "t::stream",
            "config": {"api_path": "stream", "http_method": "GET"}})
        assert engine.rest_port
        reader, writer = await open_request(engine.rest_port, "/stream")
        try:
            await asyncio.wait_for(done.wait(), PROMPT)
            answer = await asyncio.wait_for(reader.read(-1), PROMPT)
        finally:
            writer.close()
    assert status(answer) == 200
    assert all(f"chunk {i};".encode() in answer for i in range(20))
