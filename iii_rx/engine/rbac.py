"""The guard of a listener with middleware or RBAC: authenticate, filter calls, gate registrations.

One :class:`ListenerGuard` serves every connection of one listener
(:mod:`iii_rx.engine.listeners`); connections of a plain listener never meet it, so the plain
path costs nothing more. An authenticated connection is run with a :class:`SessionGuard`,
the listener's guard bound to its session: a guarded connection without a session cannot
exist. Per connection:

* **upgrade** — :meth:`ListenerGuard.serve` runs ``auth_function_id`` once with ``AuthInput``
  before the engine says ``workerregistered``; a failure sends the handshake error frame
  (``AUTH_ERROR``) and closes. The result is the connection's
  :class:`~iii_rx.engine.rbac_session.Session`.
* **calls** — :meth:`ListenerGuard.invoke` stands in for the router's: a call the session may
  not make is answered ``FORBIDDEN`` (the message names the remedy, as the Rust engine's does);
  ``engine::functions::list`` and ``engine::functions::info`` answer only about what the
  session may call; with a middleware the
  call goes to it (:mod:`iii_rx.engine.middleware`); everything else goes to the router.
* **registrations** — :meth:`ListenerGuard.admit` applies ``allow_function_registration``,
  ``allow_trigger_type_registration``, ``allowed_trigger_types``, the three hooks (a hook
  returns the fields to change, ``{}`` keeps them; an error or a non-object denies) and
  ``function_registration_prefix`` (the worker never sees the prefix: calls toward it carry its
  own id). A session scoped by ``namespaces`` registers only in those namespaces, also when
  the grace period (not ``engine::workers::register``) fixed the connection's to ``default``
  (the Rust engine drains such a worker's registrations into ``default``). A denied function
  or trigger type is logged, as the Rust engine does, and told to the worker with an ``error``
  frame (``FORBIDDEN``, as registration limits are); a denied trigger binding is answered
  with a ``triggerregistrationresult`` error ``FORBIDDEN``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from websockets.asyncio.server import ServerConnection

from iii_rx.engine.config import DEFAULT_NAMESPACE
from iii_rx.engine.connection import WorkerConnection
from iii_rx.engine.listeners import Listener
from iii_rx.engine.logsafe import RateLimitedLog, printable
from iii_rx.engine.middleware import engine_owned, run_middleware
from iii_rx.engine.rbac_session import (
    AuthError,
    Session,
    auth_input,
    forbidden_message,
    session_from_result,
)
from iii_rx.engine.registry import Registry
from iii_rx.engine.router import Router
from iii_rx.engine.socket_limits import set_message_limit
from iii_rx.engine.wire import HotInvoke, error_body, result_text
from iii_rx.errors import IIIInvocationError
from iii_rx.protocol import (
    ErrorBody,
    ErrorFrame,
    Frame,
    InvokeFunction,
    RegisterFunction,
    RegisterTrigger,
    RegisterTriggerType,
    TriggerRegistrationResult,
    UnregisterFunction,
    encode,
)

__all__ = ["FORBIDDEN", "SessionGuard", "ListenerGuard", "refuse_socket"]

log = logging.getLogger("iii_rx.engine")

FORBIDDEN = "FORBIDDEN"
HOOK_TIMEOUT_S = 30.0
"""Bound on the auth function and each registration hook: a hook that never answers holds
its connection's upgrade or registrations, so it fails (denies) after this long."""
_LIST = "engine::functions::list"
_INFO = "engine::functions::info"
_REGISTER = "engine::workers::register"

ServeGuarded = Callable[[WorkerConnection, "SessionGuard"], Awaitable[None]]
"""``await serve(conn, guard)``: the dispatcher's run of one guarded connection."""


UNADMITTED_MESSAGE_LIMIT = 1024 * 1024
"""The largest message a guarded connection may send before its session is granted."""


