"""Who is running: the :class:`Context`, the :class:`Invocation` being answered, and a ``Logger``.

The context travels in a :class:`contextvars.ContextVar`, so it follows a handler into the tasks
it starts, into the pool thread of a sync handler, and into the ``trigger`` calls it makes
(which forward its ``traceparent``/``baggage``). An invocation *is* the context of its handler,
which is why both live here: ``current_invocation()`` needs the class, and the class needs the
context (one module, no import cycle).

An :class:`Invocation` is answered exactly once, by :meth:`~Invocation.reply` or
:meth:`~Invocation.fail`, from any thread; later answers are ignored. **Nothing is lost
silently:** an invocation that is garbage-collected without an answer (every subscriber let go
of it) is failed with ``invocation_failed`` and a message saying so.
"""

from __future__ import annotations

import logging
import traceback
from contextvars import ContextVar
from typing import Any, Protocol

from iii_rx.logsafe import RateLimitedLog, printable
from iii_rx.protocol import ErrorBody
from iii_rx.telemetry.ids import (
    OTEL_LOGS,
    format_traceparent,
    new_span_id,
    new_trace_id,
    otel_trace_headers,
    parse_traceparent,
)

__all__ = [
    "Context",
    "Invocation",
    "Logger",
    "ReplySink",
    "current_invocation",
    "current_context",
    "error_body_of",
    "get_context",
]

current_context: ContextVar[Context | None] = ContextVar("iii_rx_context", default=None)
"""The context of the running handler (``None`` outside handlers); the worker sets it."""
_log = logging.getLogger("iii_rx.logger")
log = logging.getLogger("iii_rx.invocation")
_void_failures = RateLimitedLog(log)  # nobody gets these errors: an engine may send any number


class Context:
    """Who is running: function and invocation ids, metadata, trace ids, and a logger.

    ``trace_id`` continues the caller's trace (a new one starts when the frame carried none);
    ``span_id`` identifies this invocation's own span and is the parent of nested calls. Both
    are lower-case hex. Outside a handler every id is ``None`` unless an OpenTelemetry span is
    active.
    """

    __slots__ = (
        "_logger",
        "_parent",
        "_span_id",
        "_trace_id",
        "baggage",
        "function_id",
        "invocation_id",
        "metadata",
        "trace",
        "traceparent",
    )

    def __init__(
        self,
        function_id: str | None = None,
        invocation_id: str | None = None,
        metadata: Any = None,
        traceparent: str | None = None,
        baggage: str | None = None,
    ) -> None:
        self.function_id = function_id
        self.invocation_id = invocation_id
        self.metadata = metadata
        self.traceparent = traceparent
        self.baggage = baggage
        self._parent: tuple[str, str, str] | bool | None = False
        self._trace_id: str | None = None
        self._span_id: str | None = None
        self._logger: Logger | None = None
        self.trace: Any = None
        """The invocation's OpenTelemetry span (a ``ServerSpan``) when its client traces."""

    def _parsed(self) -> tuple[str, str, str] | None:
        parent = self._parent
        if parent is False:
            parent = self._parent = parse_traceparent(self.traceparent)
        return parent  # type: ignore[return-value]

    @property
    def is_invocation(self) -> bool:
        """Whether this is the context of a handler (not the empty one outside handlers)."""
        return self.function_id is not None

    @property
    def trace_id(self) -> str | None:
        """The trace this context belongs to (hex), continued from the caller if it sent one."""
        if self._trace_id is None:
            if self.trace is not None:
                return f"{self.trace.span.get_span_context().trace_id:032x}"
            parent = self._parsed()
            if parent is not None:
                self._trace_id = parent[0]
            elif self.is_invocation:
                self._trace_id = new_trace_id()
            else:
                self._trace_id = _otel_ids()[0]
        return self._trace_id

    @property
    def span_id(self) -> str | None:
        """This invocation's own span (hex): the parent of the calls it makes."""
        if self._span_id is None:
            if self.trace is not None:
                return f"{self.trace.span.get_span_context().span_id:016x}"
            self._span_id = new_span_id() if self.is_invocation else _otel_ids()[1]
        return self._span_id

    @property
    def parent_span_id(self) -> str | None:
        """The caller's span, if the invocation carried a ``traceparent``."""
        parent = self._parsed()
        return parent[1] if parent else None

    @property
    def logger(self) -> Logger:
        """A :class:`Logger` whose records carry this context's ids."""
        if self._logger is None:
            self._logger = Logger(context=self)
        return self._logger

    def outgoing_trace(self) -> tuple[str | None, str | None]:
        """``(traceparent, baggage)`` for a call made from inside this context."""
        if not self.is_invocation:
            return otel_trace_headers()
        if self.trace is not None:
            return self.trace.traceparent(), self.baggage
        trace_id, span_id = self.trace_id, self.span_id
        assert trace_id is not None and span_id is not None
        parent = self._parsed()
        return format_traceparent(trace_id, span_id, parent[2] if parent else "01"), self.baggage

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(function_id={self.function_id!r}, "
                f"invocation_id={self.invocation_id!r})")


