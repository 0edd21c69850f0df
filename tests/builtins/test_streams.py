"""The stream built-in worker with the official ``iii-sdk`` 0.25 and iii_rx as clients.

Functions and the ``stream`` trigger's event (the Rust engine's shape), custom streams
(``create_stream``), refused bindings; deliveries are waited on with queues.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from builtins_helpers import (
    ENGINE_TIMERS,
    WAIT,
    call,
    collector,
    unique,
    wait_bound,
    wait_parked,
    wait_until,
)
from iii import InvocationError

import iii_rx
from iii_rx.engine import Engine, EngineThread

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]
Factory = Callable[..., Any]


def test_stream_functions(official: Factory) -> None:
    iii = official("streams")
    name, group = unique("s"), unique("g")
    item = {"stream_name": name, "group_id": group, "item_id": "a"}
    assert call(iii, "stream::get", item) is None
    assert call(iii, "stream::set", {**item, "data": {"n": 1}}) == {
        "old_value": None, "new_value": {"n": 1}}
    assert call(iii, "stream::set", {**item, "data": {"n": 2}}) == {
        "old_value": {"n": 1}, "new_value": {"n": 2}}
    call(iii, "stream::set", {**item, "item_id": "b", "data": "two"})
    call(iii, "stream::set", {**item, "group_id": "other", "data": 3})
    assert call(iii, "stream::get", item) == {"n": 2}
    assert call(iii, "stream::list", {"stream_name": name, "group_id": group}) == [
        {"n": 2}, "two"]
    assert sorted(call(iii, "stream::list_groups", {"stream_name": name})) == sorted(
        [group, "other"])
    listed = call(iii, "stream::list_all", {})
    assert {"id": name, "groups": [group, "other"]} in listed["stream"]
    assert listed["count"] == len(listed["stream"])
    updated = call(iii, "stream::update", {**item, "ops": [
        {"type": "increment", "path": "n", "by": 3},
        {"type": "set", "path": "label", "value": "x"}]})
    assert updated == {"old_value": {"n": 2}, "new_value": {"n": 5, "label": "x"}}
    assert call(iii, "stream::delete", item) == {"old_value": {"n": 5, "label": "x"}}
    assert call(iii, "stream::delete", item) == {"old_value": None}
    with pytest.raises(InvocationError) as caught:
        call(iii, "stream::set", {"stream_name": name, "group_id": group, "data": 1})
    assert caught.value.code == "deserialization_error"
    assert "missing field `item_id`" in caught.value.message
    with pytest.raises(InvocationError) as caught:  # null is data, none at all is not
        call(iii, "stream::send", {"stream_name": name, "group_id": group, "type": "t"})
    assert "missing field `data`" in caught.value.message
    assert call(iii, "stream::send", {"stream_name": name, "group_id": group, "type": "t",
                                      "data": None}) is None


def test_stream_trigger_events(engine: EngineThread, official: Factory) -> None:
    iii = official("stream-trigger")
    name, group = unique("s"), unique("g")
    every, got_every = collector(iii, "every")
    one_item, got_item = collector(iii, "item")
    other_group, got_other = collector(iii, "other")
    iii.register_trigger({"type": "stream", "function_id": every,
                          "config": {"stream_name": name}})
    iii.register_trigger({"type": "stream", "function_id": one_item,
                          "config": {"stream_name": name, "group_id": group,
                                     "item_id": "a"}})
    iii.register_trigger({"type": "stream", "function_id": other_group,
                          "config": {"stream_name": name, "group_id": "elsewhere"}})
    for function_id in (every, one_item, other_group):
        wait_bound(engine, function_id)
    item = {"stream_name": name, "group_id": group, "item_id": "a"}
    call(iii, "stream::set", {**item, "data": {"v": 1}})
    call(iii, "stream::update", {**item, "ops": [{"type": "set", "path": "v", "value": 2}]})
    call(iii, "stream::set", {**item, "item_id": "b", "data": 0})
    call(iii, "stream::delete", item)
    call(iii, "stream::delete", item)  # nothing to delete: no event
    call(iii, "stream::send", {"stream_name": name, "group_id": group, "type": "typing",
                               "data": {"who": "ann"}, "id": "a"})
    events = [got_every.get(timeout=WAIT) for _ in range(5)]
    for event in events:
        assert event["type"] == "stream" and event["streamName"] == name
        assert event["groupId"] == group and isinstance(event["timestamp"], int)
    assert [(e["id"], e["event"]) for e in events] == [
        ("a", {"type": "create", "data": {"v": 1}}),
        ("a", {"type": "update", "data": {"v": 2}}),
        ("b", {"type": "create", "data": 0}),
        ("a", {"type": "delete", "data": {"v": 2}}),
        ("a", {"type": "event", "event": {"type": "typing", "data": {"who": "ann"}}}),
    ]
    item_events = [got_item.get(timeout=WAIT)["event"]["type"] for _ in range(4)]
    assert item_events == ["create", "update", "delete", "event"]
    call(iii, "stream::set", {**item, "group_id": "elsewhere", "data": 9})
    assert got_other.get(timeout=WAIT)["event"] == {"type": "create", "data": 9}
    assert got_every.get(timeout=WAIT)["groupId"] == "elsewhere"
    assert got_item.empty()


def test_stream_trigger_needs_a_stream_name(engine: EngineThread, official: Factory) -> None:
    iii = official("stream-bad")
    function_id, _ = collector(iii, "nameless")
    iii.register_trigger({"type": "stream", "function_id": function_id,
                          "config": {"group_id": "g"}})
    wait_parked(engine, function_id)
    join, _ = collector(iii, "join")
    iii.register_trigger({"type": "stream:join", "function_id": join, "config": {}})
    wait_bound(engine, join)


def test_custom_stream_is_forwarded_to_its_worker(engine: EngineThread,
                                                  official: Factory) -> None:
    from iii.helpers import create_stream
    from iii.stream import IStream
    from iii_helpers.stream import StreamDeleteResult, StreamSetResult

    iii = official("custom")
    name = unique("custom")
    store: dict[str, Any] = {}

    class Dict(IStream):  # type: ignore[type-arg]
        async def get(self, input: Any) -> Any:
            return store.get(input.item_id)

        async def set(self, input: Any) -> StreamSetResult:
            old = store.get(input.item_id)
            store[input.item_id] = input.data
            return StreamSetResult(old_value=old, new_value=input.data)

        async def delete(self, input: Any) -> StreamDeleteResult:
            return StreamDeleteResult(old_value=store.pop(input.item_id, None))

        async def list(self, input: Any) -> list[Any]:
            return [*store.values()]

        async def list_groups(self, input: Any) -> list[str]:
            return ["only"]

        async def update(self, input: Any) -> Any:
            raise NotImplementedError

    watcher, events = collector(iii, "watch")
    iii.register_trigger({"type": "stream", "function_id": watcher,
                          "config": {"stream_name": name}})
    create_stream(iii, name, Dict())
    wait_bound(engine, watcher)
    owner = official("probe")
    last = f"stream::list_groups({name})"
    wait_until(lambda: any(f.get("function_id") == last for f in
                           call(owner, "engine::functions::list", {})["functions"]),
               "the custom stream's functions")
    item = {"stream_name": name, "group_id": "g", "item_id": "k"}
    assert call(iii, "stream::set", {**item, "data": 1}) == {"old_value": None,
                                                             "new_value": 1}
    assert store == {"k": 1}
    assert call(iii, "stream::get", item) == 1
    assert call(iii, "stream::list", {"stream_name": name, "group_id": "g"}) == [1]
    assert call(iii, "stream::list_groups", {"stream_name": name}) == ["only"]
    assert call(iii, "stream::delete", item) == {"old_value": 1}
    assert [events.get(timeout=WAIT)["event"]["type"] for _ in range(2)] == [
        "create", "delete"]


async def test_iii_rx_client_writes_and_watches_a_stream() -> None:
    async with Engine(port=0, **ENGINE_TIMERS) as engine, \
            iii_rx.connect(engine.url, name=unique("rx")) as iii:
        received: asyncio.Queue[Any] = asyncio.Queue()

        async def on_change(data: Any) -> None:
            received.put_nowait(data)

        function_id = unique("rx-watch")
        iii.register_function(function_id, on_change)
        name = unique("rx-stream")
        iii.register_trigger({"type": "stream", "function_id": function_id,
                              "config": {"stream_name": name}})
        deadline = asyncio.get_running_loop().time() + WAIT
        while not any(b.function_id == function_id and not b.parked
                      for b in engine.triggers.bindings.values()):
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        item = {"stream_name": name, "group_id": "g", "item_id": "i"}
        assert await iii.trigger("stream::set", {**item, "data": [1]}) == {
            "old_value": None, "new_value": [1]}
        event = await asyncio.wait_for(received.get(), WAIT)
        assert event["event"] == {"type": "create", "data": [1]}
        assert await iii.trigger("stream::get", item) == [1]
