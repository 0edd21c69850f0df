"""The official SDK's error names, on iii_rx's one error tree (:mod:`iii_rx.errors`).

``InvocationError`` and ``RegistrationRejectedError`` *are* the reactive client's errors under
their official names, so ``except InvocationError`` catches every failed call, its typed
subclasses (``IIITimeoutError``, ``IIIForbiddenError``) included. compat's own errors derive
from :class:`~iii_rx.errors.IIIError` and from the built-in class the official SDK raises in
their place, so code catching either keeps working.

Wrong arguments (a blank function id, an unknown ``dispatch``) raise ``TypeError`` /
``ValueError`` as in the official SDK: they are bugs in the calling code, not failures to
handle.
"""

from __future__ import annotations

from iii_rx.errors import IIIError, IIIInvocationError, IIIRegistrationRejectedError

__all__ = ["HandlerExit", "InvocationError", "NotSupportedError", "RegistrationRejectedError"]

InvocationError = IIIInvocationError
"""The official SDK's name of :class:`~iii_rx.errors.IIIInvocationError`."""

RegistrationRejectedError = IIIRegistrationRejectedError
"""The official SDK's name of :class:`~iii_rx.errors.IIIRegistrationRejectedError`."""


class HandlerExit(IIIError):
    """A ``BaseException`` that is not an ``Exception`` (``SystemExit``, ...) raised by a handler,
    carried as an ordinary failure of that call; the original is its ``__cause__``."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.__cause__ = error


class NotSupportedError(IIIError, NotImplementedError):
    """A feature of the official SDK that iii_rx.compat does not provide (the observe family,
    see docs/migration.md)."""
