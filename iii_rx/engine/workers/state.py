"""The ``state`` built-in worker (``iii-state``): scoped key-value state and its trigger type.

Functions (namespace ``default``, worker ``iii-state``), each taking a JSON object:

* ``state::set {scope, key, value}`` (``data`` is accepted for ``value``) →
  ``{"old_value", "new_value"}``; fires ``state:created`` (the key was absent) or
  ``state:updated``;
* ``state::get {scope, key}`` → the value, or ``null``;
* ``state::delete {scope, key}`` → the removed value, or ``null``; fires ``state:deleted``
  (also for an absent key, with ``old_value: null``);
* ``state::update {scope, key, ops}`` → ``{"old_value", "new_value"}`` plus ``errors`` when
  an operation did not apply (:mod:`~iii_rx.engine.workers.update_ops`); fires like ``set``;
* ``state::list {scope}`` → the scope's values, in first-write order;
* ``state::list_groups {}`` → ``{"groups": [...]}``, the sorted scopes that hold a key.

The ``state`` trigger type fires ``{"type": "state", "event_type", "scope", "key",
"old_value", "new_value"}`` after each successful write, for the bindings whose config matches:
``scope`` and ``key`` (each optional, exact match) and an optional ``condition_function_id``.
Reads never fire. Bindings are called without waiting for each other; a failure is logged
and does not undo the write.

Values live in a :class:`~iii_rx.engine.workers.state_store.StateAdapter`: in memory by
default, or a sqlite file (:class:`~iii_rx.engine.workers.state_sqlite.SqliteStateAdapter`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from iii_rx.engine.config import DEFAULT_NAMESPACE
from iii_rx.engine.registry import CallContext
from iii_rx.engine.services import NO_TRACE, EngineServices, Trace
from iii_rx.engine.triggers import Binding, TriggerType
from iii_rx.engine.workers._common import (
    MISSING,
    Fanout,
    bad_input,
    config_object,
    config_str,
    require_object,
    require_str,
)
from iii_rx.engine.workers.state_store import MemoryStateAdapter, StateAdapter
from iii_rx.engine.workers.update_ops import apply_ops, parse_ops

__all__ = ["STATE_EVENT_SCHEMA", "STATE_TRIGGER_CONFIG_SCHEMA", "StateBindings", "StateWorker"]

WORKER_NAME = "iii-state"
TRIGGER_TYPE = "state"

_SCOPE_KEY = {"scope": {"type": "string"}, "key": {"type": "string"}}
STATE_TRIGGER_CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"scope": {"type": "string"}, "key": {"type": "string"},
                   "condition_function_id": {"type": "string"}},
}
"""Config of a ``state`` binding: every field optional."""
STATE_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "type": {"const": "state"},
        "event_type": {"enum": ["state:created", "state:updated", "state:deleted"]},
        **_SCOPE_KEY, "old_value": {}, "new_value": {},
    },
    "required": ["type", "event_type", "scope", "key", "old_value", "new_value"],
}
"""What a ``state`` binding's function receives."""
_CHANGE_SCHEMA: dict[str, Any] = {
    "type": "object", "properties": {"old_value": {}, "new_value": {}},
    "required": ["old_value", "new_value"],
}


def _request(*required: str, **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": {**{f: {"type": "string"} for f in required},
                                             **extra}, "required": list(required)}


@dataclass(frozen=True, slots=True)
class _Entry:
    binding: Binding
    scope: str | None
    key: str | None
    condition: str | None


class StateBindings:
    """The in-process provider of the ``state`` trigger type: bindings indexed by scope."""

    def __init__(self) -> None:
        self._by_scope: dict[str | None, dict[str, _Entry]] = {}
        self._scope_of: dict[str, str | None] = {}

    def bind(self, binding: Binding) -> None:
        config = config_object(TRIGGER_TYPE, binding.config)
        entry = _Entry(binding, config_str(TRIGGER_TYPE, config, "scope"),
                       config_str(TRIGGER_TYPE, config, "key"),
                       config_str(TRIGGER_TYPE, config, "condition_function_id"))
        self._drop(binding.id)
        self._by_scope.setdefault(entry.scope, {})[binding.id] = entry
        self._scope_of[binding.id] = entry.scope

    def unbind(self, binding: Binding) -> None:
        scope = self._scope_of.get(binding.id, MISSING)
        if scope is not MISSING and self._by_scope[scope][binding.id].binding is binding:
            self._drop(binding.id)

    def _drop(self, binding_id: str) -> None:
        scope = self._scope_of.pop(binding_id, MISSING)
        if scope is MISSING:
            return
        entries = self._by_scope[scope]
        del entries[binding_id]
        if not entries:
            del self._by_scope[scope]

    def matching(self, scope: str, key: str) -> list[_Entry]:
        """The bindings an event of ``(scope, key)`` fires, scoped ones first."""
        found = [e for e in self._by_scope.get(scope, {}).values()
                 if e.key is None or e.key == key]
        if None in self._by_scope:
            found += [e for e in self._by_scope[None].values() if e.key is None or e.key == key]
        return found

    def __len__(self) -> int:
        return len(self._scope_of)


