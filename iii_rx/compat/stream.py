"""Custom streams of the official SDK: :class:`IStream` and :func:`create_stream`.

A custom stream is a worker that answers the ``stream::*`` calls for one stream name itself:
:func:`create_stream` registers ``stream::get(NAME)``, ``stream::set(NAME)``,
``stream::delete(NAME)``, ``stream::list(NAME)`` and ``stream::list_groups(NAME)`` on the
worker, and the engine's stream worker forwards a ``stream::get`` (etc.) on stream ``NAME`` to
them (``docs/engine.md``, "Streams"). ``update`` is not forwarded: the engine applies update
operations itself, as the Rust engine does.

The official SDK marks both as deprecated (streams are being replaced upstream) and warns
with a ``FutureWarning`` when a subclass of :class:`IStream` is defined and when
:func:`create_stream` is called; so does this module, so a script sees the same warnings.
"""

from __future__ import annotations

import builtins
import warnings
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from iii_rx.compat.stream_models import (
    StreamDeleteInput,
    StreamDeleteResult,
    StreamGetInput,
    StreamListGroupsInput,
    StreamListInput,
    StreamSetInput,
    StreamSetResult,
    StreamUpdateInput,
    StreamUpdateResult,
)

if TYPE_CHECKING:
    from iii_rx.compat.client import III

__all__ = ["IStream", "create_stream"]

TData = TypeVar("TData")

DEPRECATION = ("custom streams (IStream, create_stream) are deprecated by the official iii SDK "
               "and will be removed there; they still work")


class IStream(ABC, Generic[TData]):
    """The operations of a custom stream (see the module docstring)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # 3: this hook <- ABCMeta.__new__ <- the class statement of the user's subclass.
        warnings.warn(DEPRECATION, FutureWarning, stacklevel=3)

    @abstractmethod
    async def get(self, input: StreamGetInput) -> TData | None:
        """One item, ``None`` if absent."""

    @abstractmethod
    async def set(self, input: StreamSetInput) -> StreamSetResult[TData] | None:
        """Store an item, answering the old and new values."""

    @abstractmethod
    async def delete(self, input: StreamDeleteInput) -> StreamDeleteResult:
        """Remove an item, answering it."""

    @abstractmethod
    async def list(self, input: StreamListInput) -> list[TData]:
        """A group's items."""

    @abstractmethod
    async def list_groups(self, input: StreamListGroupsInput) -> builtins.list[str]:
        """A stream's groups."""

    @abstractmethod
    async def update(self, input: StreamUpdateInput) -> StreamUpdateResult[TData] | None:
        """Apply update operations (not called by the engine, see the module docstring)."""


def _parse(model: type[Any], data: Any) -> Any:
    return model(**data) if isinstance(data, dict) else data


def _dump(result: Any) -> Any:
    """A result model as a dict with every field (``old_value: None`` included); else as is."""
    return result.model_dump(mode="json") if result else None


def create_stream(iii: III, stream_name: str, stream: IStream[Any]) -> None:
    """Serve stream ``stream_name`` from ``stream`` (its five functions on worker ``iii``).

    The handlers are annotated like the official SDK's, so the request and response schemas
    the engine lists for them (``engine::functions::info``) are the same.
    """
    warnings.warn(DEPRECATION, FutureWarning, stacklevel=2)

    async def get_handler(data: Any) -> Any:
        return await stream.get(_parse(StreamGetInput, data))

    async def set_handler(data: Any) -> Any:
        return _dump(await stream.set(_parse(StreamSetInput, data)))

    async def delete_handler(data: Any) -> Any:
        return _dump(await stream.delete(_parse(StreamDeleteInput, data)))

    async def list_handler(data: Any) -> list[Any]:
        return await stream.list(_parse(StreamListInput, data))

    async def list_groups_handler(data: Any) -> list[str]:
        return await stream.list_groups(_parse(StreamListGroupsInput, data))

    for operation, handler in (("get", get_handler), ("set", set_handler),
                               ("delete", delete_handler), ("list", list_handler),
                               ("list_groups", list_groups_handler)):
        iii.register_function(f"stream::{operation}({stream_name})", handler)
