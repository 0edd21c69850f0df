"""How a handler wants to be called: with the metadata or not (and how), sync or async.

Read once per ``register_function`` from the handler's signature, so that every call of it
passes what it takes (:class:`iii_rx.worker.HandlerSink`), and a handler no call could be given
to fails at registration rather than at every call.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["METADATA_KEYWORD", "METADATA_POSITIONAL", "NO_METADATA", "check_takes_data",
           "is_async", "metadata_mode"]

NO_METADATA, METADATA_POSITIONAL, METADATA_KEYWORD = 0, 1, 2


def metadata_mode(handler: Callable[..., Any]) -> int:
    """How to pass ``metadata``: not at all, as the second positional, or by keyword.

    It is passed when the handler names a ``metadata`` parameter or takes a second required
    positional one.
    """
    try:
        params = list(inspect.signature(handler).parameters.values())
    except (TypeError, ValueError):
        return NO_METADATA
    for p in params:
        if p.name == "metadata" and p.kind is not p.VAR_KEYWORD:
            return METADATA_KEYWORD if p.kind is p.KEYWORD_ONLY else METADATA_POSITIONAL
    positional = [p for p in params
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) >= 2 and positional[1].default is inspect.Parameter.empty:
        return METADATA_POSITIONAL
    return NO_METADATA


def check_takes_data(handler: Callable[..., Any], metadata_mode: int) -> None:
    """``TypeError`` now for a handler no call could be given to (no parameter for the data,
    or more required ones than data and metadata), rather than failing every call."""
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError):  # some builtins: nothing to check
        return
    try:
        if metadata_mode == METADATA_KEYWORD:
            signature.bind(None, metadata=None)
        else:
            signature.bind(*(None,) * (1 if metadata_mode == NO_METADATA else 2))
    except TypeError as exc:
        raise TypeError(f"handler {getattr(handler, '__qualname__', handler)!r} cannot be "
                        f"called with a call's data ({exc}): it takes the data, and "
                        f"optionally the metadata") from None


def is_async(handler: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(handler):
        return True
    call = getattr(handler, "__call__", None)  # noqa: B004 (callable objects)
    return call is not None and inspect.iscoroutinefunction(call)
