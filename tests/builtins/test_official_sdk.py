"""The official ``iii-sdk`` 0.25 as a client of each built-in worker of our engine.

Scripts call the built-ins as the SDK's users do (``iii.trigger({...})``,
``register_trigger({...})``) and check what the Rust engine documents. Deliveries are waited
on with queues; that a binding reached its provider is polled on the engine (no event says so).
"""

from __future__ import annotations

import datetime as dt
import queue
from collections.abc import Callable
from typing import Any

import pytest
from builtins_helpers import (
    WAIT,
    bindings_of,
    call,
    collector,
    on_engine,
    unique,
    wait_bound,
    wait_parked,
    wait_until,
)
from iii import InvocationError

from iii_rx.engine import EngineThread

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
Factory = Callable[..., Any]


def nothing_more(received: queue.Queue[Any]) -> None:
    assert received.empty(), f"unexpected delivery: {received.get_nowait()!r}"


# --------------------------------------------------------------------------- state


def test_state_functions(official: Factory) -> None:
    iii = official("state")
    scope = unique("scope")
    assert call(iii, "state::get", {"scope": scope, "key": "a"}) is None
    assert call(iii, "state::set", {"scope": scope, "key": "a", "value": {"n": 1}}) == {
        "old_value": None, "new_value": {"n": 1}}
    assert call(iii, "state::set", {"scope": scope, "key": "a", "value": {"n": 2}}) == {
        "old_value": {"n": 1}, "new_value": {"n": 2}}
    assert call(iii, "state::set", {"scope": scope, "key": "b", "data": "alias"}) == {
        "old_value": None, "new_value": "alias"}
    assert call(iii, "state::get", {"scope": scope, "key": "a"}) == {"n": 2}
    assert call(iii, "state::list", {"scope": scope}) == [{"n": 2}, "alias"]
    assert scope in call(iii, "state::list_groups", {})["groups"]
    assert call(iii, "state::delete", {"scope": scope, "key": "b"}) == "alias"
    assert call(iii, "state::delete", {"scope": scope, "key": "b"}) is None
    assert call(iii, "state::list", {"scope": scope}) == [{"n": 2}]
    call(iii, "state::delete", {"scope": scope, "key": "a"})
    assert scope not in call(iii, "state::list_groups", {})["groups"]
    with pytest.raises(InvocationError) as caught:
        call(iii, "state::set", {"key": "a", "value": 1})
    assert caught.value.code == "deserialization_error"
    assert "missing field `scope`" in caught.value.message
    with pytest.raises(InvocationError) as caught:  # `data` is `value` by another name
        call(iii, "state::set", {"scope": scope, "key": "a", "value": 1, "data": 2})
    assert (caught.value.code, caught.value.message) == (
        "deserialization_error",
        "Failed to deserialize input for state::set: duplicate field `value`")


def test_state_update_applies_the_sdk_operations(official: Factory) -> None:
    from iii_helpers.stream import (
        UpdateAppend,
        UpdateDecrement,
        UpdateIncrement,
        UpdateMerge,
        UpdateRemove,
        UpdateSet,
    )

    iii = official("update")
    scope = unique("scope")
    call(iii, "state::set", {"scope": scope, "key": "k",
                             "value": {"count": 10, "events": [], "text": "hello", "gone": 1}})
    ops = [UpdateSet(path="status", value="active"), UpdateIncrement(path="count", by=5),
           UpdateDecrement(path="count", by=2), UpdateAppend(path="events", value={"k": 1}),
           UpdateAppend(path="text", value=" world"), UpdateMerge(value={"m": {"x": 1}}),
           UpdateRemove(path="gone")]
    result = call(iii, "state::update", {"scope": scope, "key": "k",
                                         "ops": [op.model_dump() for op in ops]})
    expected = {"count": 13, "events": [{"k": 1}], "text": "hello world", "status": "active",
                "m": {"x": 1}}
    assert result == {"old_value": {"count": 10, "events": [], "text": "hello", "gone": 1},
                      "new_value": expected}
    assert call(iii, "state::get", {"scope": scope, "key": "k"}) == expected
    # An operation that cannot apply is reported; the others apply and the value is stored.
    result = call(iii, "state::update", {"scope": scope, "key": "k", "ops": [
        {"type": "increment", "path": "text", "by": 1}, {"type": "set", "path": "n", "value": 0}]})
    assert result["new_value"]["n"] == 0
    assert [(e["op_index"], e["code"]) for e in result["errors"]] == [(0, "increment.not_number")]
    # A key that does not exist starts from {}.
    fresh = call(iii, "state::update", {"scope": scope, "key": "new", "ops": [
        {"type": "increment", "path": "hits", "by": 1}]})
    assert fresh == {"old_value": None, "new_value": {"hits": 1}}
    with pytest.raises(InvocationError) as caught:
        call(iii, "state::update", {"scope": scope, "key": "k", "ops": [{"type": "explode"}]})
    assert caught.value.code == "deserialization_error"


