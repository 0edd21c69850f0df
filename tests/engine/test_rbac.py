"""RBAC listeners over real sockets: authentication and each access rule (docs/engine-config.md)."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from raw_engine_client import wait_until
from rbac_support import guarded_engine, port_url, raw, rbac
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from iii_rx import ReconnectConfig, connect
from iii_rx.engine import Engine
from iii_rx.engine.listeners import Listener
from iii_rx.errors import IIIConnectionError, IIIForbiddenError


def _rbac_listener() -> Listener:
    return Listener(port=0, rbac=rbac())


async def test_auth_runs_once_per_upgrade_with_headers_query_and_address() -> None:
    async with guarded_engine(_rbac_listener()) as (engine, trusted):
        worker = await raw(engine, "plain", query="api_key=k1&api_key=k2&empty=")
        assert await worker.result_of("pub::echo", {"a": 1}) == {
            "echo": {"a": 1, "_caller_worker_id": worker.worker_id}}
        assert len(trusted.auth_inputs) == 1
        seen = trusted.auth_inputs[0]
        assert seen["headers"]["x-token"] == "plain"
        assert seen["query_params"] == {"api_key": ["k1", "k2"], "empty": [""]}
        assert seen["ip_address"] == "127.0.0.1"


async def test_a_refused_upgrade_gets_auth_error_then_close() -> None:
    async with guarded_engine(_rbac_listener()) as (engine, _):
        async with ws_connect(port_url(engine), additional_headers={"x-token": "nope"}) as ws:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert frame["type"] == "error"
            assert frame["error"]["code"] == "AUTH_ERROR"
            assert "bad token" in frame["error"]["message"]
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
        # the refused socket never became a worker: only the trusted one is known
        assert [w.name for w in engine.registry.workers.values()] == ["trusted"]


async def test_an_iii_rx_client_refused_by_auth_backs_off_and_names_the_cause() -> None:
    """A refusal after the handshake is a failed attempt: ``max_retries`` counts it (the client
    gives up in state ``failed``) and the error names ``AUTH_ERROR`` and the auth's message."""
    async with guarded_engine(_rbac_listener()) as (engine, trusted):
        with pytest.raises(IIIConnectionError) as info:
            await connect(port_url(engine), name="refused", connect_timeout=10,
                          headers={"x-token": "nope"},
                          reconnect=ReconnectConfig(initial_delay_ms=1, max_retries=2))
        assert "AUTH_ERROR" in str(info.value) and "bad token 'nope'" in str(info.value)
        assert "exhausted (3)" in str(info.value)
        assert len(trusted.auth_inputs) == 3
        # Without max_retries, connect_timeout ends it, naming the cause too.
        with pytest.raises(IIIConnectionError, match=r"within 0\.5s; last attempt: the engine "
                                                     "refused this worker: AUTH_ERROR"):
            await connect(port_url(engine), name="refused", connect_timeout=0.5,
                          headers={"x-token": "nope"},
                          reconnect=ReconnectConfig(initial_delay_ms=10))


async def test_a_client_refused_again_and_again_logs_the_refusal_once_as_a_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    """Each refused attempt used to log an ERROR line as well as the transport's refusal line
    (WARNING once, then INFO): a worker waiting for an auth function to come back filled its
    log with ERRORs, one per attempt, for as long as the refusals went on."""
    async with guarded_engine(_rbac_listener()) as (engine, trusted):
        with caplog.at_level(logging.INFO, logger="iii_rx"), pytest.raises(IIIConnectionError):
            await connect(port_url(engine), name="refused", connect_timeout=10,
                          headers={"x-token": "nope"},
                          reconnect=ReconnectConfig(initial_delay_ms=1, max_retries=3))
        assert len(trusted.auth_inputs) == 4
        about = [(r.name, r.levelname) for r in caplog.records
                 if r.name.startswith("iii_rx.") and not r.name.startswith("iii_rx.engine")
                 and "AUTH_ERROR" in r.getMessage()]
        transport = "iii_rx.transport"  # the last line says it gave up
        assert about == [(transport, "WARNING"), (transport, "INFO"), (transport, "INFO"),
                         (transport, "ERROR")]