class ListenerGuard:
    """Middleware and RBAC of one listener, over the shared router and registry."""

    def __init__(self, listener: Listener, router: Router, registry: Registry, *,
                 peer_log: RateLimitedLog | None = None,
                 reserved: frozenset[str] = frozenset()) -> None:
        self.listener = listener
        self.reserved = reserved
        """Functions that guard the engine's listeners: sessions may not register them."""
        self.rbac = listener.rbac
        self.middleware_id = listener.middleware_function_id
        self.router = router
        self.registry = registry
        self.peer_log = peer_log if peer_log is not None else RateLimitedLog(log)
        """The engine's budget of lines a peer can cause (refusals, denials); its sessions'."""

    # ------------------------------------------------------------------ upgrade

    async def serve(self, conn: WorkerConnection, run: ServeGuarded) -> None:
        """Authenticate ``conn``, then run it bound to its session (``run`` is the
        dispatcher's): a guarded connection never exists without one.

        Until the session is granted nothing reads the socket, and the messages that arrive
        wait in memory: they may be :data:`UNADMITTED_MESSAGE_LIMIT` bytes each meanwhile
        (64 of the worker port's 64 MiB let anyone without credentials hold 4 GiB)."""
        ws = conn.ws
        bound = set_message_limit(ws, UNADMITTED_MESSAGE_LIMIT) if ws is not None else None
        try:
            session = await self.authenticate(ws)
        except AuthError as exc:
            self.peer_log.log(logging.WARNING, "auth_refused", "refused a worker from %s: %s",
                          printable(conn.ip_address), printable(exc))
            await _refuse(conn, str(exc))
            return
        if ws is not None:
            set_message_limit(ws, bound)
        await run(conn, SessionGuard(self, session))

    async def admit_telemetry(self, ws: ServerConnection) -> bool:
        """Authenticate a ``/otel`` socket as a worker's (the Rust engine does, so that
        telemetry cannot go around the auth function); refused: error frame, close, ``False``."""
        try:
            await self.authenticate(ws)
        except AuthError as exc:
            self.peer_log.log(logging.WARNING, "auth_refused", "refused telemetry from %s: %s",
                          printable(ws.remote_address), printable(exc))
            await refuse_socket(ws, str(exc))
            return False
        return True

    async def authenticate(self, ws: ServerConnection | None) -> Session:
        """Run the auth function (if any) on the upgrade request; the session it grants."""
        rbac = self.rbac
        if rbac is None or rbac.auth_function_id is None:
            return Session(rbac=rbac, allow_trigger_type_registration=True,
                           warnings=self.peer_log)
        assert ws is not None and ws.request is not None
        data = auth_input(ws.request.path, ws.request.headers, ws.remote_address)
        try:
            result = await self.router.call(rbac.auth_function_id, data,
                                            timeout=HOOK_TIMEOUT_S)
        except IIIInvocationError as exc:
            raise AuthError(exc.message) from None
        return session_from_result(result, rbac, self.peer_log)

    # ------------------------------------------------------------------ calls

    def invoke(self, conn: WorkerConnection, session: Session,
               frame: InvokeFunction | HotInvoke) -> Awaitable[None] | None:
        """The router's ``invoke`` for a connection holding ``session``."""
        namespace = frame.namespace
        if namespace is not None and not namespace.strip():
            return self.router.invoke(conn, frame)  # blank namespace: the router answers
        namespace = namespace or DEFAULT_NAMESPACE
        function_id = frame.function_id
        action = frame.action
        reply_id = frame.invocation_id if action is None or action.type != "void" else None
        if self.rbac is not None:
            entry = self.registry.functions.get((namespace, function_id))
            metadata = entry.metadata if entry is not None else None
            if not session.allows(function_id, namespace, metadata):
                self._answer(conn, reply_id, function_id, error_body(
                    FORBIDDEN, forbidden_message(session, function_id)))
                return None
            if function_id == _REGISTER and session.namespaces:
                declared = frame.data.get("namespace") if isinstance(frame.data, dict) else None
                declared = declared if isinstance(declared, str) else DEFAULT_NAMESPACE
                if declared not in session.namespaces:
                    permitted = ", ".join(sorted(session.namespaces))
                    self._answer(conn, reply_id, function_id, error_body(
                        FORBIDDEN, f"namespace '{declared}' not allowed for this session "
                        f"(permitted: {permitted})"))
                    return None
            if function_id in (_LIST, _INFO) and engine_owned(self.registry, namespace,
                                                              function_id):
                self.router.spawn(self._filtered(conn, frame, session, reply_id))
                return None
        if self.middleware_id is not None and not engine_owned(self.registry, namespace,
                                                               function_id):
            self.router.spawn(run_middleware(self.router, conn, frame, namespace,
                                             session.context, self.middleware_id, reply_id))
            return None
        return self.router.invoke(conn, frame)

    def _answer(self, conn: WorkerConnection, reply_id: str | None, function_id: str,
                error: dict[str, Any]) -> None:
        if reply_id is not None:
            conn.send(result_text(reply_id, function_id, error=error))

    async def _filtered(self, conn: WorkerConnection, frame: InvokeFunction | HotInvoke,
                        session: Session, reply_id: str | None) -> None:
        """``engine::functions::list`` / ``info`` as the session sees them: only what it may
        call (another function's details read as if it were not registered)."""
        function_id = frame.function_id
        result: Any = None
        error: dict[str, Any] | None = None
        try:
            result = await self.router.call(function_id, frame.data, metadata=frame.metadata)
        except IIIInvocationError as exc:
            error = error_body(exc.code, exc.message, exc.stacktrace)
        if isinstance(result, dict) and isinstance(result.get("functions"), list):
            shown = []
            for item in result["functions"]:
                if self.visible(session, item):
                    shown.append(item)
                elif function_id == _INFO and isinstance(item, dict):
                    shown.append({"function_id": item.get("function_id"), "error": "not_found"})
            result = {**result, "functions": shown}
        elif function_id == _INFO and isinstance(result, dict) and not self.visible(session,
                                                                                    result):
            result, error = None, error_body(
                "NOT_FOUND", f"Function '{result.get('function_id')}' is not registered.")
        if reply_id is not None:
            conn.send(result_text(reply_id, function_id, result, error))

    def visible(self, session: Session, summary: Any) -> bool:
        """Whether ``session`` may see a function summary (``{function_id, namespace}``)."""
        if not isinstance(summary, dict):
            return False
        function_id = summary.get("function_id")
        namespace = summary.get("namespace") or DEFAULT_NAMESPACE
        if not isinstance(function_id, str) or not isinstance(namespace, str):
            return False
        entry = self.registry.functions.get((namespace, function_id))
        return session.allows(function_id, namespace,
                              entry.metadata if entry is not None else None)

    # ------------------------------------------------------------------ registrations

    async def admit(self, conn: WorkerConnection, session: Session,
                    frame: Frame) -> tuple[Frame, str | None] | None:
        """The registration as ``session`` may make it, with the worker's own id of a
        prefixed function; ``None`` when it is denied."""
        if isinstance(frame, (RegisterFunction, RegisterTriggerType, RegisterTrigger)):
            outside = _outside(session, frame, conn.effective_namespace)
            if outside is not None:
                kind = ("function" if isinstance(frame, RegisterFunction) else "trigger"
                        if isinstance(frame, RegisterTrigger) else "trigger type")
                message = f"registration of {kind} {frame.id} refused: {outside}"
                if isinstance(frame, RegisterTrigger):
                    self._refuse_trigger(conn, frame, frame.function_id, message)
                else:
                    self._deny(conn, message, frame)
                return None
        if isinstance(frame, RegisterFunction):
            return await self._function(conn, session, frame)
        if isinstance(frame, UnregisterFunction):
            return frame.model_copy(update={"id": session.local_id(frame.id)}), None
        if isinstance(frame, RegisterTriggerType):
            admitted = await self._trigger_type(conn, session, frame)
            return (admitted, None) if admitted is not None else None
        if isinstance(frame, RegisterTrigger):
            trigger = await self._trigger(conn, session, frame)
            return (trigger, None) if trigger is not None else None
        return frame, None

    async def _hook(self, hook_id: str | None, data: dict[str, Any], what: str,
                    conn: WorkerConnection, frame: Frame) -> dict[str, Any] | None:
        """Run a registration hook: the fields to change, or ``None`` if it denied."""
        if hook_id is None:
            return {}
        try:
            result = await self.router.call(hook_id, data, timeout=HOOK_TIMEOUT_S)
        except IIIInvocationError as exc:
            self._deny(conn, f"{what} denied by {hook_id}: {exc.message}", frame)
            return None
        if not isinstance(result, dict):
            self._deny(conn, f"{what} denied by {hook_id}: it returned no result object", frame)
            return None
        return result

    def _deny(self, conn: WorkerConnection, message: str, frame: Frame) -> None:
        """Log a denied registration; a function or trigger type is also told to the worker
        with an ``error`` frame (``FORBIDDEN``), which the official SDKs ignore and the iii_rx
        client logs (a trigger's caller answers it with a ``triggerregistrationresult``)."""
        self.peer_log.log(logging.WARNING, "rbac_denied", "worker %s: %s", printable(conn.label),
                      printable(message))
        if isinstance(frame, (RegisterFunction, RegisterTriggerType)):
            conn.send(encode(ErrorFrame(error=ErrorBody(code=FORBIDDEN, message=message),
                                        frame_type=frame.type, id=frame.id)))

    async def _function(self, conn: WorkerConnection, session: Session,
                        frame: RegisterFunction) -> tuple[Frame, str | None] | None:
        what = f"registration of function {frame.id}"
        if not session.allow_function_registration:
            self._deny(conn, f"{what} refused: the session may not register functions", frame)
            return None
        rbac = self.rbac
        changes = await self._hook(
            rbac.on_function_registration_function_id if rbac is not None else None,
            {"function_id": frame.id, "description": frame.description,
             "metadata": frame.metadata, "namespace": conn.effective_namespace,
             "context": session.context}, what, conn, frame)
        if changes is None:
            return None
        worker_id = frame.id
        mapped = _str(changes, "function_id", frame.id)
        local_id = session.local_id(mapped)
        if local_id in self.reserved and local_id not in session.allowed_functions:
            # It would judge other sessions (auth, middleware, a hook): only a session its
            # auth result names it for (`allowed_functions`) may provide it from here.
            self._deny(conn, f"{what} refused: it guards this engine's listeners", frame)
            return None
        update: dict[str, Any] = {"id": local_id,
                                  "description": _str(changes, "description", frame.description)}
        if changes.get("metadata") is not None:
            update["metadata"] = changes["metadata"]
        admitted = frame.model_copy(update=update)
        return admitted, worker_id if admitted.id != worker_id else None

    async def _trigger_type(self, conn: WorkerConnection, session: Session,
                            frame: RegisterTriggerType) -> Frame | None:
        what = f"registration of trigger type {frame.id}"
        if not session.allow_trigger_type_registration:
            self._deny(conn, f"{what} refused: the session may not register trigger types",
                       frame)
            return None
        rbac = self.rbac
        changes = await self._hook(
            rbac.on_trigger_type_registration_function_id if rbac is not None else None,
            {"trigger_type_id": frame.id, "description": frame.description,
             "context": session.context}, what, conn, frame)
        if changes is None:
            return None
        return frame.model_copy(update={
            "id": _str(changes, "trigger_type_id", frame.id),
            "description": _str(changes, "description", frame.description)})

    async def _trigger(self, conn: WorkerConnection, session: Session,
                       frame: RegisterTrigger) -> Frame | None:
        what = f"trigger {frame.id} of type {frame.trigger_type}"
        allowed_types = session.allowed_trigger_types
        if allowed_types is not None and frame.trigger_type not in allowed_types:
            self._refuse_trigger(conn, frame, frame.function_id,
                                 f"trigger type '{frame.trigger_type}' not allowed for this "
                                 "session")
            return None
        rbac = self.rbac
        namespace = frame.namespace or DEFAULT_NAMESPACE
        changes = await self._hook(
            rbac.on_trigger_registration_function_id if rbac is not None else None,
            {"trigger_id": frame.id, "trigger_type": frame.trigger_type,
             "function_id": frame.function_id, "config": frame.config,
             "metadata": frame.metadata, "namespace": namespace,
             "context": session.context}, what, conn, frame)
        if changes is None:
            self._refuse_trigger(conn, frame, frame.function_id,
                                 f"{what} denied by the registration hook")
            return None
        function_id = session.local_id(_str(changes, "function_id", frame.function_id))
        update: dict[str, Any] = {
            "id": _str(changes, "trigger_id", frame.id),
            "trigger_type": _str(changes, "trigger_type", frame.trigger_type),
            "function_id": function_id}
        if changes.get("config") is not None:  # the SDK's result models send None: keep
            update["config"] = changes["config"]
        if rbac is not None:
            # The engine calls these for the binding, with the engine's authority: the
            # target, and a condition or middleware its config names (else a session could
            # have the engine call, with input of its choosing, what it may not call itself).
            for called in (function_id, *_also_called(update.get("config", frame.config))):
                entry = self.registry.functions.get((namespace, called))
                if not session.allows(called, namespace,
                                      entry.metadata if entry is not None else None):
                    role = "" if called == function_id else " (called by the trigger)"
                    self._refuse_trigger(conn, frame, function_id, f"function '{called}'"
                                         f"{role} not allowed in namespace '{namespace}'")
                    return None
        return frame.model_copy(update=update)

    def _refuse_trigger(self, conn: WorkerConnection, frame: RegisterTrigger, function_id: str,
                        message: str) -> None:
        self._deny(conn, message, frame)
        conn.send(encode(TriggerRegistrationResult(
            id=frame.id, trigger_type=frame.trigger_type, function_id=function_id,
            error=ErrorBody(code=FORBIDDEN, message=message))))


