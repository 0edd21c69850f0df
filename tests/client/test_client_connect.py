"""Connecting: address and identity resolution, handshake, worker metadata, rejection."""

from __future__ import annotations

import asyncio
import math
import os
import socket
import subprocess
import sys
from contextlib import AsyncExitStack
from typing import Any

import pytest
from client_helpers import fd_count, other_tasks, unique_name

import iii_rx
from iii_rx import ConnectionState, IIIConnectionError, IIIRegistrationRejectedError
from iii_rx.client import open_client
from iii_rx.connect import resolve_headers, worker_metadata
from iii_rx.engine import Engine
from iii_rx.lifecycle import ClientSettings
from iii_rx.state import ReconnectConfig


def closed_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def workers(iii: iii_rx.Client) -> list[dict[str, Any]]:
    listing = await iii.trigger("engine::workers::list", {})
    return listing["workers"]  # type: ignore[no-any-return]


async def test_async_with_connects_and_closes(engine: Engine, name: str) -> None:
    tasks_before = other_tasks()
    fds_before = fd_count()
    async with iii_rx.connect(engine.url, name=name, description="the test worker") as iii:
        assert iii.connection_state is ConnectionState.CONNECTED
        assert iii.url == engine.url
        assert iii.worker_id
        mine = [w for w in await workers(iii) if w["id"] == iii.worker_id]
        assert len(mine) == 1
        assert mine[0]["name"] == name
        assert mine[0]["runtime"] == "python"
        assert mine[0]["version"] == iii_rx.__version__
        assert mine[0].get("description") == "the test worker"
    assert iii.connection_state is ConnectionState.DISCONNECTED
    assert other_tasks() == tasks_before
    assert fd_count() <= fds_before


async def test_await_connect_then_close(engine: Engine, name: str) -> None:
    iii = await iii_rx.connect(engine.url, name=name)
    try:
        assert iii.connection_state == "connected"
    finally:
        await iii.close()
    assert iii.closed
    assert iii.connection_state is ConnectionState.DISCONNECTED


async def test_state_stream_replays_and_completes(engine: Engine, name: str) -> None:
    seen: list[ConnectionState] = []
    completed = asyncio.Event()
    async with iii_rx.connect(engine.url, name=name) as iii:
        iii.state.subscribe(on_next=seen.append, on_completed=completed.set)
        assert seen == [ConnectionState.CONNECTED]  # the current state, replayed at once
    await asyncio.wait_for(completed.wait(), 5)
    assert seen == [ConnectionState.CONNECTED, ConnectionState.DISCONNECTED]


async def test_state_async_iteration(engine: Engine, name: str) -> None:
    async with iii_rx.connect(engine.url, name=name) as iii:
        async with iii.state.iterate() as states:
            assert await states.__anext__() is ConnectionState.CONNECTED


