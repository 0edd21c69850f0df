"""The engine's key-value state as the reactive client sees it: ``iii.kv``.

``iii.state`` is the connection-state stream, so the engine's ``state::*`` functions are
reached through ``iii.kv``::

    async with iii_rx.connect(url) as iii:
        await iii.kv.set("orders", "o1", {"status": "new"})
        await iii.kv.update("orders", "o1", Op.set("status", "paid"), Op.increment("n"))
        order = await iii.kv.get("orders", "o1")

        orders = iii.kv.scope("orders")        # an observable of the scope's changes ...
        orders.pipe(ops.filter(lambda c: c.kind == "updated")).subscribe(print)
        await orders.set("o2", {"status": "new"})   # ... with the same calls, scoped

Every call returns a lazy :class:`~iii_rx.single.Single` (awaiting it calls). A change stream
binds a ``state`` trigger while subscribed and emits :class:`StateChange` values in the order
the engine fired them (:mod:`iii_rx.trigger_stream`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from reactivex import operators as rx_ops

from iii_rx.single import Single
from iii_rx.trigger_stream import BUILTIN_NAMESPACE, TriggerHost, TriggerStream

__all__ = ["KV", "KVScope", "Op", "StateChange"]

ChangeKind = Literal["created", "updated", "deleted"]


@dataclass(frozen=True, slots=True)
class StateChange:
    """One change of a key, as the engine's ``state`` trigger reports it."""

    kind: ChangeKind
    """``created`` (the key was absent), ``updated`` or ``deleted``."""
    scope: str
    key: str
    old_value: Any
    """The value before (``None`` when created)."""
    new_value: Any
    """The value after (``None`` when deleted)."""

    @property
    def event_type(self) -> str:
        """The wire spelling: ``state:created``, ``state:updated`` or ``state:deleted``."""
        return f"state:{self.kind}"

    @classmethod
    def from_event(cls, event: Any) -> StateChange:
        """Read the ``state`` trigger's payload."""
        kind = str(event.get("event_type", "")).removeprefix("state:")
        if kind not in ("created", "updated", "deleted"):
            raise ValueError(f"not a state event: {event!r}")
        return cls(kind, event.get("scope", ""), event.get("key", ""),  # type: ignore[arg-type]
                   event.get("old_value"), event.get("new_value"))


class Op:
    """Builders of the operations of :meth:`KV.update` (plain dicts; any dict works too).

    A string ``path`` is one first-level key (``"a.b"`` is the key ``a.b``); ``merge`` and
    ``append`` also take a list of keys for a nested location. ``""`` / ``None`` is the root.
    """

    @staticmethod
    def set(path: str, value: Any) -> dict[str, Any]:
        """Set the field ``path`` (``""``: the whole value)."""
        return {"type": "set", "path": path, "value": value}

    @staticmethod
    def merge(value: dict[str, Any], path: str | list[str] | None = None) -> dict[str, Any]:
        """Shallow-merge the object ``value`` at ``path``."""
        return _with_path({"type": "merge", "value": value}, path)

    @staticmethod
    def increment(path: str, by: int | float = 1) -> dict[str, Any]:
        """Add ``by`` to the number at ``path`` (absent: starts from 0)."""
        return {"type": "increment", "path": path, "by": by}

    @staticmethod
    def decrement(path: str, by: int | float = 1) -> dict[str, Any]:
        """Subtract ``by`` from the number at ``path``."""
        return {"type": "decrement", "path": path, "by": by}

    @staticmethod
    def append(value: Any, path: str | list[str] | None = None) -> dict[str, Any]:
        """Push ``value`` onto the array at ``path``, or concatenate a string onto a string."""
        return _with_path({"type": "append", "value": value}, path)

    @staticmethod
    def remove(path: str) -> dict[str, Any]:
        """Drop the field ``path``."""
        return {"type": "remove", "path": path}


def _with_path(op: dict[str, Any], path: str | list[str] | None) -> dict[str, Any]:
    if path is not None:
        op["path"] = path
    return op


