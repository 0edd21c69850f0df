"""What this worker registered with the engine and replays on every connection.

See docs/protocol.md §2.3.

:class:`Registrations` keeps three registries: functions (with the sinks their invocations go
to), trigger bindings (consumer side) and trigger types (provider side). Adding or removing an
entry sends its ``register*``/``unregister*`` frame to an outbox; :meth:`Registrations.replay`
gives the frames that bring a new connection up to date. No I/O happens here: the outbox is a
callable (the transport's ``send``, or ``list.append`` in a test).

Threading: user calls add and remove entries from any thread, synchronously, so that they can
raise (a duplicate id, a closed client); a lock guards the registries. The worker reads
:attr:`Registrations.functions` on the loop without the lock: a dict lookup is atomic, and a
function's sinks are replaced as a whole tuple, never changed in place.

:class:`Standby` handles the functions another worker owns (``FUNCTION_NAMESPACE_CONFLICT``):
they show ``conflict`` on their status, and while there is any, a private function bound to
``engine::workers-available`` and ``engine::functions-available`` registers them again when
something changes, so this worker takes over when the owner leaves. It works through the
client's public API (:class:`StandbyHost`), and exists only while needed: the engine then
fires nothing at a worker without conflicts.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any, Protocol

from iii_rx.aio import LoopBridge, TaskSet
from iii_rx.calls import call_namespace, request_fields
from iii_rx.errors import IIIRegistrationRejectedError, error_from_body
from iii_rx.functions import FunctionEntry, FunctionSpec, FunctionState, Sink
from iii_rx.logsafe import RateLimitedLog, printable
from iii_rx.notebook import Cell, current_cell
from iii_rx.protocol import TriggerRegistrationResult
from iii_rx.triggers import TriggerBinding, TriggerHandle, TriggerType

__all__ = ["STANDBY_PREFIX", "BindingRequest", "Registrations", "Standby", "StandbyHost",
           "binding_of", "check_id"]

log = logging.getLogger("iii_rx.registrations")
_refusals = RateLimitedLog(log)
"""Refused bindings: each reconnect replays every binding, and a provider's text is in it."""


_BINDING_FIELDS = ("type", "function_id", "config", "metadata", "namespace", "trigger_namespace")


class BindingRequest(Protocol):
    """A trigger binding given as one object (the official SDK's ``RegisterTriggerInput``, a
    dataclass...): its ``type`` and ``function_id``, and what it has of ``config``,
    ``metadata``, ``namespace``, ``trigger_namespace``. A type, so that a wrong object fails
    the type check, not only the call."""

    @property
    def type(self) -> str: ...

    @property
    def function_id(self) -> str: ...


def check_id(function_id: str) -> str:
    """``function_id`` if it is a non-blank string; ``ValueError`` otherwise."""
    if not isinstance(function_id, str) or not function_id.strip():
        raise ValueError("id must be a non-empty string")
    return function_id


def binding_of(trigger: Any, fields: dict[str, Any], namespace: str | None) -> TriggerBinding:
    """A new binding from ``register_trigger``'s arguments (a mapping or an object with the
    fields, and keywords over it); ``namespace`` is the worker's."""
    if trigger is not None:
        fields = request_fields(trigger, _BINDING_FIELDS) | fields
    trigger_type = fields.get("type") or fields.get("trigger_type")
    function_id = fields.get("function_id")
    if not isinstance(trigger_type, str) or not trigger_type:
        raise ValueError("register_trigger needs a trigger 'type'")
    if not isinstance(function_id, str) or not function_id:
        raise ValueError("register_trigger needs a 'function_id'")
    return TriggerBinding.new(trigger_type, function_id, fields.get("config"),
                              fields.get("metadata"),
                              call_namespace(function_id, fields.get("namespace"), namespace),
                              fields.get("trigger_namespace"))