def _otel_ids() -> tuple[str | None, str | None]:
    parsed = parse_traceparent(otel_trace_headers()[0])
    return (parsed[0], parsed[1]) if parsed else (None, None)


def get_context() -> Context:
    """The context of the running invocation, or an empty one outside handlers."""
    ctx = current_context.get()
    return ctx if ctx is not None else Context()


def current_invocation() -> Invocation | None:
    """The :class:`Invocation` being handled here, or ``None``."""
    ctx = current_context.get()
    return ctx if isinstance(ctx, Invocation) else None


class Logger:
    """Structured logs tied to an invocation.

    Records go to the standard :mod:`logging` logger ``iii_rx.logger`` with the attributes
    ``function_id``, ``invocation_id``, ``trace_id``, ``span_id``, ``service_name`` and ``data``
    (the optional structured payload), so any formatter or handler can pick them up. A logger
    made without a context follows whatever invocation is current when it logs.
    """

    def __init__(
        self,
        trace_id: str | None = None,
        service_name: str | None = None,
        span_id: str | None = None,
        *,
        context: Context | None = None,
    ) -> None:
        self._trace_id = trace_id
        self._span_id = span_id
        self.service_name = service_name
        self._context = context

    def _emit(self, level: int, message: str, data: Any) -> None:
        otel = OTEL_LOGS[0]
        if not otel and not _log.isEnabledFor(level):
            return
        ctx = self._context if self._context is not None else get_context()
        extra = {
            "function_id": ctx.function_id,
            "invocation_id": ctx.invocation_id,
            "trace_id": self._trace_id or ctx.trace_id,
            "span_id": self._span_id or ctx.span_id,
            "service_name": self.service_name,
            "data": data,
        }
        _log.log(level, message, extra=extra, stacklevel=3)
        if otel:
            from iii_rx.telemetry import logs

            trace_id, span_id = extra.pop("trace_id"), extra.pop("span_id")
            extra["log.data"] = extra.pop("data")
            logs.emit(level, message, extra, trace_id, span_id)

    def debug(self, message: str, data: Any = None) -> None:
        """Log at DEBUG with this context's ids."""
        self._emit(logging.DEBUG, message, data)

    def info(self, message: str, data: Any = None) -> None:
        """Log at INFO with this context's ids."""
        self._emit(logging.INFO, message, data)

    def warn(self, message: str, data: Any = None) -> None:
        """Log at WARNING with this context's ids (also ``warning``)."""
        self._emit(logging.WARNING, message, data)

    warning = warn

    def error(self, message: str, data: Any = None) -> None:
        """Log at ERROR with this context's ids."""
        self._emit(logging.ERROR, message, data)


class ReplySink(Protocol):
    """Where answers go (the client): encodes and sends an ``invocationresult``."""

    def send_reply(self, invocation: Invocation, result: Any, error: ErrorBody | None) -> None:
        """Encode and send the ``invocationresult`` of ``invocation`` (any thread)."""

    def abandoned(self, invocation: Invocation) -> None:
        """``invocation`` was given up unanswered, holding channel ends (any thread)."""


