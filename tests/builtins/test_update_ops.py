"""The update operations of ``state::update``, without an engine (pure functions)."""

from __future__ import annotations

from typing import Any

import pytest

from iii_rx.engine.workers._common import MISSING
from iii_rx.engine.workers.update_ops import apply_ops, parse_ops
from iii_rx.errors import IIIInvocationError


def run(old: Any, *ops: dict[str, Any]) -> tuple[Any, list[str]]:
    new, errors = apply_ops(old, parse_ops("state::update", list(ops)))
    return new, [e["code"] for e in errors]


def test_set_field_and_root() -> None:
    assert run({"a": 1}, {"type": "set", "path": "b", "value": 2}) == ({"a": 1, "b": 2}, [])
    assert run({"a": 1}, {"type": "set", "path": "", "value": [1]}) == ([1], [])
    assert run({"a": 1}, {"type": "set", "path": "a"}) == ({"a": None}, [])
    assert run(5, {"type": "set", "path": "a", "value": 1}) == (5, ["set.target_not_object"])


def test_a_dotted_path_is_one_literal_key() -> None:
    assert run({}, {"type": "set", "path": "a.b", "value": 1}) == ({"a.b": 1}, [])


def test_increment_and_decrement() -> None:
    ops = ({"type": "increment", "path": "n", "by": 2}, {"type": "decrement", "path": "m", "by": 3})
    assert run({"n": 1}, *ops) == ({"n": 3, "m": -3}, [])
    assert run(MISSING, {"type": "increment", "path": "", "by": 4}) == (4, [])
    assert run(MISSING, {"type": "decrement", "path": "", "by": 4}) == (-4, [])
    assert run(1.5, {"type": "increment", "path": "", "by": 1}) == (2.5, [])
    assert run({"n": "x"}, {"type": "increment", "path": "n", "by": 1}) == (
        {"n": "x"}, ["increment.not_number"])
    assert run({"n": True}, {"type": "decrement", "path": "n", "by": 1})[1] == [
        "decrement.not_number"]
    assert run([], {"type": "increment", "path": "n", "by": 1})[1] == [
        "increment.target_not_object"]


def test_append_to_arrays_and_strings() -> None:
    old = {"events": [{"kind": "start"}], "text": "hello"}
    new, errors = run(old, {"type": "append", "path": "events", "value": {"kind": "chunk"}},
                      {"type": "append", "path": "text", "value": " world"},
                      {"type": "append", "path": "fresh", "value": "s"},
                      {"type": "append", "path": "list", "value": 1})
    assert errors == []
    assert new == {"events": [{"kind": "start"}, {"kind": "chunk"}], "text": "hello world",
                   "fresh": "s", "list": [1]}
    assert old == {"events": [{"kind": "start"}], "text": "hello"}  # the input is untouched


def test_append_at_the_root_and_nested() -> None:
    assert run(MISSING, {"type": "append", "value": 1}) == ([1], [])
    assert run(MISSING, {"type": "append", "value": "a"}) == ("a", [])
    assert run([1], {"type": "append", "path": [], "value": 2}) == ([1, 2], [])
    assert run({}, {"type": "append", "path": ["a", "b"], "value": "x"}) == (
        {"a": {"b": ["x"]}}, [])
    assert run({"a": 1}, {"type": "append", "path": "a", "value": 2}) == (
        {"a": 1}, ["append.type_mismatch"])
    assert run({"s": "x"}, {"type": "append", "path": "s", "value": 2})[1] == [
        "append.type_mismatch"]
    assert run(3, {"type": "append", "path": "a", "value": 2})[1] == [
        "append.target_not_object"]


def test_merge_at_the_root_and_nested() -> None:
    assert run({"a": 1, "b": 1}, {"type": "merge", "value": {"b": 2, "c": 3}}) == (
        {"a": 1, "b": 2, "c": 3}, [])
    assert run({"x": 5}, {"type": "merge", "path": ["x", "y"], "value": {"z": 1}}) == (
        {"x": {"y": {"z": 1}}}, [])
    assert run({}, {"type": "merge", "path": "p", "value": {"k": 1}}) == ({"p": {"k": 1}}, [])
    assert run({}, {"type": "merge", "value": 3})[1] == ["merge.value.not_an_object"]
    assert run({}, {"type": "merge", "value": {"__proto__": 1}})[1] == [
        "merge.value.proto_polluted"]
    assert run({}, {"type": "merge", "path": ["constructor"], "value": {}})[1] == [
        "merge.path.proto_polluted"]
    assert run({}, {"type": "merge", "path": ["a"] * 33, "value": {}})[1] == [
        "merge.path.too_deep"]
    assert run({}, {"type": "merge", "path": ["a", ""], "value": {}})[1] == [
        "merge.path.empty_segment"]
    assert run({}, {"type": "merge", "path": "x" * 257, "value": {}})[1] == [
        "merge.path.segment_too_long"]
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(17):
        node["d"] = {}
        node = node["d"]
    assert run({}, {"type": "merge", "value": deep})[1] == ["merge.value.too_deep"]
    assert run({}, {"type": "merge", "value": {str(i): i for i in range(1025)}})[1] == [
        "merge.value.too_many_keys"]
    at_most = {str(i): i for i in range(1024)}
    assert run({}, {"type": "merge", "value": at_most}) == (at_most, [])
    assert run([1], {"type": "merge", "value": {"a": 1}})[1] == ["merge.target_not_object"]


def test_remove() -> None:
    assert run({"a": 1, "b": 2}, {"type": "remove", "path": "a"}) == ({"b": 2}, [])
    assert run({"a": 1}, {"type": "remove", "path": "zz"}) == ({"a": 1}, [])
    assert run({"a": 1}, {"type": "remove", "path": ""}) == (None, [])
    assert run("s", {"type": "remove", "path": "a"})[1] == ["remove.target_not_object"]


def test_failed_ops_are_skipped_and_reported_with_their_index() -> None:
    new, errors = apply_ops({"n": "x"}, parse_ops("f", [
        {"type": "set", "path": "a", "value": 1},
        {"type": "increment", "path": "n", "by": 1},
        {"type": "set", "path": "b", "value": 2}]))
    assert new == {"n": "x", "a": 1, "b": 2}
    assert errors[0]["op_index"] == 1 and errors[0]["code"] == "increment.not_number"
    assert errors[0]["message"] and errors[0]["doc_url"].startswith("https://")


def test_a_missing_key_starts_from_an_empty_object() -> None:
    assert run(MISSING, {"type": "set", "path": "a", "value": 1}) == ({"a": 1}, [])
    assert run(MISSING) == ({}, [])


@pytest.mark.parametrize("ops", [
    "nope", [1], [{"type": "explode", "path": "a"}], [{"type": "set"}],
    [{"type": "increment", "path": "a", "by": "1"}], [{"type": "increment", "path": "a"}],
    [{"type": "merge", "path": 3, "value": {}}], [{"type": "append", "path": "a"}],
])
def test_a_malformed_list_fails_the_whole_call(ops: Any) -> None:
    with pytest.raises(IIIInvocationError) as caught:
        parse_ops("state::update", ops)
    assert caught.value.code == "deserialization_error"
    assert "state::update" in caught.value.message
