"""The life of one worker connection: its reader loop, registrations, reattach, cleanup.

Frames of one connection are handled **in arrival order** by its reader (docs/protocol.md §12.2 item
9a): a trigger may name a function registered in the previous frame, and a reconnect's replay must
land before later calls. Nothing in the reader waits on another worker: calls are forwarded
through the target's outbound queue, and in-process functions that may take time run as tasks.

Registrations wait in the connection's buffer until ``engine::workers::register`` fixes the
namespace, or the grace period (``namespace_grace_ms``) fixes it to ``default`` (docs/protocol.md
§2.5). On a listener with registration hooks they are then admitted in order by the connection's
:class:`~iii_rx.engine.admission.Admission` task, so a hook never holds the reader.

**HTTP-invoked functions.** A ``registerfunction`` with ``invocation`` is handed to
:attr:`Dispatcher.http_function_hook`, an async callable ``hook(conn, frame)`` that returns
either an in-process handler (registered as the function, owned by the connection) or a string:
the reason it was refused. A refusal is logged, the function is not registered, and a call of
it fails with ``function_not_found`` naming the reason (never
``registrationrejected``, which the official SDK treats as fatal). Without a hook every such
registration is refused with "HTTP-invoked functions are not enabled". Extensions install it
through :meth:`iii_rx.engine.services.EngineServices.set_http_function_hook`.

**Bounds** (docs/guarantees.md, "Bounds and fault detection"). One connection may own at most
``max_functions_per_worker`` functions, ``max_triggers_per_worker`` trigger bindings and
``max_trigger_types_per_worker`` trigger types (0 = no cap); registrations waiting for the
namespace count too. A registration past a cap is refused and logged, and the worker keeps
serving the rest: a function or trigger type with an ``error`` frame
(``registration_limit_exceeded``; both official SDKs ignore ``error`` frames, the iii_rx client
logs them), a binding with a ``triggerregistrationresult`` error, which the SDKs log. Never
``registrationrejected``: the official SDK treats codes other than
``FUNCTION_NAMESPACE_CONFLICT`` as fatal. Each connection's outbound bounds and keepalive are
set here (:class:`~iii_rx.engine.connection.WorkerConnection`).

**Invalid calls.** An ``invokefunction`` that fails validation but names a string
``invocation_id`` (and is not void) is answered with a ``deserialization_error`` result, so
its caller does not wait out its timeout.

**Worker events.** The dispatcher tells ``on_worker_event(event, worker_id)`` about
``worker_connected``, ``worker_metadata_updated`` and ``worker_disconnected`` (the engine wires it
to the ``engine::workers-available`` provider).
"""

from __future__ import annotations

import asyncio
import logging
import unicodedata
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from websockets.exceptions import ConnectionClosed

from iii_rx.engine.admission import Admission, needs_admission
from iii_rx.engine.config import DEFAULT_NAMESPACE, EngineConfig
from iii_rx.engine.connection import WorkerConnection
from iii_rx.engine.hotsocket import HotConnection
from iii_rx.engine.invalid_frames import answer_invalid_frame
from iii_rx.engine.logsafe import RateLimitedLog, printable
from iii_rx.engine.registry import FunctionEntry, InProcessHandler, Registry
from iii_rx.engine.router import Router
from iii_rx.engine.triggers import Binding, Triggers, TriggerType
from iii_rx.engine.wire import HotInvoke, HotResult, read_hot
from iii_rx.errors import IIIInvocationError
from iii_rx.protocol import (
    ErrorBody,
    ErrorFrame,
    Frame,
    FrameError,
    InvocationResult,
    InvokeFunction,
    Ping,
    Pong,
    Reattach,
    RegisterFunction,
    RegisterService,
    RegisterTrigger,
    RegisterTriggerType,
    RegistrationRejected,
    TriggerRegistrationResult,
    UnknownFrame,
    UnregisterFunction,
    UnregisterTrigger,
    UnregisterTriggerType,
    WorkerRegistered,
    decode,
    encode,
)

if TYPE_CHECKING:
    from iii_rx.engine.rbac import SessionGuard

__all__ = [
    "HTTP_FUNCTIONS_DISABLED",
    "REGISTRATION_LIMIT",
    "Dispatcher",
    "HttpFunctionHook",
    "WorkerEvents",
    "sanitize_text",
]

