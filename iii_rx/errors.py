"""Typed errors of iii_rx.

Every failure that comes back from the engine or a handler is an :class:`IIIInvocationError`
carrying the wire ``code`` (authoritative: branch on it), ``message``, ``function_id``,
``stacktrace`` and ``invocation_id``. Two codes get subclasses so they can be caught by type:
``FORBIDDEN`` (:class:`IIIForbiddenError`) and ``TIMEOUT`` (:class:`IIITimeoutError`, raised by
the client's own timer). ``str(err)`` is ``"{code}: {message}"`` as in the official SDK.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "IIIConnectionError",
    "IIIError",
    "IIIForbiddenError",
    "IIIInvocationError",
    "IIIRegistrationRejectedError",
    "IIITimeoutError",
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