async def test_the_otel_socket_passes_the_same_auth_as_a_worker() -> None:
    """As on the Rust engine: telemetry on a guarded listener needs what a worker needs (an
    unauthenticated peer would otherwise feed the logs store and fire ``log`` triggers)."""
    metrics = b'MTRC{"resourceMetrics": []}'
    async with guarded_engine(_rbac_listener()) as (engine, trusted):
        async with ws_connect(port_url(engine) + "/otel",
                              additional_headers={"x-token": "nope"}) as ws:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert (frame["type"], frame["error"]["code"]) == ("error", "AUTH_ERROR")
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
        async with ws_connect(port_url(engine) + "/otel",
                              additional_headers={"x-token": "plain"}) as ws:
            await ws.send(metrics)
            await engine.otel.wait_for(lambda: engine.otel.frames == 1)
        assert [i["headers"]["x-token"] for i in trusted.auth_inputs] == ["nope", "plain"]


async def test_expose_match_allows_and_anything_else_is_forbidden() -> None:
    async with guarded_engine(_rbac_listener()) as (engine, _):
        worker = await raw(engine, "plain")
        assert (await worker.result_of("pub::echo", 1)) == {"echo": 1}
        frame = await worker.call("priv::echo", 1)
        assert frame["error"]["code"] == "FORBIDDEN"
        assert frame["error"]["message"] == (
            "function 'priv::echo' not allowed (add to rbac.expose_functions)")
        # a function that does not exist is forbidden too, not "not found"
        missing = await worker.call("nobody::here", 1)
        assert missing["error"]["code"] == "FORBIDDEN"


async def test_metadata_filters_or_between_filters_and_between_keys() -> None:
    async with guarded_engine(_rbac_listener()) as (engine, _):
        worker = await raw(engine, "plain")
        assert await worker.result_of("meta::public") == "meta-public"  # {public: true}
        assert await worker.result_of("meta::both") == "both"  # tier AND name match
        frame = await worker.call("meta::tier-only")  # tier matches, name does not
        assert frame["error"]["code"] == "FORBIDDEN"


async def test_allowed_functions_add_and_forbidden_functions_win() -> None:
    async with guarded_engine(_rbac_listener()) as (engine, _):
        allowed = await raw(engine, "allow")
        assert await allowed.result_of("priv::echo", 2) == {"private": 2}
        denied = await raw(engine, "deny")
        frame = await denied.call("pub::echo", 2)
        assert frame["error"]["code"] == "FORBIDDEN"
        assert "remove from rbac.forbidden_functions" in frame["error"]["message"]


async def test_infrastructure_functions_are_carved_out_unless_forbidden() -> None:
    async with guarded_engine(_rbac_listener()) as (engine, _):
        worker = await raw(engine, "plain")
        await worker.register(name="carve-out")
        log = await worker.call("engine::log::info", {"message": "hello"})
        assert "error" not in log, log
        channel = await worker.call("engine::channels::create", {})
        assert "error" not in channel, channel
        # an engine function outside the carve-out is not exposed
        info = await worker.call("engine::workers::list", {})
        assert info["error"]["code"] == "FORBIDDEN"
        denied = await raw(engine, "deny")
        frame = await denied.call("engine::log::info", {"message": "x"})
        assert frame["error"]["code"] == "FORBIDDEN"


async def test_void_calls_that_are_forbidden_are_dropped_not_answered() -> None:
    async with guarded_engine(_rbac_listener()) as (engine, _):
        worker = await raw(engine, "plain")
        await worker.send({"type": "invokefunction", "function_id": "priv::echo",
                           "invocation_id": "v1", "action": {"type": "void"}, "data": 1})
        await worker.nothing("invocationresult", within=0.3)


