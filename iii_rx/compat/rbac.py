"""The models a worker on an RBAC or middleware listener handles (docs/engine-config.md).

The engine calls the listener's functions with these shapes: the auth function gets
:class:`AuthInput` and answers :class:`AuthResult`; the middleware gets
:class:`MiddlewareFunctionInput`; each registration hook gets its ``On*Input`` and answers its
``On*Result`` (fields left ``None`` keep the worker's value; raising denies). The official SDK
keeps ``MiddlewareFunctionInput`` in ``iii`` and the rest in
``iii_helpers.worker_connection_manager``; all are importable from :mod:`iii_rx.compat`.
Unknown fields are kept (``extra="allow"``) so that a newer engine's additions pass through.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from iii_rx.protocol import EnqueueAction, VoidAction

__all__ = [
    "AuthInput",
    "AuthResult",
    "MiddlewareFunctionInput",
    "OnFunctionRegistrationInput",
    "OnFunctionRegistrationResult",
    "OnTriggerRegistrationInput",
    "OnTriggerRegistrationResult",
    "OnTriggerTypeRegistrationInput",
    "OnTriggerTypeRegistrationResult",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class AuthInput(_Model):
    """What the auth function learns of a websocket upgrade."""

    headers: dict[str, str] = Field(default_factory=dict)
    """Request headers, names in lower case."""
    query_params: dict[str, list[str]] = Field(default_factory=dict)
    """Every value of each query parameter."""
    ip_address: str = ""


class AuthResult(_Model):
    """The session the auth function grants (raise in the auth function to refuse)."""

    namespaces: dict[str, list[str]] = Field(default_factory=dict)
    """Grants that hold in one namespace each: ``{"orders": ["svc::*"]}``."""
    allowed_functions: list[str] = Field(default_factory=list)
    """Callable beyond ``expose_functions`` (namespace ``default``)."""
    forbidden_functions: list[str] = Field(default_factory=list)
    """Never callable, whatever else allows them."""
    allowed_trigger_types: list[str] | None = None
    """Trigger types the session may bind; ``None``: every type."""
    allow_trigger_type_registration: bool = False
    allow_function_registration: bool = True
    function_registration_prefix: str | None = None
    """Registered ids become ``{prefix}::{id}``; the worker keeps seeing its own ids."""
    context: dict[str, Any] = Field(default_factory=dict)
    """Handed to the middleware and the hooks on every call of this session."""


class MiddlewareFunctionInput(_Model):
    """One call routed to a listener's middleware, which decides whether to make it."""

    function_id: str
    payload: Any = None
    action: EnqueueAction | VoidAction | None = None
    context: dict[str, Any] = Field(default_factory=dict)
    namespace: str | None = None
    """The namespace the call addressed (call the target there)."""


class OnFunctionRegistrationInput(_Model):
    """A ``registerfunction`` awaiting the hook's decision."""

    function_id: str
    description: str | None = None
    metadata: dict[str, Any] | None = None
    namespace: str = "default"
    context: dict[str, Any] = Field(default_factory=dict)


class OnFunctionRegistrationResult(_Model):
    """The hook's changes (``None`` keeps the worker's value)."""

    function_id: str | None = None
    description: str | None = None
    metadata: dict[str, Any] | None = None


class OnTriggerRegistrationInput(_Model):
    """A ``registertrigger`` awaiting the hook's decision."""

    trigger_id: str
    trigger_type: str
    function_id: str
    config: Any = None
    metadata: dict[str, Any] | None = None
    namespace: str = "default"
    context: dict[str, Any] = Field(default_factory=dict)


class OnTriggerRegistrationResult(_Model):
    """The hook's changes (``None`` keeps the worker's value)."""

    trigger_id: str | None = None
    trigger_type: str | None = None
    function_id: str | None = None
    config: Any = None


class OnTriggerTypeRegistrationInput(_Model):
    """A ``registertriggertype`` awaiting the hook's decision."""

    trigger_type_id: str
    description: str = ""
    context: dict[str, Any] = Field(default_factory=dict)


class OnTriggerTypeRegistrationResult(_Model):
    """The hook's changes (``None`` keeps the worker's value)."""

    trigger_type_id: str | None = None
    description: str | None = None
