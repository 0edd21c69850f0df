"""The provider side of trigger types (docs/protocol.md §6.2): bindings routed to this worker.

When a worker provides a trigger type (``iii.register_trigger_type``), the engine routes every
binding of that type to it: a ``registertrigger`` frame when one is added, an
``unregistertrigger`` frame when it goes. :class:`Providers` runs the type's ``on_register`` /
``on_unregister`` callback for each (async ones as tasks, sync ones in the handler pool, so a
slow provider never blocks the loop) and answers every ``registertrigger`` with a
``triggerregistrationresult``: accepted, or refused with the callback's error.

The engine drops a worker's types with its connection and routes the bindings that still
exist to it again once it is back; one removed meanwhile is never retracted. So a binding held
when the last connection went (:meth:`Providers.link_lost`) and not routed again by the time
the worker is accepted (state ``connected``: the engine sends those frames first) went away:
``on_unregister`` runs for it, as it does for the bindings of a type this worker stops
providing.

No I/O here: frames come in as decoded models, answers go to an outbox callable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from iii_rx._pool import HandlerPool
from iii_rx.aio import TaskSet
from iii_rx.protocol import (
    ErrorBody,
    RegisterTrigger,
    TriggerRegistrationResult,
    UnregisterTrigger,
    encode,
)
from iii_rx.registrations import Registrations
from iii_rx.state import ConnectionState
from iii_rx.streams import HotStream
from iii_rx.triggers import TriggerConfig, TriggerType

__all__ = ["Providers"]

log = logging.getLogger("iii_rx.providers")


class Providers:
    """Runs trigger-type callbacks for the bindings the engine routes here (on the loop).

    ``send`` receives each ``triggerregistrationresult`` frame; callbacks run as tasks of
    ``tasks`` (cancelled when the client closes), sync ones on ``pool``. ``state`` is the
    client's connection state (its changes arrive on the loop, in order with the frames).
    """

    def __init__(self, registrations: Registrations, send: Callable[[str], Any],
                 tasks: TaskSet, pool: HandlerPool, state: HotStream[ConnectionState]) -> None:
        self._registrations = registrations
        self._send = send
        self._tasks = tasks
        self._pool = pool
        self._unconfirmed: set[str] | None = None
        """Bindings held when the connection went, not routed here again since (or ``None``
        while connected)."""
        registrations.on_type_removed = self._retract_all
        state.subscribe(on_next=self._on_state)

    def link_lost(self) -> None:
        """A connection went (on the loop): every binding held now is to be confirmed again,
        also one routed on a connection that dropped before the engine accepted the worker."""
        self._unconfirmed = {binding_id for trigger_type in self._registrations.trigger_types
                             for binding_id in trigger_type.bindings}

    def _on_state(self, state: ConnectionState) -> None:
        if state is ConnectionState.CONNECTED:
            stale, self._unconfirmed = self._unconfirmed or set(), None
            for binding_id in stale:
                trigger_type = self._registrations.trigger_type_with_binding(binding_id)
                if trigger_type is not None:
                    self._retract(trigger_type, binding_id)

    def _retract_all(self, trigger_type: TriggerType) -> None:
        """This worker stopped providing ``trigger_type``: its bindings are routed elsewhere."""
        for binding_id in list(trigger_type.bindings):
            self._retract(trigger_type, binding_id)

    def _retract(self, trigger_type: TriggerType, binding_id: str) -> None:
        config = trigger_type.bindings.pop(binding_id, None)
        if config is not None:
            self._tasks.spawn(self._run(trigger_type, config, False))

    def on_register(self, frame: RegisterTrigger) -> None:
        """A binding of one of our types was added: run ``on_register``, then answer."""
        trigger_type = self._registrations.trigger_type(frame.trigger_type)
        if trigger_type is None:
            self._answer(frame.id, frame.trigger_type, frame.function_id, ErrorBody(
                code="trigger_type_not_found",
                message=f"trigger type {frame.trigger_type!r} is not provided by this worker"))
            return
        config = TriggerConfig(frame.id, frame.trigger_type, frame.function_id, frame.config,
                               frame.metadata, frame.namespace or "default",
                               frame.trigger_namespace)
        trigger_type.bindings[frame.id] = config
        if self._unconfirmed is not None:
            self._unconfirmed.discard(frame.id)
        self._tasks.spawn(self._run(trigger_type, config, True))

    def on_unregister(self, frame: UnregisterTrigger) -> None:
        """A binding of one of our types went: run ``on_unregister`` (no answer expected)."""
        trigger_type = self._registrations.trigger_type(frame.trigger_type or "")
        if trigger_type is None:
            trigger_type = self._registrations.trigger_type_with_binding(frame.id)
        if trigger_type is None:
            return
        config = trigger_type.bindings.pop(frame.id, None) or TriggerConfig(
            frame.id, trigger_type.id, "")
        self._tasks.spawn(self._run(trigger_type, config, False))

    async def _run(self, trigger_type: TriggerType, config: TriggerConfig,
                   register: bool) -> None:
        callback = trigger_type.on_register if register else trigger_type.on_unregister
        error: ErrorBody | None = None
        if callback is not None:
            try:
                if asyncio.iscoroutinefunction(callback):
                    await callback(config)
                else:
                    result = await self._pool.call(asyncio.get_running_loop(), callback, config)
                    if asyncio.iscoroutine(result):
                        await result
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("provider of %r %s binding %s failed: %s", trigger_type.id,
                            "accepting" if register else "removing", config.id, exc)
                error = ErrorBody(code="trigger_registration_failed", message=str(exc))
        if register:
            if error is not None:
                trigger_type.bindings.pop(config.id, None)
            self._answer(config.id, config.trigger_type, config.function_id, error)

    def _answer(self, trigger_id: str, trigger_type: str, function_id: str,
                error: ErrorBody | None) -> None:
        fields: dict[str, Any] = {"id": trigger_id, "trigger_type": trigger_type,
                                  "function_id": function_id}
        if error is not None:
            fields["error"] = error
        self._send(encode(TriggerRegistrationResult(**fields)))
