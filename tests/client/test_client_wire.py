"""The exact frames the client sends, checked against a scripted engine on a real socket.

The Rust engine decodes strictly (a missing ``data`` or ``config`` makes it drop the frame), so
these tests pin the shapes of docs/protocol.md §2.3-2.5, §3.5, §3.9 and §11 rather than what our
lenient embedded engine happens to accept.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import websockets
from client_helpers import wait_for
from reactivex import operators as ops

import iii_rx
from iii_rx import (
    ConnectionState,
    IIIConnectionError,
    IIIRegistrationRejectedError,
    ReconnectConfig,
    context,
    lenient,
)
from iii_rx.logsafe import RateLimitedLog


class ScriptedEngine:
    """Greets with ``workerregistered``, acks ``engine::workers::register``, records frames."""

    def __init__(self) -> None:
        self.connections: list[list[dict[str, Any]]] = []
        self.sockets: list[Any] = []
        self.reject: dict[str, Any] | None = None
        self.ack_register = True
        self.extra_greeting: list[str] = []
        self.mangle: Callable[[dict[str, Any]], dict[str, Any]] = lambda result: result
        """What the engine does to each echo result before sending it."""
        self.port = 0

    async def handler(self, ws: Any) -> None:
        n = len(self.connections) + 1
        frames: list[dict[str, Any]] = []
        self.connections.append(frames)
        self.sockets.append(ws)
        await ws.send(json.dumps({"type": "workerregistered", "worker_id": f"w{n}",
                                  "reattach_token": f"t{n}"}))
        for text in self.extra_greeting:
            await ws.send(text)
        async for message in ws:
            frame = json.loads(message)
            frames.append(frame)
            if frame.get("function_id") == "engine::workers::register":
                if self.reject is not None:
                    await ws.send(json.dumps({"type": "registrationrejected", **self.reject}))
                    await ws.close()
                    return
                if self.ack_register and frame.get("invocation_id"):
                    await ws.send(json.dumps({
                        "type": "invocationresult", "invocation_id": frame["invocation_id"],
                        "function_id": "engine::workers::register",
                        "result": {"success": True}}))
            elif frame.get("type") == "invokefunction" and frame.get("invocation_id"):
                await ws.send(json.dumps(self.mangle({
                    "type": "invocationresult", "invocation_id": frame["invocation_id"],
                    "function_id": frame["function_id"], "result": frame.get("data")})))

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


@pytest.fixture
async def scripted() -> AsyncIterator[ScriptedEngine]:
    engine = ScriptedEngine()
    async with websockets.serve(engine.handler, "127.0.0.1", 0, compression=None) as server:
        engine.port = server.sockets[0].getsockname()[1]
        yield engine


def of_type(frames: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [f for f in frames if f["type"] == kind]


async def test_frame_shapes(scripted: ScriptedEngine, name: str) -> None:
    async with iii_rx.connect(scripted.url, name=name, namespace="team",
                              description="d") as iii:
        frames = scripted.connections[0]
        register = frames[-1]
        assert register["type"] == "invokefunction"
        assert register["function_id"] == "engine::workers::register"
        assert "action" not in register and register["invocation_id"]
        data = register["data"]
        assert data["name"] == name and data["namespace"] == "team"
        assert data["runtime"] == "python" and data["telemetry"]["framework"] == "iii-rx"
        assert data["description"] == "d" and isinstance(data["pid"], int)
        assert set(data.get("features", [])) <= {"large-messages.v1"}

        iii.register_function("team::f", lambda x: x, description="f")
        iii.register_trigger({"type": "cron", "function_id": "team::f"})
        iii.register_trigger({"type": "engine::functions-available",
                              "function_id": "engine::watch"})
        assert await iii.trigger("engine::functions::list") is None
        assert await iii.trigger("team::f", {"a": 1}, metadata={"m": 1}) == {"a": 1}
        assert await iii.trigger("team::f", 1, namespace="other") == 1
        assert await iii.trigger("team::f", action=iii_rx.TriggerAction.void()) is None
        await wait_for(lambda: len(of_type(frames, "invokefunction")) == 5)

        (function,) = of_type(frames, "registerfunction")
        assert function == {"type": "registerfunction", "id": "team::f", "description": "f"}
        cron, available = of_type(frames, "registertrigger")
        assert cron["config"] == {} and cron["namespace"] == "team"  # config always sent
        assert cron["trigger_type"] == "cron" and cron["function_id"] == "team::f"
        assert available["namespace"] == "default"  # engine::* targets live in default
        calls = of_type(frames, "invokefunction")[1:]
        assert calls[0]["data"] is None and "data" in calls[0]  # always sent, even None
        assert calls[0]["namespace"] == "default"
        assert calls[1]["namespace"] == "team" and calls[1]["metadata"] == {"m": 1}
        assert calls[2]["namespace"] == "other"
        assert calls[3]["action"] == {"type": "void"} and "invocation_id" not in calls[3]
        assert calls[3]["data"] is None
        assert len({c["invocation_id"] for c in calls[:3]}) == 3


async def test_reconnect_replays_in_order_after_reattach(scripted: ScriptedEngine,
                                                         name: str) -> None:
    config = ReconnectConfig(initial_delay_ms=10, max_delay_ms=50)
    async with iii_rx.connect(scripted.url, name=name, reconnect=config) as iii:
        iii.register_trigger_type("tick", "ticks")
        iii.register_function("a::f", lambda x: x)
        trigger = iii.register_trigger({"type": "tick", "function_id": "a::f"})
        await wait_for(lambda: len(scripted.connections[0]) == 4)
        await scripted.sockets[0].close()
        await wait_for(lambda: len(scripted.connections) == 2
                       and len(scripted.connections[1]) == 5)
        await wait_for(lambda: iii.connection_state is ConnectionState.CONNECTED)
        replay = scripted.connections[1]
        assert [f["type"] for f in replay] == ["reattach", "registertriggertype",
                                               "registerfunction", "registertrigger",
                                               "invokefunction"]
        assert replay[0] == {"type": "reattach", "previous_worker_id": "w1",
                             "reattach_token": "t1"}
        assert replay[3]["id"] == trigger.id  # the same binding id as before
        assert replay[4]["function_id"] == "engine::workers::register"
        assert iii.worker_id == "w2"


async def test_fatal_rejection(scripted: ScriptedEngine, name: str) -> None:
    scripted.reject = {"code": "WORKER_NAMESPACE_CONFLICT", "namespace": "default",
                       "worker_name": name, "owner_worker_id": "w0"}
    with pytest.raises(IIIRegistrationRejectedError) as info:
        await iii_rx.connect(scripted.url, name=name,
                             reconnect=ReconnectConfig(initial_delay_ms=10))
    assert info.value.code == "WORKER_NAMESPACE_CONFLICT"
    assert info.value.worker_name == name and info.value.owner_worker_id == "w0"
    await asyncio.sleep(0.1)
    assert len(scripted.connections) == 1  # fatal: no reconnect


async def test_garbage_from_the_engine_is_dropped(scripted: ScriptedEngine, name: str) -> None:
    scripted.extra_greeting = ["not json", '{"type": "mystery", "x": 1}',
                               '{"type": "invocationresult"}', '{"type": "ping"}']
    async with iii_rx.connect(scripted.url, name=name) as iii:
        assert await iii.trigger("x::y", 5) == 5
        await wait_for(lambda: bool(of_type(scripted.connections[0], "pong")))


async def test_an_engine_cannot_flood_the_clients_log(
        scripted: ScriptedEngine, name: str, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Bad frames and failed void invocations are logged ten per ten seconds at most, then
    summed up (an engine may send any number; the official SDK logs each, with a traceback)."""
    for module, budget in ((lenient, "_dropped"), (context, "_void_failures")):
        # The budgets are the process's: this test starts with them full.
        fresh = RateLimitedLog(getattr(module, budget)._log)
        monkeypatch.setattr(module, budget, fresh)
    bad = ["not json"] * 50
    voids = [json.dumps({"type": "invokefunction", "function_id": "nope::x", "data": {}})] * 50
    scripted.extra_greeting = [*bad, *voids, '{"type": "ping"}']
    with caplog.at_level(logging.WARNING):
        async with iii_rx.connect(scripted.url, name=name):
            await wait_for(lambda: bool(of_type(scripted.connections[0], "pong")))
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert sum("dropped a frame" in line for line in lines) == 10
    assert sum("void invocation of 'nope::x' failed" in line for line in lines) == 10
    assert sum("held back" in line for line in lines) == 2


