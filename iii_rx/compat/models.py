"""Request, registration and handle types of the conventional API.

The pydantic request models (``TriggerRequest``, ``RegisterTriggerInput``,
``RegisterTriggerTypeInput``) accept the same fields as the official SDK's; the handles
(``FunctionRef``, ``Trigger``) and the provider types (``TriggerConfig``, ``TriggerHandler``)
have its shapes, so code written against it keeps working.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from iii_rx.protocol import EnqueueAction, VoidAction

__all__ = [
    "EnqueueResult",
    "FunctionRef",
    "InvocationContext",
    "RegisterFunctionFormat",
    "RegisterTriggerInput",
    "RegisterTriggerTypeInput",
    "Trigger",
    "TriggerActionEnqueue",
    "TriggerActionVoid",
    "TriggerConfig",
    "TriggerHandler",
    "TriggerRequest",
]

TConfig = TypeVar("TConfig")

TriggerActionVoid = VoidAction
"""Fire and forget (``TriggerAction.Void()``): the call returns ``None`` once sent."""
TriggerActionEnqueue = EnqueueAction
"""Through a named queue (``TriggerAction.Enqueue(queue=...)``): returns a receipt."""


class TriggerRequest(BaseModel):
    """One call: ``trigger(TriggerRequest(function_id=..., payload=...))`` or the same dict.

    ``timeout_ms`` overrides ``InitOptions.invocation_timeout_ms``; ``namespace`` overrides
    the worker's; ``dispatch`` is accepted for compatibility (every call goes through the
    engine, which is what ``"remote"`` asks for and what ``"auto"`` does against an engine
    without local dispatch).
    """

    function_id: str
    payload: Any = None
    action: EnqueueAction | VoidAction | None = None
    timeout_ms: int | None = None
    metadata: Any = None
    namespace: str | None = None
    dispatch: Literal["auto", "remote"] | None = None


class RegisterTriggerInput(BaseModel):
    """A binding of ``function_id`` to a trigger of type ``type`` (``register_trigger``)."""

    type: str
    function_id: str
    config: Any = None
    metadata: Any = None
    namespace: str | None = None
    trigger_namespace: str | None = None


class RegisterTriggerTypeInput(BaseModel):
    """A trigger type this worker provides (``register_trigger_type``); the formats may be
    JSON schemas or pydantic model classes."""

    id: str
    description: str
    trigger_request_format: Any = None
    call_request_format: Any = None


class RegisterFunctionFormat(BaseModel):
    """A parameter description for ``request_format`` / ``response_format``."""

    name: str
    type: str
    description: str | None = None
    body: list[RegisterFunctionFormat] | None = None
    items: RegisterFunctionFormat | None = None
    required: bool = False


class EnqueueResult(BaseModel):
    """What an enqueued call returns (as a dict on the wire): ``{"messageReceiptId": ...}``."""

    messageReceiptId: str


class TriggerConfig(BaseModel, Generic[TConfig]):
    """A binding as its provider sees it.

    ``namespace`` is ``None`` when the bound function lives in ``default`` (the engine leaves
    the field out then); pass ``"default"`` explicitly when firing from a namespaced worker.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    id: str
    function_id: str
    config: Any = None
    metadata: dict[str, Any] | None = None
    namespace: str | None = None


class TriggerHandler(ABC, Generic[TConfig]):
    """Provider of a trigger type: told about each binding routed to it, and its removal."""

    @abstractmethod
    async def register_trigger(self, config: TriggerConfig[TConfig]) -> None:
        """A binding arrived; raising rejects it (``trigger_registration_failed``)."""

    @abstractmethod
    async def unregister_trigger(self, config: TriggerConfig[TConfig]) -> None:
        """A binding went away."""


@dataclass(frozen=True)
class InvocationContext:
    """The invocation the calling code runs in (``current_invocation()``)."""

    function_id: str
    invocation_id: str
    observe_depth: int = 0
    caller: dict[str, Any] | None = None
    activation: dict[str, Any] | None = None


def _not_observed() -> bool:
    return False


def _no_observers() -> list[Any]:
    return []


@dataclass
class FunctionRef:
    """A registered function; ``unregister()`` removes it from the engine."""

    id: str
    unregister: Callable[[], None]
    _is_observed: Callable[[], bool] = field(default=_not_observed, repr=False, compare=False)
    _observers: Callable[[], list[Any]] = field(default=_no_observers, repr=False,
                                                compare=False)

    def is_observed(self) -> bool:
        """Whether an observer watches this function (observe is not supported: ``False``)."""
        return self._is_observed()

    def observers(self) -> list[Any]:
        """The observers of this function (observe is not supported: none)."""
        return self._observers()


class Trigger:
    """A registered binding; ``unregister()`` removes it."""

    def __init__(self, unregister_fn: Callable[[], None]) -> None:
        self._unregister_fn = unregister_fn

    def unregister(self) -> None:
        self._unregister_fn()
