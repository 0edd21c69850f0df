"""The state models and interface of the official SDK (``iii.state``).

Inputs and results of the ``state::*`` functions, the ``state`` trigger's event, and
:class:`IState`, the abstract interface a state implementation follows. Same names, fields
and defaults as the official SDK's, so code importing them runs unchanged on
``iii_rx.compat``; the functions themselves are the engine's (``docs/engine.md``, "State").
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from enum import Enum
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from iii_rx.compat.stream_models import UpdateOp

__all__ = [
    "IState",
    "StateDeleteInput",
    "StateDeleteResult",
    "StateEventData",
    "StateEventType",
    "StateGetInput",
    "StateListInput",
    "StateSetInput",
    "StateSetResult",
    "StateUpdateInput",
    "StateUpdateResult",
]

TData = TypeVar("TData")


class StateGetInput(BaseModel):
    """``state::get``: the value under ``(scope, key)``."""

    scope: str
    key: str


class StateSetInput(BaseModel):
    """``state::set``: store ``value`` under ``(scope, key)``."""

    scope: str
    key: str
    value: Any


class StateDeleteInput(BaseModel):
    """``state::delete``: remove ``(scope, key)``."""

    scope: str
    key: str


class StateListInput(BaseModel):
    """``state::list``: every value of a scope."""

    scope: str


class StateUpdateInput(BaseModel):
    """``state::update``: apply ``ops`` to one value atomically, in order."""

    scope: str
    key: str
    ops: list[UpdateOp]


class StateSetResult(BaseModel, Generic[TData]):
    """What ``state::set`` answers: the value before (``None`` if new) and after."""

    old_value: TData | None = None
    new_value: TData


class StateUpdateResult(BaseModel, Generic[TData]):
    """What ``state::update`` answers: the value before and after the operations."""

    old_value: TData | None = None
    new_value: TData


class StateDeleteResult(BaseModel):
    """The removed value (``None`` if there was none)."""

    old_value: Any | None = None


class StateEventType(str, Enum):
    """Which change fired a ``state`` trigger (``event_type`` of its event)."""

    CREATED = "state:created"
    UPDATED = "state:updated"
    DELETED = "state:deleted"


class StateEventData(BaseModel, Generic[TData]):
    """What a ``state`` trigger's function receives: the change of one key."""

    type: str = "state"
    event_type: StateEventType
    scope: str
    key: str
    old_value: TData | None = None
    new_value: TData | None = None


class IState(ABC, Generic[TData]):
    """A state store's operations, for code written against the official interface."""

    @abstractmethod
    async def get(self, input: StateGetInput) -> TData | None:
        """The value, ``None`` if absent."""

    @abstractmethod
    async def set(self, input: StateSetInput) -> StateSetResult[TData] | None:
        """Store a value, answering the old and new ones."""

    @abstractmethod
    async def delete(self, input: StateDeleteInput) -> StateDeleteResult:
        """Remove a value, answering it."""

    @abstractmethod
    async def list(self, input: StateListInput) -> list[TData]:
        """Every value of a scope."""

    @abstractmethod
    async def update(self, input: StateUpdateInput) -> StateUpdateResult[TData] | None:
        """Apply update operations atomically."""
