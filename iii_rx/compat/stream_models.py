"""The stream and update-operation models of the official SDK (``iii_helpers.stream``).

Same names, fields and defaults, so code that builds them (``UpdateSet(path="n", value=1)``)
or reads them (``StreamChangeEvent.model_validate(event)``) keeps working on
``iii_rx.compat``. They are plain pydantic models: sent in a payload they become their JSON
form (see :func:`iii_rx.compat.handlers.to_wire_value`). The engine side of these shapes is
``docs/engine.md`` ("Streams", "State").

The update operations are what ``state::update`` and ``stream::update`` take (``ops``):
``UpdateSet``, ``UpdateIncrement``, ``UpdateDecrement``, ``UpdateAppend``, ``UpdateMerge``,
``UpdateRemove``. A ``merge`` / ``append`` without a path targets the root, and its dump
leaves the ``path`` key out (an absent key, not ``null``), as every iii SDK sends it.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer

__all__ = [
    "MergePath",
    "StreamAuthInput",
    "StreamAuthResult",
    "StreamChangeEvent",
    "StreamChangeEventDetail",
    "StreamContext",
    "StreamDeleteInput",
    "StreamDeleteResult",
    "StreamGetInput",
    "StreamJoinLeaveEvent",
    "StreamJoinLeaveTriggerConfig",
    "StreamJoinResult",
    "StreamListGroupsInput",
    "StreamListInput",
    "StreamSetInput",
    "StreamSetResult",
    "StreamTriggerConfig",
    "StreamUpdateInput",
    "StreamUpdateResult",
    "UpdateAppend",
    "UpdateDecrement",
    "UpdateIncrement",
    "UpdateMerge",
    "UpdateOp",
    "UpdateOpError",
    "UpdateRemove",
    "UpdateSet",
]

TData = TypeVar("TData")

MergePath = str | list[str]
"""Where a ``merge`` / ``append`` lands: one first-level key, or a list of literal keys."""

StreamContext = Any
"""What a stream auth function put in ``context`` (any JSON)."""


# ----------------------------------------------------------------------------- operations


class UpdateSet(BaseModel):
    """Replace the first-level field ``path`` (``""``: the whole value) by ``value``."""

    type: str = "set"
    path: str
    value: Any


class UpdateIncrement(BaseModel):
    """Add ``by`` to the number at ``path`` (a missing field counts as 0)."""

    type: str = "increment"
    path: str
    by: int | float


class UpdateDecrement(BaseModel):
    """Subtract ``by`` from the number at ``path``."""

    type: str = "decrement"
    path: str
    by: int | float


class _PathOptional(BaseModel):
    """An operation whose ``path`` may be absent; the dump leaves out a ``None`` path (no field
    here, so the subclasses keep the wire's field order)."""

    @model_serializer(mode="wrap")
    def _drop_absent_path(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict) and data.get("path") is None:
            data.pop("path", None)
        return data


class UpdateAppend(_PathOptional):
    """Push ``value`` onto an array, or concatenate a string onto a string, at ``path``
    (absent, ``""`` or ``[]``: the root; a list: a nested location, created on the way)."""

    type: str = "append"
    path: MergePath | None = None
    value: Any


class UpdateMerge(_PathOptional):
    """Shallow-merge the object ``value`` at ``path`` (absent, ``""`` or ``[]``: the root)."""

    type: str = "merge"
    path: MergePath | None = None
    value: Any


class UpdateRemove(BaseModel):
    """Drop the first-level field ``path``."""

    type: str = "remove"
    path: str


UpdateOp = UpdateSet | UpdateIncrement | UpdateDecrement | UpdateAppend | UpdateRemove | UpdateMerge
"""Any one update operation."""


class UpdateOpError(BaseModel):
    """An operation that did not apply (``errors`` of an update's answer): its index in
    ``ops``, a stable ``code`` such as ``merge.path.too_deep``, and a message."""

    op_index: int
    code: str
    message: str
    doc_url: str | None = None


# ----------------------------------------------------------------------------- inputs


class StreamGetInput(BaseModel):
    """``stream::get``: one item."""

    stream_name: str
    group_id: str
    item_id: str


class StreamSetInput(BaseModel):
    """``stream::set``: store ``data`` as one item."""

    stream_name: str
    group_id: str
    item_id: str
    data: Any


class StreamDeleteInput(BaseModel):
    """``stream::delete``: remove one item."""

    stream_name: str
    group_id: str
    item_id: str


class StreamListInput(BaseModel):
    """``stream::list``: a group's items."""

    stream_name: str
    group_id: str


class StreamListGroupsInput(BaseModel):
    """``stream::list_groups``: a stream's groups."""

    stream_name: str


class StreamUpdateInput(BaseModel):
    """``stream::update``: apply ``ops`` to one item atomically, in order."""

    stream_name: str
    group_id: str
    item_id: str
    ops: list[UpdateOp]


# ----------------------------------------------------------------------------- results


class StreamSetResult(BaseModel, Generic[TData]):
    """What ``stream::set`` answers: the value before (``None`` if new) and after."""

    old_value: TData | None = None
    new_value: TData


class StreamUpdateResult(BaseModel, Generic[TData]):
    """What ``stream::update`` answers; ``errors`` lists the operations that did not apply
    (the others are in ``new_value``)."""

    old_value: TData | None = None
    new_value: TData
    errors: list[UpdateOpError] = Field(default_factory=list)


class StreamDeleteResult(BaseModel):
    """What ``stream::delete`` answers: the removed value (``None`` if there was none)."""

    old_value: Any | None = None


# ----------------------------------------------------------------------------- triggers


class StreamTriggerConfig(BaseModel):
    """Config of a ``stream`` trigger: the stream, and optionally one group or one item."""

    stream_name: str
    group_id: str | None = None
    item_id: str | None = None
    condition_function_id: str | None = None


class StreamJoinLeaveTriggerConfig(BaseModel):
    """Config of a ``stream:join`` / ``stream:leave`` trigger."""

    condition_function_id: str | None = None


class StreamChangeEventDetail(BaseModel):
    """The change inside a :class:`StreamChangeEvent`."""

    type: Literal["create", "update", "delete"]
    data: Any


class StreamChangeEvent(BaseModel):
    """What a ``stream`` trigger's function receives when an item changes."""

    type: Literal["stream"]
    timestamp: int
    streamName: str
    groupId: str
    id: str | None = None
    event: StreamChangeEventDetail


class StreamJoinLeaveEvent(BaseModel):
    """What a ``stream:join`` / ``stream:leave`` function receives: the stream socket's
    subscription and the context its auth function gave the connection."""

    subscription_id: str
    stream_name: str
    group_id: str
    id: str | None = None
    context: Any | None = None


class StreamJoinResult(BaseModel):
    """What a ``stream:join`` function may answer: ``unauthorized=True`` refuses the join."""

    unauthorized: bool


class StreamAuthInput(BaseModel):
    """What a stream socket's auth function receives about the connecting client."""

    headers: dict[str, str]
    path: str
    query_params: dict[str, list[str]]
    addr: str


class StreamAuthResult(BaseModel):
    """What a stream socket's auth function answers: the connection's ``context``."""

    context: Any | None = None
