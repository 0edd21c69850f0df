"""The official Python `iii-sdk` 0.25 against the embedded engine (issue 2, "Done when").

Every worker gets a distinct `worker_name` (the engine enforces one live worker per name and
namespace, and the SDK treats that rejection as fatal). The SDK is blocking and runs its own
loop thread, so these tests are synchronous and the engine runs on a thread of its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import queue
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from iii import (
    InitOptions,
    InvocationError,
    RegistrationRejectedError,
    TriggerAction,
    register_worker,
)
from iii.iii import III
from iii.triggers import TriggerConfig, TriggerHandler
from iii_helpers.observability import ReconnectionConfig
from interop_helpers import WAIT, wait_until

from iii_rx.engine import Engine, EngineThread

# register_trigger / register_trigger_type are deprecated in 0.25 but still the wire API.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

VICTIM = Path(__file__).resolve().parent / "python_workers" / "victim.py"
FAST_RECONNECT = ReconnectionConfig(initial_delay_ms=50, max_delay_ms=300, jitter_factor=0.1)
T = TypeVar("T")


def on_engine(handle: EngineThread, fn: Callable[[], T]) -> T:
    """Run `fn` on the engine's loop (its registries are not thread-safe) and return its value."""

    async def run() -> T:
        return fn()

    return asyncio.run_coroutine_threadsafe(run(), handle.loop).result(WAIT)


def has_function(handle: EngineThread, function_id: str, namespace: str = "default") -> bool:
    return on_engine(handle, lambda: (namespace, function_id) in handle.engine.registry.functions)


def is_registered(handle: EngineThread, worker_id: str) -> bool:
    """Whether the engine has processed `engine::workers::register` of `worker_id`."""

    def check() -> bool:
        conn = handle.engine.registry.workers.get(worker_id)
        return conn is not None and conn.registered

    return on_engine(handle, check)


def start_engine(port: int = 0) -> EngineThread:
    return Engine.start_in_thread(port=port, namespace_grace_ms=1000,
                                  functions_available_poll_ms=50, provider_ack_timeout_ms=1000)


@pytest.fixture
def engine() -> Iterator[EngineThread]:
    handle = start_engine()
    try:
        yield handle
    finally:
        handle.stop()


Factory = Callable[..., III]


@pytest.fixture
def worker(engine: EngineThread) -> Iterator[Factory]:
    """`worker("role", **InitOptions)` → a connected official-SDK worker, shut down after."""
    started: list[III] = []

    def make(role: str, *, url: str | None = None, **options: Any) -> III:
        options.setdefault("worker_name", f"{role}-{uuid.uuid4().hex[:8]}")
        client = register_worker(url or engine.url, InitOptions(
            otel={"enabled": False}, enable_metrics_reporting=False,
            reconnection_config=FAST_RECONNECT, invocation_timeout_ms=int(WAIT * 1000),
            **options))
        started.append(client)
        return client

    yield make
    for client in reversed(started):
        client.shutdown()


# --------------------------------------------------------------------------- calls


def test_two_workers_call_each_other_sync_and_void(engine: EngineThread,
                                                   worker: Factory) -> None:
    alice = worker("alice")
    bob = worker("bob")
    notes: queue.Queue[Any] = queue.Queue()

    def double(data: Any) -> Any:
        return {"doubled": data["n"] * 2, "caller": data.get("_caller_worker_id")}

    async def greet(data: Any) -> str:
        return f"hello {data['name']}"

    alice.register_function("alice::double", double)
    alice.register_function("alice::note", notes.put)
    bob.register_function("bob::greet", greet)
    wait_until(lambda: has_function(engine, "alice::note") and has_function(engine, "bob::greet"),
               "both workers' functions")

    assert bob.trigger({"function_id": "alice::double", "payload": {"n": 21}}) == {
        "doubled": 42, "caller": bob.worker_id}
    assert alice.trigger({"function_id": "bob::greet", "payload": {"name": "alice"}}) == (
        "hello alice")
    assert bob.trigger({"function_id": "alice::note", "payload": {"v": 1},
                        "action": TriggerAction.Void()}) is None
    note = notes.get(timeout=WAIT)
    assert note["v"] == 1 and note["_caller_worker_id"] == bob.worker_id
    # A call with no payload arrives as None (the SDK omits `data`).
    alice.trigger({"function_id": "alice::note", "action": TriggerAction.Void()})
    assert notes.get(timeout=WAIT) is None


def test_raising_handler_gives_code_message_and_stacktrace(engine: EngineThread,
                                                           worker: Factory) -> None:
    handler = worker("raiser")
    caller = worker("caller")

    def boom(data: Any) -> Any:
        raise ValueError(f"bad input {data}")

    handler.register_function("raiser::boom", boom)
    wait_until(lambda: has_function(engine, "raiser::boom"), "raiser::boom")
    with pytest.raises(InvocationError) as failed:
        caller.trigger({"function_id": "raiser::boom", "payload": 7})
    assert failed.value.code == "invocation_failed"
    assert failed.value.message == "bad input 7"
    assert failed.value.stacktrace and "ValueError: bad input 7" in failed.value.stacktrace