class Registrations:
    """Functions, trigger bindings and trigger types of one worker, replayed on reconnect.

    ``send`` receives each control frame (any thread). After :meth:`refuse`, additions raise
    the refusal's error; after :meth:`close`, removals send nothing (the socket is gone).
    ``bridge`` (the client's loop) gives each function's status a stream.
    """

    def __init__(self, send: Callable[[str], None], bridge: LoopBridge | None = None) -> None:
        self._send = send
        self._bridge = bridge
        self.on_removed: Callable[[str], None] | None = None
        """Told the id of every function removed (any thread): the :class:`Standby`."""
        self.on_type_removed: Callable[[TriggerType], None] | None = None
        """Told every trigger type removed (on the loop): the providers, which retract its
        bindings."""
        self._lock = threading.Lock()
        self._functions: dict[str, FunctionEntry] = {}
        self.functions: Mapping[str, FunctionEntry] = MappingProxyType(self._functions)
        """Live read-only view of the functions by id (lock-free: the worker's hot path)."""
        self._cells: dict[str, Cell] = {}
        """The notebook cell (and run) that registered each handler, when one did."""
        self._bindings: dict[str, TriggerHandle] = {}
        self._types: dict[str, TriggerType] = {}
        self._refusal: Callable[[], BaseException] | None = None
        self._closed = False

    def refuse(self, reason: Callable[[], BaseException]) -> None:
        """From now on, raise ``reason()`` on every addition (the first refusal wins)."""
        if self._refusal is None:
            self._refusal = reason

    def _check(self) -> None:
        if self._refusal is not None:
            raise self._refusal()

    # ------------------------------------------------------------------ functions

    def add_sink(self, spec: FunctionSpec, sink: Sink) -> FunctionEntry:
        """Add ``sink`` to function ``spec.id``; a new function is registered with the engine.
        Returns the function's entry.

        ``ValueError`` if the function has a sink that must be alone (a handler) or ``sink``
        must be alone and the function exists. In a notebook kernel, a handler registered
        again by a later run of the cell that registered it replaces it instead (a re-run
        cell): the previous handle is detached (its ``unregister()`` does nothing), invocations
        already given to it finish there. Another cell taking the id is still refused: it is
        as likely a copy-paste slip as a wish to replace a handler defined elsewhere.
        """
        self._check()
        frame = spec.register_frame()  # first: what cannot be sent is refused, nothing kept
        cell = current_cell(1) if sink.exclusive else None
        with self._lock:
            entry = self._functions.get(spec.id)
            if entry is not None and (sink.exclusive or any(s.exclusive for s in entry.sinks)):
                if not (all(s.exclusive for s in entry.sinks)
                        and self._rerun(spec.id, cell)):
                    raise ValueError(
                        f"function {spec.id!r} is already registered by this client: call "
                        "unregister() on the handle the first registration returned (or "
                        "dispose its subscriptions), or use another id")
                log.info("function %r registered again by its cell: the new handler replaces "
                         "the previous one", spec.id)
                send, entry.spec, entry.sinks = spec != entry.spec, spec, (sink,)
            else:
                send = entry is None
                if entry is None:
                    entry = self._functions[spec.id] = FunctionEntry(spec, self._bridge)
                entry.sinks = (*entry.sinks, sink)
            if cell is not None:
                self._cells[spec.id] = cell
        if send:
            self._send(frame)
        return entry

    def _rerun(self, function_id: str, cell: Cell | None) -> bool:
        """Whether ``cell`` is a later run of the cell that registered ``function_id``."""
        first = self._cells.get(function_id)
        return (cell is not None and first is not None and first.key == cell.key
                and first.execution != cell.execution)

    def remove_sink(self, function_id: str, sink: Sink) -> None:
        """Remove ``sink``; when it was the last, unregister the function (idempotent)."""
        with self._lock:
            entry = self._functions.get(function_id)
            if entry is None or sink not in entry.sinks:
                return
            entry.sinks = tuple(s for s in entry.sinks if s is not sink)
            if entry.sinks:
                return
            del self._functions[function_id]
            self._cells.pop(function_id, None)
            closed = self._closed
        entry.status.set(FunctionState.UNREGISTERED)
        if self.on_removed is not None:
            self.on_removed(function_id)
        if not closed:
            self._send(entry.spec.unregister_frame())

    @property
    def function_ids(self) -> list[str]:
        """The functions registered here."""
        with self._lock:
            return list(self._functions)

    def register_again(self, function_ids: list[str]) -> None:
        """Send ``registerfunction`` again for those of ``function_ids`` still registered."""
        with self._lock:
            specs = [self._functions[f].spec for f in function_ids if f in self._functions]
        for spec in specs:
            self._send(spec.register_frame())

    def sinks(self) -> list[Sink]:
        """Every sink of every function."""
        with self._lock:
            return [sink for entry in self._functions.values() for sink in entry.sinks]

    # ------------------------------------------------------------------ trigger bindings

    def add_binding(self, handle: TriggerHandle) -> None:
        """Keep ``handle``'s binding and register it with the engine."""
        self._check()
        frame = handle.binding.register_frame()  # first: what cannot be sent is not kept
        with self._lock:
            self._bindings[handle.binding.id] = handle
        self._send(frame)

    def remove_binding(self, binding: TriggerBinding) -> None:
        """Forget ``binding`` and unregister it (idempotent)."""
        with self._lock:
            if self._bindings.pop(binding.id, None) is None:
                return
            closed = self._closed
        if not closed:
            self._send(binding.unregister_frame())

    def on_binding_result(self, frame: TriggerRegistrationResult) -> None:
        """The engine (or the provider behind it) refused one of our bindings: log it and
        record the error on its handle. An acceptance needs nothing."""
        if frame.error is None:
            return
        handle = self._bindings.get(frame.id)
        error = error_from_body(frame.error.code, frame.error.message,
                                function_id=frame.function_id)
        if str(frame.function_id).startswith(STANDBY_PREFIX):
            _refusals.log(logging.WARNING, "standby watch refused", "standby take-over is off: "
                          "the engine refused the watch for the owners of this worker's "
                          "conflicted functions (%s); on an RBAC listener the session needs "
                          "%s* and %s among the functions it may call",
                          printable(str(error), 300), STANDBY_PREFIX, _LIST)
        else:
            _refusals.log(logging.WARNING, "trigger refused", "trigger %s (%s -> %s) was "
                          "refused: %s", printable(frame.id), printable(frame.trigger_type),
                          printable(repr(frame.function_id)), printable(str(error), 500))
        if handle is not None:
            handle.error = error

    # ------------------------------------------------------------------ trigger types

    def add_trigger_type(self, trigger_type: TriggerType) -> None:
        """Provide ``trigger_type``; ``ValueError`` if its id is provided here already."""
        self._check()
        frame = trigger_type.register_frame()  # first: what cannot be sent is not kept
        with self._lock:
            if trigger_type.id in self._types:
                raise ValueError(
                    f"trigger type {trigger_type.id!r} is already registered by this client")
            self._types[trigger_type.id] = trigger_type
        self._send(frame)

    def remove_trigger_type(self, trigger_type: TriggerType) -> None:
        """Stop providing ``trigger_type`` (idempotent)."""
        with self._lock:
            if self._types.get(trigger_type.id) is not trigger_type:
                return
            del self._types[trigger_type.id]
            closed = self._closed
        if not closed:
            self._send(trigger_type.unregister_frame())
            if self.on_type_removed is not None and self._bridge is not None:
                self._bridge.run_sync_soon(self.on_type_removed, trigger_type)

    def trigger_type(self, type_id: str) -> TriggerType | None:
        """The trigger type ``type_id`` provided here, if any."""
        return self._types.get(type_id)

    @property
    def trigger_types(self) -> list[TriggerType]:
        """The trigger types provided here."""
        with self._lock:
            return list(self._types.values())

    def trigger_type_with_binding(self, binding_id: str) -> TriggerType | None:
        """The trigger type that holds binding ``binding_id`` (when the engine did not say)."""
        with self._lock:
            types = list(self._types.values())
        for candidate in types:
            if binding_id in candidate.bindings:
                return candidate
        return None

    # ------------------------------------------------------------------ connection

    def replay(self) -> list[str]:
        """The frames that register everything again on a new connection: trigger types
        first (bindings may name them), then functions, then bindings."""
        with self._lock:
            types = list(self._types.values())
            functions = [entry.spec for entry in self._functions.values()]
            bindings = [handle.binding for handle in self._bindings.values()]
        head: list[str] = []
        items: list[TriggerType | FunctionSpec | TriggerBinding] = [*types, *functions, *bindings]
        for item in items:
            try:
                head.append(item.register_frame())
            except Exception:  # its metadata or config was changed in place since
                log.exception("cannot register %r again on the new connection; left out",
                              item.id)
        return head

    def close(self) -> list[FunctionEntry]:
        """Forget every function and send nothing more; returns the functions forgotten."""
        with self._lock:
            self._closed = True
            entries = list(self._functions.values())
            self._functions.clear()
        for entry in entries:
            entry.status.set(FunctionState.UNREGISTERED)
        return entries


