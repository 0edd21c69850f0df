"""The stream built-in worker (``iii-stream``): ``stream::*`` and the ``stream`` trigger types.

Items live under ``stream_name`` > ``group_id`` > ``item_id`` (namespace ``default``):

* ``stream::set {stream_name, group_id, item_id, data}`` → ``{old_value, new_value}``
* ``stream::get {stream_name, group_id, item_id}`` → the item or ``null``
* ``stream::delete {...}`` → ``{old_value}`` (``null`` when there was none)
* ``stream::update {..., ops}`` → ``{old_value, new_value}`` (plus ``errors`` when some
  operations did not apply; the operations of ``state::update``)
* ``stream::list {stream_name, group_id}`` → the group's items; ``stream::list_groups
  {stream_name}`` → its group ids; ``stream::list_all`` → ``{stream: [{id, groups}], count}``
* ``stream::send {stream_name, group_id, type, data, id?}`` → ``null``: an event, not stored.

A **custom stream** is a worker that registered ``stream::get(NAME)``, ``stream::set(NAME)``,
``stream::delete(NAME)``, ``stream::list(NAME)``, ``stream::list_groups(NAME)`` (the official
SDK's ``create_stream``): the ``stream::*`` call on stream ``NAME`` is then forwarded to it
(``update`` stays built in, as in the Rust engine).

A change (set, update, delete of an existing item, send) fires the ``stream`` bindings whose
``stream_name`` matches and whose ``group_id`` / ``item_id``, when given and non-empty, match
too, with the Rust engine's event: ``{"type": "stream", "timestamp": ms, "streamName",
"groupId", "id", "event": {"type": "create" | "update" | "delete", "data"}}`` (``send``:
``"event": {"type": "event", "event": {"type", "data"}}``). Handlers run after the write
answered; their failures are logged, never reported to the writer.

``stream:join`` / ``stream:leave`` fire when a client joins or leaves a group over the streams
socket (:mod:`~iii_rx.engine.workers.stream_socket`, opened by ``Engine(stream_port=...)``),
with ``{subscription_id, stream_name, group_id, id, context}``; a join binding that answers
``{"unauthorized": true}`` refuses the join. Without the socket they never fire.
"""

from __future__ import annotations

import time
from typing import Any

from iii_rx.engine.config import DEFAULT_NAMESPACE
from iii_rx.engine.connection import WorkerConnection
from iii_rx.engine.registry import CallContext
from iii_rx.engine.services import EngineServices
from iii_rx.engine.triggers import Binding, BindingRefused, TriggerType
from iii_rx.engine.workers._common import (
    MISSING,
    Fanout,
    bad_input,
    config_object,
    config_str,
    optional_str,
    require_object,
    require_str,
)
from iii_rx.engine.workers.stream_socket import StreamSocket
from iii_rx.engine.workers.streams_store import MemoryStreamAdapter, StreamAdapter
from iii_rx.engine.workers.update_ops import apply_ops, parse_ops
from iii_rx.errors import IIIInvocationError

__all__ = ["StreamBindings", "StreamWorker"]

WORKER_NAME = "iii-stream"
TRIGGER_TYPE = "stream"
JOIN = "stream:join"
LEAVE = "stream:leave"

_ITEM = {"stream_name": {"type": "string"}, "group_id": {"type": "string"},
         "item_id": {"type": "string"}}
_ITEM_KEYS = ["stream_name", "group_id", "item_id"]
_SCHEMAS: dict[str, dict[str, Any]] = {
    "set": {"type": "object", "properties": {**_ITEM, "data": {}},
            "required": [*_ITEM_KEYS, "data"]},
    "get": {"type": "object", "properties": _ITEM, "required": _ITEM_KEYS},
    "delete": {"type": "object", "properties": _ITEM, "required": _ITEM_KEYS},
    "update": {"type": "object", "properties": {**_ITEM, "ops": {"type": "array"}},
               "required": [*_ITEM_KEYS, "ops"]},
    "list": {"type": "object", "properties": {"stream_name": {"type": "string"},
                                              "group_id": {"type": "string"}},
             "required": ["stream_name", "group_id"]},
    "list_groups": {"type": "object", "properties": {"stream_name": {"type": "string"}},
                    "required": ["stream_name"]},
    "list_all": {"type": "object"},
    "send": {"type": "object", "properties": {"stream_name": {"type": "string"},
                                              "group_id": {"type": "string"},
                                              "type": {"type": "string"}, "data": {},
                                              "id": {"type": "string"}},
             "required": ["stream_name", "group_id", "type"]},
}
_TRIGGER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"stream_name": {"type": "string", "minLength": 1},
                   "group_id": {"type": "string"}, "item_id": {"type": "string"},
                   "condition_function_id": {"type": "string"}},
    "required": ["stream_name"],
}


