"""The ``engine::*`` functions and trigger types the engine provides (docs/protocol.md §8, §6.6).

All live in namespace ``default`` and belong to the in-process worker ``iii-engine-functions``.
Their input must be a JSON object: anything else fails with ``deserialization_error``
(``Failed to deserialize input for {id}: ...``), as in the Rust engine. Quick ones run inline in
the caller's reader (so ``engine::workers::register`` is applied before the caller's next
frame); ``engine::register_trigger``, which may wait for a provider's answer, runs as a task.

:func:`install_builtins` gets the parts the functions read and the few operations they perform
(declaring a worker's metadata, creating a channel), never the engine itself.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from iii_rx.engine.available import FUNCTIONS_AVAILABLE, WORKERS_AVAILABLE
from iii_rx.engine.config import DEFAULT_NAMESPACE
from iii_rx.engine.connection import WorkerConnection
from iii_rx.engine.discovery import Discovery
from iii_rx.engine.registry import CallContext, FunctionEntry, Registry
from iii_rx.engine.triggers import FORBIDDEN, Binding, TriggerProvider, Triggers, TriggerType
from iii_rx.engine.wire import json_kind
from iii_rx.errors import IIIInvocationError

__all__ = ["ENGINE_WORKER", "RegisterWorker", "install_builtins"]

ENGINE_WORKER = "iii-engine-functions"
"""Name of the in-process worker that owns the ``engine::*`` functions."""

Handler = Callable[[dict[str, Any], CallContext], Awaitable[Any]]

RegisterWorker = Callable[[WorkerConnection, dict[str, Any]], Awaitable[bool]]
"""``await register_worker(conn, data)``: apply ``engine::workers::register`` (the dispatcher's)."""


def _object_input(function_id: str, handler: Handler) -> Callable[[Any, CallContext],
                                                                   Awaitable[Any]]:
    async def run(data: Any, ctx: CallContext) -> Any:
        if not isinstance(data, dict):
            raise IIIInvocationError(
                "deserialization_error", f"Failed to deserialize input for {function_id}: "
                f"expected an object, got {json_kind(data)}")
        try:
            return await handler(data, ctx)
        except IIIInvocationError as exc:
            if exc.code == "deserialization_error":
                raise IIIInvocationError(
                    exc.code, f"Failed to deserialize input for {function_id}: {exc.message}"
                ) from None
            raise

    return run


def _sync(fn: Callable[[dict[str, Any]], Any]) -> Handler:
    async def run(data: dict[str, Any], ctx: CallContext) -> Any:
        return fn(data)

    return run


def install_builtins(
    registry: Registry,
    triggers: Triggers,
    discovery: Discovery,
    *,
    register_worker: RegisterWorker,
    create_channel: Callable[[int | None, str | None], dict[str, Any]],
    provider_ack_timeout_ms: int,
    workers_available: TriggerProvider,
    functions_available: TriggerProvider,
) -> None:
    """Register the engine functions and the two discovery trigger types.

    ``register_worker`` applies ``engine::workers::register``; ``create_channel(size, owner)``
    makes a channel owned by the calling worker (the hub's ``create``);
    ``provider_ack_timeout_ms`` bounds ``engine::register_trigger``'s wait for a worker
    provider; the two providers serve ``engine::workers-available`` and
    ``engine::functions-available``.
    """
    registry.add_builtin_worker(ENGINE_WORKER, "Engine functions: discovery, workers, triggers")
    ack_timeout = provider_ack_timeout_ms / 1000

    def add(function_id: str, handler: Handler, description: str, *, inline: bool = True) -> None:
        registry.add_function(FunctionEntry(
            function_id, DEFAULT_NAMESPACE, handler=_object_input(function_id, handler),
            inline=inline, builtin_worker=ENGINE_WORKER, description=description))

    async def workers_register(data: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        if ctx.caller is None:
            raise IIIInvocationError("deserialization_error",
                                     "engine::workers::register needs a calling worker")
        return {"success": await register_worker(ctx.caller, data)}

    async def channels_create(data: dict[str, Any], ctx: CallContext) -> Any:
        size = data.get("buffer_size")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
            raise IIIInvocationError("deserialization_error",
                                     "buffer_size must be a non-negative integer or null")
        return create_channel(size, ctx.caller.id if ctx.caller is not None else None)

    async def register_trigger(data: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        caller = ctx.caller
        creator = ((caller.effective_namespace, caller.name)
                   if caller is not None and caller.name is not None else None)
        return await _register_trigger(triggers, ack_timeout, data, creator)

    async def unregister_trigger(data: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        binding_id = data.get("id")
        if not isinstance(binding_id, str):
            raise IIIInvocationError("deserialization_error", "missing field `id` (a string)")
        refusal = triggers.removal_refused(binding_id, ctx.caller)
        if refusal is not None:  # authority: docs/guarantees.md
            raise IIIInvocationError(FORBIDDEN, refusal)
        return {"removed": triggers.unbind(binding_id, any_owner=True)}

    add("engine::workers::register", workers_register,
        "Declare this worker's name, namespace and metadata")
    add("engine::channels::create", channels_create, "Create a channel: a writer and a reader ref")
    add("engine::register_trigger", register_trigger,
        "Bind a function to a trigger type (durable, ownerless)", inline=False)
    add("engine::unregister_trigger", unregister_trigger,
        "Remove a binding made with engine::register_trigger (by the same worker name)")
    add("engine::functions::list", _sync(discovery.functions_list), "List functions")
    add("engine::functions::info", _sync(discovery.functions_info), "Describe functions")
    add("engine::triggers::list", _sync(discovery.triggers_list), "List trigger types")
    add("engine::triggers::info", _sync(discovery.triggers_info), "Describe a trigger type")
    add("engine::registered-triggers::list", _sync(discovery.registered_triggers_list),
        "List registered triggers")
    add("engine::registered-triggers::info", _sync(discovery.registered_triggers_info),
        "Describe a registered trigger")
    add("engine::workers::list", _sync(discovery.workers_list), "List connected workers")
    add("engine::workers::info", _sync(discovery.workers_info), "Describe a worker")
    if discovery.metrics is not None:
        add("engine::metrics::list", _sync(discovery.metrics.metrics_list),
            "Call metrics per function and per worker: invocations, errors, in flight, "
            "p50/p99 ms")

    triggers.add_type(TriggerType(
        WORKERS_AVAILABLE, DEFAULT_NAMESPACE, "Fires when workers connect, register or leave",
        provider=workers_available, worker_name=ENGINE_WORKER))
    triggers.add_type(TriggerType(
        FUNCTIONS_AVAILABLE, DEFAULT_NAMESPACE, "Fires when the set of functions changes",
        provider=functions_available, worker_name=ENGINE_WORKER))


async def _register_trigger(triggers: Triggers, ack_timeout: float, data: dict[str, Any],
                            creator: tuple[str, str] | None) -> dict[str, Any]:
    """docs/protocol.md §8.11: a durable binding; waits (bounded) for a worker provider's answer.

    ``creator`` (the calling worker's namespace and name) may remove it later."""
    trigger_type = data.get("trigger_type")
    function_id = data.get("function_id")
    if not isinstance(trigger_type, str) or not isinstance(function_id, str):
        raise IIIInvocationError("deserialization_error",
                                 "`trigger_type` and `function_id` must be strings")
    trigger_namespace = data.get("trigger_namespace")
    if trigger_namespace is not None and (not isinstance(trigger_namespace, str)
                                          or not trigger_namespace.strip()):
        raise IIIInvocationError("INVALID_NAMESPACE", "trigger_namespace must not be blank")
    binding = Binding(str(uuid.uuid4()), trigger_type, function_id, data.get("config"),
                      data.get("metadata"), trigger_namespace=trigger_namespace,
                      creator=creator)
    error = triggers.bind(binding)
    if error is None:
        waiter = triggers.expect_ack(binding)
        if waiter is not None:
            try:
                error = await asyncio.wait_for(waiter, ack_timeout)
            except asyncio.TimeoutError:
                error = None
            finally:
                triggers.forget_ack(binding.id)
    if error is not None:
        triggers.discard(binding.id)
        # As the Rust engine: the message alone (its code was written into it, then repeated).
        raise IIIInvocationError("trigger_registration_failed", error.message)
    return {"id": binding.id}