def test_state_trigger_fires_created_updated_deleted(engine: EngineThread,
                                                     official: Factory) -> None:
    iii = official("watcher")
    scope, other = unique("scope"), unique("other")
    every_key, received = collector(iii, "state.any")
    one_key, received_key = collector(iii, "state.key")
    everything, received_all = collector(iii, "state.all")
    iii.register_trigger({"type": "state", "function_id": every_key, "config": {"scope": scope}})
    iii.register_trigger({"type": "state", "function_id": one_key,
                          "config": {"scope": scope, "key": "k"}})
    iii.register_trigger({"type": "state", "function_id": everything, "config": {}})
    for function_id in (every_key, one_key, everything):
        wait_bound(engine, function_id)

    call(iii, "state::set", {"scope": scope, "key": "k", "value": 1})
    call(iii, "state::update", {"scope": scope, "key": "k",
                                "ops": [{"type": "increment", "path": "", "by": 1}]})
    call(iii, "state::set", {"scope": scope, "key": "other", "value": "x"})
    call(iii, "state::delete", {"scope": scope, "key": "k"})
    call(iii, "state::set", {"scope": other, "key": "k", "value": "elsewhere"})
    call(iii, "state::get", {"scope": scope, "key": "other"})  # reads never fire

    def event(kind: str, key: str, old: Any, new: Any, in_scope: str = scope) -> dict[str, Any]:
        return {"type": "state", "event_type": f"state:{kind}", "scope": in_scope, "key": key,
                "old_value": old, "new_value": new}

    expected = [event("created", "k", None, 1), event("updated", "k", 1, 2),
                event("created", "other", None, "x"), event("deleted", "k", 2, None)]
    got = [received.get(timeout=WAIT) for _ in expected]
    assert got == expected
    from iii.state import StateEventData, StateEventType  # the SDK's own model reads them

    assert StateEventData[Any].model_validate(got[1]).event_type is StateEventType.UPDATED
    key_events = [e for e in expected if e["key"] == "k"]
    assert [received_key.get(timeout=WAIT) for _ in key_events] == key_events
    with_other = [*expected, event("created", "k", None, "elsewhere", other)]
    assert [received_all.get(timeout=WAIT) for _ in with_other] == with_other
    # Everything that was due has arrived (a later write is the marker for the filtered ones).
    call(iii, "state::set", {"scope": scope, "key": "marker", "value": 0})
    assert received.get(timeout=WAIT)["key"] == "marker"
    nothing_more(received_key)


def test_state_trigger_condition_and_bad_config(engine: EngineThread, official: Factory) -> None:
    iii = official("conditional")
    scope = unique("scope")
    handler, received = collector(iii, "state.cond")
    condition = unique("only.big")
    iii.register_function(condition, lambda event: event["new_value"] > 10)
    iii.register_trigger({"type": "state", "function_id": handler,
                          "config": {"scope": scope, "condition_function_id": condition}})
    wait_bound(engine, handler)
    for value in (1, 50, 2, 99):
        call(iii, "state::set", {"scope": scope, "key": "k", "value": value})
    assert received.get(timeout=WAIT)["new_value"] == 50
    assert received.get(timeout=WAIT)["new_value"] == 99

    refused, _ = collector(iii, "state.bad")
    iii.register_trigger({"type": "state", "function_id": refused, "config": {"scope": 5}})
    wait_parked(engine, refused)


