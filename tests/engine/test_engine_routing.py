"""Invocation routing between raw-frame workers: sync, void, errors, ids, relays."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator

import pytest
from raw_engine_client import RawWorker, wait_until

from iii_rx.engine import Engine


async def _pair(engine: Engine) -> tuple[RawWorker, RawWorker]:
    worker = await RawWorker.connect(engine.url)
    caller = await RawWorker.connect(engine.url)
    await worker.register_function("math::add", description="adds")
    await worker.register("worker")
    await caller.register("caller")
    await wait_until(lambda: ("default", "math::add") in engine.registry.functions)
    return worker, caller


async def test_engine_url_and_port() -> None:
    async with Engine(port=0) as engine:
        assert engine.port > 0
        assert engine.url == f"ws://127.0.0.1:{engine.port}"
        url = engine.url
    with pytest.raises(OSError):
        await RawWorker.connect(url)


async def test_sync_call_is_routed_and_result_relayed(engine: Engine) -> None:
    worker, caller = await _pair(engine)
    invocation_id = await caller.invoke("math::add", {"a": 1, "b": 2}, metadata={"m": 1},
                                        traceparent="00-abc-01", baggage="k=v")
    seen = await worker.recv("invokefunction")
    assert seen["invocation_id"] == invocation_id
    assert seen["function_id"] == "math::add"
    assert seen["data"] == {"a": 1, "b": 2, "_caller_worker_id": caller.worker_id}
    assert seen["metadata"] == {"m": 1}
    assert seen["traceparent"] == "00-abc-01" and seen["baggage"] == "k=v"
    assert "action" not in seen and "namespace" not in seen
    await worker.send({"type": "invocationresult", "invocation_id": invocation_id,
                       "function_id": "math::add", "result": 3})
    answer = await caller.recv("invocationresult")
    assert answer == {"type": "invocationresult", "invocation_id": invocation_id,
                      "function_id": "math::add", "result": 3}


async def test_error_with_stacktrace_is_relayed_unchanged(engine: Engine) -> None:
    worker, caller = await _pair(engine)
    call = asyncio.ensure_future(caller.call("math::add", [1]))
    await worker.serve_once(lambda f: {"error": {"code": "invocation_failed", "message": "boom",
                                                  "stacktrace": "Traceback ..."}})
    answer = await call
    assert answer["error"] == {"code": "invocation_failed", "message": "boom",
                               "stacktrace": "Traceback ..."}


async def test_non_object_payload_is_not_touched(engine: Engine) -> None:
    worker, caller = await _pair(engine)
    call = asyncio.ensure_future(caller.call("math::add", [1, 2]))
    seen = await worker.serve_once()
    assert seen["data"] == [1, 2]
    assert (await call)["result"] == [1, 2]


async def test_missing_data_reads_as_null(engine: Engine) -> None:
    worker, caller = await _pair(engine)
    await caller.send({"type": "invokefunction", "function_id": "math::add",
                       "invocation_id": "no-data"})
    seen = await worker.serve_once()
    assert seen["data"] is None
    answer = await caller.recv("invocationresult")
    assert answer["invocation_id"] == "no-data" and "error" not in answer


async def test_void_call_is_forwarded_and_never_answered(engine: Engine) -> None:
    worker, caller = await _pair(engine)
    await caller.send({"type": "invokefunction", "function_id": "math::add", "data": {"v": 1},
                       "action": {"type": "void"}, "invocation_id": "ignored"})
    seen = await worker.recv("invokefunction")
    assert "invocation_id" not in seen
    assert seen["data"] == {"v": 1, "_caller_worker_id": caller.worker_id}
    await caller.nothing("invocationresult")


async def test_function_not_found_names_other_namespaces(engine: Engine) -> None:
    other = await RawWorker.connect(engine.url)
    await other.register_function("svc::f")
    await other.register("other-ns", namespace="orders")
    caller = await RawWorker.connect(engine.url)
    await wait_until(lambda: ("orders", "svc::f") in engine.registry.functions)
    missing = await caller.call("nope::fn")
    assert missing["error"] == {"code": "function_not_found",
                                "message": "Function nope::fn not found in namespace default."}
    elsewhere = await caller.call("svc::f")
    assert elsewhere["error"]["message"] == (
        "Function svc::f not found in namespace default. "
        "It is registered in namespace(s): orders.")
    found = asyncio.ensure_future(caller.call("svc::f", {}, namespace="orders"))
    await other.serve_once()
    assert "error" not in await found


async def test_blank_namespace_is_invalid(engine: Engine) -> None:
    caller = await RawWorker.connect(engine.url)
    answer = await caller.call("anything", {}, namespace="  ")
    assert answer["error"]["code"] == "INVALID_NAMESPACE"


@pytest.fixture
async def engine_without_queue() -> AsyncIterator[Engine]:
    """An engine whose built-in queue worker leaves ``engine::queue::enqueue`` to workers."""
    engine = Engine(port=0, namespace_grace_ms=300)
    engine.workers.queues.serve_enqueue = False
    async with engine:
        yield engine


async def test_enqueue_without_queue_provider(engine_without_queue: Engine) -> None:
    caller = await RawWorker.connect(engine_without_queue.url)
    answer = await caller.call("any::fn", {}, action={"type": "enqueue", "queue": "q"})
    assert answer["error"]["code"] == "enqueue_error"
    assert "engine::queue::enqueue" in answer["error"]["message"]


async def test_enqueue_through_a_queue_provider(engine_without_queue: Engine) -> None:
    engine = engine_without_queue
    queue = await RawWorker.connect(engine.url)
    await queue.register_function("engine::queue::enqueue")
    await queue.register("queue")
    caller = await RawWorker.connect(engine.url)
    await wait_until(lambda: ("default", "engine::queue::enqueue") in engine.registry.functions)
    call = asyncio.ensure_future(caller.call("jobs::run", {"j": 1},
                                             action={"type": "enqueue", "queue": "q"}))
    seen = await queue.serve_once(lambda f: {"result": None})
    assert seen["data"]["queue"] == "q" and seen["data"]["function_id"] == "jobs::run"
    assert seen["data"]["data"] == {"j": 1}
    answer = await call
    assert answer["result"] == {"messageReceiptId": seen["data"]["messageReceiptId"]}


async def test_handler_disconnect_stops_invocation(engine: Engine) -> None:
    worker, caller = await _pair(engine)
    call = asyncio.ensure_future(caller.call("math::add", {}))
    await worker.recv("invokefunction")
    await worker.close()
    answer = await call
    assert answer["error"] == {"code": "invocation_stopped", "message": "Invocation stopped"}
    await wait_until(lambda: not engine.registry.functions.get(("default", "math::add")))


async def test_caller_disconnect_drops_late_result(engine: Engine) -> None:
    worker, caller = await _pair(engine)
    await caller.invoke("math::add", {})
    seen = await worker.recv("invokefunction")
    await caller.close()
    await wait_until(lambda: caller.worker_id not in engine.registry.workers)
    assert engine.router.pending_count() == 0
    await worker.send({"type": "invocationresult", "invocation_id": seen["invocation_id"],
                       "function_id": "math::add", "result": 1})
    # The worker is still served after the dropped result.
    assert (await worker.result_of("engine::functions::list", {}))["functions"]


async def test_reused_invocation_ids_stay_apart(engine: Engine) -> None:
    worker, caller = await _pair(engine)
    other = await RawWorker.connect(engine.url)
    await caller.invoke("math::add", {"who": "caller"}, invocation_id="same-id")
    await other.invoke("math::add", {"who": "other"}, invocation_id="same-id")
    first = await worker.recv("invokefunction")
    second = await worker.recv("invokefunction")
    assert first["invocation_id"] != second["invocation_id"]
    for frame in (second, first):
        await worker.send({"type": "invocationresult", "invocation_id": frame["invocation_id"],
                           "function_id": "math::add", "result": frame["data"]["who"]})
    assert (await caller.recv("invocationresult"))["result"] == "caller"
    answer = await other.recv("invocationresult")
    assert answer["result"] == "other" and answer["invocation_id"] == "same-id"


async def test_relayed_result_names_the_called_function(engine: Engine) -> None:
    """The caller's answer names the function it called, as on the Rust engine, whatever the
    handler's frame says (it named the handler's ``function_id``, or ``""`` when the frame
    had none and the call ended with ``invalid_result``)."""
    worker, caller = await _pair(engine)
    invocation_id = await caller.invoke("math::add", {})
    await worker.recv("invokefunction")
    await worker.send({"type": "invocationresult", "invocation_id": invocation_id,
                       "function_id": "other::fn", "result": 3})
    answer = await caller.recv("invocationresult")
    assert answer == {"type": "invocationresult", "invocation_id": invocation_id,
                      "function_id": "math::add", "result": 3}
    invocation_id = await caller.invoke("math::add", {})
    await worker.recv("invokefunction")
    await worker.send({"type": "invocationresult", "invocation_id": invocation_id, "result": 4})
    answer = await caller.recv("invocationresult")
    assert answer["error"]["code"] == "invalid_result"
    assert answer["function_id"] == "math::add"


async def test_unknown_result_is_dropped(engine: Engine) -> None:
    worker, _ = await _pair(engine)
    await worker.send({"type": "invocationresult", "invocation_id": "nobody",
                       "function_id": "x", "result": 1})
    assert (await worker.result_of("engine::functions::list", {}))["functions"]


async def test_calls_to_own_function_go_through_engine(engine: Engine) -> None:
    worker, _ = await _pair(engine)
    invocation_id = await worker.invoke("math::add", 5)
    seen = await worker.serve_once(lambda f: {"result": f["data"] * 2})
    assert seen["data"] == 5
    assert (await worker.recv("invocationresult"))["invocation_id"] == invocation_id


async def test_protocol_ping_gets_pong(engine: Engine) -> None:
    worker = await RawWorker.connect(engine.url)
    await worker.send({"type": "ping"})
    assert await worker.recv("pong") == {"type": "pong"}
    await worker.ws.ping()


async def test_pending_entries_expire(engine: Engine) -> None:
    worker, caller = await _pair(engine)
    await caller.invoke("math::add", {})
    await worker.recv("invokefunction")
    assert engine.router.pending_count() == 1
    assert engine.router.expire(0) == 1
    answer = await caller.recv("invocationresult")
    assert answer["error"]["code"] == "invocation_error"
    assert engine.router.pending_count() == 0


async def test_pending_sweep_runs_on_its_own() -> None:
    async with Engine(port=0, namespace_grace_ms=50, pending_max_age_ms=50) as engine:
        worker, caller = await _pair(engine)
        await caller.invoke("math::add", {})
        await worker.recv("invokefunction")
        answer = await caller.recv("invocationresult", timeout=5)
        assert answer["error"]["code"] == "invocation_error"


async def test_binary_json_frames_are_accepted(engine: Engine) -> None:
    worker, caller = await _pair(engine)
    invocation_id = "bin-1"
    await caller.ws.send(json.dumps({"type": "invokefunction", "function_id": "math::add",
                                     "data": 1, "invocation_id": invocation_id}).encode())
    seen = await worker.recv("invokefunction")
    await worker.ws.send(json.dumps({"type": "invocationresult", "function_id": "math::add",
                                     "invocation_id": seen["invocation_id"],
                                     "result": 2}).encode())
    answer = await caller.recv("invocationresult")
    assert answer["invocation_id"] == invocation_id and answer["result"] == 2


async def test_a_stuck_handler_never_blocks_its_callers_reader(engine: Engine) -> None:
    stuck, caller = await _pair(engine)  # ``stuck`` never reads its socket from here on
    chunk = "z" * (64 * 1024)
    for _ in range(400):  # ~25 MiB toward a worker that does not read
        await caller.send({"type": "invokefunction", "function_id": "math::add",
                           "data": chunk, "action": {"type": "void"}})
    conn = engine.registry.workers[stuck.worker_id]
    await wait_until(lambda: bool(conn._queue))  # back-pressure reached: frames queue up
    # The caller's other frames are still handled at once.
    listed = await caller.result_of("engine::workers::list", {}, timeout=2)
    assert {w["name"] for w in listed["workers"]} >= {"worker", "caller"}
    other = await RawWorker.connect(engine.url)
    assert (await other.result_of("engine::functions::list", {}, timeout=2))["functions"]
    stuck.ws.transport.abort()
    await wait_until(lambda: stuck.worker_id not in engine.registry.workers)


async def test_stop_is_bounded_when_a_peer_does_not_read() -> None:
    engine = Engine(port=0, namespace_grace_ms=50)
    await engine.start()
    stuck, caller = await _pair(engine)
    for _ in range(400):
        await caller.send({"type": "invokefunction", "function_id": "math::add",
                           "data": "z" * (64 * 1024), "action": {"type": "void"}})
    conn = engine.registry.workers[stuck.worker_id]
    await wait_until(lambda: bool(conn._queue))
    await asyncio.wait_for(engine.stop(), 10)  # the closing handshake cannot finish
    assert not engine.registry.workers
    stuck.ws.transport.abort()  # it never reads, so it never sees the engine go
    await stuck.ws.wait_closed()
    await caller.close()


async def test_an_engine_made_call_relays_nan_and_infinity(engine: Engine) -> None:
    """A call the engine makes itself (a trigger, a queue delivery) carries NaN and the
    infinities as the official SDK writes them, as a relayed call does (docs/protocol.md §5.4)."""
    worker, _ = await _pair(engine)
    call = asyncio.ensure_future(engine.call("math::add", {"v": [math.nan, math.inf, -math.inf]}))
    frame = await worker.recv("invokefunction")
    first, *rest = frame["data"]["v"]
    assert math.isnan(first) and rest == [math.inf, -math.inf]
    await worker.send({"type": "invocationresult", "invocation_id": frame["invocation_id"],
                       "function_id": "math::add", "result": math.inf})
    assert await call == math.inf
