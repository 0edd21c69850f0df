"""The hot-path encoder writes exactly what the model path writes, and refuses what it must.

``protocol.encode`` of the equivalent frame model is the reference for every payload.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import gc
import json
import math
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field, RootModel, computed_field
from pydantic.dataclasses import dataclass as pydantic_dataclass

from iii_rx.frame_text import NON_FINITE, NonFiniteError, dumps, invoke_text, result_text
from iii_rx.protocol import (
    EnqueueAction,
    ErrorBody,
    InvocationResult,
    InvokeFunction,
    VoidAction,
    encode,
)

NAN, INF = float("nan"), float("inf")
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


# ----------------------------------------------------------------------------- payloads


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Point(BaseModel):
    x: float
    label: str | None = None
    weight: int = Field(default=1, alias="Weight")


class Shape(BaseModel):
    points: list[Point]
    extra: Any = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def size(self) -> int:
        return len(self.points)


class Tags(RootModel[list[str]]):
    pass


class Measure(BaseModel):
    value: float
    note: Any = None


class MeasureAsStrings(BaseModel):
    model_config = ConfigDict(ser_json_inf_nan="strings")
    value: float


class MeasureAsConstants(BaseModel):
    model_config = ConfigDict(ser_json_inf_nan="constants")
    value: float


class NanDefault(BaseModel):
    value: float = NAN


@dataclasses.dataclass
class Row:
    x: int
    y: float = 2.5
    inner: Any = None


@pydantic_dataclass
class PydRow:
    value: float


PLAIN: list[Any] = [
    None, True, False, 0, -1, 2**70, -(2**64), 10**40, 1.0, 0.1, -0.0, 2.5e300, 1e16, 1e-4,
    5e-324, 12345678.9, 1 / 3, "", "plain", "é ü 漢字 😀", "\u2028\u2029 \x00\x1f \" \\ / \t\n",
    "NaN", "Infinity", "-Infinity", "null", [], {}, [1, "a", None, {"b": [1.5, False]}],
    {"k": {"n": {"é": "ü"}}}, (1, 2), {1: "int key"}, {True: "bool key"}, {1.5: "float key"},
    Level.HIGH, [[[[[[["deep"]]]]]]],
    [{"id": i, "name": f"Nadia Ivanova {i}", "score": i / 7, "tags": ["x"], "boss": None}
     for i in range(64)],
]
"""Values plain ``json`` writes too."""

RICH: list[Any] = [
    Point(x=1.5), Point(x=2, label=None), Point(x=3, Weight=4), Point.model_construct(x=1.0),
    Shape(points=[Point(x=1), Point(x=2, label="é")], extra={"p": Point(x=0)}),
    Tags(["a", "b"]), Row(1), Row(2, inner=Point(x=1)), PydRow(1.5), {"rows": [Row(3)]},
    datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.timezone.utc),
    datetime.date(2024, 5, 1), datetime.time(7, 8, 9), datetime.timedelta(seconds=90),
    {1, 2, 3}, frozenset({"a"}), b"bytes", uuid.UUID(int=7), decimal.Decimal("1.10"),
    decimal.Decimal("NaN"), Color.RED, {"when": datetime.date(2020, 1, 2), "set": {4}},
    {None: "none key"}, [Measure(value=1.0, note=[1, None])],
]
"""Values only pydantic writes (or writes differently from ``json``: the ``None`` key)."""


def _ids(value: Any) -> str:
    return repr(value)[:40]


def _model_invoke(function_id: str, data: Any, **fields: Any) -> str:
    set_fields = {name: value for name, value in fields.items() if value is not None}
    return encode(InvokeFunction(function_id=function_id, data=data, **set_fields))


def _model_result(invocation_id: str, function_id: str, result: Any = None,
                  error: Any = None, null_result: bool = False, **fields: Any) -> str:
    set_fields = {name: value for name, value in fields.items() if value is not None}
    if error is not None:
        set_fields["error"] = error
    elif result is not None or null_result:
        set_fields["result"] = result
    return encode(InvocationResult(invocation_id=invocation_id, function_id=function_id,
                                   **set_fields))


INVOKE_FIELDS: list[dict[str, Any]] = [
    {},
    {"invocation_id": "i-\u00e9\"1"},
    {"metadata": {"m": [1]}, "namespace": "team"},
    {"invocation_id": "i", "metadata": "m", "traceparent": TRACEPARENT, "baggage": "k=v",
     "namespace": "n"},
    {"invocation_id": "i", "action": VoidAction()},
    {"action": EnqueueAction(queue="jobs"), "traceparent": TRACEPARENT, "namespace": "n"},
    {"metadata": Point(x=1)},
]


# ----------------------------------------------------------------------------- the model path


@pytest.mark.parametrize("data", PLAIN + RICH, ids=_ids)
@pytest.mark.parametrize("fields", INVOKE_FIELDS, ids=lambda f: ",".join(f) or "bare")
def test_invoke_text_is_the_model_text(data: Any, fields: dict[str, Any]) -> None:
    expected = _model_invoke("fn::\u00fc", data, **fields)
    assert invoke_text("fn::\u00fc", data, **fields) == expected
    assert invoke_text("fn::\u00fc", data, allow_nan=False, **fields) == expected


@pytest.mark.parametrize("result", PLAIN + RICH, ids=_ids)
@pytest.mark.parametrize("fields", [{}, {"traceparent": TRACEPARENT},
                                    {"traceparent": TRACEPARENT, "baggage": "a=b,c=d"}],
                         ids=lambda f: ",".join(f) or "bare")
@pytest.mark.parametrize("null_result", [False, True])
def test_result_text_is_the_model_text(result: Any, fields: dict[str, Any],
                                       null_result: bool) -> None:
    expected = _model_result("i-\u00e9", "fn::\u00fc", result, null_result=null_result,
                             **fields)
    assert result_text("i-\u00e9", "fn::\u00fc", result, null_result=null_result,
                       **fields) == expected
    assert result_text("i-\u00e9", "fn::\u00fc", result, null_result=null_result,
                       allow_nan=False, **fields) == expected


@pytest.mark.parametrize("error", [
    ErrorBody(code="invocation_failed", message="boom"),
    ErrorBody(code="c", message="m \u00e9 NaN", stacktrace="Traceback ...\n"),
    ErrorBody(code="c", message="m", stacktrace=None),  # set to null: written as null
    {"code": "function_not_found", "message": "Function f not found in namespace default."},
    {"code": "c", "message": "m", "stacktrace": "tb"},
], ids=_ids)
@pytest.mark.parametrize("result", [None, {"ignored": True}])
def test_an_error_is_written_as_the_model_writes_it_and_wins_over_a_result(
        error: Any, result: Any) -> None:
    expected = _model_result("i", "f", error=error, traceparent=TRACEPARENT)
    for null_result in (False, True):
        assert result_text("i", "f", result, error, TRACEPARENT, null_result=null_result,
                           allow_nan=False) == expected


def test_null_and_absent_are_kept_as_today() -> None:
    assert invoke_text("f", None) == '{"type":"invokefunction","function_id":"f","data":null}'
    assert result_text("i", "f") == (
        '{"type":"invocationresult","invocation_id":"i","function_id":"f"}')
    assert result_text("i", "f", null_result=True) == (
        '{"type":"invocationresult","invocation_id":"i","function_id":"f","result":null}')
    assert result_text("i", "f", [None]) == (
        '{"type":"invocationresult","invocation_id":"i","function_id":"f","result":[null]}')


def test_a_large_payload_is_the_model_text() -> None:
    records = [{"id": i, "name": f"user {i} ✓", "score": i * 0.25, "tags": ["a", "b"],
                "manager": None} for i in range(14_000)]
    text = invoke_text("bulk::load", records, invocation_id="i", allow_nan=False)
    assert len(text) > 1 << 20
    assert text == _model_invoke("bulk::load", records, invocation_id="i")
    assert result_text("i", "bulk::load", records, null_result=True) == _model_result(
        "i", "bulk::load", records)


def test_unset_fields_of_nested_models_stay_out_as_in_the_model_path() -> None:
    text = invoke_text("f", {"p": Point(x=1), "q": Point(x=2, Weight=5)})
    assert json.loads(text)["data"] == {"p": {"x": 1.0}, "q": {"x": 2.0, "weight": 5}}


@pytest.mark.parametrize("value", PLAIN, ids=_ids)
def test_dumps_is_compact_json_with_non_ascii_as_is(value: Any) -> None:
    assert dumps(value) == json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    assert dumps(value, allow_nan=False) == dumps(value)


def test_where_the_text_differs_from_json_it_is_the_model_text_and_the_same_value() -> None:
    # Floats between 1e-9 and 1e-4 carry no zero-padded exponent (pydantic's formatting);
    # a None key is written "None" (pydantic's) rather than "null" (json's).
    assert dumps([1.5e-05, 1e-07, 2e-09]) == "[0.000015,1e-7,2e-9]"
    assert json.loads(dumps([1.5e-05, 1e-07, 2e-09])) == [1.5e-05, 1e-07, 2e-09]
    assert dumps({None: 1}) == '{"None":1}'
    for value in ([1.5e-05, 1e-07], {None: 1}):
        assert invoke_text("f", value) == _model_invoke("f", value)


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30))
def test_any_json_value_is_the_model_text_and_reads_back(value: Any) -> None:
    text = invoke_text("f", value, invocation_id="i", allow_nan=False)
    assert text == _model_invoke("f", value, invocation_id="i")
    assert json.loads(text)["data"] == value


# ----------------------------------------------------------------------------- NaN and Infinity


@dataclasses.dataclass
class Holder:
    inner: Any


HIDDEN: list[Any] = [
    NAN, INF, -INF, [1.0, NAN], (INF,), {NAN}, frozenset({-INF}), {"a": {"b": [0, NAN]}},
    Row(1, y=NAN), Holder(Measure(value=INF)), Measure(value=NAN), Measure(value=1, note=[INF]),
    {"m": Measure(value=NAN)}, [{"m": Measure(value=INF), "none": None}],
    ({"m": Measure(value=NAN)},), {"s": MeasureAsStrings(value=NAN)},
    {"c": MeasureAsConstants(value=-INF)}, {"p": PydRow(NAN)},
    Shape(points=[Point(x=NAN)]), {"rows": [Row(1), Row(2, inner={"deep": Measure(value=NAN)})]},
    {"text": "NaN and Infinity are words", "m": Measure(value=NAN)},
]
"""Payloads that carry a non-finite float, wherever it hides."""

CLEAN: list[Any] = [
    "NaN", "Infinity", "-Infinity", ["NaN", "null", None], {"NaN": "Infinity"},
    {"m": Measure(value=1.0), "none": None}, [{"m": Measure(value=2.0, note="NaN")}],
    {"s": MeasureAsStrings(value=1.0), "text": "Infinity"}, decimal.Decimal("NaN"),
    {"unsent": NanDefault()}, [NanDefault(), None], {"dec": decimal.Decimal("-Infinity")},
]
"""Payloads without one (words are text; an unset default is not sent)."""


@pytest.mark.parametrize("value", HIDDEN, ids=_ids)
def test_the_client_refuses_nan_and_infinity_wherever_they_hide(value: Any) -> None:
    encoders: list[Callable[[], str]] = [
        lambda: invoke_text("f", value, allow_nan=False),
        lambda: invoke_text("f", {"fine": 1}, metadata=value, allow_nan=False),
        lambda: invoke_text("f", value, invocation_id="i", action=VoidAction(),
                            namespace="n", allow_nan=False),
        lambda: result_text("i", "f", value, null_result=True, allow_nan=False),
        lambda: result_text("i", "f", value, traceparent=TRACEPARENT, allow_nan=False),
        lambda: dumps(value, allow_nan=False),
    ]
    for encode_it in encoders:
        with pytest.raises(NonFiniteError) as info:
            encode_it()
        assert isinstance(info.value, ValueError)
        assert str(info.value) == NON_FINITE


@pytest.mark.parametrize("value", CLEAN, ids=_ids)
def test_words_and_unsent_defaults_are_not_refused(value: Any) -> None:
    assert invoke_text("f", value, allow_nan=False) == _model_invoke("f", value)
    assert result_text("i", "f", value, null_result=True, allow_nan=False) == _model_result(
        "i", "f", value)


def test_ids_and_errors_are_never_checked() -> None:
    text = invoke_text("math::NaN", {"x": 1}, invocation_id="Infinity", allow_nan=False)
    assert json.loads(text)["function_id"] == "math::NaN"
    error = ErrorBody(code="invocation_failed", message=f"refused: {NON_FINITE}")
    assert "NaN" in result_text("i", "f", NAN, error, allow_nan=False)


def test_a_dict_gc_still_tracks_is_checked_like_any_other() -> None:
    emptied: dict[str, Any] = {"x": [1]}
    emptied["x"] = None  # a dict once tracked stays tracked: the slower branch, same answer
    assert gc.is_tracked(emptied)
    assert invoke_text("f", emptied, allow_nan=False) == _model_invoke("f", emptied)
    emptied["m"] = Measure(value=NAN)
    with pytest.raises(NonFiniteError):
        invoke_text("f", emptied, allow_nan=False)


@pytest.mark.parametrize("value", [NAN, [INF, -INF], {"a": {"b": (NAN,)}}, {NAN}, Row(1, NAN, 2)],
                         ids=_ids)
def test_the_engine_relays_them_as_the_sdk_writes_them(value: Any) -> None:
    text = invoke_text("f", value, metadata={"m": -INF}, invocation_id="i")
    frame = json.loads(text)  # the json module reads the tokens back, as Python SDKs do
    assert _same(frame["data"], json.loads(json.dumps(_plain(value))))
    assert frame["metadata"]["m"] == -INF
    assert "NaN" in text or "Infinity" in text
    assert "null" not in text
    assert result_text("i", "f", value) == (
        '{"type":"invocationresult","invocation_id":"i","function_id":"f","result":'
        + dumps(value) + "}")


def _plain(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    return value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


@settings(max_examples=200, deadline=None, database=None, derandomize=True)
@given(st.recursive(
    st.none() | st.integers() | st.text(max_size=8) | st.floats(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=4),
    max_leaves=20))
def test_refused_exactly_when_a_float_is_not_finite(value: Any) -> None:
    relayed = invoke_text("f", value)
    if _has_non_finite(value):
        with pytest.raises(NonFiniteError):
            invoke_text("f", value, allow_nan=False)
        assert _same(json.loads(relayed)["data"], value)
    else:
        assert invoke_text("f", value, allow_nan=False) == relayed


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, list):
        return any(map(_has_non_finite, value))
    if isinstance(value, dict):
        return any(map(_has_non_finite, value.values()))
    return False


def test_the_refusal_text_is_todays() -> None:
    assert NON_FINITE == ("NaN and Infinity cannot be sent: JSON has no such numbers"
                          " (docs/protocol.md §5.4)")


# ----------------------------------------------------------------------------- what cannot be sent


def _cycle() -> dict[str, Any]:
    loop: dict[str, Any] = {"a": 1}
    loop["self"] = loop
    return loop


@pytest.mark.parametrize(("value", "message"), [
    (_cycle(), "Circular reference"),
    ([object()], "Unable to serialize unknown type"),
    ({"x": {"y": lambda: 1}}, "Unable to serialize unknown type"),
    ("\ud800 lone surrogate", "surrogates not allowed"),
], ids=["cycle", "object", "function", "surrogate"])
def test_what_cannot_be_written_raises_a_value_error(value: Any, message: str) -> None:
    encoders: list[Callable[[], str]] = [
        lambda: invoke_text("f", value),
        lambda: invoke_text("f", value, allow_nan=False),
        lambda: result_text("i", "f", value, allow_nan=False),
        lambda: dumps(value),
    ]
    for encode_it in encoders:
        with pytest.raises(ValueError, match=message) as info:
            encode_it()
        assert not isinstance(info.value, NonFiniteError)
