"""Handlers with the official SDK's calling convention, run by the reactive client.

Three rules differ from iii_rx's own and are applied here (docs/protocol.md §5.2-5.4):

* ``metadata`` is passed only to a handler that declares a parameter literally named
  ``metadata``: second positional (``h(data, metadata=None)``) or keyword-only
  (``h(data, *, metadata=None)``); every other handler is called ``h(data)``;
* ``current_invocation()`` returns an :class:`InvocationContext` in every handler (a void
  call without an id gets a local one, so the context is the same object all along);
* a ``SystemExit`` / ``KeyboardInterrupt`` from a handler fails that call
  (``"SystemExit: 3"``) instead of reaching the client's loop or pool thread.

Pydantic models anywhere in a payload or a result are sent by alias without ``None`` fields,
as the official SDK does.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Literal

from pydantic import BaseModel

from iii_rx import context as _rx_context
from iii_rx.compat._nested import map_leaves
from iii_rx.compat.channels import wrap_channel_ends
from iii_rx.compat.errors import HandlerExit
from iii_rx.compat.models import InvocationContext

__all__ = ["adapt_handler", "current_invocation", "to_wire_value"]

MetadataMode = Literal["positional", "keyword", "none"]

_current: ContextVar[InvocationContext | None] = ContextVar("iii_rx_compat_invocation",
                                                            default=None)


def current_invocation() -> InvocationContext | None:
    """The invocation the calling code runs in, or ``None`` outside every handler."""
    ctx = _current.get()
    if ctx is not None:
        return ctx
    invocation = _rx_context.current_invocation()  # a function registered with iii_rx itself
    if invocation is None or invocation.function_id is None:
        return None
    return InvocationContext(function_id=invocation.function_id,
                             invocation_id=invocation.invocation_id or str(uuid.uuid4()))


def metadata_mode(handler: Callable[..., Any]) -> MetadataMode:
    """How ``handler`` takes the per-call metadata, if at all (docs/protocol.md §5.2)."""
    try:
        params = inspect.signature(handler).parameters
    except (TypeError, ValueError):
        return "none"
    param = params.get("metadata")
    if param is None:
        return "none"
    if param.kind is inspect.Parameter.KEYWORD_ONLY:
        return "keyword"
    positional = [p for p in params.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) >= 2 and positional[1].name == "metadata":
        return "positional"
    return "none"


def is_async_handler(handler: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(handler):
        return True
    call = getattr(handler, "__call__", None)  # noqa: B004 (callable objects)
    return call is not None and inspect.iscoroutinefunction(call)


def to_wire_value(value: Any) -> Any:
    """``value`` with every pydantic model replaced by its JSON form (by alias, no ``None``),
    and tuples by lists.

    Returns ``value`` itself when it holds no model and no tuple, so plain payloads are not
    copied.
    """
    return map_leaves(value, _model_to_wire, tuples_to_lists=True)


def _model_to_wire(value: Any) -> Any:
    if isinstance(value, BaseModel):
        to_wire = getattr(value, "to_wire", None)  # iii_rx models that know their wire form
        if callable(to_wire):
            return to_wire()
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    return value


def _context_of_invocation() -> InvocationContext:
    invocation = _rx_context.current_invocation()
    if invocation is None or invocation.function_id is None:  # not reachable from the client
        return InvocationContext(function_id="", invocation_id=str(uuid.uuid4()))
    return InvocationContext(function_id=invocation.function_id,
                             invocation_id=invocation.invocation_id or str(uuid.uuid4()))


def adapt_handler(handler: Callable[..., Any],
                  loop: asyncio.AbstractEventLoop) -> Callable[[Any, Any], Any]:
    """A ``(data, metadata)`` handler for the reactive client (on ``loop``) that calls
    ``handler`` the official way. It stays sync or async like ``handler``: the client runs sync
    handlers in its thread pool and async ones as tasks on its loop. Channel ends in the payload
    are handed over as the conventional wrappers."""
    mode = metadata_mode(handler)

    def call(data: Any, metadata: Any) -> Any:
        data = wrap_channel_ends(data, loop)
        if mode == "positional":
            return handler(data, metadata)
        if mode == "keyword":
            return handler(data, metadata=metadata)
        return handler(data)

    if is_async_handler(handler):
        async def run_async(data: Any, metadata: Any) -> Any:
            token = _current.set(_context_of_invocation())
            try:
                result = await call(data, metadata)
            except Exception:
                raise
            except (asyncio.CancelledError, GeneratorExit):
                raise  # the client is closing: not a failure of the handler
            except BaseException as exc:
                raise HandlerExit(exc) from exc
            finally:
                _current.reset(token)
            return to_wire_value(result)

        return run_async

    def run_sync(data: Any, metadata: Any) -> Any:
        token = _current.set(_context_of_invocation())
        try:
            result = call(data, metadata)
        except Exception:
            raise
        except BaseException as exc:
            raise HandlerExit(exc) from exc
        finally:
            _current.reset(token)
        return to_wire_value(result)

    return run_sync
