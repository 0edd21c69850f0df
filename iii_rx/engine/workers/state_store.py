"""Where the ``state`` worker keeps its values: the :class:`StateAdapter` interface.

Values are JSON, addressed by ``(scope, key)``. An adapter gives each key's value back as it
was stored, keeps a scope's keys in the order they were first written (a key written again
keeps its place; one deleted and written again goes last), and makes :meth:`update` atomic:
the read, the caller's ``mutate`` and the write happen with no other write of that key in
between. Absent keys are :data:`~iii_rx.engine.workers._common.MISSING`, never ``None``
(``None`` is a stored JSON ``null``).

Two adapters come with the engine: :class:`MemoryStateAdapter` (the default; lost when the
process ends) and :class:`~iii_rx.engine.workers.state_sqlite.SqliteStateAdapter` (a file that
survives a restart and a kill). Another store (Redis, a SQL server) is one more class with
these methods; the worker does not change.

Adapters run on the engine's loop. ``inline = True`` says every method finishes without
waiting on I/O (an in-memory dict, a local sqlite file), so the ``state::*`` functions may run
in the caller's frame order; an adapter that waits on a network says ``False``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

from iii_rx.engine.workers._common import MISSING

__all__ = ["MISSING", "MemoryStateAdapter", "Mutate", "StateAdapter"]

Mutate = Callable[[Any], Any]
"""``mutate(old) -> new``: ``old`` is the stored value or ``MISSING``; must not change ``old``."""


class StateAdapter(Protocol):
    """Storage of the ``state`` worker (see the module docstring for the contract)."""

    inline: ClassVar[bool]

    async def open(self) -> None:
        """Get ready (open files, connections); called when the engine starts."""
        ...

    async def close(self) -> None:
        """Release what :meth:`open` took; called when the engine stops."""
        ...

    async def get(self, scope: str, key: str) -> Any:
        """The value, or ``MISSING``."""
        ...

    async def set(self, scope: str, key: str, value: Any) -> Any:
        """Store ``value``; returns the previous value or ``MISSING``."""
        ...

    async def delete(self, scope: str, key: str) -> Any:
        """Remove the key; returns the removed value or ``MISSING``."""
        ...

    async def update(self, scope: str, key: str, mutate: Mutate) -> tuple[Any, Any]:
        """Atomically store ``mutate(old)``; returns ``(old, new)`` (``old`` may be
        ``MISSING``)."""
        ...

    async def values(self, scope: str) -> list[Any]:
        """The scope's values in first-write order (``[]`` for an unknown scope)."""
        ...

    async def list_groups(self) -> list[str]:
        """The scopes holding at least one key."""
        ...


class MemoryStateAdapter:
    """The default adapter: a dict of dicts in this process (gone when it ends).

    Values are copied in and out, so nothing outside the store can change a stored value.
    """

    inline: ClassVar[bool] = True

    def __init__(self) -> None:
        self._scopes: dict[str, dict[str, Any]] = {}

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def get(self, scope: str, key: str) -> Any:
        value = self._scopes.get(scope, {}).get(key, MISSING)
        return value if value is MISSING else copy.deepcopy(value)

    async def set(self, scope: str, key: str, value: Any) -> Any:
        keys = self._scopes.setdefault(scope, {})
        old = keys.get(key, MISSING)
        keys[key] = copy.deepcopy(value)
        return old

    async def delete(self, scope: str, key: str) -> Any:
        keys = self._scopes.get(scope)
        if keys is None:
            return MISSING
        old = keys.pop(key, MISSING)
        if not keys:
            del self._scopes[scope]
        return old

    async def update(self, scope: str, key: str, mutate: Mutate) -> tuple[Any, Any]:
        keys = self._scopes.setdefault(scope, {})
        old = keys.get(key, MISSING)
        new = mutate(old)
        keys[key] = copy.deepcopy(new)
        return old, new

    async def values(self, scope: str) -> list[Any]:
        return copy.deepcopy(list(self._scopes.get(scope, {}).values()))

    async def list_groups(self) -> list[str]:
        return list(self._scopes)