class StreamBindings:
    """The in-process provider of ``stream``: bindings indexed by stream name."""

    def __init__(self) -> None:
        self.by_stream: dict[str, dict[str, tuple[Binding, str, str, str | None]]] = {}
        self._stream_of: dict[str, str] = {}

    def bind(self, binding: Binding) -> None:
        config = config_object(TRIGGER_TYPE, binding.config)
        name = config_str(TRIGGER_TYPE, config, "stream_name")
        if not name:
            raise BindingRefused("stream trigger needs a non-empty `stream_name` in its config")
        group = config_str(TRIGGER_TYPE, config, "group_id") or ""
        item = config_str(TRIGGER_TYPE, config, "item_id") or ""
        condition = config_str(TRIGGER_TYPE, config, "condition_function_id")
        self._drop(binding.id)
        self.by_stream.setdefault(name, {})[binding.id] = (binding, group, item, condition)
        self._stream_of[binding.id] = name

    def unbind(self, binding: Binding) -> None:
        name = self._stream_of.get(binding.id)
        if name is not None and self.by_stream[name][binding.id][0] is binding:
            self._drop(binding.id)

    def _drop(self, binding_id: str) -> None:
        name = self._stream_of.pop(binding_id, None)
        if name is None:
            return
        bindings = self.by_stream[name]
        del bindings[binding_id]
        if not bindings:
            del self.by_stream[name]


class _Lifecycle:
    """Provider of ``stream:join`` / ``stream:leave``: keeps the bindings the streams socket
    calls."""

    def __init__(self, trigger_type: str) -> None:
        self.trigger_type = trigger_type
        self.bindings: dict[str, Binding] = {}

    def bind(self, binding: Binding) -> None:
        config_object(self.trigger_type, binding.config)
        self.bindings[binding.id] = binding

    def unbind(self, binding: Binding) -> None:
        if self.bindings.get(binding.id) is binding:
            del self.bindings[binding.id]


def _or_none(value: Any) -> Any:
    return None if value is MISSING else value