def _also_called(config: Any) -> list[str]:
    """The functions a binding's config has the engine call besides its target: a condition
    (any trigger type may have one) and an http route's middleware."""
    if not isinstance(config, Mapping):
        return []
    called: list[str] = []
    condition = config.get("condition_function_id")
    if isinstance(condition, str) and condition:
        called.append(condition)
    middleware = config.get("middleware_function_ids")
    if isinstance(middleware, (list, tuple)):
        called.extend(m for m in middleware if isinstance(m, str) and m)
    return called


class SessionGuard:
    """One guarded connection's guard: its listener's :class:`ListenerGuard` bound to the
    session the connection authenticated with, so no call or registration of it is ever
    judged without a session. The dispatcher uses it in place of the router's ``invoke``."""

    __slots__ = ("listener_guard", "rbac", "session")

    def __init__(self, listener_guard: ListenerGuard, session: Session) -> None:
        self.listener_guard = listener_guard
        self.rbac = listener_guard.rbac
        self.session = session

    def visible(self, summary: Any) -> bool:
        """Whether this session may see a function summary (:meth:`ListenerGuard.visible`)."""
        return self.listener_guard.visible(self.session, summary)

    def invoke(self, conn: WorkerConnection,
               frame: InvokeFunction | HotInvoke) -> Awaitable[None] | None:
        """The router's ``invoke`` as this session may make the call."""
        return self.listener_guard.invoke(conn, self.session, frame)

    async def admit(self, conn: WorkerConnection,
                    frame: Frame) -> tuple[Frame, str | None] | None:
        """:meth:`ListenerGuard.admit` under this session."""
        return await self.listener_guard.admit(conn, self.session, frame)