def test_a_state_trigger_with_a_key_and_no_scope_fires_for_that_key_in_every_scope(
        engine: EngineThread, official: Factory) -> None:
    iii = official("state-key")
    key, first, second = unique("key"), unique("scope"), unique("scope")
    handler, received = collector(iii, "state.anyscope")
    iii.register_trigger({"type": "state", "function_id": handler, "config": {"key": key}})
    wait_bound(engine, handler)
    call(iii, "state::set", {"scope": first, "key": key, "value": 1})
    call(iii, "state::set", {"scope": first, "key": unique("other"), "value": 2})
    call(iii, "state::set", {"scope": second, "key": key, "value": 3})
    got = [received.get(timeout=WAIT) for _ in range(2)]
    assert [(e["scope"], e["key"], e["new_value"]) for e in got] == [(first, key, 1),
                                                                      (second, key, 3)]


def test_an_unregistered_state_trigger_fires_no_more(engine: EngineThread,
                                                     official: Factory) -> None:
    iii = official("state-leaver")
    scope = unique("scope")
    handler, received = collector(iii, "state.leaver")
    stayer, stayed = collector(iii, "state.stayer")
    trigger = iii.register_trigger({"type": "state", "function_id": handler,
                                    "config": {"scope": scope}})
    iii.register_trigger({"type": "state", "function_id": stayer, "config": {"scope": scope}})
    wait_bound(engine, handler)
    wait_bound(engine, stayer)
    call(iii, "state::set", {"scope": scope, "key": "k", "value": 1})
    assert received.get(timeout=WAIT)["new_value"] == 1
    assert stayed.get(timeout=WAIT)["new_value"] == 1
    trigger.unregister()
    wait_until(lambda: not bindings_of(engine, handler), "the binding to go")
    call(iii, "state::set", {"scope": scope, "key": "k", "value": 2})
    assert stayed.get(timeout=WAIT)["new_value"] == 2
    nothing_more(received)


# --------------------------------------------------------------------------- pub/sub


def test_publish_reaches_each_subscriber_once_with_the_data_as_sent(
        engine: EngineThread, official: Factory) -> None:
    alice, bob, publisher = official("alice"), official("bob"), official("publisher")
    topic, other_topic = unique("orders"), unique("invoices")
    to_alice, alice_got = collector(alice, "sub.alice")
    to_bob, bob_got = collector(bob, "sub.bob")
    elsewhere, other_got = collector(bob, "sub.other")
    alice.register_trigger({"type": "subscribe", "function_id": to_alice,
                            "config": {"topic": topic}})
    bob.register_trigger({"type": "subscribe", "function_id": to_bob, "config": {"topic": topic}})
    bob.register_trigger({"type": "subscribe", "function_id": elsewhere,
                          "config": {"topic": other_topic}})
    for function_id in (to_alice, to_bob, elsewhere):
        wait_bound(engine, function_id)

    messages: list[Any] = [{"id": 1, "nested": {"list": [1, 2.5, None, "é"]}}, "text", 7, None,
                           [1, {"a": True}]]
    for message in messages:
        assert call(publisher, "publish", {"topic": topic, "data": message}) is None
    assert [alice_got.get(timeout=WAIT) for _ in messages] == messages
    assert [bob_got.get(timeout=WAIT) for _ in messages] == messages
    call(publisher, "publish", {"topic": other_topic, "data": "marker"})
    assert other_got.get(timeout=WAIT) == "marker"  # the other topic saw only its own message
    nothing_more(alice_got)
    nothing_more(bob_got)
    nothing_more(other_got)


