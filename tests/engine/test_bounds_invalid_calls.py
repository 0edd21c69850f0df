"""Issue 12 (fuzz defect D10): an invalid ``invokefunction`` that names an ``invocation_id``
is answered at once, so its caller does not wait out its timeout."""

from __future__ import annotations

import json
from typing import Any

import pytest
from raw_engine_client import RawWorker

from iii_rx.engine import Engine


@pytest.mark.parametrize("frame", [
    {"type": "invokefunction", "function_id": 7, "invocation_id": "d10-a"},
    {"type": "invokefunction", "invocation_id": "d10-b", "data": {}},
    {"type": "invokefunction", "function_id": "engine::functions::list",
     "invocation_id": "d10-c", "action": {"type": "enqueue"}},
], ids=["function-id-int", "no-function-id", "enqueue-without-queue"])
async def test_invalid_call_with_an_id_is_answered(engine: Engine, frame: dict[str, Any]) -> None:
    peer = await RawWorker.connect(engine.url)
    await peer.send(frame)
    answer = await peer.recv("invocationresult", timeout=1.5,
                             where=lambda f: f.get("invocation_id") == frame["invocation_id"])
    assert answer["error"]["code"] == "deserialization_error"
    assert "invalid invokefunction frame" in answer["error"]["message"]
    expected = frame.get("function_id")
    assert answer["function_id"] == (expected if isinstance(expected, str) else "")
    # The connection stays up.
    assert isinstance(await peer.result_of("engine::functions::list", {}), dict)


@pytest.mark.parametrize("text", [
    json.dumps({"type": "invokefunction", "function_id": 7, "invocation_id": "v",
                "action": {"type": "void"}}),
    json.dumps({"type": "invokefunction", "function_id": 7, "invocation_id": 12}),
    json.dumps({"type": "invokefunction", "function_id": 7}),
    json.dumps({"type": "registerfunction", "invocation_id": "r"}),
    "[" * 100_000,
], ids=["void", "id-not-a-string", "no-id", "not-a-call", "deep"])
async def test_invalid_frames_nobody_waits_for_get_no_answer(engine: Engine, text: str) -> None:
    peer = await RawWorker.connect(engine.url)
    await peer.send(text)
    await peer.nothing("invocationresult")
    assert isinstance(await peer.result_of("engine::functions::list", {}), dict)
