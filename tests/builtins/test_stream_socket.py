"""The streams socket (``Engine(stream_port=...)``) over a real websocket: joins sync and then
stream every change, ``stream:join`` / ``stream:leave`` bindings of an official-SDK worker fire
with the Rust engine's event (and can refuse a join), the auth function's context reaches them,
and closing the socket leaves what was joined."""

from __future__ import annotations

import json
import queue
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from builtins_helpers import (
    ENGINE_TIMERS,
    WAIT,
    EngineProcess,
    on_engine,
    unique,
    wait_bound,
    wait_until,
)
from iii import InitOptions, register_worker
from websockets.sync.client import connect

from iii_rx.engine import Engine, EngineThread

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def engine() -> Iterator[EngineThread]:
    handle = Engine.start_in_thread(port=0, stream_port=0, stream_auth_function="auth::stream",
                                    **ENGINE_TIMERS)
    try:
        yield handle
    finally:
        handle.stop()


def socket_url(handle: EngineThread) -> str:
    port = on_engine(handle, lambda: handle.engine.workers.streams.socket.port)  # type: ignore[union-attr]
    return f"ws://127.0.0.1:{port}/?user=ana"


def receive(ws: Any) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(ws.recv(timeout=WAIT))
    assert message["type"] == "stream" and isinstance(message["timestamp"], int)
    return message


def join(kind: str, subscription: str, stream: str, group: str,
         item: str | None = None) -> str:
    data: dict[str, Any] = {"subscriptionId": subscription, "streamName": stream,
                            "groupId": group}
    if item is not None:
        data["id"] = item
    return json.dumps({"type": kind, "data": data})


def test_join_sync_changes_leave(engine: EngineThread, official: Any) -> None:
    iii = official("stream-socket")
    joins: queue.Queue[dict[str, Any]] = queue.Queue()
    leaves: queue.Queue[dict[str, Any]] = queue.Queue()
    auth_inputs: list[dict[str, Any]] = []

    def auth(data: dict[str, Any]) -> dict[str, Any]:
        auth_inputs.append(data)
        return {"context": {"user": data["query_params"]["user"][0]}}

    def on_join(event: dict[str, Any]) -> dict[str, Any]:
        joins.put(event)
        return {"unauthorized": event["group_id"] == "private"}

    def on_leave(event: dict[str, Any]) -> None:
        leaves.put(event)

    iii.register_function("auth::stream", auth)
    iii.register_function("socket::join", on_join)
    iii.register_function("socket::leave", on_leave)
    iii.register_trigger({"type": "stream:join", "function_id": "socket::join", "config": {}})
    iii.register_trigger({"type": "stream:leave", "function_id": "socket::leave", "config": {}})
    wait_bound(engine, "socket::join")
    wait_bound(engine, "socket::leave")
    stream = unique("room")

    def call(function_id: str, **payload: Any) -> Any:
        return iii.trigger({"function_id": function_id,
                            "payload": {"stream_name": stream, **payload}})

    call("stream::set", group_id="g", item_id="i1", data={"n": 1})
    with connect(socket_url(engine)) as ws:
        ws.send(join("join", "s1", stream, "g"))
        synced = receive(ws)
        assert synced["streamName"] == stream and synced["groupId"] == "g"
        assert synced["id"] is None
        assert synced["event"] == {"type": "sync", "data": [{"n": 1}]}
        assert joins.get(timeout=WAIT) == {"subscription_id": "s1", "stream_name": stream,
                                           "group_id": "g", "id": None,
                                           "context": {"user": "ana"}}
        assert auth_inputs[0]["path"] == "/" and auth_inputs[0]["addr"].startswith("127.0.0.1:")

        call("stream::set", group_id="g", item_id="i2", data={"n": 2})
        created = receive(ws)
        assert (created["id"], created["event"]) == ("i2", {"type": "create",
                                                            "data": {"n": 2}})
        call("stream::send", group_id="g", type="typing", data={"who": "bo"})
        assert receive(ws)["event"] == {"type": "event",
                                        "event": {"type": "typing", "data": {"who": "bo"}}}

        ws.send(join("join", "s2", stream, "g", item="i1"))
        item_sync = receive(ws)
        assert (item_sync["id"], item_sync["event"]) == ("i1", {"type": "sync",
                                                               "data": {"n": 1}})
        assert joins.get(timeout=WAIT)["id"] == "i1"
        call("stream::update", group_id="g", item_id="i1",
             ops=[{"type": "set", "path": "n", "value": 5}])
        twice = [receive(ws), receive(ws)]  # once per matching subscription (s1 and s2)
        assert [(m["id"], m["event"]) for m in twice] == [
            ("i1", {"type": "update", "data": {"n": 5}})] * 2

        ws.send(join("leave", "s1", stream, "g"))
        assert leaves.get(timeout=WAIT)["subscription_id"] == "s1"
        call("stream::set", group_id="g", item_id="i3", data={"n": 3})  # s2 watches i1 only
        call("stream::delete", group_id="g", item_id="i1")
        deleted = receive(ws)
        assert (deleted["id"], deleted["event"]) == ("i1", {"type": "delete",
                                                           "data": {"n": 5}})

        ws.send(join("join", "s3", stream, "private"))
        refused = receive(ws)
        assert (refused["groupId"], refused["event"]) == ("private", {"type": "unauthorized"})
        assert joins.get(timeout=WAIT)["group_id"] == "private"
        call("stream::set", group_id="private", item_id="x", data=1)
        ws.send("not json")  # ignored, the connection goes on
        call("stream::set", group_id="g", item_id="i1", data={"n": 4})
        assert receive(ws)["event"] == {"type": "create", "data": {"n": 4}}
    # closing the socket leaves s2 (still joined); s3 was never joined
    left = leaves.get(timeout=WAIT)
    assert (left["subscription_id"], left["context"]) == ("s2", {"user": "ana"})
    assert leaves.empty()


