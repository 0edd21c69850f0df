"""Where the ``stream`` worker keeps its items: the :class:`StreamAdapter` interface.

Items are JSON values addressed by ``(stream_name, group_id, item_id)``. An adapter gives an
item back as it was stored, keeps a group's items in the order they were first written, and
makes :meth:`StreamAdapter.update` atomic (no other write of that item between the read, the
caller's ``mutate`` and the write). Absent items are
:data:`~iii_rx.engine.workers._common.MISSING`, never ``None`` (``None`` is a stored ``null``).

:class:`MemoryStreamAdapter` (the default) keeps them in this process,
:class:`~iii_rx.engine.workers.streams_sqlite.SqliteStreamAdapter` in a file; a Redis or SQL
server adapter is one more class with these methods, and the worker does not change.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, Protocol

from iii_rx.engine.workers._common import MISSING

__all__ = ["MemoryStreamAdapter", "StreamAdapter"]

Mutate = Callable[[Any], Any]


class StreamAdapter(Protocol):
    """Storage of the ``stream`` worker (see the module docstring for the contract)."""

    async def open(self) -> None:
        """Get ready (open files, connections); called when the engine starts."""
        ...

    async def close(self) -> None:
        """Release what :meth:`open` took; called when the engine stops."""
        ...

    async def get(self, stream: str, group: str, item: str) -> Any:
        """The item, or ``MISSING``."""
        ...

    async def set(self, stream: str, group: str, item: str, value: Any) -> Any:
        """Store ``value``; returns the previous value or ``MISSING``."""
        ...

    async def delete(self, stream: str, group: str, item: str) -> Any:
        """Remove the item; returns the removed value or ``MISSING``."""
        ...

    async def update(self, stream: str, group: str, item: str,
                     mutate: Mutate) -> tuple[Any, Any]:
        """Atomically store ``mutate(old)``; returns ``(old, new)``."""
        ...

    async def items(self, stream: str, group: str) -> list[Any]:
        """The group's items in first-write order (``[]`` for an unknown group)."""
        ...

    async def groups(self, stream: str) -> list[str]:
        """The stream's groups holding at least one item."""
        ...

    async def streams(self) -> dict[str, list[str]]:
        """Every stream holding items, with its groups."""
        ...


class MemoryStreamAdapter:
    """The default adapter: nested dicts in this process (gone when it ends).

    Values are copied in and out, so nothing outside the store can change a stored value.
    """

    def __init__(self) -> None:
        self._data: dict[str, dict[str, dict[str, Any]]] = {}

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def get(self, stream: str, group: str, item: str) -> Any:
        value = self._data.get(stream, {}).get(group, {}).get(item, MISSING)
        return value if value is MISSING else copy.deepcopy(value)

    async def set(self, stream: str, group: str, item: str, value: Any) -> Any:
        items = self._data.setdefault(stream, {}).setdefault(group, {})
        old = items.get(item, MISSING)
        items[item] = copy.deepcopy(value)
        return old

    async def delete(self, stream: str, group: str, item: str) -> Any:
        groups = self._data.get(stream)
        if groups is None or group not in groups:
            return MISSING
        old = groups[group].pop(item, MISSING)
        if not groups[group]:
            del groups[group]
            if not groups:
                del self._data[stream]
        return old

    async def update(self, stream: str, group: str, item: str,
                     mutate: Mutate) -> tuple[Any, Any]:
        items = self._data.setdefault(stream, {}).setdefault(group, {})
        old = items.get(item, MISSING)
        new = mutate(old)
        items[item] = copy.deepcopy(new)
        return old, new

    async def items(self, stream: str, group: str) -> list[Any]:
        return copy.deepcopy(list(self._data.get(stream, {}).get(group, {}).values()))

    async def groups(self, stream: str) -> list[str]:
        return list(self._data.get(stream, {}))

    async def streams(self) -> dict[str, list[str]]:
        return {name: list(groups) for name, groups in self._data.items()}
