"""iii_rx.compat beyond the corpus: the spellings of older SDK releases (kept beside 0.25's),
the official calling rules the reactive API does differently, and compat's own guarantees (ordered
fire-and-forget channel writes, SHUTDOWN errors, no threads left behind). In-process, against an
embedded engine on ephemeral ports."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from compat_helpers import wait_for_function
from pydantic import BaseModel, Field

import iii_rx
from iii_rx import compat
from iii_rx.compat import (
    ApiRequest,
    ApiResponse,
    InitOptions,
    InvocationError,
    Logger,
    ReconnectionConfig,
    RegistrationRejectedError,
    TriggerAction,
    TriggerConfig,
    TriggerHandler,
    get_context,
    register_worker,
)
from iii_rx.compat.channels import extract_channel_refs
from iii_rx.compat.handlers import metadata_mode, to_wire_value
from iii_rx.compat.options import connect_options
from iii_rx.engine import Engine
from iii_rx.errors import IIITimeoutError


@pytest.fixture(scope="module")
def engine_url() -> Iterator[str]:
    handle = Engine.start_in_thread()
    try:
        yield handle.url
    finally:
        handle.stop()


@pytest.fixture
def worker(engine_url: str, request: pytest.FixtureRequest) -> Iterator[compat.III]:
    threads_before = set(threading.enumerate())
    iii = register_worker(engine_url, InitOptions(worker_name=f"api-{request.node.name}"))
    try:
        yield iii
    finally:
        iii.shutdown()
    assert _leftover_threads(threads_before) == []


def _leftover_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    """Threads started during the test that are still alive shortly after it (bounded wait)."""
    deadline = time.monotonic() + 5
    while True:
        extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not extra or time.monotonic() > deadline:
            return extra
        time.sleep(0.02)


# ----------------------------------------------------------------------------- older spellings


def test_get_context_inside_a_handler_names_the_invocation(worker: compat.III) -> None:
    def handler(data: Any) -> dict[str, Any]:
        ctx = get_context()
        ctx.logger.info("seen", {"n": data["n"]})
        return {"function_id": ctx.function_id, "has_id": bool(ctx.invocation_id),
                "trace_id_hex": len(ctx.trace_id or "") == 32}

    worker.register_function("old::ctx", handler)
    wait_for_function(worker, "old::ctx")
    assert worker.trigger({"function_id": "old::ctx", "payload": {"n": 1}}) == {
        "function_id": "old::ctx", "has_id": True, "trace_id_hex": True}
    assert get_context().function_id is None  # outside handlers: an empty context


def test_on_connection_state_change_is_a_listener_with_unsubscribe(engine_url: str) -> None:
    iii = register_worker(engine_url, InitOptions(worker_name="api-old-state"))
    seen: list[str] = []
    unsubscribe = iii.on_connection_state_change(seen.append)
    assert seen == ["connected"]
    unsubscribe()
    iii.shutdown()
    assert seen == ["connected"]
    assert iii.get_connection_state() == "disconnected"


def test_create_channel_as_methods(worker: compat.III) -> None:
    channel = worker.create_channel()
    assert channel.writer_ref.direction == "write"

    async def roundtrip() -> tuple[bytes, bytes]:
        other = await worker.create_channel_async(buffer_size=4)

        async def write(ch: compat.Channel, data: bytes) -> None:
            await ch.writer.write(data)
            await ch.writer.close_async()

        results = await asyncio.gather(channel.reader.read_all(), other.reader.read_all(),
                                       write(channel, b"sync-made"), write(other, b"async-made"))
        return results[0], results[1]

    assert asyncio.run(roundtrip()) == (b"sync-made", b"async-made")


def test_api_request_and_response_of_older_releases(worker: compat.III) -> None:
    def handler(data: Any) -> ApiResponse:
        request = ApiRequest.model_validate({"method": "POST", "body": data["x"]})
        return ApiResponse(statusCode=201, body={"echo": request.body})

    worker.register_function("old::api", handler)
    wait_for_function(worker, "old::api")
    # Sent as `status_code`, the key every engine reads (docs/protocol.md §11 row 6).
    assert worker.trigger({"function_id": "old::api", "payload": {"x": {"a": 1}}}) == {
        "status_code": 201, "headers": {}, "body": {"echo": {"a": 1}}}
    assert compat.HttpResponse is ApiResponse and compat.HttpRequest is ApiRequest


def test_request_objects_of_other_shapes_are_read_by_field(worker: compat.III) -> None:
    # Half-migrated code may still build the official SDK's own models, or its dataclasses.
    from dataclasses import dataclass

    from iii.iii_types import RegisterTriggerInput as OfficialTriggerInput
    from iii.iii_types import TriggerRequest as OfficialRequest

    @dataclass
    class Call:
        function_id: str
        payload: Any = None

    worker.register_function("shape::echo", lambda data: data["v"])
    wait_for_function(worker, "shape::echo")
    assert worker.trigger(OfficialRequest(function_id="shape::echo", payload={"v": 1})) == 1
    assert worker.trigger(Call("shape::echo", {"v": 2})) == 2  # type: ignore[arg-type]
    trigger = worker.register_trigger(OfficialTriggerInput(
        type="engine::workers-available", function_id="shape::echo", config={}))
    trigger.unregister()


def test_trigger_action_has_both_spellings() -> None:
    assert TriggerAction.Void() == TriggerAction.void()
    assert TriggerAction.Enqueue(queue="q") == TriggerAction.enqueue("q")
    assert compat.TriggerActionVoid().type == "void"


# ----------------------------------------------------------------------------- errors


def test_error_aliases_catch_the_typed_errors(worker: compat.III) -> None:
    assert InvocationError is iii_rx.IIIInvocationError
    assert RegistrationRejectedError is iii_rx.IIIRegistrationRejectedError
    release = threading.Event()

    def slow(data: Any) -> str:
        release.wait(5)
        return "late"

    worker.register_function("err::slow", slow)
    wait_for_function(worker, "err::slow")
    with pytest.raises(InvocationError) as caught:
        worker.trigger({"function_id": "err::slow", "payload": {}, "timeout_ms": 50})
    release.set()
    assert isinstance(caught.value, IIITimeoutError)
    assert (caught.value.code, caught.value.function_id) == ("TIMEOUT", "err::slow")


def test_a_taken_worker_name_is_a_registration_rejection(engine_url: str,
                                                         worker: compat.III) -> None:
    name = worker.client.name
    with pytest.raises(RegistrationRejectedError) as caught:
        register_worker(engine_url, InitOptions(worker_name=name))
    assert caught.value.code == "WORKER_NAMESPACE_CONFLICT"


def test_an_unreachable_engine_raises_connection_error_once_retries_run_out() -> None:
    with socket.socket() as probe:  # a port with nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    options = InitOptions(worker_name="api-unreachable", reconnection_config=ReconnectionConfig(
        initial_delay_ms=5, max_delay_ms=10, max_retries=2))
    started = time.monotonic()
    with pytest.raises(ConnectionError):
        register_worker(f"ws://127.0.0.1:{port}", options)
    assert time.monotonic() - started < 10


def test_calls_cut_short_by_shutdown_fail_with_code_shutdown(engine_url: str,
                                                             worker: compat.III) -> None:
    release = threading.Event()
    worker.register_function("err::hang", lambda data: release.wait(10))
    wait_for_function(worker, "err::hang")
    caller = register_worker(engine_url, InitOptions(worker_name="api-shutdown-caller"))
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            caller.trigger({"function_id": "err::hang", "payload": {}})
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    for _ in range(500):
        if caller.client.pending_calls:
            break
        time.sleep(0.01)
    caller.shutdown()
    thread.join(10)
    release.set()
    assert len(outcome) == 1 and isinstance(outcome[0], InvocationError)
    assert (outcome[0].code, outcome[0].function_id) == ("SHUTDOWN", "err::hang")


# ----------------------------------------------------------------------------- calling rules


def test_a_second_parameter_not_named_metadata_gets_nothing(worker: compat.III) -> None:
    # The official rule (docs/protocol.md §5.2): only a parameter named `metadata` receives it.
    def handler(data: Any, ctx: Any) -> str:
        return "called with two"

    worker.register_function("rule::two-params", handler)
    wait_for_function(worker, "rule::two-params")
    with pytest.raises(InvocationError) as caught:
        worker.trigger({"function_id": "rule::two-params", "payload": {}, "metadata": {"m": 1}})
    assert caught.value.code == "invocation_failed"
    assert "ctx" in caught.value.message


@pytest.mark.parametrize(("signature", "mode"), [
    ("def h(data): ...", "none"),
    ("def h(data, metadata=None): ...", "positional"),
    ("def h(data, metadata): ...", "positional"),
    ("def h(data, *, metadata=None): ...", "keyword"),
    ("def h(metadata): ...", "none"),
    ("def h(data, other, metadata=None): ...", "none"),
    ("def h(data, **metadata): ...", "none"),
    ("def h(*args): ...", "none"),
])
def test_metadata_mode_follows_the_official_rule(signature: str, mode: str) -> None:
    namespace: dict[str, Any] = {}
    exec(signature, namespace)
    assert metadata_mode(namespace["h"]) == mode


def test_blocking_calls_from_the_loop_thread_raise(worker: compat.III) -> None:
    async def handler(data: Any) -> list[str]:
        seen = []
        for attempt in (lambda: worker.trigger({"function_id": "x"}), worker.shutdown,
                        lambda: worker.create_channel()):
            try:
                attempt()
            except RuntimeError:
                seen.append("RuntimeError")
        return seen

    worker.register_function("rule::blocking", handler)
    wait_for_function(worker, "rule::blocking")
    assert worker.trigger({"function_id": "rule::blocking", "payload": {}}) == [
        "RuntimeError"] * 3
    assert worker.get_connection_state() == "connected"


def test_unsupported_options_are_refused_clearly(worker: compat.III) -> None:
    with pytest.raises(NotImplementedError):
        worker.register_function("rule::observed", lambda data: None, observe={"delivery": "x"})
    with pytest.raises(ValueError):
        worker.trigger({"function_id": "rule::x", "payload": {}, "dispatch": "sideways"})
    with pytest.raises(ValueError):
        register_worker("ws://127.0.0.1:1", InitOptions(namespace=" "))


def test_reconnection_config_of_either_sdk_or_a_mapping_is_honoured() -> None:
    """The official SDK's ReconnectionConfig and a dict raised AttributeError
    'to_reconnect_config'; the official SDK reads any object with the fields."""
    from iii_helpers.observability.reconnection import ReconnectionConfig as Official

    expected = iii_rx.ReconnectConfig(initial_delay_ms=20, max_retries=2)
    for config in (ReconnectionConfig(initial_delay_ms=20, max_retries=2),
                   Official(initial_delay_ms=20, max_retries=2),
                   {"initial_delay_ms": 20, "max_retries": 2}):
        options = connect_options(InitOptions(reconnection_config=config))
        assert options["reconnect"] == expected
    with pytest.raises(TypeError, match="reconnection_config must be a ReconnectionConfig"):
        connect_options(InitOptions(reconnection_config="fast"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="jitter_factor"):
        connect_options(InitOptions(reconnection_config=ReconnectionConfig(jitter_factor=2)))


def test_trigger_type_ref_binds_functions_to_its_type(worker: compat.III) -> None:
    bound = threading.Event()
    seen: list[TriggerConfig[Any]] = []

    class Handler(TriggerHandler[Any]):
        async def register_trigger(self, config: TriggerConfig[Any]) -> None:
            seen.append(config)
            bound.set()

        async def unregister_trigger(self, config: TriggerConfig[Any]) -> None:
            pass

    ref = worker.register_trigger_type(
        compat.RegisterTriggerTypeInput(id="api-hook", description="hooks"), Handler())
    ref.register_function("api::on-hook", lambda data: data)
    trigger = ref.register_trigger("api::on-hook", {"path": "/x"}, metadata={"team": "t"})
    assert bound.wait(10)
    assert (seen[0].function_id, seen[0].config, seen[0].metadata, seen[0].namespace) == (
        "api::on-hook", {"path": "/x"}, {"team": "t"}, None)
    trigger.unregister()

    class Hook(BaseModel):  # the official SDK sends model_dump() here: names, None kept
        url_path: str = Field(alias="urlPath")
        secret: str | None = None

    bound.clear()
    trigger = ref.register_trigger("api::on-hook", Hook(urlPath="/y"))
    assert bound.wait(10)
    assert seen[1].config == {"url_path": "/y", "secret": None}
    trigger.unregister()
    worker.unregister_trigger_type({"id": "api-hook"})


# ----------------------------------------------------------------------------- channels


def test_fire_and_forget_writes_from_a_plain_thread_arrive_in_order(worker: compat.III) -> None:
    channel = compat.create_channel(worker)
    # No event loop in this thread: the operations are scheduled on the client's loop.
    channel.writer.send_message("first")
    channel.writer.stream.write(b"a" * 70_000)
    channel.writer.send_message("second")
    channel.writer.stream.end(b"tail")
    messages: list[str] = []
    channel.reader.on_message(messages.append)

    async def read() -> bytes:
        return await channel.reader.read_all()

    data = asyncio.run(read())
    assert data == b"a" * 70_000 + b"tail"
    assert messages == ["first", "second"]


def test_fire_and_forget_then_awaited_on_the_loop_keep_call_order(worker: compat.III) -> None:
    channel = compat.create_channel(worker)
    seen: list[tuple[str, Any]] = []
    channel.reader.on_message(lambda text: seen.append(("text", text)))

    async def on_the_workers_loop() -> None:
        # The awaited write is made after the fire-and-forget message: it must go out after it.
        channel.writer.send_message("first")
        await channel.writer.write(b"second")
        channel.writer.send_message("third")
        await channel.writer.close_async()

    asyncio.run_coroutine_threadsafe(on_the_workers_loop(), worker.client.loop).result(10)

    async def read() -> None:
        async for chunk in channel.reader:
            seen.append(("bytes", chunk))

    asyncio.run(read())
    assert seen == [("text", "first"), ("bytes", b"second"), ("text", "third")]


def test_send_message_takes_text_and_as_the_official_bytes(worker: compat.III) -> None:
    """The official SDK hands bytes to its websocket, a binary frame; anything else raises at
    the call here (the official one logs the failed task's TypeError)."""
    channel = compat.create_channel(worker)
    with pytest.raises(TypeError, match=r"^send_message\(msg\): msg must be a str.*got dict"):
        channel.writer.send_message({"progress": 50})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^send_message\(msg\): msg must be a str.*got int"):
        asyncio.run(channel.writer.send_message_async(5))  # type: ignore[arg-type]
    messages: list[str] = []
    channel.reader.on_message(messages.append)
    channel.writer.send_message("text")
    channel.writer.send_message(b"bytes")  # type: ignore[arg-type]
    channel.writer.close()
    assert asyncio.run(channel.reader.read_all()) == b"bytes"
    assert messages == ["text"]


def test_a_failed_fire_and_forget_operation_is_logged(worker: compat.III,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    channel = compat.create_channel(worker)
    channel.writer.close()
    channel.writer.send_message("after the end")  # fails in turn: the writer is closed
    asyncio.run(channel.reader.read_all())
    for _ in range(200):
        if any("crashed" in r.getMessage() for r in caplog.records):
            break
        time.sleep(0.01)
    failures = [r for r in caplog.records if "crashed" in r.getMessage()]
    assert failures and failures[0].exc_info is not None
    assert isinstance(failures[0].exc_info[1], iii_rx.ChannelClosedError)


def test_handlers_receive_the_conventional_channel_ends(worker: compat.III) -> None:
    async def produce(data: Any) -> str:
        writer = data["out"][0]
        assert isinstance(writer, compat.ChannelWriter)
        await writer.write(b"hello")
        writer.close()
        return type(writer).__module__

    worker.register_function("chan::produce", produce)
    wait_for_function(worker, "chan::produce")
    channel = worker.create_channel()

    async def run() -> tuple[str, bytes]:
        call = worker.trigger_async({"function_id": "chan::produce",
                                     "payload": {"out": [channel.writer_ref]}})
        result, data = await asyncio.gather(call, channel.reader.read_all())
        return result, data

    assert asyncio.run(run()) == ("iii_rx.compat.channels", b"hello")


def test_extract_channel_refs_reports_paths() -> None:
    ref = {"channel_id": "c", "access_key": "k", "direction": "read"}
    found = extract_channel_refs({"a": ref, "items": [{"w": {**ref, "direction": "write"}}]})
    assert [(path, r.direction) for path, r in found] == [("a", "read"),
                                                         ("items[0].w", "write")]


# ----------------------------------------------------------------------------- small parts


class _Inner(BaseModel):
    value_name: str = Field(alias="valueName")
    optional: int | None = None


def test_init_options_repr_hides_header_values() -> None:
    options = InitOptions(headers={"Authorization": "Bearer SECRET"},
                          otel=compat.OtelConfig(engine_ws_headers={"X-Key": "SECRET"}))
    assert "SECRET" not in repr(options)
    assert "headers={'Authorization': '***'}" in repr(options)
    as_mapping = InitOptions(otel={"enabled": True,
                                   "engine_ws_headers": {"X-Key": "SECRET"}})
    assert "SECRET" not in repr(as_mapping)
    assert "'engine_ws_headers': {'X-Key': '***'}" in repr(as_mapping)


def test_the_repr_of_a_worker_whose_register_worker_raised() -> None:
    """pytest prints it in the traceback of a failed register_worker() (as ``self``)."""
    half_built = compat.III.__new__(compat.III)
    assert repr(half_built) == "<iii_rx.compat.III (not connected)>"


def test_models_go_out_by_alias_without_none_fields() -> None:
    plain = {"a": [1, 2], "b": {"c": None}}
    assert to_wire_value(plain) is plain
    assert to_wire_value({"m": _Inner(valueName="x"), "t": (1, _Inner(valueName="y"))}) == {
        "m": {"valueName": "x"}, "t": [1, {"valueName": "y"}]}


def test_logger_falls_back_to_the_iii_logger(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="iii.logger")
    Logger(service_name="svc").warn("careful", {"n": 1})
    Logger().debug("quiet")
    records = [r for r in caplog.records if r.name == "iii.logger"]
    assert [(r.levelname, r.getMessage(), getattr(r, "data", None)) for r in records] == [
        ("WARNING", "[svc] careful", {"n": 1}), ("DEBUG", "[] quiet", None)]


def test_listeners_see_a_reconnect_and_functions_come_back() -> None:
    first = Engine.start_in_thread()
    port = first.port
    iii = register_worker(first.url, InitOptions(
        worker_name="api-reconnect",
        reconnection_config=ReconnectionConfig(initial_delay_ms=20, max_delay_ms=50)))
    states: list[str] = []
    changed = threading.Condition()

    def on_state(state: str) -> None:
        with changed:
            states.append(state)
            changed.notify_all()

    second = None
    try:
        iii.add_connection_state_listener(on_state)
        iii.register_function("api::echo", lambda data: data["v"])
        wait_for_function(iii, "api::echo")
        first.stop()
        with changed:
            assert changed.wait_for(lambda: "reconnecting" in states, timeout=10)
        second = Engine.start_in_thread(port=port)
        with changed:
            assert changed.wait_for(lambda: states[-1] == "connected", timeout=10), states
        wait_for_function(iii, "api::echo")
        assert iii.trigger({"function_id": "api::echo", "payload": {"v": 7}}) == 7
        assert states[:2] == ["connected", "reconnecting"] and states[-1] == "connected"
        assert all(isinstance(s, str) and type(s) is str for s in states)
    finally:
        iii.shutdown()
        if second is not None:
            second.stop()
        first.stop()


# ----------------------------------------------------------------------------- the process

_SERVING_SCRIPT = """
import sys
from iii_rx.compat import InitOptions, register_worker

worker = register_worker(sys.argv[1], InitOptions(worker_name="keeps-serving"))
worker.register_function("alive::ping", lambda data: {"pong": data})
if sys.argv[2] == "shutdown":
    worker.shutdown()
print("main ended", flush=True)
"""


@pytest.mark.parametrize("ending", ["end of script", "shutdown"])
def test_a_worker_keeps_its_process_serving_until_shutdown(engine_url: str, tmp_path: Any,
                                                           ending: str) -> None:
    """As with the official SDK: a worker script that reaches its end goes on serving (its
    process stays), one that calls ``shutdown()`` exits."""
    script = tmp_path / "worker.py"
    script.write_text(_SERVING_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), engine_url, ending.split()[0]],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "OTEL_ENABLED": "false"})
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "main ended"
        if ending == "shutdown":
            assert proc.wait(30) == 0
            return
        with iii_rx.connect_sync(engine_url, name="alive-caller") as caller:
            caller.wait_for_function_sync("alive::ping", timeout=10)
            assert caller.trigger("alive::ping", 1).result(timeout=10) == {"pong": 1}
        assert proc.poll() is None  # still serving after its main code ended
    finally:
        proc.kill()
        proc.wait(10)


