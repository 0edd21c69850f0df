"""The client's core without sockets: pending calls, registrations, the worker side, providers,
and the lifecycle's close handle.

Each core module takes decoded frames in and hands frame text to an outbox; here the outbox is
a list, so these tests see exactly what would go on the wire (the way websockets tests its
sans-I/O protocol). Behaviour that crosses a real socket is tested in the other files.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import math
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

from iii_rx import IIIConnectionError, IIIInvocationError, IIITimeoutError, Invocation
from iii_rx._pool import HandlerPool
from iii_rx.aio import LoopBridge, LoopThread, TaskSet
from iii_rx.calls import Call, Calls, PendingCall, trigger_action
from iii_rx.channels import ChannelWriter
from iii_rx.client import Client
from iii_rx.errors import LoopDeadlockError, PayloadTooLargeError
from iii_rx.functions import FunctionSpec, HttpInvokedSink, ObserverSink
from iii_rx.lifecycle import Closing
from iii_rx.protocol import (
    EnqueueAction,
    ErrorBody,
    InvocationResult,
    InvokeFunction,
    RegisterTrigger,
    TriggerRegistrationResult,
    UnregisterTrigger,
    VoidAction,
    encode,
)
from iii_rx.providers import Providers
from iii_rx.registrations import Registrations
from iii_rx.state import ConnectionState
from iii_rx.streams import HotStream
from iii_rx.transport import CALL, RESULT
from iii_rx.triggers import TriggerBinding, TriggerConfig, TriggerHandle, TriggerType
from iii_rx.worker import Worker, WorkerTasks


class Outbox:
    """Records what the core would send: ``(frame as a dict, kind, invocation id)``."""

    def __init__(self) -> None:
        self.sent: list[tuple[dict[str, Any], int, str | None]] = []
        self.from_threads: list[tuple[dict[str, Any], int]] = []
        self.refuse: Exception | None = None

    def send(self, text: str, kind: int = 0, invocation_id: str | None = None) -> bool:
        if self.refuse is not None:
            raise self.refuse
        self.sent.append((json.loads(text), kind, invocation_id))
        return True

    def send_threadsafe(self, text: str, kind: int = 0) -> None:
        self.from_threads.append((json.loads(text), kind))

    @property
    def frames(self) -> list[dict[str, Any]]:
        return [frame for frame, _, _ in self.sent]


# ====================================================================== pending calls


@pytest.fixture
async def calls() -> tuple[Calls, Outbox]:
    outbox = Outbox()
    return Calls(LoopBridge.current(), outbox), outbox


def _result(iid: str, value: Any = None, error: ErrorBody | None = None) -> InvocationResult:
    return InvocationResult(invocation_id=iid, function_id="f", result=value, error=error)


async def test_a_call_is_sent_with_an_id_and_settled_by_its_result(
        calls: tuple[Calls, Outbox]) -> None:
    table, outbox = calls
    fut = asyncio.get_running_loop().create_future()
    table.start(table.call("math::add", {"a": 1}, timeout_ms=5000), fut)
    (frame, kind, iid), = outbox.sent
    assert kind == CALL and iid == frame["invocation_id"]
    assert frame["function_id"] == "math::add" and frame["data"] == {"a": 1}
    assert len(table) == 1
    table.on_result(_result("someone-else's", 0))  # not ours: dropped
    table.on_result(_result(iid, 3))
    assert await fut == 3 and len(table) == 0


async def test_an_error_result_becomes_a_typed_error(calls: tuple[Calls, Outbox]) -> None:
    table, outbox = calls
    fut = asyncio.get_running_loop().create_future()
    table.start(table.call("f", None, timeout_ms=5000), fut)
    iid = outbox.sent[0][2]
    assert iid is not None
    table.on_result(_result(iid, error=ErrorBody(code="boom", message="no")))
    with pytest.raises(IIIInvocationError) as info:
        await fut
    assert (info.value.code, info.value.function_id, info.value.invocation_id) == ("boom", "f",
                                                                                    iid)


async def test_a_call_times_out_and_its_late_answer_is_dropped(
        calls: tuple[Calls, Outbox]) -> None:
    table, outbox = calls
    fut = asyncio.get_running_loop().create_future()
    table.start(table.call("slow", None, timeout_ms=10), fut)
    with pytest.raises(IIITimeoutError, match="10ms"):
        await fut
    assert len(table) == 0
    table.on_result(_result(outbox.sent[0][2] or "", "late"))  # nothing to settle


async def test_cancel_forgets_the_call_without_settling_it(calls: tuple[Calls, Outbox]) -> None:
    table, _ = calls
    outcomes: list[Any] = []
    cancel = table.start(table.call("f", None, timeout_ms=5000),
                         lambda value, error: outcomes.append((value, error)))
    cancel()
    await asyncio.sleep(0)
    assert len(table) == 0 and outcomes == []


async def test_a_void_call_has_no_id_and_completes_once_handed_over(
        calls: tuple[Calls, Outbox]) -> None:
    table, outbox = calls
    fut = asyncio.get_running_loop().create_future()
    table.start(table.call("fire", 1, action={"type": "void"}, timeout_ms=5000), fut)
    assert await fut is None
    (frame, kind, iid), = outbox.sent
    assert kind == CALL
    assert "invocation_id" not in frame and frame["action"] == {"type": "void"} and iid is None
    assert len(table) == 0


async def test_what_cannot_be_sent_fails_the_call_and_leaves_nothing_pending(
        calls: tuple[Calls, Outbox]) -> None:
    table, outbox = calls
    loop = asyncio.get_running_loop()
    nan = loop.create_future()
    table.start(table.call("f", {"x": math.nan}, timeout_ms=5000), nan)
    with pytest.raises(ValueError, match="NaN and Infinity cannot be sent"):
        await nan
    outbox.refuse = PayloadTooLargeError("too big")
    big = loop.create_future()
    table.start(table.call("f", None, timeout_ms=5000), big)
    with pytest.raises(IIIInvocationError) as info:
        await big
    assert info.value.code == "payload_too_large"
    assert len(table) == 0 and outbox.sent == []


def _cycle() -> list[Any]:
    looped: list[Any] = []
    looped.append(looped)
    return looped


@pytest.mark.parametrize(("payload", "error", "message"), [
    (object(), TypeError, "Object of type object is not JSON serializable"),
    ({"k": {1, object()}}, TypeError, "Object of type object is not JSON serializable"),
    (b"\xff", TypeError, "bytes that are not UTF-8 cannot be sent"),
    ("\ud800", ValueError, "a string holds a lone surrogate"),
    (_cycle(), ValueError, "Circular reference detected"),
    ("a ChannelWriter", TypeError,
     "a ChannelWriter cannot be sent; pass the channel's writer_ref, not the ChannelWriter"),
])
async def test_a_payload_json_cannot_carry_fails_the_call_naming_it(
        calls: tuple[Calls, Outbox], payload: Any, error: type[Exception], message: str) -> None:
    """As ``json.dumps``: ``TypeError`` for a type JSON cannot carry, ``ValueError`` for a value;
    the message says which call (pydantic's said neither)."""
    table, outbox = calls
    if payload == "a ChannelWriter":
        ref = {"channel_id": "c", "access_key": "k", "direction": "write"}
        payload = {"out": ChannelWriter("ws://127.0.0.1:1", ref)}
    failed = asyncio.get_running_loop().create_future()
    table.start(table.call("f::x", payload, timeout_ms=5000), failed)
    with pytest.raises(error) as info:
        await failed
    assert type(info.value) is error
    assert str(info.value).startswith(f"the call to 'f::x' was not sent: {message}")
    assert len(table) == 0 and outbox.sent == []


async def test_refusal_fails_new_calls_and_the_first_reason_wins(
        calls: tuple[Calls, Outbox]) -> None:
    table, outbox = calls
    table.refuse(lambda function_id: IIIConnectionError(f"rejected, {function_id}"))
    table.refuse(lambda function_id: IIIConnectionError("closed"))
    fut = asyncio.get_running_loop().create_future()
    table.start(table.call("f", None, timeout_ms=5000), fut)
    with pytest.raises(IIIConnectionError, match="rejected, f"):
        await fut
    assert outbox.sent == []


async def test_fail_all_keeps_what_is_kept_and_settles_the_rest_once(
        calls: tuple[Calls, Outbox]) -> None:
    table, outbox = calls
    outcomes: dict[str, list[Any]] = {}

    def start(name: str) -> str:
        outcomes[name] = []
        table.start(table.call(name, None, timeout_ms=5000),
                    lambda value, error: outcomes[name].append(error))
        iid = outbox.sent[-1][2]
        assert iid is not None
        return iid

    kept, lost, dropped = start("kept"), start("lost"), start("dropped")
    retried: list[str] = []

    def error_of(iid: str, call: PendingCall) -> BaseException | None:
        if iid == dropped:
            return None
        retried.append(start("retry"))  # a target starting a new call: not in this sweep
        return IIIInvocationError("invocation_stopped", "lost", function_id=call.function_id)

    table.fail_all(error_of, keep={kept})
    assert outcomes["kept"] == [] and outcomes["dropped"] == []
    assert [type(e) for e in outcomes["lost"]] == [IIIInvocationError]
    assert outcomes["retry"] == [] and len(table) == 2  # kept, and the new call
    assert lost not in {kept, *retried}


def test_trigger_actions_from_models_mappings_and_objects() -> None:
    class Official:
        type = "enqueue"
        queue = "jobs"

    assert trigger_action(None) is None
    assert trigger_action({"type": "void"}) == VoidAction()
    assert trigger_action(Official()) == EnqueueAction(queue="jobs")
    with pytest.raises(ValueError, match="queue name"):
        trigger_action({"type": "enqueue"})
    with pytest.raises(ValueError, match="unknown"):
        trigger_action({"type": "later"})


# ====================================================================== registrations


def _observer_sink() -> ObserverSink:
    class Quiet:
        def on_next(self, value: Any) -> None: ...
        def on_error(self, error: Exception) -> None: ...
        def on_completed(self) -> None: ...

    return ObserverSink(Quiet())  # type: ignore[arg-type]


def test_functions_register_once_and_unregister_with_their_last_sink() -> None:
    sent: list[str] = []
    regs = Registrations(sent.append)
    spec = FunctionSpec("rx::f", description="d")
    first, second = _observer_sink(), _observer_sink()
    regs.add_sink(spec, first)
    regs.add_sink(spec, second)  # observers share a function: no second frame
    assert [json.loads(t)["type"] for t in sent] == ["registerfunction"]
    with pytest.raises(ValueError, match="already registered"):
        regs.add_sink(spec, HttpInvokedSink())  # an exclusive sink cannot join
    regs.remove_sink("rx::f", first)
    assert len(sent) == 1 and regs.function_ids == ["rx::f"]
    regs.remove_sink("rx::f", second)
    regs.remove_sink("rx::f", second)  # idempotent
    assert [json.loads(t) for t in sent[1:]] == [{"type": "unregisterfunction", "id": "rx::f"}]
    regs.add_sink(spec, HttpInvokedSink())
    with pytest.raises(ValueError):
        regs.add_sink(spec, _observer_sink())  # nor join an exclusive one


def test_replay_sends_types_then_functions_then_bindings() -> None:
    sent: list[str] = []
    regs = Registrations(sent.append)
    regs.add_binding(TriggerHandle(regs, TriggerBinding.new("cron", "rx::f", None, None, None,
                                                            None)))
    regs.add_sink(FunctionSpec("rx::f"), _observer_sink())
    regs.add_trigger_type(TriggerType("mine", "", None, None))
    with pytest.raises(ValueError, match="trigger type 'mine'"):
        regs.add_trigger_type(TriggerType("mine", "", None, None))
    replay = [json.loads(t) for t in regs.replay()]
    assert [f["type"] for f in replay] == ["registertriggertype", "registerfunction",
                                           "registertrigger"]
    assert replay[2]["config"] == {}  # the Rust engine drops a binding without config
    assert sorted(replay, key=str) == sorted((json.loads(t) for t in sent), key=str)


def test_refused_registrations_raise_and_closed_ones_send_nothing() -> None:
    sent: list[str] = []
    regs = Registrations(sent.append)
    spec = FunctionSpec("rx::f")
    sink = _observer_sink()
    regs.add_sink(spec, sink)
    handle = TriggerHandle(regs, TriggerBinding.new("cron", "rx::f", {}, None, None, None))
    regs.add_binding(handle)
    regs.refuse(lambda: IIIConnectionError("the client is closed"))
    with pytest.raises(IIIConnectionError):
        regs.add_sink(FunctionSpec("rx::g"), _observer_sink())
    entries = regs.close()
    assert [e.spec.id for e in entries] == ["rx::f"] and regs.function_ids == []
    before = len(sent)
    regs.remove_sink("rx::f", sink)
    handle.unregister()
    assert len(sent) == before


def test_a_refused_binding_keeps_its_error_on_the_handle() -> None:
    regs = Registrations(lambda text: None)
    handle = TriggerHandle(regs, TriggerBinding.new("cron", "rx::f", {}, None, None, None))
    regs.add_binding(handle)
    regs.on_binding_result(TriggerRegistrationResult(id=handle.id, trigger_type="cron",
                                                     function_id="rx::f"))
    assert handle.error is None
    regs.on_binding_result(TriggerRegistrationResult(
        id=handle.id, trigger_type="cron", function_id="rx::f",
        error=ErrorBody(code="bad_config", message="no schedule")))
    assert isinstance(handle.error, IIIInvocationError) and handle.error.code == "bad_config"


# ====================================================================== the worker side


class WorkerRig:
    def __init__(self) -> None:
        self.bridge = LoopBridge.current()
        self.outbox = Outbox()
        self.control: list[str] = []
        self.registrations = Registrations(self.control.append)
        self.invocations: HotStream[Invocation] = HotStream(self.bridge, "invocations")
        self.pool = HandlerPool(4, "iii-rx-handler")
        self.tasks = WorkerTasks("test worker")
        self.worker = Worker(self.bridge, self.outbox, self.registrations, self.invocations,
                             self.pool, self.tasks, url="ws://127.0.0.1:1", headers={})

    def register(self, function_id: str, handler: Any, limit: int | None = None) -> None:
        self.registrations.add_sink(FunctionSpec(function_id),
                                    self.worker.handler(handler, limit))

    def invoke(self, function_id: str, data: Any, iid: str | None = "i1") -> None:
        frame = InvokeFunction(function_id=function_id, data=data, invocation_id=iid)
        self.worker.on_invoke(frame, encode(frame))

    def results(self) -> list[dict[str, Any]]:
        return self.outbox.frames + [frame for frame, _ in self.outbox.from_threads]

    async def wait_results(self, n: int) -> list[dict[str, Any]]:
        for _ in range(500):
            if len(self.results()) >= n:
                break
            await asyncio.sleep(0.005)
        return self.results()


@pytest.fixture
async def rig() -> AsyncIterator[WorkerRig]:
    made = WorkerRig()
    yield made
    await made.tasks.aclose()
    await made.pool.aclose()


async def test_an_async_handler_answers_on_the_loop(rig: WorkerRig) -> None:
    async def double(data: int) -> int:
        return data * 2

    seen: list[Invocation] = []
    rig.invocations.subscribe(seen.append)
    rig.register("math::double", double)
    rig.invoke("math::double", 21)
    results = await rig.wait_results(1)
    assert results == [{"type": "invocationresult", "invocation_id": "i1",
                        "function_id": "math::double", "result": 42}]
    assert rig.outbox.sent[0][1] == RESULT
    assert [inv.function_id for inv in seen] == ["math::double"]
    assert len(rig.tasks) == 0  # the handler's task released itself


async def test_a_sync_handler_answers_from_its_pool_thread(rig: WorkerRig) -> None:
    threads: list[str] = []

    def upper(data: str) -> str:
        threads.append(threading.current_thread().name)
        return data.upper()

    rig.register("str::upper", upper)
    rig.invoke("str::upper", "abc")
    results = await rig.wait_results(1)
    assert results[0]["result"] == "ABC" and threads[0].startswith("iii-rx-handler")
    assert rig.outbox.from_threads  # sent from the pool thread, not on the loop


async def test_unknown_functions_raising_handlers_and_nan_results(rig: WorkerRig) -> None:
    async def boom(data: Any) -> None:
        raise RuntimeError("bad input")

    async def nan(data: Any) -> float:
        return math.nan

    rig.register("f::boom", boom)
    rig.register("f::nan", nan)
    rig.invoke("nobody::here", None, "i1")
    rig.invoke("f::boom", None, "i2")
    rig.invoke("f::nan", None, "i3")
    errors = {r["invocation_id"]: r["error"] for r in await rig.wait_results(3)}
    assert errors["i1"]["code"] == "function_not_found"
    assert errors["i2"]["message"] == "bad input" and "RuntimeError" in errors["i2"]["stacktrace"]
    assert errors["i3"]["code"] == "invocation_failed" and "NaN" in errors["i3"]["message"]


async def test_a_result_json_cannot_carry_answers_the_caller_naming_the_function(
        rig: WorkerRig) -> None:
    rig.register("f::obj", lambda data: object())
    rig.register("f::bytes", lambda data: b"\xff")
    rig.register("f::cycle", lambda data: _cycle())
    for iid, function_id in (("i1", "f::obj"), ("i2", "f::bytes"), ("i3", "f::cycle")):
        rig.invoke(function_id, None, iid)
    errors = {r["invocation_id"]: r["error"] for r in await rig.wait_results(3)}
    assert {error["code"] for error in errors.values()} == {"invocation_failed"}
    assert errors["i1"]["message"] == ("the result of 'f::obj' could not be sent: Object of "
                                       "type object is not JSON serializable")
    assert errors["i2"]["message"].startswith("the result of 'f::bytes' could not be sent: "
                                              "bytes that are not UTF-8")
    assert errors["i3"]["message"] == ("the result of 'f::cycle' could not be sent: Circular "
                                       "reference detected")


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_an_invocation_that_waited_for_a_slot_starts_in_a_context_of_its_own(
        rig: WorkerRig, kind: str) -> None:
    """Not in the context of the handler whose end freed the slot (what it set leaked)."""
    user: contextvars.ContextVar[str] = contextvars.ContextVar("user", default="anonymous")
    release, freed = threading.Event(), asyncio.Event()

    def sync_handler(data: str) -> str:
        before = user.get()
        user.set(data)
        release.wait(5)
        return before

    async def async_handler(data: str) -> str:
        before = user.get()
        user.set(data)
        await freed.wait()
        return before

    rig.register("f::user", sync_handler if kind == "sync" else async_handler, limit=1)
    rig.invoke("f::user", "alice", "i1")
    rig.invoke("f::user", "bob", "i2")  # waits for the slot
    release.set()
    freed.set()
    assert [r["result"] for r in await rig.wait_results(2)] == ["anonymous", "anonymous"]


async def test_concurrency_limit_queues_and_close_abandons_the_waiting(rig: WorkerRig) -> None:
    gate = asyncio.Event()

    async def held(data: int) -> int:
        await gate.wait()
        return data

    rig.register("f::held", held, limit=1)
    rig.invoke("f::held", 1, "i1")
    rig.invoke("f::held", 2, "i2")
    await asyncio.sleep(0.01)
    assert len(rig.tasks) == 1  # the second waits for a slot
    gate.set()
    assert [r["result"] for r in await rig.wait_results(2)] == [1, 2]
    gate.clear()
    rig.invoke("f::held", 3, "i3")
    rig.invoke("f::held", 4, "i4")
    await asyncio.sleep(0)  # i3 starts (and waits at the gate)
    rig.worker.close()  # i4 still waits for the slot: abandoned, never answered
    assert rig.registrations.function_ids == []
    await rig.tasks.aclose()  # i3 is running: cancelled, abandoned too
    await asyncio.sleep(0.01)
    assert len(rig.results()) == 2


async def test_a_rejected_worker_ends_its_observers_with_the_reason(rig: WorkerRig) -> None:
    ended: list[Exception] = []

    class Watch:
        def on_next(self, value: Any) -> None: ...
        def on_error(self, error: Exception) -> None:
            ended.append(error)
        def on_completed(self) -> None: ...

    rig.registrations.add_sink(FunctionSpec("f::watched"), ObserverSink(Watch()))  # type: ignore[arg-type]
    reason = IIIConnectionError("rejected")
    rig.worker.fail(reason)
    assert ended == [reason]


# ====================================================================== providers


async def test_providers_run_callbacks_and_answer_the_engine(rig: WorkerRig) -> None:
    answers: list[str] = []
    providers = Providers(rig.registrations, answers.append, rig.tasks, rig.pool,
                          HotStream(rig.bridge, "state", replay=True))
    registered: list[TriggerConfig] = []
    removed: list[TriggerConfig] = []

    async def on_register(config: TriggerConfig) -> None:
        if config.config == {"bad": True}:
            raise ValueError("no schedule")
        registered.append(config)

    rig.registrations.add_trigger_type(TriggerType("tick", "", on_register, removed.append))
    providers.on_register(RegisterTrigger(id="b1", trigger_type="tick", function_id="f",
                                          config={"every": 1}))
    providers.on_register(RegisterTrigger(id="b2", trigger_type="tick", function_id="f",
                                          config={"bad": True}))
    providers.on_register(RegisterTrigger(id="b3", trigger_type="nope", function_id="f"))
    for _ in range(200):
        if len(answers) == 3:
            break
        await asyncio.sleep(0.005)
    by_id = {a["id"]: a for a in map(json.loads, answers)}
    assert "error" not in by_id["b1"] and registered[0].namespace == "default"
    assert by_id["b2"]["error"]["code"] == "trigger_registration_failed"
    assert by_id["b3"]["error"]["code"] == "trigger_type_not_found"
    tick = rig.registrations.trigger_type("tick")
    assert tick is not None and list(tick.bindings) == ["b1"]
    providers.on_unregister(UnregisterTrigger(id="b1"))  # the type found by its binding
    for _ in range(200):
        if removed:
            break
        await asyncio.sleep(0.005)
    assert [c.id for c in removed] == ["b1"] and tick.bindings == {}  # sync: in the pool


async def test_a_binding_routed_on_a_connection_that_dropped_before_acceptance_is_confirmed_again(
        rig: WorkerRig) -> None:
    """A binding the engine routed again on a connection that dropped before the engine
    accepted the worker counted as confirmed for the whole outage: removed during the next
    gap, it was never retracted (its ``on_unregister`` never ran)."""
    state: HotStream[ConnectionState] = HotStream(rig.bridge, "state", replay=True)
    providers = Providers(rig.registrations, lambda frame: None, rig.tasks, rig.pool, state)
    removed: list[str] = []

    async def on_register(config: TriggerConfig) -> None:
        pass

    async def on_unregister(config: TriggerConfig) -> None:
        removed.append(config.id)

    rig.registrations.add_trigger_type(TriggerType("tick", "", on_register, on_unregister))
    bind = RegisterTrigger(id="b1", trigger_type="tick", function_id="f")
    state.on_next(ConnectionState.CONNECTED)
    providers.on_register(bind)
    providers.link_lost()  # the connection goes
    state.on_next(ConnectionState.RECONNECTING)
    providers.on_register(bind)  # routed again on an attempt that drops before acceptance
    providers.link_lost()
    state.on_next(ConnectionState.CONNECTED)  # accepted; b1 was removed meanwhile: not routed
    for _ in range(200):
        if removed:
            break
        await asyncio.sleep(0.005)
    assert removed == ["b1"]


# ====================================================================== lifecycle


async def test_closing_runs_once_and_is_awaitable_from_another_loop() -> None:
    runs: list[str] = []
    release = asyncio.Event()

    async def shutdown() -> None:
        runs.append("closing")
        await release.wait()

    closing = Closing(LoopBridge.current(), shutdown)
    assert not closing.started
    assert closing.start() is closing
    closing.start()
    await asyncio.sleep(0)
    assert runs == ["closing"] and closing.started and not closing.done()
    with pytest.raises(LoopDeadlockError):
        closing.wait(0.01)  # blocking on the loop that must do the closing
    elsewhere = asyncio.get_running_loop().run_in_executor(
        None, lambda: asyncio.run(_await(closing)))
    assert not await asyncio.to_thread(closing.wait, 0.01)
    release.set()
    await closing
    await elsewhere
    assert closing.done() and runs == ["closing"]


async def _await(closing: Closing) -> None:
    await closing


def test_closing_a_client_whose_loop_is_gone_is_done_at_once() -> None:
    thread = LoopThread()
    thread.stop()

    async def never() -> None:
        raise AssertionError("the loop is gone")

    closing = Closing(thread.bridge, never).start()
    assert closing.done() and closing.wait(0)


def test_a_client_is_not_built_directly() -> None:
    with pytest.raises(TypeError, match="connect"):
        Client()
    with pytest.raises(TypeError, match="connect_sync"):
        Client(url="ws://127.0.0.1:1", name="x")


def test_a_retraced_call_copies_every_field_but_its_traceparent() -> None:
    """``Call.retraced`` (what a traced call sends) lists the call's fields by hand: a field
    added to ``Call`` and not to it would be lost on every traced call."""
    call = object.__new__(Call)
    for index, name in enumerate(Call.__slots__):
        setattr(call, name, f"value-{index}")
    sent = call.retraced("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    assert sent is not call and type(sent) is Call
    for name in Call.__slots__:
        expected = ("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
                    if name == "traceparent" else getattr(call, name))
        assert getattr(sent, name) == expected, name
    assert call.traceparent == f"value-{Call.__slots__.index('traceparent')}"


@pytest.mark.timeout(10)
async def test_closing_a_task_set_whose_task_just_ended_returns() -> None:
    """A task that ended but whose done callback has not run yet (it runs one loop iteration
    later) is still in the set: ``aclose`` must not wait for it. On Python 3.12+
    ``gather()`` of ended tasks returns without yielding to the loop, so a loop that waited
    for the set to empty itself would spin for ever."""
    tasks = TaskSet("test")

    async def noop() -> None:
        return None

    tasks.spawn(noop())
    await asyncio.sleep(0)  # the task ends; its done callback is queued behind this step
    await asyncio.wait_for(tasks.aclose(), 5)
    assert len(tasks) == 0


def test_a_bridge_interrupted_while_waking_its_loop_runs_later_callbacks() -> None:
    # Ctrl-C landing in the self-pipe write of run_sync_soon (a sync reader handing a late
    # chunk back) left the bridge believing a drain was scheduled: every later callback was
    # queued and never ran (late chunks, subscriptions made off the loop...).
    thread = LoopThread("interrupted-bridge")
    loop = thread.loop
    wake = loop.call_soon_threadsafe
    interrupted = [False]

    def interrupt_once(callback: Any, *args: Any, **kwargs: Any) -> Any:
        if not interrupted[0]:
            interrupted[0] = True
            raise KeyboardInterrupt  # as a signal arriving inside the write would
        return wake(callback, *args, **kwargs)

    loop.call_soon_threadsafe = interrupt_once  # type: ignore[method-assign]
    try:
        ran = threading.Event()
        with pytest.raises(KeyboardInterrupt):
            thread.bridge.run_sync_soon(lambda: None)
        thread.bridge.run_sync_soon(ran.set)
        assert ran.wait(5)
    finally:
        loop.call_soon_threadsafe = wake  # type: ignore[method-assign]
        thread.stop()


def test_a_bridged_read_cancelled_before_its_task_started_leaves_no_coroutine_unawaited(
        recwarn: pytest.WarningsRecorder) -> None:
    # The cancel lands between the start's check and the registration of its callback (here
    # made certain): the task is cancelled before its first step, and the coroutine it wraps
    # to hand a late value back was never awaited (RuntimeWarning at collection).
    import concurrent.futures
    import gc

    class CancelledMeanwhile(concurrent.futures.Future[bytes]):
        def add_done_callback(self, fn: Any) -> None:
            if not self.done():
                self.cancel()  # another thread's cancel, landing just here
            super().add_done_callback(fn)

    async def read_one() -> bytes:
        await asyncio.sleep(0)
        return b"chunk"

    thread = LoopThread("cancelled-meanwhile")
    future = CancelledMeanwhile()
    handed: list[bytes] = []
    thread.bridge._schedule(read_one(), future, orphan=handed.append)
    thread.bridge.run_blocking(asyncio.sleep(0), "a turn of the loop")
    thread.stop()
    gc.collect()
    assert future.cancelled() and handed == []
    assert not [w for w in recwarn if "never awaited" in str(w.message)]