def error_body_of(
    error: BaseException | str, code: str = "invocation_failed", stacktrace: str | None = None
) -> ErrorBody:
    """The wire error of an exception (message ``str(exc)``, formatted traceback) or a text.
    Never raises: the caller is answered even when the exception cannot be written."""
    if isinstance(error, BaseException):
        message = _message_of(error)
        if stacktrace is None:
            stacktrace = "".join(traceback.format_exception(type(error), error,
                                                            error.__traceback__))
        return ErrorBody(code=code, message=message, stacktrace=stacktrace)
    if stacktrace is None:
        return ErrorBody(code=code, message=str(error))
    return ErrorBody(code=code, message=str(error), stacktrace=stacktrace)


def _message_of(error: BaseException) -> str:
    """``str(error)``, or what can be said of it when its ``__str__`` raises."""
    try:
        return str(error)
    except Exception as failure:
        return (f"{type(error).__qualname__} (its message could not be written: "
                f"{type(failure).__qualname__})")


class Invocation(Context):
    """One call of one of this worker's functions; also its :class:`Context`.

    ``data`` is the payload (channel refs already made live), ``metadata`` the per-call sidecar,
    ``action`` the caller's action when known (the engine does not forward it), and
    ``traceparent``/``baggage`` the caller's trace context. ``invocation_id`` is ``None`` for
    a void call the engine delivered without an id: then nobody waits and answers go nowhere.
    """

    __slots__ = ("_sink", "_token", "action", "data", "ends", "link")

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
        self.ends: tuple[Any, ...] = ()
        """The channel ends made from refs in ``data`` (a failed handler's are ended)."""
        self.link = 0
        """Which of the worker's connections delivered it (see ``Worker.link_lost``)."""
        self._sink = sink
        # A one-item list: ``pop()`` is atomic, so exactly one answer wins across threads.
        self._token: list[bool] = [True]

    @property
    def answered(self) -> bool:
        """Whether an answer was given (or the invocation was abandoned)."""
        return not self._token

    def _claim(self) -> bool:
        try:
            self._token.pop()
        except IndexError:
            return False
        return True

    def abandon(self) -> bool:
        """Give the invocation up without answering (``False`` if it was answered already).

        The worker does this when it closes with invocations still waiting or running: the
        engine then tells their callers ``invocation_stopped``, so nothing is sent from here
        and the garbage-collection safety net must not answer either. The channel ends it
        received are ended by the closing worker (their peers would wait for ever).
        """
        if not self._claim():
            return False
        if self.trace is not None:
            self.trace.end(..., None)
        if self.ends and self._sink is not None:
            self._sink.abandoned(self)
        return True

    def reply(self, value: Any = None) -> bool:
        """Answer with ``value``; ``False`` if the invocation was already answered."""
        if not self._claim():
            return False
        if self.trace is not None:
            self.trace.end(value, None)
        if self._sink is not None and self.invocation_id is not None:
            self._sink.send_reply(self, value, None)
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
        if self.trace is not None:
            self.trace.end(None, error)
        if self._sink is not None and self.invocation_id is not None:
            self._sink.send_reply(self, None, error_body_of(error, code, stacktrace))
        elif self.invocation_id is None:
            _void_failures.log(logging.WARNING, "void", "void invocation of %s failed: %s",
                               printable(repr(self.function_id)), printable(error, 500))
        return True

    def __del__(self) -> None:
        try:
            if self._token and self._sink is not None and self.invocation_id is not None:
                self._token.clear()
                self._sink.send_reply(self, None, ErrorBody(
                    code="invocation_failed",
                    message=(f"invocation of {self.function_id!r} was dropped by every "
                             "subscriber without a reply")))
        except Exception:  # interpreter shutdown, closed loop: nothing left to tell
            pass

    def __repr__(self) -> str:
        return (f"Invocation(function_id={self.function_id!r}, "
                f"invocation_id={self.invocation_id!r}, data={self.data!r})")