async def test_engine_without_register_ack(scripted: ScriptedEngine, name: str) -> None:
    """An engine that treats the register as void still lets the client connect."""
    scripted.ack_register = False
    async with iii_rx.connect(scripted.url, name=name, timeout_ms=200) as iii:
        assert iii.connection_state is ConnectionState.CONNECTED
        assert await iii.trigger("x::y", 1) == 1


async def test_an_unanswered_registration_is_named_when_connecting_times_out(
        scripted: ScriptedEngine, name: str) -> None:
    scripted.ack_register = False
    with pytest.raises(IIIConnectionError, match="the websocket is open, but the engine has "
                                                 "not accepted the worker"):
        await iii_rx.connect(scripted.url, name=name, connect_timeout=0.5)


async def test_an_address_that_never_answers_the_handshake_is_named(name: str) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # holds the connection, answers nothing
        writer.close()  # from Python 3.12.1 on, the server's close waits for every connection

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        with pytest.raises(IIIConnectionError, match="no websocket handshake from that "
                                                     "address yet"):
            await iii_rx.connect(f"ws://127.0.0.1:{port}", name=name, connect_timeout=0.3)


@pytest.mark.parametrize("mangled", [
    {"function_id": None}, {"function_id": 7}, {"traceparent": 5, "baggage": ["b"]},
    {"error": None, "namespace": 3},
])
async def test_a_result_with_unexpected_fields_still_ends_its_call(
        scripted: ScriptedEngine, name: str, mangled: dict[str, Any]) -> None:
    """A newer or sloppier engine's result is read leniently: its call ends with the result,
    not with a timeout (the official SDK reads these too)."""
    scripted.mangle = lambda result: {**result, **mangled}
    async with iii_rx.connect(scripted.url, name=name) as iii:
        assert await iii.trigger("x::y", {"n": 1}, timeout_ms=5000) == {"n": 1}
    scripted.mangle = lambda result: {k: v for k, v in result.items() if k != "function_id"}
    async with iii_rx.connect(scripted.url, name=name) as iii:
        assert await iii.trigger("x::y", 2, timeout_ms=5000) == 2