def test_a_repeated_header_reaches_the_auth_function_joined_as_rbac_sees_it(
        engine: EngineThread, official: Any) -> None:
    iii = official("stream-headers")
    seen: queue.Queue[dict[str, str]] = queue.Queue()

    def auth(data: dict[str, Any]) -> dict[str, Any]:
        seen.put(data["headers"])
        return {"context": None}

    iii.register_function("auth::stream", auth)
    wait_until(lambda: any(f["function_id"] == "auth::stream" for f in iii.trigger({
        "function_id": "engine::functions::list", "payload": {}})["functions"]),
        "the auth function")
    with connect(socket_url(engine), additional_headers=[("X-Team", "red"),
                                                         ("x-team", "blue")]):
        headers = seen.get(timeout=WAIT)
    assert headers["x-team"] == "red, blue"


def test_without_the_port_there_is_no_socket() -> None:
    with Engine.start_in_thread(port=0, **ENGINE_TIMERS) as handle:
        assert handle.engine.workers.streams.socket is None


def test_the_cli_flags_open_the_socket_with_its_auth_function(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a free loopback port for --stream-port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    engine = EngineProcess(tmp_path, "--stream-port", str(port),
                           "--stream-auth-function", "cli::auth")
    iii = register_worker(engine.url, InitOptions(worker_name=unique("cli"),
                                                  otel={"enabled": False},
                                                  enable_metrics_reporting=False))
    joins: queue.Queue[dict[str, Any]] = queue.Queue()
    try:
        iii.register_function("cli::auth", lambda data: {"context": {"path": data["path"]}})
        iii.register_function("cli::join", lambda event: joins.put(event))
        iii.register_trigger({"type": "stream:join", "function_id": "cli::join", "config": {}})
        wait_until(lambda: any(t["function_id"] == "cli::join" for t in iii.trigger({
            "function_id": "engine::registered-triggers::list", "payload": {}})[
            "registered_triggers"]), "the join binding")
        with connect(f"ws://127.0.0.1:{port}/feed") as ws:
            ws.send(join("join", "s", "cli-stream", "g"))
            assert receive(ws)["event"] == {"type": "sync", "data": []}
        assert joins.get(timeout=WAIT)["context"] == {"path": "/feed"}
    finally:
        iii.shutdown()
        engine.stop()


def test_an_auth_function_or_binding_that_never_answers_does_not_hold_the_socket(
        engine: EngineThread, official: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both time out (here after 0.3 s): the connection then goes on as after a failure."""
    from iii_rx.engine.workers import stream_socket

    monkeypatch.setattr(stream_socket, "CALL_TIMEOUT_S", 0.3)
    iii = official("stream-hang")
    release = threading.Event()
    called: queue.Queue[str] = queue.Queue()

    def hang(name: str) -> Any:
        def handler(data: Any) -> Any:
            called.put(name)
            release.wait(WAIT)
            return {"context": {"late": True}}
        return handler

    iii.register_function("auth::stream", hang("auth"))
    iii.register_function("hang::join", hang("join"))
    iii.register_trigger({"type": "stream:join", "function_id": "hang::join", "config": {}})
    wait_bound(engine, "hang::join")
    try:
        with connect(socket_url(engine)) as ws:
            ws.send(join("join", "s", unique("hang"), "g"))
            assert receive(ws)["event"] == {"type": "sync", "data": []}
        assert [called.get(timeout=WAIT), called.get(timeout=WAIT)] == ["auth", "join"]
    finally:
        release.set()


def test_a_frame_nested_past_the_parser_s_depth_is_ignored_not_fatal() -> None:
    """It raised RecursionError out of the frame parser: the connection was cut and a
    traceback logged for every such frame; now it is one more frame ignored (rate-limited)."""
    import logging

    from iii_rx.engine.logsafe import RateLimitedLog
    from iii_rx.engine.workers.stream_socket import _parse

    deep = "[" * 200_000 + "]" * 200_000
    assert _parse(deep, RateLimitedLog(logging.getLogger("iii_rx.test"))) is None


def test_a_connection_s_subscriptions_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection could join without end (every change is matched against every
    subscription); past the cap a join is answered ``unauthorized`` and kept nowhere."""
    from iii_rx.engine.workers import stream_socket

    monkeypatch.setattr(stream_socket, "MAX_SUBSCRIPTIONS", 3)
    with Engine.start_in_thread(port=0, stream_port=0, **ENGINE_TIMERS) as handle, \
            connect(socket_url(handle)) as ws:
        for n in range(4):
            ws.send(join("join", f"sub-{n}", "capped", "g"))
            assert receive(ws)["event"]["type"] == ("sync" if n < 3 else "unauthorized")
        ws.send(join("join", "sub-1", "capped", "g"))  # one it holds: joined again
        assert receive(ws)["event"]["type"] == "sync"