class StateWorker:
    """Engine extension: the ``state::*`` functions and the ``state`` trigger type."""

    def __init__(self, adapter: StateAdapter | None = None) -> None:
        self.adapter: StateAdapter = adapter if adapter is not None else MemoryStateAdapter()
        self.bindings = StateBindings()
        self._fanout: Fanout | None = None

    async def start(self, services: EngineServices) -> None:
        await self.adapter.open()
        self._fanout = Fanout(services, "the state worker")
        services.add_worker(WORKER_NAME, "Key-value state with change triggers")
        inline = self.adapter.inline
        functions = [
            ("state::set", self._set, "Set a value in state",
             _request("scope", "key", value={}), _CHANGE_SCHEMA),
            ("state::get", self._get, "Get a value from state", _request("scope", "key"), {}),
            ("state::delete", self._delete, "Delete a value from state",
             _request("scope", "key"), {}),
            ("state::update", self._update, "Update a value in state with operations",
             _request("scope", "key", ops={"type": "array", "items": {"type": "object"}}),
             _CHANGE_SCHEMA),
            ("state::list", self._list, "List the values of a scope", _request("scope"),
             {"type": "array"}),
            ("state::list_groups", self._list_groups, "List the scopes holding state",
             {"type": "object"}, {"type": "object", "properties": {"groups": {
                 "type": "array", "items": {"type": "string"}}}, "required": ["groups"]}),
        ]
        for function_id, handler, description, request, response in functions:
            services.add_function(function_id, handler, worker=WORKER_NAME,
                                  description=description, request_format=request,
                                  response_format=response, inline=inline)
        services.add_trigger_type(TriggerType(
            TRIGGER_TYPE, DEFAULT_NAMESPACE, "State trigger", provider=self.bindings,
            worker_name=WORKER_NAME, trigger_request_format=STATE_TRIGGER_CONFIG_SCHEMA,
            call_request_format=STATE_EVENT_SCHEMA))

    async def stop(self) -> None:
        fanout, self._fanout = self._fanout, None
        if fanout is not None:
            await fanout.aclose()
        await self.adapter.close()

    # ------------------------------------------------------------------ functions

    async def _set(self, data: Any, ctx: CallContext) -> dict[str, Any]:
        fid = "state::set"
        data = require_object(fid, data)
        scope, key = require_str(fid, data, "scope"), require_str(fid, data, "key")
        if "value" in data:
            if "data" in data:  # `data` is another name of `value` there
                raise bad_input(fid, "duplicate field `value`")
            value = data["value"]
        elif "data" in data:
            value = data["data"]
        else:
            raise bad_input(fid, "missing field `value`")
        old = await self.adapter.set(scope, key, value)
        self._changed(scope, key, old, value, (ctx.traceparent, ctx.baggage))
        return {"old_value": _none(old), "new_value": value}

    async def _get(self, data: Any, ctx: CallContext) -> Any:
        data = require_object("state::get", data)
        value = await self.adapter.get(require_str("state::get", data, "scope"),
                                       require_str("state::get", data, "key"))
        return _none(value)

    async def _delete(self, data: Any, ctx: CallContext) -> Any:
        fid = "state::delete"
        data = require_object(fid, data)
        scope, key = require_str(fid, data, "scope"), require_str(fid, data, "key")
        old = await self.adapter.delete(scope, key)
        self.emit("state:deleted", scope, key, _none(old), None, (ctx.traceparent, ctx.baggage))
        return _none(old)

    async def _update(self, data: Any, ctx: CallContext) -> dict[str, Any]:
        fid = "state::update"
        data = require_object(fid, data)
        scope, key = require_str(fid, data, "scope"), require_str(fid, data, "key")
        ops = parse_ops(fid, data.get("ops"))
        errors: list[dict[str, Any]] = []

        def mutate(old: Any) -> Any:
            new, failed = apply_ops(old, ops)
            errors.extend(failed)
            return new

        old, new = await self.adapter.update(scope, key, mutate)
        self._changed(scope, key, old, new, (ctx.traceparent, ctx.baggage))
        result = {"old_value": _none(old), "new_value": new}
        if errors:
            result["errors"] = errors
        return result

    async def _list(self, data: Any, ctx: CallContext) -> list[Any]:
        data = require_object("state::list", data)
        return await self.adapter.values(require_str("state::list", data, "scope"))

    async def _list_groups(self, data: Any, ctx: CallContext) -> dict[str, Any]:
        if data is not None:
            require_object("state::list_groups", data)
        return {"groups": sorted(set(await self.adapter.list_groups()))}

    # ------------------------------------------------------------------ events

    def _changed(self, scope: str, key: str, old: Any, new: Any, trace: Trace) -> None:
        event_type = "state:created" if old is MISSING else "state:updated"
        self.emit(event_type, scope, key, _none(old), new, trace)

    def emit(self, event_type: str, scope: str, key: str, old: Any, new: Any,
             trace: Trace = NO_TRACE) -> None:
        """Fire the ``state`` bindings matching ``(scope, key)`` with one event, in the trace
        of the call that changed the value (as the Rust engine does)."""
        fanout = self._fanout
        if fanout is None or not len(self.bindings):
            return
        matching = self.bindings.matching(scope, key)
        if not matching:
            return
        event = {"type": "state", "event_type": event_type, "scope": scope, "key": key,
                 "old_value": old, "new_value": new}
        for entry in matching:
            fanout.fire(entry.binding, event, entry.condition, trace)


def _none(value: Any) -> Any:
    return None if value is MISSING else value

