"""The snapshot models and ``diff`` without an engine: order, identity, immutability."""

from __future__ import annotations

import json
import pickle
from dataclasses import FrozenInstanceError, replace

import pytest
from topology_helpers import describe

from iii_rx.topology import (
    FrozenDict,
    FunctionAdded,
    FunctionInfo,
    FunctionRemoved,
    RegisteredTrigger,
    Topology,
    TriggerAdded,
    TriggerTypeInfo,
    WorkerInfo,
    WorkerUpdated,
    diff,
    thaw,
)

W1 = WorkerInfo(id="w1", name="alpha", runtime="python", function_count=1)
W2 = WorkerInfo(id="w2", name="beta", runtime="node")
F1 = FunctionInfo(function_id="a::one", worker_name="alpha")
F2 = FunctionInfo(function_id="b::two", namespace="orders", worker_name="beta")
Y1 = TriggerTypeInfo(id="tick", worker_name="beta")
T1 = RegisteredTrigger(id="t1", trigger_type="tick", function_id="a::one", config={"every": 1})


def test_diff_orders_removals_then_updates_then_additions() -> None:
    old = Topology.of([W1], [F1], [], [T1])
    new = Topology.of([replace(W1, version="2"), W2], [F2], [Y1], [])
    assert describe(diff(old, new)) == [
        ("TriggerRemoved", "t1"),
        ("FunctionRemoved", ("default", "a::one")),
        ("WorkerUpdated", "w1"),
        ("WorkerConnected", "w2"),
        ("TriggerTypeAdded", ("default", "tick")),
        ("FunctionAdded", ("orders", "b::two")),
    ]
    updated = diff(old, new)[2]
    assert isinstance(updated, WorkerUpdated)
    assert updated.changed == ("version",) and updated.previous == W1


def test_diff_from_nothing_is_every_row_added_and_equal_snapshots_give_nothing() -> None:
    snapshot = Topology.of([W2, W1], [F2, F1], [Y1], [T1])
    assert describe(diff(None, snapshot)) == [
        ("WorkerConnected", "w1"), ("WorkerConnected", "w2"),
        ("TriggerTypeAdded", ("default", "tick")),
        ("FunctionAdded", ("default", "a::one")), ("FunctionAdded", ("orders", "b::two")),
        ("TriggerAdded", "t1"),
    ]
    assert diff(snapshot, Topology.of([W1, W2], [F1, F2], [Y1], [T1])) == []


def test_counters_and_derived_fields_make_no_event() -> None:
    old = Topology.of([W1], [F1], [], [T1])
    busier = replace(W1, function_count=9, active_invocations=4)
    rehomed = replace(T1, worker_name="other", config_summary="{...}")
    new = Topology.of([busier], [F1], [], [rehomed])
    assert new != old  # the snapshot does change (a dashboard shows the counters)
    assert diff(old, new) == []


def test_call_metrics_on_function_rows_make_no_event() -> None:
    def counted(calls: int, **extra: object) -> FunctionInfo:
        row = {**F1.to_dict(), "metrics": {"invocations": calls, "p50_ms": 1.0}, **extra}
        found = FunctionInfo.from_row(row)
        assert found is not None
        return found

    assert diff(Topology.of(functions=[counted(1)]), Topology.of(functions=[counted(7)])) == []
    # Any other extra key is part of the row: a change of it is a change of the function.
    tagged = counted(7, schema={"v": 2})
    assert diff(Topology.of(functions=[counted(7)]), Topology.of(functions=[tagged])) == [
        FunctionRemoved(counted(7)), FunctionAdded(tagged)]


def test_a_function_whose_row_changed_is_removed_then_added() -> None:
    moved = replace(F1, worker_name="gamma")
    events = diff(Topology.of(functions=[F1]), Topology.of(functions=[moved]))
    assert events == [FunctionRemoved(F1), FunctionAdded(moved)]


def test_events_carry_full_rows_and_serialise() -> None:
    event = TriggerAdded(T1)
    assert event.trigger.config == {"every": 1}
    line = json.dumps(event.to_dict())
    assert json.loads(line) == {"event": "trigger_added", "trigger": {
        "id": "t1", "trigger_type": "tick", "function_id": "a::one", "worker_name": None,
        "config": {"every": 1}, "config_summary": None, "namespace": None}}
    updated = WorkerUpdated(replace(W1, os="linux"), W1, ("os",))
    assert updated.to_dict()["changed"] == ["os"]


def test_snapshots_are_deeply_immutable() -> None:
    snapshot = Topology.from_answers(
        {"workers": [{"id": "w", "name": "n", "pid": 7}]},
        {"functions": [{"function_id": "f", "namespace": "default",
                        "metadata": {"tags": ["x"], "nested": {"k": 1}}}]},
        {"triggers": []},
        {"registered_triggers": []},
    )
    function = snapshot.functions[0]
    assert isinstance(function.metadata, FrozenDict)
    with pytest.raises(TypeError):
        function.metadata["tags"] = []
    with pytest.raises(TypeError):
        function.metadata["nested"].update(k=2)
    assert function.metadata["tags"] == ("x",)
    with pytest.raises(FrozenInstanceError):
        function.function_id = "g"  # type: ignore[misc]
    assert thaw(function.metadata) == {"tags": ["x"], "nested": {"k": 1}}
    assert snapshot.workers[0].extra == {"pid": 7}  # fields the protocol does not name are kept
    assert pickle.loads(pickle.dumps(snapshot)) == snapshot
    json.dumps(snapshot.to_dict())


def test_unreadable_rows_are_skipped_not_fatal() -> None:
    snapshot = Topology.from_answers(
        {"workers": [{"name": None}, "junk", {"id": "ok"}]},
        {"functions": "not a list"},
        None,
        {"registered_triggers": [{"id": "t", "trigger_type": "x"}]},
    )
    assert [w.id for w in snapshot.workers] == ["ok"]
    assert snapshot.functions == () and snapshot.trigger_types == () and snapshot.triggers == ()


def test_lookups() -> None:
    clash = FunctionInfo(function_id="a::one", namespace="orders")
    snapshot = Topology.of([W1], [clash, F1], [], [T1])
    assert snapshot.function("a::one") == F1  # default first
    assert snapshot.function("a::one", "orders") == clash
    assert snapshot.function("b::two") is None
    assert snapshot.worker("w1") == W1 and snapshot.worker("nope") is None
    assert snapshot.functions_of(W1) == (F1,)
    assert snapshot.triggers_of(F1) == (T1,)