async def test_an_invocation_with_unexpected_fields_is_answered(scripted: ScriptedEngine,
                                                                name: str) -> None:
    """An action type this client does not know, or ids that are not strings: the handler
    runs (or ``function_not_found`` answers), so the engine's caller is not left waiting."""
    async with iii_rx.connect(scripted.url, name=name) as iii:
        iii.register_function("x::double", lambda n: n * 2)
        ws = scripted.sockets[0]
        await ws.send(json.dumps({"type": "invokefunction", "invocation_id": "i1",
                                  "function_id": "x::double", "data": 4,
                                  "action": {"type": "stream", "id": "s"},
                                  "traceparent": 7, "namespace": 3}))
        await ws.send(json.dumps({"type": "invokefunction", "invocation_id": "i2",
                                  "function_id": 5, "data": 1}))
        frames = scripted.connections[0]
        await wait_for(lambda: len(of_type(frames, "invocationresult")) == 2)
        answers = {f["invocation_id"]: f for f in of_type(frames, "invocationresult")}
        assert answers["i1"]["result"] == 8 and "error" not in answers["i1"]
        assert answers["i2"]["error"]["code"] == "function_not_found"


async def test_a_loss_is_logged_with_its_close_code_and_reason(
        scripted: ScriptedEngine, name: str, caplog: pytest.LogCaptureFixture) -> None:
    async with iii_rx.connect(scripted.url, name=name,
                              reconnect=ReconnectConfig(initial_delay_ms=10)) as iii:
        with caplog.at_level(logging.WARNING, logger="iii_rx.transport"):
            await scripted.sockets[0].close(4000, "maintenance")
            await wait_for(lambda: len(scripted.connections) == 2)
            await iii.state.pipe(ops.filter(lambda s: s is ConnectionState.CONNECTED),
                                 ops.first())
    assert any("closed by the engine: code 4000, 'maintenance'" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]


async def test_http_invocation_config_as_model_or_dict(scripted: ScriptedEngine,
                                                       name: str) -> None:
    async with iii_rx.connect(scripted.url, name=name) as iii:
        auth = {"type": "bearer", "token_key": "CHARGE_TOKEN"}
        iii.register_function("ext::model", iii_rx.HttpInvocationConfig(
            "https://pay.example/charge", auth=auth, timeout_ms=5000))
        iii.register_function("ext::dict", {"url": "https://pay.example/charge", "auth": auth,
                                            "timeout_ms": 5000})
        frames = scripted.connections[0]
        await wait_for(lambda: len(of_type(frames, "registerfunction")) == 2)
        model, plain = of_type(frames, "registerfunction")
        assert model["invocation"] == plain["invocation"] == {
            "url": "https://pay.example/charge", "method": "POST", "timeout_ms": 5000,
            "auth": auth}
        assert plain["id"] == "ext::dict"
        with pytest.raises(ValueError, match="environment variable"):  # a raw secret
            iii.register_function("ext::leak", {"url": "https://x.example/",
                                                "auth": {"type": "bearer",
                                                         "token_key": "sk_live_abcdefgh1234"}})
        with pytest.raises(ValueError):
            iii.register_function("ext::nourl", {"method": "GET"})
        assert "ext::leak" not in iii.function_ids and "ext::nourl" not in iii.function_ids
