"""What this worker registered with the engine, and replays on every connection (spec 2.3).

:class:`Registrations` keeps three registries: functions (with the sinks their invocations go
to), trigger bindings (consumer side) and trigger types (provider side). Adding or removing an
entry sends its ``register*``/``unregister*`` frame to an outbox; :meth:`Registrations.replay`
gives the frames that bring a new connection up to date. No I/O happens here: the outbox is a
callable (the transport's ``send``, or ``list.append`` in a test).

Threading: user calls add and remove entries from any thread, synchronously, so that they can
raise (a duplicate id, a closed client); a lock guards the registries. The worker reads
:attr:`Registrations.functions` on the loop without the lock: a dict lookup is atomic, and a
function's sinks are replaced as a whole tuple, never changed in place.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from types import MappingProxyType

from iii_rx.errors import error_from_body
from iii_rx.functions import FunctionEntry, FunctionSpec, Sink
from iii_rx.protocol import TriggerRegistrationResult
from iii_rx.triggers import TriggerBinding, TriggerHandle, TriggerType

__all__ = ["Registrations", "check_id"]

log = logging.getLogger("iii_rx.registrations")


def check_id(function_id: str) -> str:
    """``function_id`` if it is a non-blank string; ``ValueError`` otherwise."""
    if not isinstance(function_id, str) or not function_id.strip():
        raise ValueError("id must be a non-empty string")
    return function_id


class Registrations:
    """Functions, trigger bindings and trigger types of one worker, replayed on reconnect.

    ``send`` receives each control frame (any thread). After :meth:`refuse`, additions raise
    the refusal's error; after :meth:`close`, removals send nothing (the socket is gone).
    """

    def __init__(self, send: Callable[[str], None]) -> None:
        self._send = send
        self._lock = threading.Lock()
        self._functions: dict[str, FunctionEntry] = {}
        self.functions: Mapping[str, FunctionEntry] = MappingProxyType(self._functions)
        """Live read-only view of the functions by id (lock-free: the worker's hot path)."""
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

    def add_sink(self, spec: FunctionSpec, sink: Sink) -> None:
        """Add ``sink`` to function ``spec.id``; a new function is registered with the engine.

        ``ValueError`` if the function has a sink that must be alone (a handler) or ``sink``
        must be alone and the function exists.
        """
        self._check()
        with self._lock:
            entry = self._functions.get(spec.id)
            if entry is not None and (sink.exclusive or any(s.exclusive for s in entry.sinks)):
                raise ValueError(f"function {spec.id!r} is already registered by this client")
            created = entry is None
            if entry is None:
                entry = self._functions[spec.id] = FunctionEntry(spec)
            entry.sinks = (*entry.sinks, sink)
        if created:
            self._send(spec.register_frame())

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
            closed = self._closed
        if not closed:
            self._send(entry.spec.unregister_frame())

    @property
    def function_ids(self) -> list[str]:
        """The functions registered here."""
        with self._lock:
            return list(self._functions)

    def sinks(self) -> list[Sink]:
        """Every sink of every function."""
        with self._lock:
            return [sink for entry in self._functions.values() for sink in entry.sinks]

    # ------------------------------------------------------------------ trigger bindings

    def add_binding(self, handle: TriggerHandle) -> None:
        """Keep ``handle``'s binding and register it with the engine."""
        self._check()
        with self._lock:
            self._bindings[handle.binding.id] = handle
        self._send(handle.binding.register_frame())

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
        log.warning("trigger %s (%s -> %r) was refused: %s", frame.id, frame.trigger_type,
                    frame.function_id, error)
        if handle is not None:
            handle.error = error

    # ------------------------------------------------------------------ trigger types

    def add_trigger_type(self, trigger_type: TriggerType) -> None:
        """Provide ``trigger_type``; ``ValueError`` if its id is provided here already."""
        self._check()
        with self._lock:
            if trigger_type.id in self._types:
                raise ValueError(
                    f"trigger type {trigger_type.id!r} is already registered by this client")
            self._types[trigger_type.id] = trigger_type
        self._send(trigger_type.register_frame())

    def remove_trigger_type(self, trigger_type: TriggerType) -> None:
        """Stop providing ``trigger_type`` (idempotent)."""
        with self._lock:
            if self._types.get(trigger_type.id) is not trigger_type:
                return
            del self._types[trigger_type.id]
            closed = self._closed
        if not closed:
            self._send(trigger_type.unregister_frame())

    def trigger_type(self, type_id: str) -> TriggerType | None:
        """The trigger type ``type_id`` provided here, if any."""
        return self._types.get(type_id)

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
        head = [t.register_frame() for t in types]
        head.extend(spec.register_frame() for spec in functions)
        head.extend(b.register_frame() for b in bindings)
        return head

    def close(self) -> list[FunctionEntry]:
        """Forget every function and send nothing more; returns the functions forgotten."""
        with self._lock:
            self._closed = True
            entries = list(self._functions.values())
            self._functions.clear()
        return entries