def _outside(session: Session, frame: RegisterFunction | RegisterTriggerType | RegisterTrigger,
             home: str) -> str | None:
    """Why a session scoped by ``namespaces`` may not register ``frame``: it lands in a
    namespace the session may not declare (``None``: it may). A function and a trigger land in
    the connection's namespace ``home``, also when the grace period, not the worker, fixed it
    to ``default``; a trigger type in its own ``namespace`` when it names one."""
    if not session.namespaces:
        return None
    namespace = home
    if isinstance(frame, RegisterTriggerType) and frame.namespace is not None:
        namespace = frame.namespace
    if namespace in session.namespaces:
        return None
    permitted = ", ".join(sorted(session.namespaces))
    return f"namespace '{namespace}' not allowed for this session (permitted: {permitted})"


def _str(changes: dict[str, Any], key: str, default: Any) -> Any:
    value = changes.get(key)
    return value if isinstance(value, str) else default


async def _refuse(conn: WorkerConnection, message: str) -> None:
    if conn.ws is not None:
        await refuse_socket(conn.ws, message)


async def refuse_socket(ws: ServerConnection, message: str) -> None:
    """The handshake error frame, then close (the Rust engine's answer to a failed auth)."""
    try:
        await ws.send(encode(ErrorFrame(error=ErrorBody(code="AUTH_ERROR", message=message))))
        await ws.close(1008, "authentication failed")
    except Exception:  # the peer may be gone already
        log.debug("closing a refused connection failed", exc_info=True)