def test_missing_function_is_function_not_found(worker: Factory) -> None:
    caller = worker("lonely")
    with pytest.raises(InvocationError) as missing:
        caller.trigger({"function_id": "nobody::here", "payload": {}})
    assert missing.value.code == "function_not_found"
    assert missing.value.message == "Function nobody::here not found in namespace default."


def test_killed_worker_gives_invocation_stopped(engine: EngineThread, worker: Factory) -> None:
    caller = worker("waiting-caller")
    victim = subprocess.Popen(
        [sys.executable, str(VICTIM), engine.url, f"victim-{uuid.uuid4().hex[:8]}",
         "victim::hang"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "OTEL_ENABLED": "false"})
    try:
        assert victim.stdout is not None
        assert victim.stdout.readline().strip() == "registered"
        wait_until(lambda: has_function(engine, "victim::hang"), "victim::hang")
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            call = pool.submit(caller.trigger, {"function_id": "victim::hang", "payload": 1})
            assert victim.stdout.readline().strip() == "started"
            victim.send_signal(signal.SIGKILL)
            with pytest.raises(InvocationError) as stopped:
                call.result(timeout=WAIT)
        assert stopped.value.code == "invocation_stopped"
        assert stopped.value.message == "Invocation stopped"
        wait_until(lambda: not has_function(engine, "victim::hang"), "victim cleanup")
    finally:
        if victim.poll() is None:
            victim.kill()
        victim.wait()
        if victim.stdout is not None:
            victim.stdout.close()


# --------------------------------------------------------------------------- triggers


class _Ticker(TriggerHandler[Any]):
    """A worker-side trigger type that remembers its bindings for the test to fire."""

    def __init__(self) -> None:
        self.bound: queue.Queue[TriggerConfig[Any]] = queue.Queue()
        self.unbound: queue.Queue[str] = queue.Queue()

    async def register_trigger(self, config: TriggerConfig[Any]) -> None:
        self.bound.put(config)

    async def unregister_trigger(self, config: TriggerConfig[Any]) -> None:
        self.unbound.put(config.id)


def test_worker_provided_trigger_type_fires_bound_function(engine: EngineThread,
                                                           worker: Factory) -> None:
    provider = worker("ticker")
    consumer = worker("consumer")
    ticker = _Ticker()
    provider.register_trigger_type({"id": "ticker", "description": "ticks"}, ticker)
    fired: queue.Queue[Any] = queue.Queue()

    def on_tick(data: Any, metadata: Any = None) -> str:
        fired.put((data, metadata))
        return "ticked"

    consumer.register_function("consumer::on_tick", on_tick)
    trigger = consumer.register_trigger({"type": "ticker", "function_id": "consumer::on_tick",
                                         "config": {"every": 1}, "metadata": {"m": 1}})
    config = ticker.bound.get(timeout=WAIT)
    assert config.function_id == "consumer::on_tick"
    assert config.config == {"every": 1} and config.metadata == {"m": 1}
    result = provider.trigger({"function_id": config.function_id, "payload": {"tick": 1},
                               "metadata": config.metadata, "namespace": "default"})
    assert result == "ticked"
    data, metadata = fired.get(timeout=WAIT)
    assert data["tick"] == 1 and metadata == {"m": 1}
    listed = consumer.trigger({"function_id": "engine::registered-triggers::list",
                               "payload": {}})
    assert [t["id"] for t in listed["registered_triggers"]] == [config.id]
    trigger.unregister()
    assert ticker.unbound.get(timeout=WAIT) == config.id


def test_discovery_shows_what_is_registered(engine: EngineThread, worker: Factory) -> None:
    name = f"lister-{uuid.uuid4().hex[:8]}"
    lister = worker("lister", worker_name=name, worker_description="lists things")
    lister.register_function("lister::one", lambda data: data, description="first")
    wait_until(lambda: has_function(engine, "lister::one"), "lister::one")
    functions = lister.trigger({"function_id": "engine::functions::list", "payload": {}})
    row = next(f for f in functions["functions"] if f["function_id"] == "lister::one")
    assert row["worker_name"] == name and row["description"] == "first"
    assert row["namespace"] == "default"
    workers = lister.trigger({"function_id": "engine::workers::list", "payload": {}})
    me = next(w for w in workers["workers"] if w["name"] == name)
    assert me["id"] == lister.worker_id and me["runtime"] == "python"
    assert me["description"] == "lists things" and me["status"] == "connected"
    assert me["function_count"] == 1 and me["version"] == "0.25.0"
    info = lister.trigger({"function_id": "engine::workers::info", "payload": {"name": name}})
    assert info["worker"]["pid"] == os.getpid()