def test_publish_and_subscribe_refuse_an_empty_topic(engine: EngineThread,
                                                     official: Factory) -> None:
    iii = official("empty")
    for payload, code in (({"topic": "", "data": 1}, "topic_not_set"),
                          ({"data": 1}, "deserialization_error")):  # as the Rust engine
        with pytest.raises(InvocationError) as caught:
            call(iii, "publish", payload)
        assert caught.value.code == code
    handler, _ = collector(iii, "sub.none")
    iii.register_trigger({"type": "subscribe", "function_id": handler, "config": {}})
    wait_parked(engine, handler)


def test_unregistered_subscriber_gets_nothing_more(engine: EngineThread,
                                                   official: Factory) -> None:
    iii = official("leaver")
    topic = unique("topic")
    handler, received = collector(iii, "sub.leaver")
    stayer, stayed = collector(iii, "sub.stayer")
    trigger = iii.register_trigger({"type": "subscribe", "function_id": handler,
                                    "config": {"topic": topic}})
    iii.register_trigger({"type": "subscribe", "function_id": stayer, "config": {"topic": topic}})
    wait_bound(engine, handler)
    wait_bound(engine, stayer)
    call(iii, "publish", {"topic": topic, "data": 1})
    assert received.get(timeout=WAIT) == 1 and stayed.get(timeout=WAIT) == 1
    trigger.unregister()
    wait_until(lambda: not any(on_engine(engine, lambda: [
        b for b in engine.engine.triggers.bindings.values() if b.function_id == handler])),
        "the binding to go")
    call(iii, "publish", {"topic": topic, "data": 2})
    assert stayed.get(timeout=WAIT) == 2
    nothing_more(received)


# --------------------------------------------------------------------------- cron


def test_cron_fires_every_second_with_the_documented_payload(engine: EngineThread,
                                                             official: Factory) -> None:
    iii = official("cron")
    handler, received = collector(iii, "cron.tick")
    trigger = iii.register_trigger({"type": "cron", "function_id": handler,
                                    "config": {"expression": "* * * * * *"}})
    (binding,) = wait_bound(engine, handler)
    first, second = received.get(timeout=WAIT), received.get(timeout=WAIT)
    for event in (first, second):
        assert set(event) == {"trigger", "job_id", "scheduled_time", "actual_time"}
        assert event["trigger"] == "cron" and event["job_id"] == binding.id
        assert event["scheduled_time"].endswith("+00:00")
        scheduled = dt.datetime.fromisoformat(event["scheduled_time"])
        assert scheduled.microsecond == 0
        assert dt.datetime.fromisoformat(event["actual_time"]) >= scheduled
    gap = (dt.datetime.fromisoformat(second["scheduled_time"])
           - dt.datetime.fromisoformat(first["scheduled_time"]))
    assert gap >= dt.timedelta(seconds=1)
    trigger.unregister()
    wait_until(lambda: not on_engine(engine, lambda: engine.engine.workers.cron.jobs),
               "the cron job to stop")


@pytest.mark.parametrize(("expression", "reason"), [
    ("* * * * *", "five-field crontab line"),
    ("0 0 0 * * 0", "1 = Sunday"),
    ("not cron", "expected 6 or 7 fields"),
    ("", "Cron expression is required"),
])
def test_cron_refuses_a_bad_expression_at_registration(engine: EngineThread, official: Factory,
                                                       expression: str, reason: str) -> None:
    iii = official("badcron")
    handler, _ = collector(iii, "cron.bad")
    iii.register_trigger({"type": "cron", "function_id": handler,
                          "config": {"expression": expression}})
    wait_parked(engine, handler)
    assert not on_engine(engine, lambda: engine.engine.workers.cron.jobs)
    # engine::register_trigger says why.
    with pytest.raises(InvocationError) as caught:
        call(iii, "engine::register_trigger", {"trigger_type": "cron", "function_id": handler,
                                               "config": {"expression": expression}})
    assert caught.value.code == "trigger_registration_failed"
    assert reason in caught.value.message


