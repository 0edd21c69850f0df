"""Result and call frames: the hot-path encoder writes what the model path writes."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from pydantic import BaseModel

import iii_rx
from iii_rx import IIIInvocationError
from iii_rx.engine import Engine
from iii_rx.frame_text import NonFiniteError, invoke_text, result_text
from iii_rx.protocol import InvocationResult, InvokeFunction, encode

PLAIN: list[Any] = [
    None, True, 0, -1, 2**70, 1.0, 0.1, -0.0, 2.5e300, 12345678.9, "", "é \u2028 \x00\x1f\"\\",
    [], {}, [1, "a", None, {"b": [1.5, False]}], {"k": {"n": {"é": "ü"}}}, (1, 2), {1: "int key"},
]


@pytest.mark.parametrize("value", PLAIN)
@pytest.mark.parametrize("traceparent", [None, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b71692"
                                               "03331-01"])
def test_fast_result_text_is_the_model_text(value: Any, traceparent: str | None) -> None:
    fields: dict[str, Any] = {"invocation_id": "i-\u00e9\"1", "function_id": "fn::\u00fc"}
    if traceparent is not None:
        fields["traceparent"] = traceparent
    expected = encode(InvocationResult(result=value, **fields))
    assert result_text(fields["invocation_id"], fields["function_id"], value,
                       traceparent=traceparent, null_result=True, allow_nan=False) == expected


@dataclasses.dataclass
class _Point:
    x: int


@pytest.mark.parametrize("value", [{1, 2}, _Point(1)])
def test_values_json_cannot_write_get_the_model_text(value: Any) -> None:
    expected = encode(InvocationResult(result=value, invocation_id="i", function_id="f"))
    assert result_text("i", "f", value, null_result=True, allow_nan=False) == expected


def test_what_no_encoder_can_write_raises() -> None:
    with pytest.raises(ValueError):
        result_text("i", "f", {"when": object()}, null_result=True, allow_nan=False)
    with pytest.raises(NonFiniteError):
        result_text("i", "f", float("nan"), null_result=True, allow_nan=False)


async def test_results_of_every_kind_round_trip(engine: Engine, name: str) -> None:
    async with iii_rx.connect(engine.url, name=name) as iii:
        iii.register_function("res::echo", lambda data: data["v"])  # the engine adds keys
        iii.register_function("res::set", lambda _: {3})
        iii.register_function("res::point", lambda _: _Point(4))
        for value in [None, 1, "é", [1, {"a": None}], {"x": 1.5}]:
            assert await iii.trigger("res::echo", {"v": value}) == value
        assert await iii.trigger("res::set") == [3]  # pydantic writes a set as a list
        assert await iii.trigger("res::point") == {"x": 4}
        assert json.dumps(await iii.trigger("res::echo", {"v": 2**70})) == str(2**70)


class _Measure(BaseModel):
    value: float


@pytest.mark.parametrize("result", [
    float("nan"), {"x": [1.0, float("inf")]}, [-float("inf")], {"set": {float("nan")}},
    _Measure(value=float("nan")), {"model": _Measure(value=float("inf"))},
])
async def test_nan_and_infinity_in_a_result_fail_the_invocation(
        engine: Engine, name: str, result: Any) -> None:
    async with iii_rx.connect(engine.url, name=name) as iii:
        iii.register_function("res::nan", lambda _: result)

        async def async_nan(_: Any) -> Any:
            return result

        iii.register_function("res::nan_async", async_nan)
        for function_id in ("res::nan", "res::nan_async"):
            with pytest.raises(IIIInvocationError) as info:
                await iii.trigger(function_id)
            assert info.value.code == "invocation_failed"
            assert "NaN and Infinity cannot be sent" in info.value.message
        iii.register_function("res::text", lambda _: {"s": "NaN Infinity"})  # text is fine
        assert await iii.trigger("res::text") == {"s": "NaN Infinity"}


@pytest.mark.parametrize("data", PLAIN)
@pytest.mark.parametrize("extra", [
    {}, {"invocation_id": "i\u00e9"}, {"metadata": {"m": [1]}, "namespace": "team"},
    {"invocation_id": "i", "metadata": "m", "traceparent": "00-a-b-01", "baggage": "k=v",
     "namespace": "n"},
])
def test_fast_call_text_is_the_model_text(data: Any, extra: dict[str, Any]) -> None:
    expected = encode(InvokeFunction(function_id="fn::\u00fc", data=data, **extra))
    assert invoke_text("fn::\u00fc", data, invocation_id=extra.get("invocation_id"),
                       metadata=extra.get("metadata"), traceparent=extra.get("traceparent"),
                       baggage=extra.get("baggage"), namespace=extra.get("namespace"),
                       allow_nan=False) == expected


@pytest.mark.parametrize(("payload", "metadata"), [
    ({"x": float("nan")}, None), ([float("inf")], None), ({"m": _Measure(value=float("nan"))},
                                                          None), ({}, {"score": -float("inf")}),
])
async def test_nan_and_infinity_in_a_call_raise_value_error(
        engine: Engine, name: str, payload: Any, metadata: Any) -> None:
    async with iii_rx.connect(engine.url, name=name) as iii:
        seen: list[Any] = []
        iii.register_function("res::seen", seen.append)
        for action in (None, iii_rx.TriggerAction.void()):
            with pytest.raises(ValueError, match="NaN and Infinity cannot be sent"):
                await iii.trigger("res::seen", payload, metadata=metadata, action=action)
        assert await iii.trigger("res::seen", {"fine": 1.5}) is None
        assert len(seen) == 1  # only the last call went out


def test_nan_in_a_blocking_call_raises_value_error(engine_thread: Any, name: str) -> None:
    with iii_rx.connect_sync(engine_thread.url, name=name) as iii:
        with pytest.raises(ValueError, match="NaN and Infinity cannot be sent"):
            iii.trigger("anything", {"x": float("nan")}).result(5)
