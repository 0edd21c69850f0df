"""A ``/otel`` frame the intake cannot read is dropped and counted; the socket stays open
(a number past a double, JSON nested past the parser's depth or holding encoded surrogates
closed it with 1011 and logged a traceback, frame after frame)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import connect as ws_connect

from iii_rx.engine import Engine


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    async with Engine(port=0) as running:
        yield running


def _metrics(value: bytes = b"1") -> bytes:
    return (b'MTRC{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"m","gauge":'
            b'{"dataPoints":[{"asInt":' + value + b'}]}}]}]}]}')


@pytest.mark.parametrize("frame", [
    b'LOGS{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"severityNumber":1e999}]}]}]}',
    _metrics(b"9" * 400),
    b"LOGS" + b"[" * 100_000,
    b'LOGS{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"severityText":"\xed\xa0\x80"}]}]}]}',
], ids=["infinite-severity", "int-past-a-double", "deep", "surrogate-bytes"])
async def test_a_bad_frame_is_dropped_and_the_socket_kept(engine: Engine, frame: bytes) -> None:
    async with ws_connect(f"{engine.url}/otel") as otel:
        await otel.send(frame)
        await otel.send(_metrics())
        await engine.otel.wait_for(lambda: len(engine.otel.metrics) == 1, timeout=3)
    assert engine.otel.rejected == 1


@pytest.mark.parametrize("pending", [False, True], ids=["decoded-at-once", "decoded-at-read"])
async def test_a_span_frame_past_a_double_is_dropped(engine: Engine, pending: bool) -> None:
    """A frame of spans is decoded at once when it holds none with a start time, else when
    read: the overflow closed the socket, or failed ``engine::traces::list``."""
    span = {"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331",
            "name": "s", "status": {"code": 1e999}}
    if pending:
        span["startTimeUnixNano"] = "1"
    frame = b"OTLP" + json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]},
                                 allow_nan=True).encode()
    async with ws_connect(f"{engine.url}/otel") as otel:
        await otel.send(frame)
        await otel.send(_metrics())
        await engine.otel.wait_for(lambda: len(engine.otel.metrics) == 1, timeout=3)
    listed = await engine.call("engine::traces::list", {})
    assert listed["spans"] == []
    assert engine.otel.rejected == 1