async def test_url_from_env(engine: Engine, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("III_URL", engine.url)
    async with iii_rx.connect(name=name) as iii:
        assert iii.url == engine.url
        assert iii.connection_state is ConnectionState.CONNECTED


async def test_embedded_engine_when_no_address(monkeypatch: pytest.MonkeyPatch,
                                               name: str) -> None:
    monkeypatch.delenv("III_URL", raising=False)
    tasks_before = other_tasks()
    async with iii_rx.connect(name=name) as iii:
        iii.register_function("emb::double", lambda x: x * 2)
        assert await iii.trigger("emb::double", 21) == 42
        url = iii.url
    assert other_tasks() == tasks_before
    host, port = url.removeprefix("ws://").rsplit(":", 1)
    with pytest.raises(OSError):  # the owned engine stopped with the client
        socket.create_connection((host, int(port)), timeout=1).close()


def test_headers_from_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("III_TOKEN", "s3cret")
    assert resolve_headers({"X-A": "1"}) == {"X-A": "1", "Authorization": "Bearer s3cret"}
    assert resolve_headers({"authorization": "Basic x"}) == {"authorization": "Basic x"}
    monkeypatch.setenv("III_TOKEN", "   ")
    assert resolve_headers(None) == {}


def test_reprs_of_configs_hide_header_values() -> None:
    """A config is logged or printed while debugging; a header's value may be a token."""
    otel = iii_rx.OtelConfig(engine_ws_headers={"Authorization": "Bearer SECRET"})
    settings = ClientSettings(url="ws://h:1", headers={"X-Api-Key": "SECRET"}, name="w",
                              namespace=None, worker_metadata={}, reconnect=ReconnectConfig(),
                              timeout_ms=1000, otel=otel)
    for config in (otel, settings):
        text = repr(config)
        assert "SECRET" not in text and "***" in text, text
    assert "engine_ws_headers={'Authorization': '***'}" in repr(otel)
    assert "headers={'X-Api-Key': '***'}" in repr(settings)
    assert repr(iii_rx.OtelConfig(service_name="s")).startswith(
        "OtelConfig(enabled=None, service_name='s', ")


async def test_token_and_headers_reach_the_handshake(monkeypatch: pytest.MonkeyPatch,
                                                     name: str) -> None:
    import websockets

    seen: list[Any] = []

    async def handler(ws: Any) -> None:
        seen.append(ws.request.headers)
        await ws.close()

    monkeypatch.setenv("III_TOKEN", "tok")
    async with websockets.serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(IIIConnectionError):
            await iii_rx.connect(f"ws://127.0.0.1:{port}", name=name, headers={"X-Team": "a"},
                                 connect_timeout=0.3)
    assert seen, "the client never reached the server"
    assert seen[0]["Authorization"] == "Bearer tok"
    assert seen[0]["X-Team"] == "a"


async def test_namespace_and_name_from_env(engine: Engine,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    env_name = unique_name("env")
    monkeypatch.setenv("III_NAMESPACE", "team-a")
    monkeypatch.setenv("III_WORKER_NAME", env_name)
    async with iii_rx.connect(engine.url, name="ignored") as iii:
        assert iii.namespace == "team-a"
        assert iii.name == env_name
        mine = [w for w in await workers(iii) if w["id"] == iii.worker_id]
        assert mine and mine[0]["name"] == env_name
        assert mine[0].get("namespace") == "team-a"
        # functions land in the worker's namespace; calls default to it too
        iii.register_function("ns::f", lambda _: "in team-a")
        assert await iii.trigger("ns::f") == "in team-a"
        with pytest.raises(iii_rx.IIIInvocationError) as info:
            await iii.trigger("ns::f", namespace="default")
        assert info.value.code == "function_not_found"


def test_blank_namespace_refused() -> None:
    with pytest.raises(ValueError):
        iii_rx.connect("ws://127.0.0.1:1", namespace="  ")
    with pytest.raises(ValueError):
        iii_rx.connect_sync("ws://127.0.0.1:1", namespace="")


NAN = math.nan

BAD_OPTIONS = [
    # (connect()'s keyword arguments, the error, a part of its message)
    ({"url": 48300}, TypeError, "url must be a string"),
    ({"name": 5}, TypeError, "name must be a string"),
    ({"namespace": 5}, TypeError, "namespace must be a string"),
    ({"description": 5}, TypeError, "description must be a string"),
    ({"headers": "Authorization"}, TypeError, "headers must be a mapping"),
    ({"headers": {"X-A": "a\r\nInjected: 1"}}, ValueError, "'X-A' contains CR, LF"),
    ({"headers": {"X A": "v"}}, ValueError, "not a valid HTTP header name"),
    ({"reconnect": "fast"}, TypeError, "reconnect must be a ReconnectConfig"),
    ({"reconnect": {"retries": 5}}, TypeError, "unknown ReconnectConfig fields: ['retries']"),
    ({"reconnect": {"max_queued": -1}}, ValueError, "max_queued must be a whole number >= 0"),
    ({"timeout_ms": NAN}, ValueError, "timeout_ms must be a finite number of milliseconds"),
    ({"timeout_ms": math.inf}, ValueError, "got inf"),
    ({"timeout_ms": "5"}, TypeError, "not str '5'"),
    ({"timeout_ms": True}, TypeError, "not bool True"),
    ({"connect_timeout": NAN}, ValueError, "connect_timeout must be a finite number of sec"),
    ({"connect_timeout": -1}, ValueError, "got -1"),
    ({"connect_timeout": "3"}, TypeError, "connect_timeout"),
    ({"max_workers": 0}, ValueError, "max_workers must be a whole number of threads above 0"),
    ({"max_workers": -1}, ValueError, "got -1"),
    ({"max_workers": "3"}, TypeError, "max_workers"),
    ({"max_workers": 2.5}, TypeError, "not float 2.5"),
    ({"max_concurrency": None}, TypeError, "max_concurrency must be a whole number"),
    ({"max_concurrency": 0}, ValueError, "max_concurrency"),
    ({"ping_interval": -1}, ValueError, "(or None: no pings), got -1"),
    ({"ping_interval": NAN}, ValueError, "ping_interval"),
    ({"ping_interval": 0}, ValueError, "ping_interval"),
    ({"ping_timeout": "1"}, TypeError, "ping_timeout"),
    ({"ping_timeout": -1}, ValueError, "ping_timeout"),
    ({"otel": "yes"}, TypeError, "otel must be an OtelConfig"),
]


@pytest.mark.parametrize(("options", "error", "message"), BAD_OPTIONS,
                         ids=[repr(options) for options, _, _ in BAD_OPTIONS])
def test_options_that_cannot_work_raise_at_the_call(options: dict[str, Any],
                                                     error: type[Exception],
                                                     message: str) -> None:
    """Before anything is awaited: found later, they surfaced as internal AttributeErrors or
    broke the running client (a NaN timer, a keepalive spinning on a negative interval)."""
    with pytest.raises(error) as info:
        iii_rx.connect(**{"url": "ws://127.0.0.1:1", **options})
    assert message in str(info.value)


def test_a_token_of_the_wrong_type_is_refused_without_showing_it() -> None:
    with pytest.raises(TypeError, match="token must be a string") as info:
        iii_rx.connect("ws://127.0.0.1:1", token=123456)  # type: ignore[arg-type]
    assert "123456" not in str(info.value)


def test_connect_sync_checks_the_same_options() -> None:
    """max_workers=-1 reached the handler pool, whose error was masked by an AttributeError."""
    with pytest.raises(ValueError, match="max_workers"):
        iii_rx.connect_sync("ws://127.0.0.1:1", max_workers=-1)
    with pytest.raises(ValueError, match="timeout_ms"):
        iii_rx.connect_sync("ws://127.0.0.1:1", timeout_ms=NAN)


async def test_a_failed_setup_raises_its_own_error() -> None:
    """The close of a client whose setup failed before its worker existed must not replace
    the error with an AttributeError."""
    settings = ClientSettings(url="ws://127.0.0.1:1", headers={}, name="setup", namespace=None,
                              worker_metadata={}, reconnect=iii_rx.ReconnectConfig(),
                              timeout_ms=1000, max_workers=-1)
    with pytest.raises(ValueError, match="max_workers"):
        await open_client(settings, AsyncExitStack(), connect_timeout=1)


async def test_reconnect_may_be_a_mapping_of_its_fields(name: str) -> None:
    """It was accepted, then crashed the reconnect loop at the first failure."""
    port = closed_port()
    with pytest.raises(IIIConnectionError, match="exhausted"):
        await iii_rx.connect(f"ws://127.0.0.1:{port}", name=name, connect_timeout=5,
                             reconnect={"initial_delay_ms": 10, "max_retries": 2})


@pytest.mark.parametrize(("fields", "error"), [
    ({"initial_delay_ms": "abc"}, TypeError),
    ({"initial_delay_ms": -1000}, ValueError),
    ({"max_delay_ms": NAN}, ValueError),
    ({"backoff_multiplier": NAN}, ValueError),
    ({"backoff_multiplier": 0.5}, ValueError),
    ({"jitter_factor": 5}, ValueError),
    ({"jitter_factor": -0.1}, ValueError),
    ({"max_retries": -2}, ValueError),
    ({"max_retries": 1.5}, TypeError),
    ({"max_queued": -1}, ValueError),
    ({"max_queued": True}, TypeError),
])
def test_reconnect_config_refuses_values_that_break_the_backoff(fields: dict[str, Any],
                                                                error: type[Exception]) -> None:
    (field,) = fields
    with pytest.raises(error, match=f"ReconnectConfig.{field} must be"):
        iii_rx.ReconnectConfig(**fields)


def test_reconnect_config_accepts_its_bounds() -> None:
    config = iii_rx.ReconnectConfig(initial_delay_ms=0, max_delay_ms=0.5, backoff_multiplier=1,
                                    jitter_factor=1, max_retries=0, max_queued=0)
    assert 0 <= config.delay(3) <= 0.001


def test_worker_metadata_shape() -> None:
    data = worker_metadata("w", None, None)
    assert data["runtime"] == "python"
    assert data["telemetry"]["framework"] == "iii-rx"
    assert data["namespace"] is None and "isolation" in data
    assert "description" not in data
    assert set(data.get("features", [])) <= {"large-messages.v1"}


async def test_connect_timeout_when_nothing_listens(name: str) -> None:
    port = closed_port()
    tasks_before = other_tasks()
    with pytest.raises(IIIConnectionError, match="within"):
        await iii_rx.connect(f"ws://127.0.0.1:{port}", name=name, connect_timeout=0.3,
                             reconnect=iii_rx.ReconnectConfig(initial_delay_ms=20))
    assert other_tasks() == tasks_before


async def test_retries_exhausted_fail(name: str) -> None:
    port = closed_port()
    with pytest.raises(IIIConnectionError, match="exhausted"):
        await iii_rx.connect(f"ws://127.0.0.1:{port}", name=name, connect_timeout=5,
                             reconnect=iii_rx.ReconnectConfig(initial_delay_ms=10,
                                                              max_retries=2))


async def test_name_conflict_is_fatal(engine: Engine, name: str) -> None:
    async with iii_rx.connect(engine.url, name=name) as first:
        with pytest.raises(IIIRegistrationRejectedError) as info:
            await iii_rx.connect(engine.url, name=name, connect_timeout=5)
        assert info.value.code == "WORKER_NAMESPACE_CONFLICT"
        assert first.connection_state is ConnectionState.CONNECTED


async def test_default_names_do_not_collide(engine: Engine,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("III_WORKER_NAME", raising=False)
    async with iii_rx.connect(engine.url) as a, iii_rx.connect(engine.url) as b:
        assert a.name != b.name
        assert b.connection_state is ConnectionState.CONNECTED


# Records the thread that imports iii_rx.engine, then connects with no address.
_EMBEDDED_IMPORT = """
import asyncio, importlib.abc, os, sys, threading
import iii_rx

class Spy(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname == "iii_rx.engine":
            print("imported on", threading.current_thread().name, flush=True)
        return None

sys.meta_path.insert(0, Spy())
os.environ.pop("III_URL", None)

async def main():
    threading.current_thread().name = "the-callers-loop"
    async with iii_rx.connect(name="embedded-import") as iii:
        assert iii.connection_state == "connected"

asyncio.run(main())
"""


def test_the_embedded_engine_is_not_imported_on_the_callers_loop() -> None:
    """Its modules (aiohttp and more) take ~0.3 s to import: on the caller's loop, that blocked
    it (``python -X dev`` said so: 'Executing <Task ... main()> took 0.4 seconds')."""
    done = subprocess.run([sys.executable, "-c", _EMBEDDED_IMPORT], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "OTEL_ENABLED": "false"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("imported on "), done.stdout
    assert "the-callers-loop" not in done.stdout
