"""An invocation this worker received, and the call actions (``TriggerAction``).

An :class:`Invocation` is answered exactly once, by :meth:`~Invocation.reply` or
:meth:`~Invocation.fail`, from any thread; later answers are ignored. **Nothing is lost
silently:** an invocation that is garbage-collected without an answer (every subscriber let go
of it) is failed with ``invocation_failed`` and a message saying so, and an invocation that
arrives for a function nobody subscribes to any more is answered ``function_not_found``.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any, Protocol

from iii_rx.context import Context
from iii_rx.protocol import EnqueueAction, ErrorBody, VoidAction

__all__ = ["Invocation", "ReplySink", "TriggerAction", "error_body_of"]

log = logging.getLogger("iii_rx.invocation")


class ReplySink(Protocol):
    """Where answers go (the client): encodes and sends an ``invocationresult``."""

    def _send_reply(self, invocation: Invocation, result: Any, error: ErrorBody | None) -> None: ...


def error_body_of(
    error: BaseException | str, code: str = "invocation_failed", stacktrace: str | None = None
) -> ErrorBody:
    """The wire error of an exception (message ``str(exc)``, formatted traceback) or a text."""
    if isinstance(error, BaseException):
        message = str(error)
        if stacktrace is None:
            stacktrace = "".join(traceback.format_exception(type(error), error,
                                                            error.__traceback__))
        return ErrorBody(code=code, message=message, stacktrace=stacktrace)
    if stacktrace is None:
        return ErrorBody(code=code, message=str(error))
    return ErrorBody(code=code, message=str(error), stacktrace=stacktrace)


class Invocation(Context):
    """One call of one of this worker's functions; also its :class:`~iii_rx.context.Context`.

    ``data`` is the payload (channel refs already made live), ``metadata`` the per-call sidecar,
    ``action`` the caller's action when known (the engine does not forward it), and
    ``traceparent``/``baggage`` the caller's trace context. ``invocation_id`` is ``None`` for
    a void call the engine delivered without an id: then nobody waits and answers go nowhere.
    """

    __slots__ = ("_sink", "_token", "action", "data")

    def __init__(
        self,
        sink: ReplySink | None,
        function_id: str,
        invocation_id: str | None,
        data: Any,
        metadata: Any = None,
        traceparent: str | None = None,
        baggage: str | None = None,
        action: Any = None,
    ) -> None:
        Context.__init__(self, function_id, invocation_id, metadata, traceparent, baggage)
        self.data = data
        self.action = action
        self._sink = sink
        # A one-item list: ``pop()`` is atomic, so exactly one answer wins across threads.
        self._token: list[bool] = [True]

    @property
    def answered(self) -> bool:
        return not self._token

    def _claim(self) -> bool:
        try:
            self._token.pop()
        except IndexError:
            return False
        return True

    def reply(self, value: Any = None) -> bool:
        """Answer with ``value``; ``False`` if the invocation was already answered."""
        if not self._claim():
            return False
        if self._sink is not None and self.invocation_id is not None:
            self._sink._send_reply(self, value, None)
        return True

    def fail(
        self,
        error: BaseException | str,
        *,
        code: str = "invocation_failed",
        stacktrace: str | None = None,
    ) -> bool:
        """Answer with an error (``code``, ``str(error)``, the exception's traceback)."""
        if not self._claim():
            return False
        if self._sink is not None and self.invocation_id is not None:
            self._sink._send_reply(self, None, error_body_of(error, code, stacktrace))
        elif self.invocation_id is None:
            log.warning("void invocation of %r failed: %s", self.function_id, error)
        return True

    def __del__(self) -> None:
        try:
            if self._token and self._sink is not None and self.invocation_id is not None:
                self._token.clear()
                self._sink._send_reply(self, None, ErrorBody(
                    code="invocation_failed",
                    message=(f"invocation of {self.function_id!r} was dropped by every "
                             "subscriber without a reply")))
        except Exception:  # interpreter shutdown, closed loop: nothing left to tell
            pass

    def __repr__(self) -> str:
        return (f"Invocation(function_id={self.function_id!r}, "
                f"invocation_id={self.invocation_id!r}, data={self.data!r})")


class TriggerAction:
    """What the engine does with a call: ``void()`` (fire and forget) or ``enqueue(queue)``.

    Both spellings work: ``TriggerAction.void()`` / ``TriggerAction.Void()`` and
    ``TriggerAction.enqueue("q")`` / ``TriggerAction.Enqueue(queue="q")``. The values are the
    wire models, so they can be passed as ``action=`` directly; dicts work too.
    """

    @staticmethod
    def void() -> VoidAction:
        return VoidAction()

    @staticmethod
    def enqueue(queue: str) -> EnqueueAction:
        return EnqueueAction(queue=queue)

    Void = void

    @staticmethod
    def Enqueue(queue: str) -> EnqueueAction:
        return EnqueueAction(queue=queue)
