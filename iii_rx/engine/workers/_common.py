"""What the built-in workers share: input checks, condition functions, binding tables.

Every built-in function takes a JSON object; a missing or mistyped field fails the call with
``deserialization_error`` (``Failed to deserialize input for {id}: ...``), as the engine's
own ``engine::*`` functions and the Rust engine's workers do. Trigger configs are checked when
a binding arrives: a bad one is refused (:class:`~iii_rx.engine.triggers.BindingRefused`) and
the registering worker is told, never accepted silently.

:class:`Fanout` fires one event at a set of bindings, each in its binding's namespace with its
metadata, honouring an optional ``condition_function_id`` (the handler is skipped when the
condition function answers exactly ``false``; an error of the condition skips it too and is
logged), as the Rust engine's workers do.
"""

from __future__ import annotations

import logging
from typing import Any

from iii_rx.aio import TaskSet
from iii_rx.engine.logsafe import printable
from iii_rx.engine.services import NO_TRACE, EngineServices, Trace
from iii_rx.engine.triggers import Binding, BindingRefused
from iii_rx.engine.wire import json_kind
from iii_rx.errors import IIIInvocationError

__all__ = [
    "DESERIALIZATION_ERROR",
    "MISSING",
    "Fanout",
    "bad_input",
    "config_object",
    "config_str",
    "count_or",
    "json_kind",
    "optional_count",
    "optional_str",
    "require_object",
    "require_str",
]

log = logging.getLogger("iii_rx.engine.workers")

DESERIALIZATION_ERROR = "deserialization_error"


class _Missing:
    """The type of :data:`MISSING`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()
"""An absent key, told apart from a stored JSON ``null`` (a set over ``null`` is an update)."""


def bad_input(function_id: str, message: str) -> IIIInvocationError:
    """The ``deserialization_error`` of a built-in function's malformed input."""
    return IIIInvocationError(DESERIALIZATION_ERROR,
                              f"Failed to deserialize input for {function_id}: {message}")


def require_object(function_id: str, data: Any) -> dict[str, Any]:
    """``data`` if it is a JSON object, else a ``deserialization_error``."""
    if not isinstance(data, dict):
        raise bad_input(function_id, f"expected an object, got {json_kind(data)}")
    return data


def require_str(function_id: str, data: dict[str, Any], field: str) -> str:
    """The string field ``field`` of ``data`` (present and a string)."""
    value = data.get(field)
    if value is None:
        raise bad_input(function_id, f"missing field `{field}`")
    if not isinstance(value, str):
        raise bad_input(function_id, f"field `{field}` must be a string, got {json_kind(value)}")
    return value


def optional_count(function_id: str, data: dict[str, Any], field: str) -> int | None:
    """The non-negative integer field ``field`` of ``data``, ``None`` when absent or null; at
    most ``2**64 - 1``, as the Rust engine's unsigned fields (what it refuses, we do)."""
    value = data.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
        raise bad_input(function_id, f"field `{field}` must be a non-negative integer below "
                                     f"2^64")
    return value


def count_or(function_id: str, data: dict[str, Any], field: str, default: int) -> int:
    """:func:`optional_count`, ``default`` when absent or null (an offset, a limit)."""
    value = optional_count(function_id, data, field)
    return default if value is None else value


def optional_str(function_id: str, data: dict[str, Any], field: str) -> str | None:
    """The string field ``field`` of ``data``, ``None`` when absent or null."""
    value = data.get(field)
    if value is None or isinstance(value, str):
        return value
    raise bad_input(function_id, f"field `{field}` must be a string, got {json_kind(value)}")


def config_object(trigger_type: str, config: Any) -> dict[str, Any]:
    """A binding's config as an object (``null`` reads as ``{}``); else the binding is refused."""
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise BindingRefused(f"Failed to parse {trigger_type} trigger config: expected an "
                             f"object, got {json_kind(config)}")
    return config


def config_str(trigger_type: str, config: dict[str, Any], field: str) -> str | None:
    """An optional string field of a binding's config; a non-string refuses the binding."""
    value = config.get(field)
    if value is None or isinstance(value, str):
        return value
    raise BindingRefused(f"Failed to parse {trigger_type} trigger config: `{field}` must be a "
                         f"string, got {json_kind(value)}")


class Fanout:
    """Fires events at bindings for one built-in worker (on the engine's loop).

    A binding without a condition is fired at once (``services.fire``: the invocation frame
    goes out in firing order). One with a ``condition_function_id`` is fired from a task that
    first awaits the condition; those tasks belong to the worker and end with it.
    """

    def __init__(self, services: EngineServices, owner: str) -> None:
        self.services = services
        self.tasks = TaskSet(owner)
        self._failures = services.limited_log(log)

    def fire(self, binding: Binding, payload: Any, condition: str | None = None,
             trace: Trace = NO_TRACE) -> None:
        """Invoke ``binding``'s function with ``payload`` (after ``condition``, if any), in
        ``trace`` (the ``traceparent``/``baggage`` of the call that made the event)."""
        if condition is None:
            self.services.fire(binding.function_id, payload, namespace=binding.namespace,
                               metadata=binding.metadata, traceparent=trace[0],
                               baggage=trace[1])
        else:
            self.tasks.spawn(self._conditional(binding, payload, condition, trace))

    async def passes(self, condition: str, namespace: str, payload: Any,
                     trace: Trace = NO_TRACE) -> bool:
        """Whether ``condition`` lets an event through: anything but ``false`` does; an
        error does not (it is logged)."""
        try:
            answer = await self.services.call(condition, payload, namespace=namespace,
                                              traceparent=trace[0], baggage=trace[1])
        except IIIInvocationError as exc:
            self._failures.log(logging.WARNING, "condition", "condition function %s failed: "
                               "%s", printable(condition), printable(exc))
            return False
        return answer is not False

    async def _conditional(self, binding: Binding, payload: Any, condition: str,
                           trace: Trace) -> None:
        if await self.passes(condition, binding.namespace, payload, trace):
            self.services.fire(binding.function_id, payload, namespace=binding.namespace,
                               metadata=binding.metadata, traceparent=trace[0],
                               baggage=trace[1])

    async def aclose(self) -> None:
        """Cancel the condition checks still running."""
        await self.tasks.aclose()