def test_cron_condition_skips_runs(engine: EngineThread, official: Factory) -> None:
    iii = official("croncond")
    handler, received = collector(iii, "cron.cond")
    seen: queue.Queue[Any] = queue.Queue()

    def every_other(event: Any) -> bool:
        seen.put(event)
        return seen.qsize() % 2 == 0

    condition = unique("cron.every.other")
    iii.register_function(condition, every_other)
    iii.register_trigger({"type": "cron", "function_id": handler, "config": {
        "expression": "* * * * * *", "condition_function_id": condition}})
    fired = received.get(timeout=WAIT)
    asked = [seen.get(timeout=WAIT), seen.get(timeout=WAIT)]
    assert fired == asked[1]
    assert received.empty()  # the first run was skipped


# --------------------------------------------------------------------------- logs


def test_log_functions_and_the_log_trigger_by_level(engine: EngineThread,
                                                    official: Factory) -> None:
    iii = official("logs")
    errors_only, got_errors = collector(iii, "log.errors")
    every_level, got_all = collector(iii, "log.all")
    iii.register_trigger({"type": "log", "function_id": errors_only, "config": {"level": "error"}})
    iii.register_trigger({"type": "log", "function_id": every_level, "config": {}})
    wait_bound(engine, errors_only)
    wait_bound(engine, every_level)
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    for level in ("trace", "debug", "info", "warn", "error"):
        assert call(iii, f"engine::log::{level}", {
            "message": f"{level} line", "data": {"n": 1}, "trace_id": trace_id,
            "service_name": "svc"}) is None
    entries = [got_all.get(timeout=WAIT) for _ in range(5)]
    assert [(e["severity_text"], e["severity_number"]) for e in entries] == [
        ("TRACE", 1), ("DEBUG", 5), ("INFO", 9), ("WARN", 13), ("ERROR", 17)]
    error = got_errors.get(timeout=WAIT)
    assert error == entries[-1]
    from iii.iii_types import OtelLogEvent  # the SDK's model of a log trigger's entry

    assert OtelLogEvent.model_validate(error).severity_text == "ERROR"
    assert error["body"] == "error line" and error["attributes"] == {"n": 1}
    assert error["trace_id"] == trace_id and error["service_name"] == "svc"
    assert set(error) == {
        "timestamp_unix_nano", "observed_timestamp_unix_nano", "severity_number",
        "severity_text", "body", "attributes", "trace_id", "span_id", "resource",
        "service_name", "instrumentation_scope_name", "instrumentation_scope_version"}
    listed = call(iii, "engine::logs::list", {"trace_id": trace_id, "severity_min": 13})
    assert listed["total"] == 2 and [e["body"] for e in listed["logs"]] == [
        "error line", "warn line"]
    assert call(iii, "engine::logs::clear", {}) == {"success": True}
    assert call(iii, "engine::logs::list", {})["total"] == 0
    health = call(iii, "engine::health::check", {})  # the Rust engine's health answer
    assert health["status"] == "healthy" and set(health) == {
        "status", "components", "timestamp", "version"}
    assert set(health["components"]) == {"otel", "metrics", "logs", "spans"}
    with pytest.raises(InvocationError):
        call(iii, "engine::log::info", {"data": {}})
    bad, _ = collector(iii, "log.bad")
    iii.register_trigger({"type": "log", "function_id": bad, "config": {"level": "loud"}})
    wait_parked(engine, bad)


def test_builtins_are_listed_as_engine_workers(official: Factory) -> None:
    iii = official("lister")
    types = {t["id"]: t["worker_name"] for t in call(iii, "engine::triggers::list", {})["triggers"]}
    assert {"state": "iii-state", "subscribe": "iii-pubsub", "cron": "iii-cron",
            "log": "iii-observability"}.items() <= types.items()
    functions = {f["function_id"] for f in call(iii, "engine::functions::list", {})["functions"]}
    assert {"state::set", "state::get", "state::update", "state::delete", "state::list",
            "state::list_groups", "publish"} <= functions  # engine::* ids are not listed