class StreamWorker:
    """Engine extension: the ``stream::*`` functions and the ``stream`` trigger types."""

    def __init__(self, adapter: StreamAdapter | None = None) -> None:
        self.adapter: StreamAdapter = adapter if adapter is not None else MemoryStreamAdapter()
        self.bindings = StreamBindings()
        self.join = _Lifecycle(JOIN)
        self.leave = _Lifecycle(LEAVE)
        self._fanout: Fanout | None = None
        self._services: EngineServices | None = None
        self.socket: StreamSocket | None = None
        """The streams socket, while open (``Engine(stream_port=...)``)."""

    async def start(self, services: EngineServices) -> None:
        await self.adapter.open()
        self._services = services
        self._fanout = Fanout(services, "the stream worker")
        services.add_worker(WORKER_NAME, "Durable streams for real-time data subscriptions")
        handlers = {"set": self._set, "get": self._get, "delete": self._delete,
                    "update": self._update, "list": self._list,
                    "list_groups": self._list_groups, "list_all": self._list_all,
                    "send": self._send}
        for name, handler in handlers.items():
            services.add_function(f"stream::{name}", handler, worker=WORKER_NAME,
                                  description=f"stream::{name}",
                                  request_format=_SCHEMAS[name])
        services.add_trigger_type(TriggerType(
            TRIGGER_TYPE, DEFAULT_NAMESPACE, "Fires when a stream item changes",
            provider=self.bindings, worker_name=WORKER_NAME,
            trigger_request_format=_TRIGGER_SCHEMA, call_request_format={}))
        for provider, text in ((self.join, "joins"), (self.leave, "leaves")):
            services.add_trigger_type(TriggerType(
                provider.trigger_type, DEFAULT_NAMESPACE,
                f"Fires when a client {text} a stream group over the stream socket",
                provider=provider, worker_name=WORKER_NAME, trigger_request_format={},
                call_request_format={}))

        port = services.config.stream_port
        if port is not None:
            self.socket = StreamSocket(services, self.read, self.join.bindings,
                                       self.leave.bindings, services.config.stream_auth_function)
            config = services.config
            await self.socket.start(config.host if config.stream_host is None
                                    else config.stream_host, port)

    async def stop(self) -> None:
        socket, self.socket = self.socket, None
        if socket is not None:
            await socket.stop()
        fanout, self._fanout = self._fanout, None
        if fanout is not None:
            await fanout.aclose()
        await self.adapter.close()

    # ------------------------------------------------------------------ events

    def emit(self, stream: str, group: str, item: str | None, event: dict[str, Any]) -> int:
        """Send one change to the socket's subscribers and fire the matching ``stream``
        bindings; returns how many bindings fired."""
        payload = {"type": "stream", "timestamp": int(time.time() * 1000),
                   "streamName": stream, "groupId": group, "id": item, "event": event}
        if self.socket is not None:
            self.socket.broadcast(payload)
        fanout = self._fanout
        bindings = self.bindings.by_stream.get(stream)
        if fanout is None or not bindings:
            return 0
        fired = 0
        for binding, want_group, want_item, condition in list(bindings.values()):
            if (want_group and want_group != group) or (want_item and want_item != (item or "")):
                continue
            fanout.fire(binding, payload, condition)
            fired += 1
        return fired

    async def read(self, stream: str, group: str, item: str | None) -> Any:
        """An item (``item`` given; ``None`` if absent) or a group's items, custom streams
        included (what a socket join syncs)."""
        if item is None:
            data: dict[str, Any] = {"stream_name": stream, "group_id": group}
            custom = await self._custom("list", stream, data)
            return await self.adapter.items(stream, group) if custom is MISSING else custom
        data = {"stream_name": stream, "group_id": group, "item_id": item}
        custom = await self._custom("get", stream, data)
        if custom is not MISSING:
            return custom
        return _or_none(await self.adapter.get(stream, group, item))

    # ------------------------------------------------------------------ custom streams

    async def _custom(self, operation: str, stream: str, data: dict[str, Any],
                      reader: WorkerConnection | None = None) -> Any:
        """The result of ``stream::OP(stream)`` if a worker provides it, else ``MISSING``.

        ``reader``: the worker a read (get, list, list_groups) is made for; if it leaves, the
        call is withdrawn (a provider that never answers held each for ever). Writes are
        never withdrawn: their change events follow the provider's answer."""
        function_id = f"stream::{operation}({stream})"
        services = self._services
        if services is None or not services.has_function(function_id):
            return MISSING
        payload = {key: value for key, value in data.items() if key != "_caller_worker_id"}
        try:
            return await services.call(function_id, payload, caller=reader)
        except IIIInvocationError as exc:
            raise IIIInvocationError(f"STREAM_{operation.upper()}_ERROR",
                                     f"Failed to {operation} value: {exc.code}: "
                                     f"{exc.message}") from exc

    @staticmethod
    def _result(operation: str, result: Any, fields: tuple[str, ...]) -> dict[str, Any]:
        """A custom stream's ``{old_value, new_value}``-like answer, checked."""
        if result is None:
            raise IIIInvocationError(f"STREAM_{operation.upper()}_ERROR",
                                     f"Failed to {operation} value: Function returned no "
                                     f"result")
        if not isinstance(result, dict) or any(f not in result for f in fields
                                               if f != "old_value"):
            raise IIIInvocationError("JSON_ERROR", f"Failed to convert result to value: "
                                     f"expected an object with {', '.join(fields)}")
        return {field: result.get(field) for field in fields}

    # ------------------------------------------------------------------ functions

    def _item(self, function_id: str, data: Any) -> tuple[dict[str, Any], str, str, str]:
        data = require_object(function_id, data)
        return (data, require_str(function_id, data, "stream_name"),
                require_str(function_id, data, "group_id"),
                require_str(function_id, data, "item_id"))

    async def _set(self, data: Any, ctx: CallContext) -> dict[str, Any]:
        data, stream, group, item = self._item("stream::set", data)
        if "data" not in data:
            raise bad_input("stream::set", "missing field `data`")
        value = data["data"]
        custom = await self._custom("set", stream, data)
        if custom is MISSING:
            old = await self.adapter.set(stream, group, item, value)
            result = {"old_value": _or_none(old), "new_value": value}
        else:
            result = self._result("set", custom, ("old_value", "new_value"))
        kind = "create" if result["old_value"] is None else "update"
        self.emit(stream, group, item, {"type": kind, "data": result["new_value"]})
        return result

    async def _get(self, data: Any, ctx: CallContext) -> Any:
        data, stream, group, item = self._item("stream::get", data)
        custom = await self._custom("get", stream, data, ctx.caller)
        if custom is not MISSING:
            return custom
        return _or_none(await self.adapter.get(stream, group, item))

    async def _delete(self, data: Any, ctx: CallContext) -> dict[str, Any]:
        data, stream, group, item = self._item("stream::delete", data)
        custom = await self._custom("delete", stream, data)
        if custom is MISSING:
            old = _or_none(await self.adapter.delete(stream, group, item))
        else:
            old = self._result("delete", custom, ("old_value",))["old_value"]
        if old is not None:
            self.emit(stream, group, item, {"type": "delete", "data": old})
        return {"old_value": old}

    async def _update(self, data: Any, ctx: CallContext) -> dict[str, Any]:
        data, stream, group, item = self._item("stream::update", data)
        ops = parse_ops("stream::update", data.get("ops"))
        custom = await self._custom("update", stream, data)
        if custom is not MISSING:
            result = self._result("update", custom, ("old_value", "new_value"))
        else:
            errors: list[dict[str, Any]] = []

            def mutate(old: Any) -> Any:
                new, failed = apply_ops(old, ops)
                errors.extend(failed)
                return new

            old, new = await self.adapter.update(stream, group, item, mutate)
            result = {"old_value": _or_none(old), "new_value": new}
            if errors:
                result["errors"] = errors
        kind = "create" if result["old_value"] is None else "update"
        self.emit(stream, group, item, {"type": kind, "data": result["new_value"]})
        return result

    async def _list(self, data: Any, ctx: CallContext) -> Any:
        data = require_object("stream::list", data)
        stream = require_str("stream::list", data, "stream_name")
        group = require_str("stream::list", data, "group_id")
        custom = await self._custom("list", stream, data, ctx.caller)
        if custom is not MISSING:
            return custom
        return await self.adapter.items(stream, group)

    async def _list_groups(self, data: Any, ctx: CallContext) -> Any:
        data = require_object("stream::list_groups", data)
        stream = require_str("stream::list_groups", data, "stream_name")
        custom = await self._custom("list_groups", stream, data, ctx.caller)
        if custom is not MISSING:
            return custom
        return await self.adapter.groups(stream)

    async def _list_all(self, data: Any, ctx: CallContext) -> dict[str, Any]:
        if data is not None:
            require_object("stream::list_all", data)
        streams = [{"id": name, "groups": groups}
                   for name, groups in (await self.adapter.streams()).items()]
        return {"stream": streams, "count": len(streams)}

    async def _send(self, data: Any, ctx: CallContext) -> None:
        data = require_object("stream::send", data)
        stream = require_str("stream::send", data, "stream_name")
        group = require_str("stream::send", data, "group_id")
        kind = require_str("stream::send", data, "type")
        item = optional_str("stream::send", data, "id")
        if "data" not in data:  # null is data; none at all is refused, as by the Rust engine
            raise bad_input("stream::send", "missing field `data`")
        self.emit(stream, group, item, {"type": "event",
                                        "event": {"type": kind, "data": data.get("data")}})
