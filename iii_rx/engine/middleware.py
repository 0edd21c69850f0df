"""A listener's ``middleware_function_id``: calls from its workers go to the middleware.

The middleware receives ``MiddlewareFunctionInput``::

    {"function_id": ..., "payload": ..., "action": ... or null, "context": {...},
     "namespace": ...}

(``context`` is the session's ``AuthResult.context``, ``{}`` without RBAC) and decides whether
to call the target (usually with ``trigger``, as any worker would) and what to answer: its
result, or its error, is the caller's answer. It runs in the caller's namespace, with the
call's metadata and trace context. The engine's own ``engine::*`` functions are not sent to it
(they would otherwise run on the middleware worker's connection, outside the caller's
session); a worker-registered ``engine::*`` id is.
"""

from __future__ import annotations

from typing import Any

from iii_rx.engine.connection import WorkerConnection
from iii_rx.engine.registry import Registry
from iii_rx.engine.router import Router
from iii_rx.engine.wire import HotInvoke, error_body, result_text
from iii_rx.errors import IIIInvocationError
from iii_rx.protocol import InvokeFunction

__all__ = ["engine_owned", "middleware_input", "run_middleware"]


def engine_owned(registry: Registry, namespace: str, function_id: str) -> bool:
    """An ``engine::*`` function the engine itself provides (no worker owns it)."""
    if not function_id.startswith("engine::"):
        return False
    entry = registry.functions.get((namespace, function_id))
    return entry is None or entry.owner is None


def middleware_input(frame: InvokeFunction | HotInvoke, namespace: str,
                     context: Any) -> dict[str, Any]:
    """The documented ``MiddlewareFunctionInput`` of one call."""
    action = frame.action
    return {
        "function_id": frame.function_id,
        "payload": frame.data,
        "action": action.model_dump(mode="json", exclude_none=True) if action is not None
        else None,
        "context": context,
        "namespace": namespace,
    }


async def run_middleware(router: Router, conn: WorkerConnection,
                         frame: InvokeFunction | HotInvoke,
                         namespace: str, context: Any, middleware_id: str,
                         reply_id: str | None) -> None:
    """Call the middleware and answer the caller (when it waits) with its outcome."""
    result: Any = None
    error: dict[str, Any] | None = None
    try:
        result = await router.call(middleware_id, middleware_input(frame, namespace, context),
                                   namespace=namespace, metadata=frame.metadata,
                                   traceparent=frame.traceparent, baggage=frame.baggage)
    except IIIInvocationError as exc:
        error = error_body(exc.code, exc.message, exc.stacktrace)
    if reply_id is not None:
        conn.send(result_text(reply_id, frame.function_id, result, error))