def test_functions_available_fires_on_register_and_unregister(engine: EngineThread,
                                                              worker: Factory) -> None:
    watcher = worker("watcher")
    events: queue.Queue[Any] = queue.Queue()
    watcher.register_function("watcher::functions", events.put)
    watcher.register_trigger({"type": "engine::functions-available",
                              "function_id": "watcher::functions"})
    wait_until(lambda: on_engine(engine, lambda: any(
        b.trigger_type == "engine::functions-available" and not b.parked
        for b in engine.engine.triggers.bindings.values())), "the functions-available binding")
    other = worker("other")
    ref = other.register_function("other::fresh", lambda data: data)

    def next_event(present: bool) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT
        while True:
            event = events.get(timeout=max(0.01, deadline - time.monotonic()))
            ids = {f["function_id"] for f in event["functions"]}
            if ("other::fresh" in ids) == present:
                return event  # type: ignore[no-any-return]

    added = next_event(present=True)
    assert added["event"] == "functions_changed"
    ref.unregister()
    removed = next_event(present=False)
    assert removed["event"] == "functions_changed"


# --------------------------------------------------------------------------- reconnects


def test_worker_gets_its_functions_back_after_engine_restart(worker: Factory) -> None:
    first = start_engine()
    port = first.port
    try:
        server = worker("phoenix", url=first.url)
        server.register_function("phoenix::echo", lambda data: {"echo": data})
        wait_until(lambda: has_function(first, "phoenix::echo"), "phoenix::echo")
    finally:
        first.stop()
    second = start_engine(port)
    try:
        wait_until(lambda: has_function(second, "phoenix::echo"), "the replayed function")
        caller = worker("caller", url=second.url)
        assert caller.trigger({"function_id": "phoenix::echo", "payload": 3})["echo"] == 3
    finally:
        second.stop()


def test_worker_reattaches_after_engine_side_close(engine: EngineThread,
                                                   worker: Factory) -> None:
    server = worker("reattacher")
    server.register_function("reattacher::echo", lambda data: data)
    seen: queue.Queue[Any] = queue.Queue()
    server.register_function("reattacher::seen", seen.put)
    server.register_trigger({"type": "engine::workers-available",
                             "function_id": "reattacher::seen"})
    wait_until(lambda: has_function(engine, "reattacher::seen"), "reattacher functions")
    old_id = wait_until(lambda: server.worker_id, "the worker id")
    wait_until(lambda: is_registered(engine, old_id), "the first registration")

    async def drop() -> None:
        conn = engine.engine.registry.workers[old_id]
        assert conn.ws is not None
        await conn.ws.close(1011, "test drop")

    asyncio.run_coroutine_threadsafe(drop(), engine.loop).result(WAIT)
    wait_until(lambda: server.worker_id not in (None, old_id), "a new worker id")
    caller = worker("caller")
    wait_until(lambda: has_function(engine, "reattacher::echo"), "the replayed function")
    assert caller.trigger({"function_id": "reattacher::echo", "payload": [1]}) == [1]
    bindings = on_engine(engine, lambda: [
        b for b in engine.engine.triggers.bindings.values() if b.function_id == "reattacher::seen"])
    assert len(bindings) == 1 and bindings[0].owner is not None
    assert bindings[0].owner.id == server.worker_id


def test_namespaced_worker(engine: EngineThread, worker: Factory) -> None:
    orders = worker("orders", namespace="orders")
    orders.register_function("orders::create", lambda data: {"created": data["sku"]})
    wait_until(lambda: has_function(engine, "orders::create", "orders"), "orders::create")
    assert not has_function(engine, "orders::create")
    caller = worker("shop")
    with pytest.raises(InvocationError) as missing:
        caller.trigger({"function_id": "orders::create", "payload": {"sku": "a"}})
    assert "It is registered in namespace(s): orders." in missing.value.message
    assert caller.trigger({"function_id": "orders::create", "payload": {"sku": "a"},
                           "namespace": "orders"}) == {"created": "a"}
    # Engine functions stay reachable from a namespaced worker.
    listed = orders.trigger({"function_id": "engine::functions::list", "payload": {}})
    assert any(f["function_id"] == "orders::create" and f["namespace"] == "orders"
               for f in listed["functions"])


def test_duplicate_worker_name_is_fatal_for_the_sdk(engine: EngineThread,
                                                    worker: Factory) -> None:
    name = f"twin-{uuid.uuid4().hex[:8]}"
    first = worker("twin", worker_name=name)
    first_id = wait_until(lambda: first.worker_id, "the first twin's worker id")
    wait_until(lambda: is_registered(engine, first_id), "the first twin's registration")
    second = worker("twin", worker_name=name)
    wait_until(lambda: second.get_connection_state() == "failed", "the rejection")
    with pytest.raises(RegistrationRejectedError) as rejected:
        second.trigger({"function_id": "engine::functions::list", "payload": {}})
    assert rejected.value.code == "WORKER_NAMESPACE_CONFLICT"
    assert first.trigger({"function_id": "engine::functions::list", "payload": {}})
