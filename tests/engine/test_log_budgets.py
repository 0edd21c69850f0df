"""Each engine has its own budget of log lines a peer can cause (docs/engine.md).

A peer may flood the engine with refusable requests; those lines are rate limited
(:class:`~iii_rx.engine.logsafe.RateLimitedLog`, 10 lines per kind per 10 s). The budget belongs to
the engine, so that a flood at one engine never silences another engine's first warning in the
same process (as tests and embedding applications run several).
"""

from __future__ import annotations

import logging

import pytest
from raw_engine_client import RawWorker
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from iii_rx.engine import Engine

_FLOOD = 15
"""More than a budget's burst (10), so that a shared budget would hold the next line back."""


async def _refused(engine: Engine, tag: str) -> None:
    with pytest.raises(InvalidStatus):
        async with ws_connect(f"{engine.url}/?from={tag}", compression=None,
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


def test_every_part_of_an_engine_writes_to_its_budget() -> None:
    engine = Engine(port=0, listeners=())
    budget = engine.peer_log
    assert engine.dispatcher.peer_log is budget
    assert engine.registry._peer_log is budget
    assert engine.triggers._peer_log is budget
    assert engine.router._peer_log is budget
    assert engine._server._peer_log is budget
    assert Engine(port=0).peer_log is not budget
