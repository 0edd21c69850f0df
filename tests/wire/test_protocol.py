"""Round-trip the captured frames and check the decoding rules of docs/protocol.md §1.5: encoding
keeps ``null`` apart from an absent field, and a frame acted on reads ``null`` as absent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from iii_rx import protocol as p

FRAMES = Path(__file__).with_name("captured_frames.jsonl")
"""27 real frames, one per distinct shape, captured between the official Python SDK 0.25, the
Node SDK 0.22.1 and the Rust engine 0.23 (``dir``: ``w2e`` worker to engine, ``e2w`` back)."""


def captured() -> list[dict[str, Any]]:
    if not FRAMES.exists():  # fail loudly: the captured frames are the protocol's ground truth
        raise FileNotFoundError(f"captured frames not found at {FRAMES}")
    return [json.loads(line)["frame"] for line in FRAMES.read_text().splitlines() if line]


@pytest.mark.parametrize("frame", captured(), ids=lambda f: f["type"])
def test_captured_frames_round_trip(frame: dict[str, Any]) -> None:
    decoded = p.decode(json.dumps(frame, ensure_ascii=False))
    assert type(decoded) is p.FRAME_TYPES[frame["type"]]
    assert json.loads(p.encode(decoded)) == frame


def test_there_are_captured_frames_of_every_core_type() -> None:
    types = {f["type"] for f in captured()}
    assert {"registerfunction", "invokefunction", "invocationresult", "workerregistered",
            "registertrigger", "registertriggertype", "triggerregistrationresult",
            "unregisterfunction"} <= types


def test_absent_and_null_stay_different() -> None:
    assert json.loads(p.encode(p.InvokeFunction(function_id="f"))) == {
        "type": "invokefunction", "function_id": "f"}
    assert json.loads(p.encode(p.InvokeFunction(function_id="f", data=None))) == {
        "type": "invokefunction", "function_id": "f", "data": None}
    again = p.decode('{"type":"registerfunction","id":"x","description":null}')
    assert json.loads(p.encode(again)) == {"type": "registerfunction", "id": "x",
                                           "description": None}


def test_type_tag_is_always_encoded() -> None:
    assert json.loads(p.encode(p.Ping())) == {"type": "ping"}
    action = p.InvokeFunction(function_id="f", action=p.VoidAction())
    assert json.loads(p.encode(action))["action"] == {"type": "void"}
    enq = p.InvokeFunction(function_id="f", action=p.EnqueueAction(queue="q"))
    assert json.loads(p.encode(enq))["action"] == {"type": "enqueue", "queue": "q"}


def test_unknown_type_is_kept_not_raised() -> None:
    frame = p.decode('{"type":"brandnew","x":[1,2]}')
    assert isinstance(frame, p.UnknownFrame)
    assert frame.type == "brandnew"
    assert json.loads(p.encode(frame)) == {"type": "brandnew", "x": [1, 2]}


def test_unknown_fields_are_kept() -> None:
    frame = p.decode('{"type":"invokefunction","function_id":"f","data":1,"observe_depth":2}')
    assert isinstance(frame, p.InvokeFunction)
    assert json.loads(p.encode(frame))["observe_depth"] == 2


def test_sdk_omissions_read_as_none() -> None:
    call = p.decode('{"type":"invokefunction","function_id":"f","invocation_id":"i"}')
    assert isinstance(call, p.InvokeFunction) and call.data is None
    trig = p.decode('{"type":"registertrigger","id":"t","trigger_type":"x","function_id":"f"}')
    assert isinstance(trig, p.RegisterTrigger) and trig.config is None


@pytest.mark.parametrize("text", ["not json", "[1]", "{}", '{"type":3}',
                                  '{"type":"invokefunction"}',
                                  '{"type":"invocationresult","function_id":"f"}'])
def test_invalid_frames_raise_frame_error(text: str) -> None:
    with pytest.raises(p.FrameError):
        p.decode(text)


def test_binary_messages_decode() -> None:
    assert isinstance(p.decode(b'{"type":"pong"}'), p.Pong)


def test_malformed_error_bodies_are_coerced_like_the_official_sdk() -> None:
    r = p.decode('{"type":"invocationresult","invocation_id":"i","function_id":"f","error":"x"}')
    assert isinstance(r, p.InvocationResult) and r.error is not None
    assert (r.error.code, r.error.message) == ("UNKNOWN", "x")
    r = p.decode('{"type":"invocationresult","invocation_id":"i","function_id":"f",'
                 '"error":{"code":5}}')
    assert isinstance(r, p.InvocationResult) and r.error is not None
    assert (r.error.code, r.error.message) == ("UNKNOWN", "<no message>")


def test_non_ascii_is_written_as_is() -> None:
    text = p.encode(p.InvokeFunction(function_id="f", data={"name": "Zoë"}))
    assert "Zoë" in text