async def test_functions_list_shows_only_what_the_session_may_call() -> None:
    async with guarded_engine(_rbac_listener()) as (engine, _):
        worker = await raw(engine, "allow")
        listed = await worker.result_of("engine::functions::list", {})
        ids = {f["function_id"] for f in listed["functions"]}
        assert {"pub::echo", "priv::echo", "meta::public", "meta::both"} <= ids
        assert not ids & {"meta::tier-only", "t::auth", "t::middleware"}


async def test_functions_info_answers_only_about_what_the_session_may_call() -> None:
    async with guarded_engine(_rbac_listener()) as (engine, _):
        worker = await raw(engine, "plain")
        detail = await worker.result_of("engine::functions::info", {"function_id": "pub::echo"})
        assert detail["function_id"] == "pub::echo"
        hidden = await worker.call("engine::functions::info", {"function_id": "priv::echo"})
        assert hidden["error"]["code"] == "NOT_FOUND"
        batch = await worker.result_of("engine::functions::info",
                                       {"function_ids": ["pub::echo", "priv::echo"]})
        assert [f.get("error") for f in batch["functions"]] == [None, "not_found"]


async def test_namespace_grants_hold_in_their_namespace_only() -> None:
    async with guarded_engine(_rbac_listener()) as (engine, _):
        async with connect(engine.url, name="orders-svc", namespace="orders") as orders:
            orders.register_function("svc::get", lambda data: "orders-get")
            await _until_registered(engine, ("orders", "svc::get"))
            worker = await raw(engine, "orders")
            assert await worker.result_of("svc::get", namespace="orders") == "orders-get"
            frame = await worker.call("svc::get")  # default namespace: no grant there
            assert frame["error"]["code"] == "FORBIDDEN"
            # registering outside the granted namespaces is refused
            refused = await worker.call("engine::workers::register", {"namespace": "other"})
            assert refused["error"]["code"] == "FORBIDDEN"
            assert "permitted: orders" in refused["error"]["message"]


async def test_the_reactive_client_raises_iii_forbidden_error() -> None:
    async with guarded_engine(_rbac_listener()) as (engine, _), \
            connect(port_url(engine), headers={"x-token": "plain"}, name="rx-guarded") as rx:
        assert (await rx.trigger("pub::echo", {"n": 1}))["echo"]["n"] == 1
        with pytest.raises(IIIForbiddenError) as caught:
            await rx.trigger("priv::echo", {})
        assert caught.value.code == "FORBIDDEN"
        assert caught.value.function_id == "priv::echo"


async def test_the_main_port_stays_unguarded() -> None:
    async with guarded_engine(_rbac_listener()) as (engine, trusted):
        worker = await raw(engine, None, index=0)
        assert await worker.result_of("priv::echo", 3) == {"private": 3}
        assert len(trusted.auth_inputs) == 0


async def _until_registered(engine: Engine, key: tuple[str, str]) -> None:
    await wait_until(lambda: key in engine.registry.functions)


async def test_functions_available_shows_a_session_only_what_it_may_call() -> None:
    """``engine::functions-available`` listed every function to any session, so a session
    shown only what it may call by ``engine::functions::list`` could read the rest there."""
    async with guarded_engine(Listener(port=0, rbac=rbac())) as (engine, trusted):
        worker = await raw(engine, "plain")
        await worker.register(name="watcher")
        await worker.register_function("pub::watcher")
        await worker.send({"type": "registertrigger", "id": "fa", "function_id": "pub::watcher",
                           "trigger_type": "engine::functions-available", "config": {}})
        await wait_until(lambda: "fa" in engine.triggers.bindings)
        trusted.client.register_function("priv::new", lambda data: data)
        trusted.client.register_function("pub::new", lambda data: data)
        listed: set[str] = set()
        while "pub::new" not in listed:
            frame = await worker.serve_once(lambda frame: {"result": None})
            listed = {f["function_id"] for f in frame["data"]["functions"]}
        assert "priv::new" not in listed and "priv::echo" not in listed
        assert {"pub::echo", "pub::watcher"} <= listed