class KV:
    """The ``state::*`` functions and ``state`` change streams over a client."""

    def __init__(self, host: TriggerHost) -> None:
        self._host = host

    def _call(self, function_id: str, payload: dict[str, Any]) -> Single[Any]:
        return self._host.trigger(function_id, payload, namespace=BUILTIN_NAMESPACE)

    def get(self, scope: str, key: str) -> Single[Any]:
        """The value under ``(scope, key)``, ``None`` if absent."""
        return self._call("state::get", {"scope": scope, "key": key})

    def set(self, scope: str, key: str, value: Any) -> Single[dict[str, Any]]:
        """Store ``value``; gives ``{"old_value", "new_value"}``."""
        return self._call("state::set", {"scope": scope, "key": key, "value": value})

    def update(self, scope: str, key: str, *ops: dict[str, Any] | Iterable[dict[str, Any]]
               ) -> Single[dict[str, Any]]:
        """Apply :class:`Op` operations atomically (``update(s, k, op1, op2)`` or a list);
        gives ``{"old_value", "new_value"}`` and ``errors`` for operations that did not
        apply."""
        flat: list[Any] = []
        for op in ops:
            if isinstance(op, dict) or hasattr(op, "model_dump"):
                flat.append(op)
            else:
                flat.extend(op)
        return self._call("state::update", {"scope": scope, "key": key, "ops": flat})

    def delete(self, scope: str, key: str) -> Single[Any]:
        """Remove the key; gives the removed value (``None`` if it was absent)."""
        return self._call("state::delete", {"scope": scope, "key": key})

    def values(self, scope: str) -> Single[list[Any]]:
        """The scope's values, in first-write order (``state::list``)."""
        return self._call("state::list", {"scope": scope})

    def scopes(self) -> Single[list[str]]:
        """The scopes that hold a key, sorted (``state::list_groups``)."""
        return self._call("state::list_groups", {}).pipe(
            rx_ops.map(lambda answer: list(answer.get("groups", []))))

    def changes(self, scope: str | None = None, key: str | None = None
                ) -> TriggerStream[StateChange]:
        """Observable of the changes in ``scope`` (all scopes if ``None``) to ``key`` (all
        keys if ``None``)."""
        config = {k: v for k, v in (("scope", scope), ("key", key)) if v is not None}
        return TriggerStream(self._host, "state", config, transform=StateChange.from_event,
                             name=f"iii.kv.changes({scope!r}, {key!r})")

    def scope(self, scope: str) -> KVScope:
        """One scope: an observable of its changes with the calls bound to it."""
        return KVScope(self._host, scope)


class KVScope(TriggerStream[StateChange]):
    """A state scope: an observable of its :class:`StateChange` values (subscribing binds a
    ``state`` trigger filtered by the scope), and the ``state::*`` calls for its keys."""

    def __init__(self, host: TriggerHost, scope: str) -> None:
        super().__init__(host, "state", {"scope": scope}, transform=StateChange.from_event,
                         name=f"iii.kv.scope({scope!r})")
        self.scope = scope
        self._kv = KV(host)

    def get(self, key: str) -> Single[Any]:
        return self._kv.get(self.scope, key)

    def set(self, key: str, value: Any) -> Single[dict[str, Any]]:
        return self._kv.set(self.scope, key, value)

    def update(self, key: str, *ops: dict[str, Any] | Iterable[dict[str, Any]]
               ) -> Single[dict[str, Any]]:
        return self._kv.update(self.scope, key, *ops)

    def delete(self, key: str) -> Single[Any]:
        return self._kv.delete(self.scope, key)

    def values(self) -> Single[list[Any]]:
        return self._kv.values(self.scope)

    def changes(self, key: str | None = None) -> TriggerStream[StateChange]:
        """Observable of this scope's changes to ``key`` (all keys if ``None``)."""
        return self._kv.changes(self.scope, key)