log = logging.getLogger("iii_rx.engine")

HttpFunctionHook = Callable[[WorkerConnection, RegisterFunction], Awaitable[InProcessHandler | str]]
"""``await hook(conn, frame)`` → the handler of an HTTP-invoked function, or a refusal reason."""

HTTP_FUNCTIONS_DISABLED = "HTTP-invoked functions are not enabled"

REGISTRATION_LIMIT = "registration_limit_exceeded"
"""Error code of a registration past one of the per-connection caps."""

WorkerEvents = Callable[[str, str], None]
"""``on_worker_event(event, worker_id)``: a worker connected, registered or left."""

_REGISTRATIONS = (RegisterFunction, UnregisterFunction, RegisterTriggerType,
                  UnregisterTriggerType, RegisterTrigger, UnregisterTrigger, RegisterService)
_TELEMETRY_PREFIXES = (b"OTLP", b"LOGS", b"MTRC")
_PONG = encode(Pong())
_NAME_MAX = 280
_UNSAFE = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x2028, 0x2029)}


def sanitize_text(value: Any) -> str | None:
    """Worker name/description as stored: no control or bidi characters, ≤280 chars, trimmed."""
    if not isinstance(value, str):
        return None
    cleaned = "".join(
        c for c in value if c not in _UNSAFE and unicodedata.category(c) != "Cc"
    )[:_NAME_MAX].strip()
    return cleaned or None


