"""``iii_rx.protocol.decode``: any message gives a frame or ``FrameError``, nothing else.

And a decoded frame always re-encodes to text that decodes to the same frame (so the engine
and the client can relay what they accepted).
"""

from __future__ import annotations

import pytest
from fuzz_strategies import (
    any_json,
    deep_frames,
    dumps,
    frame_dicts,
    fuzz_settings,
    garbage_bytes,
    garbage_text,
    huge_frames,
    invalid_utf8,
    messages,
    nested_text,
    unknown_frames,
)
from fuzz_support import Msg
from fuzz_targets import check_decode
from hypothesis import given
from hypothesis import strategies as st

from iii_rx.protocol import FrameError, InvokeFunction, UnknownFrame, decode


@fuzz_settings(200)
@given(messages)
def test_any_message_decodes_or_raises_frame_error(message: Msg) -> None:
    check_decode([message])


@fuzz_settings(150)
@given(frame_dicts(), st.booleans())
def test_known_frame_types_with_wrong_fields(frame: dict, as_bytes: bool) -> None:
    text = dumps(frame)
    check_decode([Msg(text.encode() if as_bytes else text)])


@fuzz_settings(50)
@given(any_json)
def test_any_json_value(value: object) -> None:
    check_decode([Msg(dumps(value)), Msg(dumps(value).encode())])


@fuzz_settings(50)
@given(unknown_frames)
def test_unknown_types_are_frames_not_errors(frame: dict) -> None:
    message = dumps(frame)
    if isinstance(frame["type"], str):
        assert isinstance(decode(message), UnknownFrame)
    else:
        with pytest.raises(FrameError):
            decode(message)


@fuzz_settings(50)
@given(garbage_bytes, invalid_utf8, garbage_bytes)
def test_invalid_utf8_is_a_frame_error(head: bytes, bad: bytes, tail: bytes) -> None:
    with pytest.raises(FrameError):
        decode(head + bad + tail)


@fuzz_settings(50)
@given(garbage_text)
def test_garbage_text(value: str) -> None:
    check_decode([Msg(value)])


@fuzz_settings(24)
@given(st.one_of(deep_frames, huge_frames))
def test_deep_and_huge_frames(message: str) -> None:
    check_decode([Msg(message), Msg(message.encode())])


@pytest.mark.parametrize("kind", ["array", "object"])
def test_nesting_100000_levels_is_a_frame_error(kind: str) -> None:
    deep = nested_text(100_000, kind)
    with pytest.raises(FrameError):
        decode(deep)
    with pytest.raises(FrameError):
        decode('{"type":"invokefunction","function_id":"f","data":' + deep + "}")


def test_a_huge_string_is_kept_whole() -> None:
    data = "é" * 3_000_000
    frame = decode(dumps({"type": "invokefunction", "function_id": "f", "data": data}))
    assert isinstance(frame, InvokeFunction) and frame.data == data
