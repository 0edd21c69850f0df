"""Trigger types, their providers, and the bindings that connect them to functions.

See docs/protocol.md §6.

A **trigger type** is provided either by a worker connection (``registertriggertype``) or by an
in-process :class:`TriggerProvider`. The in-process interface is the seam for engine-provided
types: ``engine::functions-available`` / ``engine::workers-available`` use it
(:mod:`iii_rx.engine.available`), and extensions add theirs (the REST API's ``http``) through
:meth:`iii_rx.engine.services.EngineServices.add_trigger_type`::

    services.add_trigger_type(TriggerType("http", DEFAULT_NAMESPACE, "HTTP requests",
                                          provider=my_provider, worker_name="iii-http"))

``provider.bind(binding)`` is called for every binding that resolves to the type (it may
raise :class:`BindingRefused` to refuse it: the binding is parked and the registering worker
is told); ``provider.unbind(binding)`` when it goes away or moves to another provider. Both run
synchronously on the engine loop; a provider fires a binding by calling
``services.fire(binding.function_id, payload, namespace=binding.namespace,
metadata=binding.metadata)`` (or ``await services.call(...)`` for the result).

A **binding** is resolved to a provider key ``(namespace, type)`` per docs/protocol.md §6.3: an
explicit ``trigger_namespace`` names exactly one key; otherwise the registering worker's home
namespace then ``default``. A binding with no provider is **parked** (kept, never fires) and
activated when a matching provider registers; a provider that refuses a binding parks it too.
Providers registering again get every binding replayed; a provider in a non-default namespace takes
over ("re-homes") the bindings of its namespace that had fallen back to ``default``.

**Authority** (docs/guarantees.md). A binding belongs to the connection that registered it, a
worker-provided trigger type to the connection that provides it, as functions do: another
worker cannot replace a binding by reusing its id (``triggerregistrationresult`` with
``FORBIDDEN``), remove it (an ``error`` frame with ``FORBIDDEN``), or take over or remove a
type it does not provide (the same ``error`` frame). An owner whose connection has closed is
taken over silently. Durable bindings (``engine::register_trigger``, no owning connection)
belong to the worker name that created them: see :meth:`Triggers.removal_refused`. The engine
itself (in-process providers, engine-originated calls) may do anything.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from iii_rx.engine.config import DEFAULT_NAMESPACE
from iii_rx.engine.connection import WorkerConnection
from iii_rx.engine.logsafe import RateLimitedLog, printable
from iii_rx.engine.wire import error_body
from iii_rx.protocol import (
    ErrorBody,
    ErrorFrame,
    RegisterTrigger,
    TriggerRegistrationResult,
    UnregisterTrigger,
    encode,
)

__all__ = [
    "FORBIDDEN",
    "Binding",
    "BindingRefused",
    "TriggerProvider",
    "TriggerType",
    "Triggers",
]

log = logging.getLogger("iii_rx.engine")

FORBIDDEN = "FORBIDDEN"
"""Error code of an operation on a binding or trigger type that belongs to another worker."""


class BindingRefused(Exception):
    """Raised by :meth:`TriggerProvider.bind` to refuse a binding (e.g. an invalid config)."""

    def __init__(self, message: str, code: str = "trigger_registration_failed") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class TriggerProvider(Protocol):
    """An in-process provider of a trigger type."""

    def bind(self, binding: Binding) -> None:
        """Start firing ``binding`` (raise :class:`BindingRefused` to refuse it)."""

    def unbind(self, binding: Binding) -> None:
        """Stop firing ``binding``."""


@dataclass(eq=False)
class TriggerType:
    """A trigger type under ``(namespace, id)`` and who provides it."""

    id: str
    namespace: str
    description: str | None = None
    provider: WorkerConnection | TriggerProvider | None = None
    worker_name: str | None = None
    """Name of the in-process worker providing it (worker providers: their own name)."""
    trigger_request_format: Any = None
    call_request_format: Any = None
    response_format: Any = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.id)


@dataclass(eq=False)
class Binding:
    """One trigger instance: ``function_id`` bound to ``trigger_type`` with ``config``."""

    id: str
    trigger_type: str
    function_id: str
    config: Any = None
    metadata: Any = None
    namespace: str = DEFAULT_NAMESPACE
    """Namespace the target function resolves in."""
    home_namespace: str = DEFAULT_NAMESPACE
    """Namespace of the worker that registered it (provider resolution)."""
    trigger_namespace: str | None = None
    owner: WorkerConnection | None = None
    """Registering connection; ``None`` for durable ``engine::register_trigger`` bindings."""
    creator: tuple[str, str] | None = None
    """``(namespace, worker name)`` of the worker that made a durable binding, if it had a
    name: who may remove it besides the engine."""
    provider_key: tuple[str, str] | None = field(default=None, compare=False)

    @property
    def parked(self) -> bool:
        return self.provider_key is None


class Triggers:
    """All trigger types and bindings of one engine."""

    def __init__(self, *, peer_log: RateLimitedLog | None = None) -> None:
        self._peer_log = peer_log if peer_log is not None else RateLimitedLog(log)
        """The engine's budget of lines a peer can cause (triggers built alone: their own)."""
        self.types: dict[tuple[str, str], TriggerType] = {}
        self.bindings: dict[str, Binding] = {}
        self._served: dict[tuple[str, str], set[str]] = {}
        self._parked: set[str] = set()
        self._waiters: dict[str, tuple[asyncio.Future[ErrorBody | None], WorkerConnection]] = {}

    # ------------------------------------------------------------------ trigger types

    def add_type(self, trigger_type: TriggerType) -> bool:
        """Register (or replace) the provider of ``trigger_type.key`` and deliver bindings.

        ``False`` (and a ``FORBIDDEN`` error frame to the worker) when a worker tries to take
        over a type another live worker provides.
        """
        key = trigger_type.key
        old = self.types.get(key)
        conn = _worker_of(trigger_type)
        holder = _worker_of(old) if old is not None else None
        if conn is not None and holder is not None and holder is not conn and not holder.closed:
            self._forbid(conn, "registertriggertype", trigger_type.id,
                         f"trigger type {trigger_type.id!r} in namespace {key[0]!r} is "
                         "provided by another worker")
            return False
        if old is not None and old.provider is not trigger_type.provider:
            old_conn = _worker_of(old)
            if old_conn is not None:
                old_conn.trigger_types.discard(key)
        self.types[key] = trigger_type
        if conn is not None:
            conn.trigger_types.add(key)
        for binding_id in list(self._served.get(key, ())):
            self._deliver(self.bindings[binding_id], trigger_type)
        for binding_id in list(self._parked):
            binding = self.bindings[binding_id]
            if self.resolve(binding) == key:
                self._attach(binding, key)
        if key[0] != DEFAULT_NAMESPACE:
            fallback = (DEFAULT_NAMESPACE, trigger_type.id)
            for binding_id in list(self._served.get(fallback, ())):
                binding = self.bindings[binding_id]
                if binding.trigger_namespace is None and binding.home_namespace == key[0]:
                    self._detach_from_provider(binding)
                    self._attach(binding, key)
        return True

    def remove_type(self, key: tuple[str, str], provider: object | None = None) -> bool:
        """Drop the type under ``key`` (if ``provider`` still provides it); re-home or park."""
        trigger_type = self.types.get(key)
        if trigger_type is None or (provider is not None and trigger_type.provider is not provider):
            if trigger_type is not None and isinstance(provider, WorkerConnection):
                self._forbid(provider, "unregistertriggertype", key[1],
                             f"trigger type {key[1]!r} in namespace {key[0]!r} is provided by "
                             "another worker")
            return False
        del self.types[key]
        conn = _worker_of(trigger_type)
        if conn is not None:
            conn.trigger_types.discard(key)
        for binding_id in self._served.pop(key, set()):
            binding = self.bindings[binding_id]
            binding.provider_key = None
            new_key = self.resolve(binding)
            if new_key is None:
                self._park(binding)
            else:
                self._attach(binding, new_key)
        return True

    # ------------------------------------------------------------------ bindings

    def resolve(self, binding: Binding) -> tuple[str, str] | None:
        """The provider key ``binding`` resolves to now (docs/protocol.md §6.3), or ``None``."""
        if binding.trigger_namespace is not None:
            key = (binding.trigger_namespace, binding.trigger_type)
            return key if key in self.types else None
        key = (binding.home_namespace, binding.trigger_type)
        if key in self.types:
            return key
        key = (DEFAULT_NAMESPACE, binding.trigger_type)
        return key if key in self.types else None

    def bind(self, binding: Binding) -> ErrorBody | None:
        """Add (or replace) ``binding``; returns the error of a refusal.

        A worker may replace only its own binding (or one whose owner has gone): reusing the id
        of another worker's binding, or of a durable one, is refused with ``FORBIDDEN``.
        """
        old = self.bindings.get(binding.id)
        if old is not None and binding.owner is not None and old.owner is not binding.owner \
                and (old.owner is None or not old.owner.closed):
            error = ErrorBody(code=FORBIDDEN,
                              message=f"trigger {binding.id!r} belongs to another worker")
            self._peer_log.log(logging.WARNING, "foreign_binding", "worker %s may not replace "
                               "trigger %s: it belongs to %s", printable(binding.owner.label),
                               printable(binding.id),
                               printable(old.owner.label) if old.owner else "the engine")
            binding.owner.send(_result_frame(binding, error))
            return error
        if old is not None:
            self._remove(old, retract=True)
        self.bindings[binding.id] = binding
        if binding.owner is not None:
            binding.owner.bindings.add(binding.id)
        key = self.resolve(binding)
        if key is None:
            self._park(binding)
            self._peer_log.log(logging.INFO, "trigger parked",
                               "trigger %s parked: no provider of trigger type %s yet",
                               printable(binding.id), printable(binding.trigger_type))
            return None
        return self._attach(binding, key)

    def unbind(self, binding_id: str, owner: WorkerConnection | None = None, *,
               any_owner: bool = False) -> bool:
        """Remove a binding; a worker may only remove its own (``any_owner`` for the engine).

        A worker naming someone else's binding gets a ``FORBIDDEN`` error frame.
        """
        binding = self.bindings.get(binding_id)
        if binding is None:
            return False
        if not any_owner and binding.owner is not owner:
            if owner is not None:
                self._forbid(owner, "unregistertrigger", binding_id,
                             f"trigger {binding_id!r} belongs to another worker")
            return False
        self._remove(binding, retract=True)
        return True

    def removal_refused(self, binding_id: str, caller: WorkerConnection | None) -> str | None:
        """Why ``caller`` may not remove ``binding_id`` with ``engine::unregister_trigger``.

        ``None`` when it may: the engine itself (``caller is None``) always; a worker its own
        bindings, and durable ones made under its ``(namespace, name)`` (or by a worker that
        had no name). Otherwise the refusal's message.
        """
        binding = self.bindings.get(binding_id)
        if binding is None or caller is None:
            return None
        if binding.owner is not None:
            if binding.owner is caller or binding.owner.closed:
                return None
            return f"trigger {binding_id!r} belongs to another worker"
        if binding.creator is None or binding.creator == (caller.effective_namespace,
                                                          caller.name):
            return None
        return (f"trigger {binding_id!r} was created by worker {binding.creator[1]!r} "
                f"in namespace {binding.creator[0]!r}")

    def discard(self, binding_id: str) -> None:
        """Forget a binding without telling its provider (it refused the binding)."""
        binding = self.bindings.get(binding_id)
        if binding is not None:
            self._remove(binding, retract=False)

    def active(self) -> list[Binding]:
        """Bindings that have a provider (parked ones are not listed, docs/protocol.md §8.6)."""
        return [b for b in self.bindings.values() if b.provider_key is not None]

    # ------------------------------------------------------------------ provider acks

    def expect_ack(self, binding: Binding) -> asyncio.Future[ErrorBody | None] | None:
        """A future completed by the worker provider's ``triggerregistrationresult``.

        ``None`` when the binding is not served by a worker (nothing to wait for). The future
        gets the error body (refused) or ``None`` (accepted, or the provider went away).
        """
        if binding.provider_key is None:
            return None
        conn = _worker_of(self.types[binding.provider_key])
        if conn is None:
            return None
        future: asyncio.Future[ErrorBody | None] = asyncio.get_running_loop().create_future()
        self._waiters[binding.id] = (future, conn)
        return future

    def forget_ack(self, binding_id: str) -> None:
        self._waiters.pop(binding_id, None)

    def ack(self, conn: WorkerConnection, frame: TriggerRegistrationResult) -> None:
        """A provider's answer to a delivered binding (docs/protocol.md §3.7)."""
        waiter = self._waiters.pop(frame.id, None)
        if waiter is not None:
            if not waiter[0].done():
                waiter[0].set_result(frame.error)
            return
        binding = self.bindings.get(frame.id)
        if binding is None or binding.provider_key is None or frame.error is None:
            return
        if self.types[binding.provider_key].provider is not conn:
            return
        self._peer_log.log(logging.WARNING, "trigger refused by provider",
                           "provider %s refused trigger %s: %s", printable(conn.label),
                           printable(binding.id), printable(frame.error.message))
        self._detach_from_provider(binding, retract=False)
        self._park(binding)
        if binding.owner is not None:
            binding.owner.send(_result_frame(binding, frame.error))

    # ------------------------------------------------------------------ cleanup

    def connection_closed(self, conn: WorkerConnection) -> None:
        """docs/protocol.md §2.10 step 4: remove its bindings and trigger types, re-home or park."""
        for binding_id in list(conn.bindings):
            self.unbind(binding_id, conn)
        for key in list(conn.trigger_types):
            self.remove_type(key, conn)
        for binding_id, (future, provider) in list(self._waiters.items()):
            if provider is conn:
                del self._waiters[binding_id]
                if not future.done():
                    future.set_result(None)

    # ------------------------------------------------------------------ internals

    def _attach(self, binding: Binding, key: tuple[str, str]) -> ErrorBody | None:
        self._parked.discard(binding.id)
        binding.provider_key = key
        self._served.setdefault(key, set()).add(binding.id)
        error = self._deliver(binding, self.types[key])
        if error is not None:
            self._detach_from_provider(binding, retract=False)
            self._park(binding)
            if binding.owner is not None:
                binding.owner.send(_result_frame(binding, error))
        return error

    def _deliver(self, binding: Binding, trigger_type: TriggerType) -> ErrorBody | None:
        provider = trigger_type.provider
        conn = _worker_of(trigger_type)
        if conn is not None:
            conn.send(encode(_register_frame(binding, trigger_type.namespace)))
            return None
        if provider is None:
            return None
        try:
            provider.bind(binding)  # type: ignore[union-attr]
        except BindingRefused as exc:
            return ErrorBody(code=exc.code, message=exc.message)
        except Exception as exc:
            log.exception("provider of %s failed to bind %s", printable(trigger_type.id),
                          printable(binding.id))
            return ErrorBody(code="trigger_registration_failed", message=str(exc))
        return None

    def _detach_from_provider(self, binding: Binding, *, retract: bool = True) -> None:
        key = binding.provider_key
        if key is None:
            return
        binding.provider_key = None
        served = self._served.get(key)
        if served is not None:
            served.discard(binding.id)
            if not served:
                del self._served[key]
        trigger_type = self.types.get(key)
        if not retract or trigger_type is None:
            return
        conn = _worker_of(trigger_type)
        if conn is not None:
            conn.send(encode(UnregisterTrigger(id=binding.id, trigger_type=binding.trigger_type)))
        elif trigger_type.provider is not None:
            try:
                trigger_type.provider.unbind(binding)  # type: ignore[union-attr]
            except Exception:
                log.exception("provider of %s failed to unbind %s", printable(trigger_type.id),
                              printable(binding.id))

    def _park(self, binding: Binding) -> None:
        binding.provider_key = None
        self._parked.add(binding.id)

    def _remove(self, binding: Binding, *, retract: bool) -> None:
        self._detach_from_provider(binding, retract=retract)
        self._parked.discard(binding.id)
        self._waiters.pop(binding.id, None)
        if self.bindings.get(binding.id) is binding:
            del self.bindings[binding.id]
        if binding.owner is not None:
            binding.owner.bindings.discard(binding.id)

    def _forbid(self, conn: WorkerConnection, frame_type: str, item: str,
                message: str) -> None:
        """Refuse a worker's operation on something another worker owns (logged, answered)."""
        self._peer_log.log(logging.WARNING, "forbidden", "worker %s: %s refused: %s",
                           printable(conn.label), frame_type, printable(message))
        conn.send(encode(ErrorFrame(error=ErrorBody(code=FORBIDDEN, message=message),
                                    frame_type=frame_type, id=item)))

    def is_empty(self) -> bool:
        """No worker-owned binding or worker-provided type left (the leak check of the tests)."""
        return (
            all(b.owner is None for b in self.bindings.values())
            and all(_worker_of(t) is None for t in self.types.values())
            and not self._waiters
        )


def _worker_of(trigger_type: TriggerType) -> WorkerConnection | None:
    provider = trigger_type.provider
    return provider if isinstance(provider, WorkerConnection) else None


def _register_frame(binding: Binding, provider_namespace: str) -> RegisterTrigger:
    fields: dict[str, Any] = {
        "id": binding.id,
        "trigger_type": binding.trigger_type,
        "function_id": binding.function_id,
        "config": binding.config,
    }
    if binding.metadata is not None:
        fields["metadata"] = binding.metadata
    if binding.namespace != DEFAULT_NAMESPACE:
        fields["namespace"] = binding.namespace
    if provider_namespace != DEFAULT_NAMESPACE:
        fields["trigger_namespace"] = provider_namespace
    return RegisterTrigger(**fields)


def _result_frame(binding: Binding, error: ErrorBody) -> str:
    return encode(TriggerRegistrationResult(
        id=binding.id, trigger_type=binding.trigger_type, function_id=binding.function_id,
        error=error))


def error_of(body: ErrorBody) -> dict[str, Any]:
    """An :class:`ErrorBody` as the plain dict the router sends."""
    return error_body(body.code, body.message, body.stacktrace)
