"""Trigger bindings (consumer side) and trigger types (provider side): docs/protocol.md §6.1, §6.2.

Both are kept in the client's :class:`~iii_rx.registrations.Registrations`, replayed on every
connection: bindings keep their ids across reconnects, so the engine sees the same triggers
again. A provider receives each binding routed to it as a :class:`TriggerConfig` in
``on_register`` (sync or async; a raise rejects the binding with
``trigger_registration_failed``) and ``on_unregister`` when it goes (see
:mod:`iii_rx.providers`). The handles reach the registrations only through the narrow
:class:`TriggerRegistry`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from iii_rx.protocol import (
    RegisterTrigger,
    RegisterTriggerType,
    UnregisterTrigger,
    UnregisterTriggerType,
    encode,
)

__all__ = [
    "TriggerBinding",
    "TriggerConfig",
    "TriggerHandle",
    "TriggerRegistry",
    "TriggerType",
    "TriggerTypeHandle",
]


@dataclass
class TriggerConfig:
    """A binding delivered to a provider.

    ``namespace`` is where the bound function lives: the engine leaves it out for
    ``"default"``, so it is filled with ``"default"`` here (pass it on to ``trigger`` as is).
    """

    id: str
    trigger_type: str
    function_id: str
    config: Any = None
    metadata: Any = None
    namespace: str = "default"
    trigger_namespace: str | None = None


@dataclass
class TriggerBinding:
    """A binding this worker registered (replayed with the same id on reconnect)."""

    id: str
    trigger_type: str
    function_id: str
    config: Any
    metadata: Any = None
    namespace: str | None = None
    trigger_namespace: str | None = None

    @staticmethod
    def new(trigger_type: str, function_id: str, config: Any, metadata: Any,
            namespace: str | None, trigger_namespace: str | None) -> TriggerBinding:
        """A binding with a fresh id (kept across reconnects); ``config`` ``None`` is ``{}``."""
        return TriggerBinding(str(uuid.uuid4()), trigger_type, function_id,
                              {} if config is None else config, metadata, namespace,
                              trigger_namespace)

    def register_frame(self) -> str:
        """The ``registertrigger`` text (``config`` always present: the Rust engine needs it)."""
        fields: dict[str, Any] = {
            "id": self.id, "trigger_type": self.trigger_type, "function_id": self.function_id,
            "config": self.config,
        }
        if self.metadata is not None:
            fields["metadata"] = self.metadata
        if self.namespace is not None:
            fields["namespace"] = self.namespace
        if self.trigger_namespace is not None:
            fields["trigger_namespace"] = self.trigger_namespace
        return encode(RegisterTrigger(**fields))

    def unregister_frame(self) -> str:
        """The ``unregistertrigger`` text."""
        return encode(UnregisterTrigger(id=self.id, trigger_type=self.trigger_type))


OnRegister = Callable[[TriggerConfig], Any]
OnUnregister = Callable[[TriggerConfig], Any]


@dataclass
class TriggerType:
    """A trigger type this worker provides, and the bindings the engine routed to it."""

    id: str
    description: str
    on_register: OnRegister | None
    on_unregister: OnUnregister | None
    trigger_request_format: Any = None
    call_request_format: Any = None

    def __post_init__(self) -> None:
        self.bindings: dict[str, TriggerConfig] = {}

    def register_frame(self) -> str:
        """The ``registertriggertype`` text."""
        fields: dict[str, Any] = {"id": self.id, "description": self.description}
        if self.trigger_request_format is not None:
            fields["trigger_request_format"] = self.trigger_request_format
        if self.call_request_format is not None:
            fields["call_request_format"] = self.call_request_format
        return encode(RegisterTriggerType(**fields))

    def unregister_frame(self) -> str:
        """The ``unregistertriggertype`` text."""
        return encode(UnregisterTriggerType(id=self.id))


class TriggerRegistry(Protocol):
    """What trigger handles need from the client: taking their registration back."""

    def remove_binding(self, binding: TriggerBinding) -> None:
        """Forget ``binding`` and unregister it with the engine (idempotent)."""

    def remove_trigger_type(self, trigger_type: TriggerType) -> None:
        """Stop providing ``trigger_type`` (idempotent)."""


class TriggerHandle:
    """A registered trigger binding; :meth:`unregister` removes it (idempotent).

    ``error`` holds the last error the engine or the provider reported for it, if any.
    """

    def __init__(self, registry: TriggerRegistry, binding: TriggerBinding) -> None:
        self._registry = registry
        self.binding = binding
        self.error: Exception | None = None
        self._registered = True

    @property
    def id(self) -> str:
        """The binding's id (the engine's key for it)."""
        return self.binding.id

    @property
    def registered(self) -> bool:
        """Whether :meth:`unregister` has not been called yet."""
        return self._registered

    def unregister(self) -> None:
        """Remove the binding from the engine."""
        if self._registered:
            self._registered = False
            self._registry.remove_binding(self.binding)

    def __enter__(self) -> TriggerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unregister()

    def __repr__(self) -> str:
        b = self.binding
        return f"<TriggerHandle {b.trigger_type} -> {b.function_id!r} id={b.id}>"


class TriggerTypeHandle:
    """A provided trigger type; :meth:`unregister` stops providing it (idempotent).

    Note: the Rust engine 0.23 does not understand ``unregistertriggertype`` (docs/protocol.md
    §3.4); there the type stays until this worker disconnects.
    """

    def __init__(self, registry: TriggerRegistry, trigger_type: TriggerType) -> None:
        self._registry = registry
        self.trigger_type = trigger_type
        self._registered = True

    @property
    def id(self) -> str:
        """The trigger type's id."""
        return self.trigger_type.id

    @property
    def bindings(self) -> dict[str, TriggerConfig]:
        """The bindings currently routed to this provider, by id."""
        return dict(self.trigger_type.bindings)

    def unregister(self) -> None:
        """Stop providing the type."""
        if self._registered:
            self._registered = False
            self._registry.remove_trigger_type(self.trigger_type)

    def __enter__(self) -> TriggerTypeHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unregister()