def test_a_worker_that_failed_for_good_keeps_its_process_until_shutdown() -> None:
    """As the official SDK's worker thread: a worker whose reconnects ran out serves nothing
    but keeps its process (it used to end it with status 0 once wait_closed() raised)."""
    from iii_rx.engine import Engine

    handle = Engine.start_in_thread(port=0)
    worker = compat.register_worker(handle.url, compat.InitOptions(
        worker_name="fails-for-good",
        reconnection_config={"initial_delay_ms": 10, "max_delay_ms": 20, "max_retries": 1}))
    try:
        handle.stop()
        with pytest.raises(iii_rx.IIIConnectionError):
            worker.client.wait_closed(timeout=30)
        keeper = [t for t in threading.enumerate() if t.name == "iii-rx-compat-worker"]
        assert keeper
        keeper[0].join(1.0)  # it would have ended by now (a negative check needs a bound)
        assert all(t.is_alive() for t in keeper)
    finally:
        worker.shutdown()
    for thread in keeper:
        thread.join(10)
        assert not thread.is_alive()


def test_a_payload_json_cannot_hold_raises_type_error(worker: compat.III) -> None:
    """As ``json.dumps`` (and so the official SDK): ``TypeError`` for a type it cannot write."""
    class Thing:
        pass

    with pytest.raises(TypeError, match=r"^the call to 'engine::functions::list' was not sent: "
                                        r"Object of type Thing is not JSON serializable$"):
        worker.trigger({"function_id": "engine::functions::list", "payload": {"v": [Thing()]}})
    with pytest.raises(TypeError, match="Object of type Thing"):
        asyncio.run(worker.trigger_async({"function_id": "engine::functions::list",
                                          "payload": Thing()}))
    # The official SDK refuses all bytes (json.dumps); iii_rx sends UTF-8 ones as text.
    with pytest.raises(TypeError, match="bytes that are not UTF-8 cannot be sent"):
        worker.trigger({"function_id": "engine::functions::list", "payload": b"\xff"})
