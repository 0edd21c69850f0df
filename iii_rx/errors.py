"""Typed errors of iii_rx: every error a user can meet derives from :class:`IIIError`.

The whole tree::

    IIIError
    ├── IIIInvocationError            a call failed; branch on ``code`` (the wire's, authoritative)
    │   ├── IIIForbiddenError         code ``FORBIDDEN``: the engine refused the call
    │   └── IIITimeoutError           code ``TIMEOUT``: the client's own timer (also TimeoutError)
    ├── IIIConnectionError            cannot reach the engine, or closed while a call was in flight
    │                                 (also ConnectionError)
    ├── IIIRegistrationRejectedError  the engine refused this worker or one of its registrations
    ├── PayloadTooLargeError          a message above 64 MiB (also ValueError)
    ├── StreamOverflowError           an async iterator fell more than its buffer behind
    ├── EmptySingleError              a piped Single completed without a value (also LookupError)
    ├── LoopDeadlockError             a blocking call made on the client's own loop thread
    │                                 (also RuntimeError)
    └── ChannelError                  a channel failed
        ├── ChannelClosedError        the channel ended abnormally (also ConnectionError)
        │   └── ChannelCloseUnconfirmedError  a writer's close() not confirmed in time: the
        │                             data may still arrive (don't resend)
        ├── TruncatedStreamError      a CBOR sequence / JSON lines stream cut inside an item
        ├── CborDecodeError           bytes that are not CBOR where CBOR was expected
        │                             (also ValueError)
        ├── JsonLinesDecodeError      a JSON Lines line that is not JSON (also ValueError)
        └── NoResponseChannelError    ApiRequest.stream() on a request with no live response
                                      writer (also RuntimeError)

``iii_rx.compat`` adds the official SDK's ``HandlerExit`` (a handler's ``SystemExit`` carried as
a failure of its call, which the caller sees as an :class:`IIIInvocationError`) and
``NotSupportedError`` under :class:`IIIError`; they are compat's names, not exported by ``iii_rx``.

``str(err)`` of an :class:`IIIInvocationError` is ``"{code}: {message}"`` as in the official SDK.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CborDecodeError",
    "ChannelClosedError",
    "ChannelCloseUnconfirmedError",
    "ChannelError",
    "EmptySingleError",
    "IIIConnectionError",
    "IIIError",
    "IIIForbiddenError",
    "IIIInvocationError",
    "IIIRegistrationRejectedError",
    "IIITimeoutError",
    "JsonLinesDecodeError",
    "LoopDeadlockError",
    "NoResponseChannelError",
    "PayloadTooLargeError",
    "StreamOverflowError",
    "TruncatedStreamError",
    "error_from_body",
]


class IIIError(Exception):
    """Base of every iii_rx error."""


class IIIInvocationError(IIIError):
    """A call failed: the handler raised, the function is missing, the worker went away, ..."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        function_id: str | None = None,
        stacktrace: str | None = None,
        invocation_id: str | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.function_id = function_id
        self.stacktrace = stacktrace
        self.invocation_id = invocation_id

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild,
            (type(self), self.code, self.message, self.function_id, self.stacktrace,
             self.invocation_id),
        )


def _rebuild(
    cls: type[IIIInvocationError],
    code: str,
    message: str,
    function_id: str | None,
    stacktrace: str | None,
    invocation_id: str | None,
) -> IIIInvocationError:
    return cls(code, message, function_id=function_id, stacktrace=stacktrace,
               invocation_id=invocation_id)


class IIIForbiddenError(IIIInvocationError):
    """The engine refused the call (code ``FORBIDDEN``)."""


class IIITimeoutError(IIIInvocationError, TimeoutError):
    """No answer within the call's timeout (code ``TIMEOUT``, a client-side timer)."""


class IIIConnectionError(IIIError, ConnectionError):
    """The client could not reach the engine, or was closed while a call was in flight."""


class IIIRegistrationRejectedError(IIIError):
    """The engine refused this worker (fatal) or one of its registrations."""

    def __init__(
        self,
        code: str,
        namespace: str | None = None,
        worker_name: str | None = None,
        owner_worker_id: str | None = None,
        function_id: str | None = None,
    ) -> None:
        what = worker_name or function_id or "registration"
        super().__init__(f"{code}: {what!r} in namespace {namespace!r} is owned by "
                         f"worker {owner_worker_id!r}")
        self.code = code
        self.namespace = namespace
        self.worker_name = worker_name
        self.owner_worker_id = owner_worker_id
        self.function_id = function_id


class PayloadTooLargeError(IIIError, ValueError):
    """A message above 64 MiB: the engine would refuse it (see ``docs/protocol.md``)."""


class StreamOverflowError(IIIError, RuntimeError):
    """An async iterator over a stream fell more than its buffer behind (policy ``error``)."""


class EmptySingleError(IIIError, LookupError):
    """A piped Single completed without emitting a value."""


class LoopDeadlockError(IIIError, RuntimeError):
    """A blocking call was made on the event-loop thread it would have to wait for."""


class ChannelError(IIIError):
    """Base of every channel failure."""


class ChannelClosedError(ChannelError, ConnectionError):
    """The channel ended abnormally: the peer or the engine went away, or the side was taken.

    ``code`` and ``reason`` are the websocket close code and reason when one was received
    (``None`` when the connection dropped without a close frame).
    """

    def __init__(self, message: str, *, code: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class ChannelCloseUnconfirmedError(ChannelClosedError):
    """A writer's ``close()`` got no confirmation of the end from the engine in time.

    Not a loss: the engine had not yet read what was written (its buffer toward the reader is
    full, typically because the reader is not reading yet) or the link stalled. The data and
    the end may still reach the reader, so resending may duplicate them; a plain
    :class:`ChannelClosedError` from ``close()`` means the link failed or the engine refused.
    """


class TruncatedStreamError(ChannelError, ValueError):
    """A structured stream (CBOR sequence, JSON lines) ended in the middle of an item."""


class CborDecodeError(ChannelError, ValueError):
    """Bytes that are not a valid CBOR item arrived where a CBOR sequence was expected."""


class JsonLinesDecodeError(ChannelError, ValueError):
    """A complete line of a JSON Lines stream that is not valid JSON (the twin of
    :class:`CborDecodeError`)."""


class NoResponseChannelError(ChannelError, RuntimeError):
    """:meth:`ApiRequest.stream <iii_rx.http.ApiRequest.stream>` on a request that holds no
    live response writer (one built by hand, or whose ``response`` is still a ref)."""


def error_from_body(
    code: str,
    message: str,
    *,
    function_id: str | None = None,
    stacktrace: str | None = None,
    invocation_id: str | None = None,
) -> IIIInvocationError:
    """The most specific error class for a wire error ``code``."""
    cls: type[IIIInvocationError] = IIIInvocationError
    if code == "FORBIDDEN":
        cls = IIIForbiddenError
    elif code == "TIMEOUT":
        cls = IIITimeoutError
    return cls(code, message, function_id=function_id, stacktrace=stacktrace,
               invocation_id=invocation_id)
