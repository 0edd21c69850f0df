"""Each engine has its own budget of log lines a peer can cause (docs/engine.md).

A peer may flood the engine with refusable requests; those lines are rate limited
(:class:`~iii_rx.engine.logsafe.RateLimitedLog`, 10 lines per kind per 10 s). The budget belongs to
the engine (``Engine.log_budgets``: one per logger, handed to the core parts and, through
``services.limited_log``, to the extensions), so that a flood at one engine never silences
another engine's first warning in the same process (as tests and embedding applications run
several).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from raw_engine_client import RawWorker, wait_until
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

import iii_rx
from iii_rx.engine import Engine

_FLOOD = 15
"""More than a budget's burst (10), so that a shared budget would hold the next line back."""


async def _refused(engine: Engine, tag: str) -> None:
    with pytest.raises(InvalidStatus):
        async with ws_connect(f"{engine.url}/from={tag}", compression=None,  # the path is logged
                              additional_headers={"Authorization": "Bearer wrong"}):
            pass


def _lines(caplog: pytest.LogCaptureFixture, needle: str) -> int:
    return sum(needle in record.getMessage() for record in caplog.records)


async def test_a_flood_at_one_engine_leaves_the_other_engines_warnings(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "iii_rx.engine")
    async with Engine(port=0, token="right") as first, Engine(port=0, token="right") as second:
        for _ in range(_FLOOD):
            await _refused(first, "first")
        assert _lines(caplog, "from=first") == 10  # the first engine's burst, then held back
        assert _lines(caplog, "held back") == 1
        await _refused(second, "second")
        assert _lines(caplog, "from=second") == 1


async def test_bad_frames_at_one_engine_leave_the_other_engines_warnings(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "iii_rx.engine")
    async with Engine(port=0) as first, Engine(port=0) as second:
        flooder = await RawWorker.connect(first.url)
        for n in range(_FLOOD):
            await flooder.send(f"not json {n}")
        await flooder.call("engine::workers::list")  # frames of one socket: in order
        assert _lines(caplog, "dropped a bad frame") == 10
        victim = await RawWorker.connect(second.url)
        await victim.send("not json at the second engine")
        await victim.call("engine::workers::list")
        assert _lines(caplog, "dropped a bad frame") == 11


async def _malformed_http(engine: Engine) -> None:
    assert engine.rest_port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", engine.rest_port)
    writer.write(b"GET /ping HTTP/1.1\r\nX\r\n: x\r\n\r\n")  # a header line without a colon
    await reader.read()  # the 400 answer, then the REST API closes the connection
    writer.close()
    await writer.wait_closed()


async def test_an_extension_takes_its_engines_budget(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "iii_rx.engine.rest")
    async with Engine(port=0) as first, Engine(port=0) as second:
        for _ in range(_FLOOD):
            await _malformed_http(first)
        assert _lines(caplog, "malformed HTTP request") == 10
        await _malformed_http(second)
        assert _lines(caplog, "malformed HTTP request") == 11


def test_every_part_of_an_engine_writes_to_its_budget() -> None:
    engine = Engine(port=0, listeners=())
    budget = engine.peer_log
    assert engine.dispatcher.peer_log is budget
    assert engine.registry._peer_log is budget
    assert engine.triggers._peer_log is budget
    assert engine.router._peer_log is budget
    assert engine._server._peer_log is budget
    assert engine.services.limited_log(logging.getLogger("iii_rx.engine")) is budget
    rest = logging.getLogger("iii_rx.engine.rest")
    assert engine.services.limited_log(rest) is engine.services.limited_log(rest)
    assert Engine(port=0).peer_log is not budget


async def test_failed_void_calls_are_budgeted(caplog: pytest.LogCaptureFixture) -> None:
    """A peer's void calls that fail in the engine used to log one WARNING each, at will."""
    caplog.set_level(logging.WARNING, "iii_rx.engine")
    async with Engine(port=0) as engine:
        flooder = await RawWorker.connect(engine.url)
        for _ in range(_FLOOD):  # no invocation id: a void call; `{}` is refused
            await flooder.send({"type": "invokefunction", "function_id": "state::set",
                                "data": {}})
        await wait_until(lambda: _lines(caplog, "held back") == 1)
        await flooder.call("engine::workers::list")
        assert _lines(caplog, "void call of state::set failed") == 10


async def test_failed_trigger_calls_are_budgeted_and_escaped(
        caplog: pytest.LogCaptureFixture) -> None:
    """A subscriber's error text went to the log as sent, a line each: a newline in it forged
    a log line of the subscriber's choosing."""
    caplog.set_level(logging.INFO, "iii_rx.engine")
    async with Engine(port=0) as engine, iii_rx.connect(engine.url, name="subscriber") as iii:
        def refuse(data: Any) -> None:
            raise ValueError("boom\nFAKE LOG LINE")

        iii.register_function("budget::sub", refuse)
        iii.register_trigger({"type": "subscribe", "function_id": "budget::sub",
                              "config": {"topic": "budget"}})
        await iii.wait_for_function("budget::sub", timeout=10)
        for n in range(_FLOOD):
            await iii.publish("budget", n)
        await wait_until(lambda: _lines(caplog, "held back") == 1)
    failed = [r.getMessage() for r in caplog.records if "trigger call of" in r.getMessage()]
    assert len(failed) == 10
    assert all("\n" not in line and "boom\\nFAKE LOG LINE" in line for line in failed)
