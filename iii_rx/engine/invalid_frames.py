"""Answers to frames that fail validation, for whoever waits on them (docs/guarantees.md,
"Invalid calls"): the frame is read again as plain JSON for its ids, so a caller is told at
once instead of at its timeout."""

from __future__ import annotations

import json
from typing import Any

from iii_rx.engine.connection import WorkerConnection
from iii_rx.engine.router import Router
from iii_rx.engine.wire import error_body, result_text
from iii_rx.protocol import ErrorBody, FrameError, InvocationResult

__all__ = ["answer_invalid_frame"]


def _number(text: str) -> int | float:
    """An integer of a frame re-read for its ids: one past Python's 4300-digit limit (the
    reason the frame could not be read) as a float, not an error."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def _text(value: Any) -> str | None:
    """``value`` if it is a string an answer can carry, else ``None``. The frame's JSON is
    re-read with :func:`json.loads`, which takes a lone surrogate escape (``"\\ud800"``, the
    reason the decoder refused the frame) into a string no UTF-8 frame can be written with;
    no call of the engine has such an id."""
    if not isinstance(value, str):
        return None
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            return None
    return value


def answer_invalid_frame(conn: WorkerConnection, message: str | bytes, exc: FrameError,
                          router: Router) -> None:
    """Answer whoever waits on a frame that failed validation: an invalid ``invokefunction``
    with an id gets ``deserialization_error``; an invalid ``invocationresult`` of a call this
    worker holds (say, nested deeper than the decoder goes) ends that call with
    ``invalid_result``, so its caller is told at once instead of at its timeout."""
    try:
        raw = json.loads(message, parse_int=_number)
    except (ValueError, RecursionError):
        return
    if not isinstance(raw, dict):
        return
    invocation_id = _text(raw.get("invocation_id"))
    function_id = _text(raw.get("function_id")) or ""
    if invocation_id is None:
        return
    if raw.get("type") == "invocationresult":
        router.result(conn, InvocationResult(
            invocation_id=invocation_id, function_id=function_id, error=ErrorBody(
                code="invalid_result",
                message=f"the worker's invocationresult could not be read: {exc}")), b"")
        return
    action = raw.get("action")
    if raw.get("type") != "invokefunction" or (
            isinstance(action, dict) and action.get("type") == "void"):
        return
    conn.send(result_text(
        invocation_id, function_id,
        error=error_body("deserialization_error", f"invalid invokefunction frame: {exc}")))