class Dispatcher:
    """Reads worker connections and applies their frames to the registry, router and triggers.

    ``config`` gives the namespace grace period and the worker-name policy; ``on_worker_event``
    hears of workers coming and going.
    """

    def __init__(self, registry: Registry, router: Router, triggers: Triggers,
                 config: EngineConfig, on_worker_event: WorkerEvents, *,
                 peer_log: RateLimitedLog | None = None) -> None:
        self.registry = registry
        self.router = router
        self.triggers = triggers
        self.config = config
        self.on_worker_event = on_worker_event
        self.peer_log = peer_log if peer_log is not None else RateLimitedLog(log)
        """The engine's budget of lines a peer can cause at will (its listeners share it)."""
        self.http_function_hook: HttpFunctionHook | None = None
        self._drains: dict[WorkerConnection, asyncio.Task[None]] = {}
        self._guards: dict[WorkerConnection, SessionGuard] = {}
        """Connections of a listener with middleware or RBAC (:mod:`iii_rx.engine.rbac`)."""
        self._admissions: dict[WorkerConnection, Admission] = {}

    # ------------------------------------------------------------------ connection life

    async def serve(self, conn: WorkerConnection, guard: SessionGuard | None = None) -> None:
        """Run one worker connection from ``workerregistered`` to cleanup; ``guard`` filters
        the calls and registrations of a listener with middleware or RBAC."""
        config = self.config
        if guard is not None:
            self._guards[conn] = guard
            if needs_admission(guard):
                self._admissions[conn] = Admission(conn, self.apply)
        self.registry.add_worker(conn)
        conn.set_bounds(config.max_queue_bytes, config.stuck_timeout_ms)
        conn.start_writer()
        conn.start_keepalive(config.ping_interval_ms, config.ping_timeout_ms)
        conn.send(encode(WorkerRegistered(worker_id=conn.id, reattach_token=conn.reattach_token)))
        grace = self.config.namespace_grace_ms / 1000
        conn.grace_timer = asyncio.get_running_loop().call_later(grace, self._grace_over, conn)
        log.info("worker connected: %s from %s", conn.id, conn.ip_address)
        self.on_worker_event("worker_connected", conn.id)
        try:
            await self._read(conn)
        finally:
            self.cleanup(conn)
            if (admission := self._admissions.pop(conn, None)) is not None:
                await admission.wait_closed()  # cancelled by cleanup
            code, reason = _close_of(conn)
            if conn.dropped is not None:
                reason = f"dropped: {conn.dropped}"
            log.info("worker disconnected: %s (code %s%s)", printable(conn.label), code,
                     f", {printable(reason)}" if reason else "")
            await conn.stop_writer()
            self._guards.pop(conn, None)

    def visible_to(self, conn: WorkerConnection | None) -> Callable[[Any], bool] | None:
        """What ``conn``'s RBAC session may see of a function summary (``None``: all)."""
        guard = self._guards.get(conn) if conn is not None else None
        return guard.visible if guard is not None and guard.rbac is not None else None

    async def _read(self, conn: WorkerConnection) -> None:
        ws = conn.ws
        assert ws is not None
        router = self.router
        guard = self._guards.get(conn)
        invoke = router.invoke if guard is None else guard.invoke
        lane = ws if isinstance(ws, HotConnection) and ws.hot_in is not None else None
        queued, messages = (lane.hot_in, lane.next_message) if lane is not None else (None, ws.recv)
        try:
            while True:  # the lane's queue directly while it has messages and reading runs
                if queued and not lane.hot_paused:  # type: ignore[union-attr]
                    message = queued.popleft()
                else:
                    message = await messages()
                if type(message) is bytes and message[:4] in _TELEMETRY_PREFIXES:
                    continue
                frame: Frame | HotInvoke | HotResult | None = read_hot(message)  # no model
                if frame is None:
                    try:
                        frame = decode(message)
                    except FrameError as exc:
                        self.peer_log.log(logging.WARNING, "bad_frame",
                                           "dropped a bad frame from worker %s: %s",
                                           printable(conn.label), printable(exc))
                        answer_invalid_frame(conn, message, exc, router)
                        continue
                try:
                    kind = type(frame)
                    if kind is HotInvoke or kind is InvokeFunction:
                        inline = invoke(conn, frame)  # type: ignore[arg-type]
                        if inline is not None:
                            await inline
                    elif kind is HotResult or kind is InvocationResult:
                        router.result(conn, frame, message)  # type: ignore[arg-type]
                    else:
                        await self._other(conn, frame)  # type: ignore[arg-type]
                except Exception:
                    log.exception("failed to handle a %s frame from worker %s",
                                  printable(frame.type), printable(conn.label))
        except ConnectionClosed:
            pass

    async def _other(self, conn: WorkerConnection, frame: Frame) -> None:
        if isinstance(frame, _REGISTRATIONS):
            if conn.rejected:
                return
            if conn.buffer is not None:
                if len(conn.buffer) >= self._buffer_cap > 0:
                    self._refuse(conn, frame, "registrations waiting for the namespace")
                    return
                conn.buffer.append(frame)
            elif (admission := self._admissions.get(conn)) is None:
                await self.apply(conn, frame)
            elif not admission.put(frame, self._buffer_cap):
                self._refuse(conn, frame, "registrations waiting for admission")
        elif isinstance(frame, TriggerRegistrationResult):
            self.triggers.ack(conn, frame)
        elif isinstance(frame, Reattach):
            self.reattach(conn, frame)
        elif isinstance(frame, Ping):
            conn.send(_PONG)
        elif isinstance(frame, (Pong, WorkerRegistered, RegistrationRejected)):
            pass
        elif isinstance(frame, UnknownFrame):
            self.peer_log.log(logging.WARNING, "unknown_frame",
                          "dropped a frame of unknown type %s from worker %s",
                          printable(frame.type), printable(conn.label))
        else:
            log.debug("ignored a %s frame from worker %s", printable(frame.type),
                      printable(conn.label))

    def cleanup(self, conn: WorkerConnection) -> None:
        """docs/protocol.md §2.10, once: everything the connection owned goes, callers are told."""
        if conn.closed:
            return
        conn.closed = True
        conn.buffer = None
        if conn.grace_timer is not None:
            conn.grace_timer.cancel()
            conn.grace_timer = None
        drain = self._drains.pop(conn, None)
        if drain is not None:
            drain.cancel()
        if (admission := self._admissions.get(conn)) is not None:
            admission.close()  # the pending registrations go; serve awaits the task
        for key in list(conn.functions):
            entry = self.registry.functions.get(key)
            if entry is not None and entry.owner is conn:
                self.registry.remove_function(key)
        conn.functions.clear()
        for key in list(conn.refused):
            self.registry.clear_refusal(key)
        self.router.halt(conn)
        self.triggers.connection_closed(conn)
        self.registry.remove_worker(conn)
        self.on_worker_event("worker_disconnected", conn.id)

    def reattach(self, conn: WorkerConnection, frame: Reattach) -> None:
        """docs/protocol.md §2.6: retire the previous connection before the replay that follows.

        The registry checks the token (constant time) and hands ``conn`` the name lease of
        the worker it proved to be (docs/guarantees.md)."""
        old = self.registry.reattaching(conn, frame.previous_worker_id, frame.reattach_token)
        if old is None:
            return
        log.info("worker %s reattached as %s; retiring the old connection", printable(old.label),
                 conn.id)
        self.cleanup(old)
        self.router.spawn(_close_quietly(old, 1000, "reattached"))

    # ------------------------------------------------------------------ namespace

    def _grace_over(self, conn: WorkerConnection) -> None:
        conn.grace_timer = None
        if conn.closed or conn.namespace is not None:
            return
        log.info("worker %s sent no engine::workers::register within the grace period; "
                 "its namespace is %s", conn.id, DEFAULT_NAMESPACE)
        conn.namespace = DEFAULT_NAMESPACE
        if conn.buffer is not None and conn not in self._drains:
            self._drains[conn] = self.router.spawn(self._drain(conn))

    async def _drain(self, conn: WorkerConnection) -> None:
        try:
            buffer = conn.buffer
            if buffer and (admission := self._admissions.get(conn)) is not None:
                admission.take(buffer)  # hooks: applied in order by the admission task
            while buffer and not conn.closed and not conn.rejected:
                frame = buffer.popleft()
                try:
                    await self.apply(conn, frame)
                except Exception:
                    log.exception("failed to apply a buffered %s frame of worker %s",
                                  frame.type, conn.label)
            conn.buffer = None
        finally:
            if self._drains.get(conn) is asyncio.current_task():
                del self._drains[conn]

    async def register_worker(self, conn: WorkerConnection, data: dict[str, Any]) -> bool:
        """``engine::workers::register``: metadata, name lease, namespace, drain.

        See docs/protocol.md §8.10.
        """
        raw_ns = data.get("namespace")
        if raw_ns is not None and (not isinstance(raw_ns, str) or not raw_ns.strip()):
            raise IIIInvocationError("INVALID_NAMESPACE", "namespace must be a non-blank string")
        namespace = raw_ns if raw_ns is not None else DEFAULT_NAMESPACE
        if conn.namespace is not None and conn.namespace != namespace:
            log.warning("worker %s declared namespace %s after its namespace was fixed to %s; "
                        "keeping it", printable(conn.label), printable(namespace),
                        printable(conn.namespace))
            namespace = conn.namespace
        name = sanitize_text(data.get("name"))
        if name is not None and self.config.unique_worker_names:
            holder = self.registry.claim_lease(conn, namespace, name)
            if holder is not None and self.registry.inherits(conn, namespace, name):
                # A reattached worker takes its name back from whoever took it meanwhile.
                self._reject_name(holder, namespace, name, conn)
                self.cleanup(holder)
                holder = self.registry.claim_lease(conn, namespace, name)
            if holder is not None:
                self._reject_name(conn, namespace, name, holder)
                return False
        conn.name = name
        conn.info = {
            "runtime": _text(data.get("runtime")),
            "version": _text(data.get("version")),
            "os": _text(data.get("os")),
            "pid": data.get("pid") if isinstance(data.get("pid"), int) else None,
            "isolation": _text(data.get("isolation")),
            "description": sanitize_text(data.get("description")),
            "telemetry": data.get("telemetry"),
        }
        conn.registered = True
        conn.namespace = namespace
        if conn.grace_timer is not None:
            conn.grace_timer.cancel()
            conn.grace_timer = None
        if conn.buffer is not None and conn not in self._drains:
            await self._drain(conn)
        self.on_worker_event("worker_metadata_updated", conn.id)
        return True

    def _reject_name(self, conn: WorkerConnection, namespace: str, name: str,
                     holder: WorkerConnection) -> None:
        log.warning("worker %s refused: name %s is taken in namespace %s by %s", conn.id,
                    printable(name), printable(namespace), holder.id)
        conn.rejected = True
        conn.buffer = None
        conn.send(encode(RegistrationRejected(
            code="WORKER_NAMESPACE_CONFLICT", namespace=namespace, worker_name=name,
            owner_worker_id=holder.id)))
        self.router.spawn(_close_quietly(conn, 1008, "worker name conflict"))

    # ------------------------------------------------------------------ registrations

    @property
    def _buffer_cap(self) -> int:
        """Registrations that may wait for the namespace: all the caps together (0 = no cap)."""
        config = self.config
        caps = (config.max_functions_per_worker, config.max_triggers_per_worker,
                config.max_trigger_types_per_worker)
        return 0 if 0 in caps else sum(caps)

    def _over_cap(self, conn: WorkerConnection, frame: Frame) -> str | None:
        """What ``frame`` would take past its cap (a phrase for the refusal), or None."""
        config = self.config
        if isinstance(frame, RegisterFunction):
            key = (conn.effective_namespace, frame.id)
            held = len(conn.functions) + len(conn.refused)
            cap = config.max_functions_per_worker
            if 0 < cap <= held and key not in conn.functions and key not in conn.refused:
                return f"{held} functions (max_functions_per_worker)"
        elif isinstance(frame, RegisterTrigger):
            cap = config.max_triggers_per_worker
            if 0 < cap <= len(conn.bindings) and frame.id not in conn.bindings:
                return f"{len(conn.bindings)} triggers (max_triggers_per_worker)"
        elif isinstance(frame, RegisterTriggerType):
            namespace = frame.namespace if frame.namespace is not None else conn.effective_namespace
            cap = config.max_trigger_types_per_worker
            held = len(conn.trigger_types)
            if 0 < cap <= held and (namespace, frame.id) not in conn.trigger_types:
                return f"{held} trigger types (max_trigger_types_per_worker)"
        return None

    def _refuse(self, conn: WorkerConnection, frame: Frame, held: str) -> None:
        """Refuse one registration past a cap; the worker keeps everything else."""
        what = getattr(frame, "id", "")
        message = (f"{frame.type} {what} refused: this connection already holds {held}, "
                   "the engine's limit")
        self.peer_log.log(logging.WARNING, "registration_limit", "worker %s: %s",
                      printable(conn.label), printable(message))
        if isinstance(frame, RegisterTrigger):
            conn.send(encode(TriggerRegistrationResult(
                id=frame.id, trigger_type=frame.trigger_type, function_id=frame.function_id,
                error=ErrorBody(code=REGISTRATION_LIMIT, message=message))))
        else:
            conn.send(encode(ErrorFrame(error=ErrorBody(code=REGISTRATION_LIMIT,
                                                        message=message),
                                        frame_type=frame.type, id=what)))

    async def apply(self, conn: WorkerConnection, frame: Frame) -> None:
        """Apply one registration frame under the connection's (now fixed) namespace."""
        held = self._over_cap(conn, frame)
        if held is not None:
            self._refuse(conn, frame, held)
            return
        local_id: str | None = None
        guard = self._guards.get(conn)
        if guard is not None:
            admitted = await guard.admit(conn, frame)
            if admitted is None:
                return
            frame, local_id = admitted
        if isinstance(frame, RegisterFunction):
            await self._register_function(conn, frame, local_id)
        elif isinstance(frame, UnregisterFunction):
            key = (conn.effective_namespace, frame.id)
            entry = self.registry.functions.get(key)
            if entry is not None and entry.owner is conn:
                self.registry.remove_function(key)
            if key in conn.refused:
                self.registry.clear_refusal(key)
        elif isinstance(frame, RegisterTriggerType):
            self._register_trigger_type(conn, frame)
        elif isinstance(frame, UnregisterTriggerType):
            namespace = frame.namespace if frame.namespace is not None else conn.effective_namespace
            self.triggers.remove_type((namespace, frame.id), conn)
        elif isinstance(frame, RegisterTrigger):
            self._register_trigger(conn, frame)
        elif isinstance(frame, UnregisterTrigger):
            self.triggers.unbind(frame.id, conn)
        elif isinstance(frame, RegisterService):
            log.debug("worker %s registered service %s (ignored)", printable(conn.label),
                      printable(frame.id))

    async def _register_function(self, conn: WorkerConnection, frame: RegisterFunction,
                                 local_id: str | None = None) -> None:
        namespace = conn.effective_namespace
        key = (namespace, frame.id)
        if frame.id.startswith("engine::") and namespace != DEFAULT_NAMESPACE:
            self._reject_function(conn, namespace, frame.id, "")
            return
        existing = self.registry.functions.get(key)
        if existing is not None and existing.owner is not conn:
            if existing.owner is None:
                self._reject_function(conn, namespace, frame.id, "")
                return
            if not existing.owner.closed:
                self._reject_function(conn, namespace, frame.id, existing.owner.id)
                return
        handler: InProcessHandler | None = None
        if frame.invocation is not None:
            outcome = await self._http_function(conn, frame)
            if isinstance(outcome, str):
                self.peer_log.log(logging.WARNING, "HTTP function refused",
                                  "HTTP-invoked function %s of worker %s not registered: %s",
                                  printable(frame.id), printable(conn.label), printable(outcome))
                self.registry.refuse(conn, key, outcome)
                if existing is not None and existing.owner is conn:
                    self.registry.remove_function(key)
                return
            handler = outcome
        self.registry.clear_refusal(key)
        self.registry.add_function(FunctionEntry(
            frame.id, namespace, owner=conn, handler=handler,
            description=frame.description, request_format=frame.request_format,
            response_format=frame.response_format, metadata=frame.metadata, local_id=local_id))

    async def _http_function(self, conn: WorkerConnection,
                             frame: RegisterFunction) -> InProcessHandler | str:
        hook = self.http_function_hook
        if hook is None:
            return HTTP_FUNCTIONS_DISABLED
        try:
            return await hook(conn, frame)
        except Exception as exc:
            log.exception("HTTP-function hook failed for %s", printable(frame.id))
            return f"registration failed: {exc}"

    def _reject_function(self, conn: WorkerConnection, namespace: str, function_id: str,
                         owner: str) -> None:
        self.peer_log.log(logging.WARNING, "function_conflict",
                      "worker %s may not register %s in namespace %s (owner %r)",
                      printable(conn.label), printable(function_id), printable(namespace), owner)
        conn.send(encode(RegistrationRejected(
            code="FUNCTION_NAMESPACE_CONFLICT", namespace=namespace, function_id=function_id,
            owner_worker_id=owner)))

    def _register_trigger_type(self, conn: WorkerConnection, frame: RegisterTriggerType) -> None:
        namespace = frame.namespace if frame.namespace is not None else conn.effective_namespace
        if not namespace.strip():
            self.peer_log.log(logging.WARNING, "trigger type ignored",
                              "ignored trigger type %s of worker %s: blank namespace",
                              printable(frame.id), printable(conn.label))
            return
        current = self.triggers.types.get((namespace, frame.id))
        if current is not None and not isinstance(current.provider, WorkerConnection):
            self.peer_log.log(logging.WARNING, "trigger type ignored",
                              "ignored trigger type %s of worker %s: provided by the engine",
                              printable(frame.id), printable(conn.label))
            return
        self.triggers.add_type(TriggerType(
            frame.id, namespace, frame.description, provider=conn,
            trigger_request_format=frame.trigger_request_format,
            call_request_format=frame.call_request_format))

    def _register_trigger(self, conn: WorkerConnection, frame: RegisterTrigger) -> None:
        for value in (frame.namespace, frame.trigger_namespace):
            if value is not None and not value.strip():
                conn.send(encode(TriggerRegistrationResult(
                    id=frame.id, trigger_type=frame.trigger_type, function_id=frame.function_id,
                    error=ErrorBody(code="INVALID_NAMESPACE",
                                    message="namespace must not be blank"))))
                return
        self.triggers.bind(Binding(
            frame.id, frame.trigger_type, frame.function_id, frame.config, frame.metadata,
            namespace=frame.namespace if frame.namespace is not None else DEFAULT_NAMESPACE,
            home_namespace=conn.effective_namespace, trigger_namespace=frame.trigger_namespace,
            owner=conn))


def _close_of(conn: WorkerConnection) -> tuple[int | None, str]:
    """The close code and reason of whichever side closed first (1006: nobody did)."""
    ws = conn.ws
    if ws is None:
        return None, ""
    protocol = ws.protocol
    sent, rcvd = protocol.close_sent, protocol.close_rcvd
    first = sent if sent is not None and (rcvd is None or not protocol.close_rcvd_then_sent) \
        else rcvd
    if first is None:
        return 1006, ""
    return int(first.code), first.reason


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


async def _close_quietly(conn: WorkerConnection, code: int, reason: str) -> None:
    try:
        await conn.close(code, reason)
    except Exception:  # the socket may already be gone
        log.debug("closing %s failed", conn.label, exc_info=True)
