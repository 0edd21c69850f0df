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


BIG = "9" * 5000  # past Python's 4300-digit limit of int <-> text conversion


async def test_a_call_holding_a_huge_integer_is_answered(engine: Engine) -> None:
    """The engine cannot read a 5000-digit number; the call is answered at once (re-reading
    the frame for its id failed on the same number, and the caller waited its timeout)."""
    peer = await RawWorker.connect(engine.url)
    await peer.send('{"type":"invokefunction","function_id":"engine::functions::list",'
                    f'"invocation_id":"big-call","data":{{"n":{BIG}}}}}')
    answer = await peer.recv("invocationresult", timeout=1.5,
                             where=lambda f: f.get("invocation_id") == "big-call")
    assert answer["error"]["code"] == "deserialization_error"


async def test_a_result_holding_a_huge_integer_ends_the_call(engine: Engine) -> None:
    worker = await RawWorker.connect(engine.url)
    await worker.register()  # its namespace: its functions are held until it is known
    await worker.register_function("big::answer")
    await worker.result_of("engine::functions::list", {})  # its frames are read in order
    caller = await RawWorker.connect(engine.url)
    invocation_id = await caller.invoke("big::answer", None)
    frame = await worker.recv("invokefunction")
    await worker.send('{"type":"invocationresult",'
                      f'"invocation_id":{json.dumps(frame["invocation_id"])},'
                      f'"function_id":"big::answer","result":{BIG}}}')
    answer = await caller.recv("invocationresult", timeout=1.5,
                               where=lambda f: f.get("invocation_id") == invocation_id)
    assert answer["error"]["code"] == "invalid_result"


async def test_an_engine_call_that_cannot_be_written_leaves_nothing_pending(
        engine: Engine) -> None:
    """A payload the frame cannot hold (a lone surrogate) fails the engine's call before it
    is counted or kept (its pending entry and in-flight count stayed for ever)."""
    worker = await RawWorker.connect(engine.url)
    await worker.register()
    await worker.register_function("leak::target")
    await worker.result_of("engine::functions::list", {})
    with pytest.raises(ValueError):
        await engine.services.call("leak::target", "\ud800")
    listed = await worker.result_of("engine::functions::list", {"include_metrics": True})
    row = next(f for f in listed["functions"] if f["function_id"] == "leak::target")
    assert row["metrics"]["in_flight"] == 0
    assert not any(conn.inbound for conn in engine.registry.workers.values())


async def test_a_call_whose_id_holds_a_lone_surrogate_keeps_the_connection(
        engine: Engine) -> None:
    """The decoder refuses a lone surrogate escape; re-read for its ids, the frame gave an
    id no answer could be written with, and the engine dropped the worker (1011)."""
    peer = await RawWorker.connect(engine.url)
    await peer.send('{"type":"invokefunction","function_id":"engine::functions::list",'
                    '"invocation_id":"\\ud800","data":{"a":"\\udc00"}}')
    assert isinstance(await peer.result_of("engine::functions::list", {}), dict)


async def test_an_invalid_call_with_a_lone_surrogate_function_id_is_answered(
        engine: Engine) -> None:
    peer = await RawWorker.connect(engine.url)
    await peer.send('{"type":"invokefunction","function_id":"\\ud800x",'
                    '"invocation_id":"sur-call","data":1}')
    answer = await peer.recv("invocationresult", timeout=1.5,
                             where=lambda f: f.get("invocation_id") == "sur-call")
    assert answer["error"]["code"] == "deserialization_error"
    assert answer["function_id"] == ""


async def test_a_result_with_a_lone_surrogate_function_id_ends_the_call(
        engine: Engine) -> None:
    """The worker's connection stays up and the caller is told (it waited its timeout)."""
    worker = await RawWorker.connect(engine.url)
    await worker.register()
    await worker.register_function("sur::answer")
    await worker.result_of("engine::functions::list", {})
    caller = await RawWorker.connect(engine.url)
    invocation_id = await caller.invoke("sur::answer", None)
    frame = await worker.recv("invokefunction")
    await worker.send('{"type":"invocationresult",'
                      f'"invocation_id":{json.dumps(frame["invocation_id"])},'
                      '"function_id":"\\udfff","result":1}')
    answer = await caller.recv("invocationresult", timeout=1.5,
                               where=lambda f: f.get("invocation_id") == invocation_id)
    assert answer["error"]["code"] == "invalid_result"
    assert isinstance(await worker.result_of("engine::functions::list", {}), dict)


@pytest.mark.parametrize(("data", "kind"), [
    (None, "null"), (True, "a boolean"), (5, "a number"), (1.5, "a number"),
    ("text", "a string"), ([1], "an array"),
])
async def test_a_builtin_given_no_object_names_what_it_got(engine: Engine, data: Any,
                                                            kind: str) -> None:
    peer = await RawWorker.connect(engine.url)
    answer = await peer.call("engine::functions::list", data)
    assert answer["error"]["code"] == "deserialization_error"
    assert answer["error"]["message"] == (
        f"Failed to deserialize input for engine::functions::list: expected an object, got {kind}")