# ====================================================================== standing by

STANDBY_PREFIX = "iii_rx::standby::"
"""The private function of a :class:`Standby` (``metadata.internal``: listings hide it)."""
_WATCHED = ("engine::workers-available", "engine::functions-available")
_LIST = "engine::functions::list"
_RETRY_S = 1.0


class Unregisterable(Protocol):
    def unregister(self) -> None: ...


class StandbyHost(Protocol):
    """What a :class:`Standby` uses of the client (public API)."""

    @property
    def name(self) -> str: ...

    def register_function(self, function_id: str, handler: Callable[..., Any], *,
                          description: str | None = ..., metadata: Any = ...) -> Unregisterable:
        ...

    def register_trigger(self, trigger: Mapping[str, Any], /) -> Unregisterable: ...

    def trigger(self, function_id: str, payload: Any = ...) -> Awaitable[Any]: ...


class Standby:
    """The functions this worker registered that another worker owns, and their take-over.

    On the loop: :meth:`on_conflict` for each ``FUNCTION_NAMESPACE_CONFLICT``, and
    :meth:`on_connected` after every (re)connection. While a conflict lasts, every
    ``engine::workers-available`` / ``engine::functions-available`` event sends the conflicted
    registrations again and then asks ``engine::functions::list`` which ones the engine now
    gives to this worker: the engine handles one connection's frames in order, so the answer
    says what holds. This worker is recognised by the ``worker_name`` of its own private
    function's row (the engine may have sanitised the name it was given). A reserved id
    (``engine::*`` outside ``default``, owner ``""``) has no owner who could leave: it stays
    in conflict, unwatched.
    """

    def __init__(self, registrations: Registrations, host: StandbyHost, bridge: LoopBridge,
                 tasks: TaskSet) -> None:
        self._registrations = registrations
        self._host = host
        self._bridge = bridge
        self._tasks = tasks
        self._conflicts: set[str] = set()
        self._handles: list[Unregisterable] = []
        self._function_id = ""
        self._running: asyncio.Task[None] | None = None
        self._again = False
        self._retry: asyncio.TimerHandle | None = None
        registrations.on_removed = self._on_removed

    @property
    def function_ids(self) -> list[str]:
        """The functions standing by (in conflict, waiting for their owner to leave)."""
        return sorted(self._conflicts)

    @property
    def watching(self) -> bool:
        """Whether the private function and its two bindings are registered."""
        return bool(self._handles)

    def on_conflict(self, function_id: str | None, error: IIIRegistrationRejectedError) -> None:
        """The engine refused ``function_id``: another worker owns it."""
        entry = self._registrations.functions.get(function_id or "")
        if entry is None or function_id is None:
            log.warning("engine refused function %r, which is no longer registered here: %s",
                        function_id, error)
            return
        again = entry.status.state is FunctionState.CONFLICT
        entry.status.set(FunctionState.CONFLICT, error)
        if again:
            log.debug("function %r is still owned by worker %r", function_id,
                      error.owner_worker_id)
            return
        if not error.owner_worker_id:
            log.warning("engine refused function %r (a reserved id outside the default "
                        "namespace): %s", function_id, error)
            return
        log.warning("function %r is owned by worker %r: this worker stands by and takes it "
                    "over when that worker leaves (%s)", function_id, error.owner_worker_id,
                    error)
        self._conflicts.add(function_id)
        self._watch()

    def on_connected(self) -> None:
        """The engine accepted the worker again: see whether the conflicts still hold."""
        if self._conflicts:
            self._check()

    def _on_removed(self, function_id: str) -> None:
        if function_id in self._conflicts:
            if self._bridge.on_loop():
                self._forget(function_id)
            else:
                try:
                    self._bridge.run_sync_soon(self._forget, function_id)
                except RuntimeError:  # the loop is gone: so is everything to unregister
                    pass

    def _forget(self, function_id: str) -> None:
        self._conflicts.discard(function_id)
        if not self._conflicts and self._running is None:
            self._unwatch()

    def _watch(self) -> None:
        if self._handles:
            return
        function_id = self._function_id = f"{STANDBY_PREFIX}{uuid.uuid4().hex[:16]}"
        try:
            self._handles.append(self._host.register_function(
                function_id, self._on_event, description="iii_rx standby: take over functions "
                "another worker owns when it leaves", metadata={"internal": True}))
            for trigger_type in _WATCHED:
                self._handles.append(self._host.register_trigger(
                    {"type": trigger_type, "function_id": function_id, "config": {}}))
        except Exception as exc:  # the client is closing or rejected
            log.debug("cannot watch for the owners of conflicted functions: %s", exc)
            self._unwatch()

    def _unwatch(self) -> None:
        self._cancel_retry()
        handles, self._handles = self._handles, []
        for handle in reversed(handles):
            try:
                handle.unregister()
            except Exception:
                log.exception("unregistering the standby watch failed")

    async def _on_event(self, data: Any) -> None:
        self._check()

    def _cancel_retry(self) -> None:
        timer, self._retry = self._retry, None
        if timer is not None:
            timer.cancel()

    def _check(self) -> None:
        self._cancel_retry()
        if self._running is not None:
            self._again = True
            return
        try:
            running = self._tasks.spawn(self._take_over(), name="iii-rx standby")
        except RuntimeError:  # no running loop: the client is gone
            return
        # An eager task factory may have run the check to its end already: not running.
        self._running = None if running.done() else running

    async def _take_over(self) -> None:
        failed = False
        try:
            again = True
            while again and self._conflicts:
                self._again = False
                ids = sorted(self._conflicts)
                self._registrations.register_again(ids)
                try:
                    owned = await self._owned()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.debug("standby check failed (retrying in %ss): %s", _RETRY_S, exc)
                    failed = True
                    return
                for function_id in ids:
                    entry = self._registrations.functions.get(function_id)
                    if function_id in owned and entry is not None:
                        self._conflicts.discard(function_id)
                        entry.status.set(FunctionState.REGISTERED)
                        log.warning("function %r: its owner left; this worker serves it now",
                                    function_id)
                    elif entry is None:
                        self._conflicts.discard(function_id)
                again = self._again
        finally:
            self._running = None
            if not self._conflicts:
                self._unwatch()
            elif failed and self._handles:
                self._retry = asyncio.get_running_loop().call_later(_RETRY_S, self._check)

    async def _owned(self) -> set[Any]:
        """The ids of the functions the engine lists as this worker's."""
        query: dict[str, Any] = {"worker": self._host.name, "include_internal": True}
        for _ in range(2):
            rows = _rows(await self._host.trigger(_LIST, query))
            me = next((row.get("worker_name") for row in rows
                       if row.get("function_id") == self._function_id), None)
            if me is not None:
                return {row.get("function_id") for row in rows if row.get("worker_name") == me}
            query = {"include_internal": True}  # known under another name: look at all
        raise LookupError(f"the engine does not list {self._function_id!r} (yet)")


def _rows(answer: Any) -> list[dict[str, Any]]:
    rows = answer.get("functions") if isinstance(answer, dict) else None
    return [row for row in rows if isinstance(row, dict)] if isinstance(rows, list) else []
