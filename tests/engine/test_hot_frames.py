"""The engine's model-free reader of the two hot frames agrees with the frame models.

:func:`iii_rx.engine.wire.read_hot` either returns exactly what :func:`iii_rx.protocol.decode`
would give for the fields the router reads, or ``None`` (the model then decides, with its
own errors). Both are run on the same texts here.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from iii_rx.engine.wire import HotInvoke, HotResult, read_hot
from iii_rx.protocol import FrameError, InvocationResult, InvokeFunction, decode

INVOKE_FIELDS = ("function_id", "data", "invocation_id", "metadata", "traceparent", "baggage",
                 "namespace", "action")
RESULT_FIELDS = ("invocation_id", "function_id", "result", "error", "traceparent", "baggage")

HOT = [
    '{"type":"invokefunction","function_id":"a::b","invocation_id":"1","data":{"x":1}}',
    '{"type":"invokefunction","function_id":"a::b","data":null}',
    '{"type":"invokefunction","function_id":"a::b"}',
    '{"function_id":"a::b","type":"invokefunction","data":[NaN,Infinity,-Infinity]}',
    '{"type":"invokefunction","function_id":"a::b","data":1e400,"extra":{"k":[1]}}',
    '{"type":"invokefunction","function_id":"a::b","data":123456789012345678901234567890}',
    '{"type":"invokefunction","function_id":"a::b","namespace":"ns","action":null,'
    '"metadata":{"m":true},"traceparent":"00-x","baggage":"k=v","invocation_id":null}',
    '{"type":"invocationresult","invocation_id":"1","function_id":"f","result":{"ok":1}}',
    '{"type":"invocationresult","invocation_id":"1","function_id":"f"}',
    '{"type":"invocationresult","invocation_id":"1","function_id":"f","result":null,'
    '"error":null,"traceparent":"t","baggage":"b","more":2}',
    '{"type":"invocationresult","invocation_id":"1","function_id":"f","result":"\\u00e9\\ud83d'
    '\\ude00","type":"invocationresult"}',
]

COLD = [
    '{"type":"invokefunction","function_id":"a::b","action":{"type":"void"}}',
    '{"type":"invokefunction","function_id":"a::b","action":{"type":"enqueue","queue":"q"}}',
    '{"type":"invokefunction","function_id":1}',
    '{"type":"invokefunction"}',
    '{"type":"invokefunction","function_id":"a","invocation_id":7}',
    '{"type":"invokefunction","function_id":"a","namespace":5}',
    '{"type":"invokefunction","function_id":"a","traceparent":[]}',
    '{"type":"invocationresult","invocation_id":"1","function_id":"f","error":{"code":"x",'
    '"message":"m"}}',
    '{"type":"invocationresult","invocation_id":"1","function_id":"f","error":"boom"}',
    '{"type":"invocationresult","invocation_id":1,"function_id":"f"}',
    '{"type":"invocationresult","function_id":"f"}',
    '{"type":"invocationresult","invocation_id":"1","function_id":"f","baggage":false}',
    '{"type":"registerfunction","id":"a::b"}',
    '{"type":"ping"}',
    '["invokefunction"]',
    "not json",
    '{"type":"invokefunction","function_id":"a","data":' + "[" * 300 + "]" * 300 + "}",
]


def same(a: Any, b: Any) -> bool:
    """Equal, with NaN equal to NaN (the payloads carry them)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("text", HOT)
@pytest.mark.parametrize("as_bytes", [False, True])
def test_hot_frames_read_as_the_model_reads_them(text: str, as_bytes: bool) -> None:
    message: str | bytes = text.encode() if as_bytes else text
    hot = read_hot(message)
    model = decode(message)
    assert hot is not None
    if isinstance(model, InvokeFunction):
        assert type(hot) is HotInvoke
        fields = INVOKE_FIELDS
    else:
        assert isinstance(model, InvocationResult) and type(hot) is HotResult
        fields = RESULT_FIELDS
    for name in fields:
        assert same(getattr(hot, name), getattr(model, name)), name


@pytest.mark.parametrize("text", COLD)
def test_other_shapes_are_left_to_the_model(text: str) -> None:
    assert read_hot(text) is None
    try:
        decode(text)
    except FrameError:
        pass  # the model refuses it, with its own message
