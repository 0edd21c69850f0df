"""``register_worker()`` and the synchronous client of the conventional API.

:class:`III` is a thin facade over :class:`iii_rx.Client` (made by :func:`iii_rx.connect_sync`,
so it runs on a private loop thread): every method translates the official SDK's arguments and
return values and delegates. Blocking methods raise :class:`~iii_rx.errors.LoopDeadlockError`
(a ``RuntimeError``, as in the official SDK) on the client's own loop thread (from an async
handler, use the ``*_async`` methods).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from iii_rx.client import Client
from iii_rx.compat.channels import Channel, create_channel, create_channel_async
from iii_rx.compat.errors import NotSupportedError
from iii_rx.compat.formats import request_schema, resolve_format, response_schema
from iii_rx.compat.handlers import adapt_handler, current_invocation, to_wire_value
from iii_rx.compat.models import (
    FunctionRef,
    InvocationContext,
    RegisterTriggerInput,
    RegisterTriggerTypeInput,
    Trigger,
    TriggerConfig,
    TriggerHandler,
    TriggerRequest,
)
from iii_rx.compat.options import (
    DEFAULT_ENGINE_URL,
    IIIConnectionState,
    InitOptions,
    connect_options,
)
from iii_rx.connect import connect_sync
from iii_rx.errors import IIIConnectionError, IIIInvocationError
from iii_rx.single import Single
from iii_rx.triggers import TriggerConfig as RxTriggerConfig
from iii_rx.triggers import TriggerTypeHandle

__all__ = ["III", "ConnectionStateCallback", "TriggerTypeRef", "register_worker",
           "resolve_engine_url"]

log = logging.getLogger("iii_rx.compat")

ConnectionStateCallback = Callable[[IIIConnectionState], None]

#: Upper bound of the pool that runs sync handlers. The official SDK starts a thread per call so
#: that sync handlers may block on nested sync calls; a pool this large keeps that safe in
#: practice while reusing idle threads.
SYNC_HANDLER_THREADS = 512

#: How long ``register_worker`` waits for the engine, as the official SDK does.
CONNECT_TIMEOUT_S = 30.0


def resolve_engine_url(address: str | None = None) -> str:
    """The engine address: the argument, else ``III_URL``, else :data:`DEFAULT_ENGINE_URL`."""
    return address or os.environ.get("III_URL") or DEFAULT_ENGINE_URL


def register_worker(address: str | None = None, options: InitOptions | None = None) -> III:
    """Connect a worker to the engine and return its client once connected.

    Raises ``ConnectionError`` (:class:`~iii_rx.errors.IIIConnectionError`) if the engine cannot
    be reached within 30 seconds or the retries run out, and ``RegistrationRejectedError`` if the
    engine refuses the worker (e.g. its name is taken in the namespace).
    """
    return III(resolve_engine_url(address), options)


def _serve_until_closed(client: Client) -> None:
    """Keep the process alive until the worker is closed, as the official SDK's worker thread
    does, also once it failed for good (it then serves nothing, as the official one)."""
    with contextlib.suppress(Exception):  # the close failed: it has logged why, and it is over
        client._closing.wait()


class III:
    """A connected worker (see the module docstring); made by :func:`register_worker`."""

    def __init__(self, address: str, options: InitOptions | None = None) -> None:
        self._address = address
        self._options = options or InitOptions()
        self._trigger_types: dict[str, TriggerTypeHandle] = {}
        self._lock = threading.Lock()
        self._client: Client = connect_sync(
            address, **connect_options(self._options), connect_timeout=CONNECT_TIMEOUT_S,
            max_workers=SYNC_HANDLER_THREADS)
        # As with the official SDK, a worker script whose code ends keeps serving until
        # shutdown(): a thread Python waits for at exit, alive until the client closes.
        threading.Thread(target=_serve_until_closed, args=(self._client,),
                         name="iii-rx-compat-worker", daemon=False).start()

    @property
    def client(self) -> Client:
        """The reactive :class:`iii_rx.Client` underneath (streams, Singles, operators)."""
        return self._client

    def __repr__(self) -> str:
        # Also of one whose __init__ raised (pytest shows it as ``self`` in the traceback).
        client: Client | None = getattr(self, "_client", None)
        if client is None:
            return "<iii_rx.compat.III (not connected)>"
        return f"<iii_rx.compat.III {client.name!r} {self._address}>"

    # ------------------------------------------------------------------ connection

    def get_address(self) -> str:
        return self._address

    @property
    def worker_id(self) -> str | None:
        """The engine's id of this worker's connection (``None`` until the engine said it)."""
        return self._client.worker_id

    def get_connection_state(self) -> IIIConnectionState:
        return self._client.connection_state.value

    def add_connection_state_listener(self, handler: ConnectionStateCallback) -> Callable[[],
                                                                                       None]:
        """Call ``handler`` now with the current state (on this thread), then on every change
        (on the client's loop thread: keep it quick, and use no blocking API there). Returns an
        idempotent unsubscribe function. A handler that raises is logged and kept."""
        lock = threading.Lock()
        last: list[str | None] = [None]

        def deliver(state: str) -> None:
            with lock:
                if state == last[0]:
                    return
                last[0] = state
            try:
                handler(state)  # type: ignore[arg-type]
            except Exception:
                log.exception("connection state listener raised")

        deliver(self.get_connection_state())
        subscription = self._client.state.subscribe(on_next=lambda state: deliver(state.value))
        done = [False]

        def unsubscribe() -> None:
            if not done[0]:
                done[0] = True
                subscription.dispose()

        return unsubscribe

    on_connection_state_change = add_connection_state_listener
    """The name older SDK releases used."""

    def shutdown(self) -> None:
        """Close the connection: calls in flight fail, handlers stop, the loop thread ends."""
        self._client.bridge.check_blocking("shutdown()")
        self._client.close()

    async def shutdown_async(self) -> None:
        await self._client.aclose()

    # ------------------------------------------------------------------ functions

    def register_function(
        self,
        function_id: str,
        handler_or_invocation: Callable[..., Any] | BaseModel,
        *,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        request_format: Any = None,
        response_format: Any = None,
        observe: Any = None,
        local_dispatch: bool = True,
    ) -> FunctionRef:
        """Register a handler (sync or async, ``(data)`` or ``(data, metadata)``) or an
        ``HttpInvocationConfig`` (the engine then calls its URL). ``local_dispatch`` is accepted
        and has no effect (every call goes through the engine); ``observe`` is not supported.
        Without ``request_format`` / ``response_format`` they are derived from the handler's
        type hints (:mod:`iii_rx.compat.formats`)."""
        if not isinstance(function_id, str):
            raise TypeError(f"function_id must be str, got {type(function_id).__name__}")
        if not function_id.strip():
            raise ValueError("id is required")
        if observe is not None:
            raise NotSupportedError("observe descriptors are not supported by iii_rx.compat")
        if function_id in self._client.function_ids:
            raise ValueError(f"function {function_id!r} is already registered by this worker")
        target: Any
        if isinstance(handler_or_invocation, BaseModel) and hasattr(handler_or_invocation,
                                                                    "url"):
            target = handler_or_invocation
        elif callable(handler_or_invocation):
            target = adapt_handler(handler_or_invocation, self._client.loop)
        else:
            raise TypeError("handler_or_invocation must be callable or HttpInvocationConfig, "
                            f"got {type(handler_or_invocation).__name__}")
        if callable(handler_or_invocation):  # schemas from the type hints (compat/formats.py)
            if request_format is None:
                request_format = request_schema(handler_or_invocation)
            if response_format is None:
                response_format = response_schema(handler_or_invocation)
        handle = self._client.register_function(
            function_id, target, description=description, metadata=metadata,
            request_format=to_wire_value(resolve_format(request_format)),
            response_format=to_wire_value(resolve_format(response_format)))
        return FunctionRef(id=function_id, unregister=handle.unregister)

    def current_invocation(self) -> InvocationContext | None:
        """The invocation the calling code runs in, or ``None`` outside handlers."""
        return current_invocation()

    # ------------------------------------------------------------------ calls

    def _single(self, request: Mapping[str, Any] | TriggerRequest) -> Single[Any]:
        fields = _fields(request, ("function_id", "payload", "action", "timeout_ms", "metadata",
                                   "namespace", "dispatch"))
        if not isinstance(fields.get("function_id"), str):
            raise TypeError("a trigger request needs a function_id string")
        dispatch = fields.get("dispatch")
        if dispatch not in (None, "auto", "remote"):
            raise ValueError(f"dispatch must be 'auto' or 'remote', got {dispatch!r}")
        return self._client.trigger(
            fields["function_id"], to_wire_value(fields.get("payload")),
            action=fields.get("action"), timeout_ms=fields.get("timeout_ms"),
            metadata=to_wire_value(fields.get("metadata")), namespace=fields.get("namespace"))

    def trigger(self, request: Mapping[str, Any] | TriggerRequest) -> Any:
        """Call a function and wait: its result, ``None`` for ``TriggerAction.Void()``, a
        ``{"messageReceiptId": ...}`` dict for ``TriggerAction.Enqueue(...)``. Failures raise
        ``InvocationError`` (``code`` says which: ``TIMEOUT``, ``function_not_found``, ...);
        a call cut short by :meth:`shutdown` fails with code ``SHUTDOWN``."""
        single = self._single(request)
        try:
            return single.result()
        except IIIConnectionError as exc:
            raise self._shutdown_error(exc, request) from exc

    async def trigger_async(self, request: Mapping[str, Any] | TriggerRequest) -> Any:
        """:meth:`trigger` for async code, from any event loop."""
        single = self._single(request)
        try:
            return await single
        except IIIConnectionError as exc:
            raise self._shutdown_error(exc, request) from exc

    def _shutdown_error(self, exc: IIIConnectionError,
                        request: Mapping[str, Any] | TriggerRequest) -> Exception:
        if not self._client.closed:
            return exc
        function_id = (request.get("function_id") if isinstance(request, Mapping)
                       else getattr(request, "function_id", None))
        return IIIInvocationError("SHUTDOWN", str(exc), function_id=function_id)

    # ------------------------------------------------------------------ triggers

    def register_trigger(self, trigger: RegisterTriggerInput | Mapping[str, Any]) -> Trigger:
        """Bind a function to a trigger type (``{"type", "function_id", "config", ...}``)."""
        spec = (trigger if isinstance(trigger, RegisterTriggerInput) else
                RegisterTriggerInput(**_fields(trigger, RegisterTriggerInput.model_fields)))
        handle = self._client.register_trigger({
            "type": spec.type, "function_id": spec.function_id,
            "config": to_wire_value(spec.config), "metadata": to_wire_value(spec.metadata),
            "namespace": spec.namespace, "trigger_namespace": spec.trigger_namespace,
        })
        return Trigger(handle.unregister)

    def register_trigger_type(
        self,
        trigger_type: RegisterTriggerTypeInput | Mapping[str, Any],
        handler: TriggerHandler[Any],
    ) -> TriggerTypeRef[Any, Any]:
        """Provide a trigger type: ``handler`` learns each binding routed here and its end."""
        spec = (trigger_type if isinstance(trigger_type, RegisterTriggerTypeInput) else
                RegisterTriggerTypeInput(**_fields(trigger_type,
                                                   RegisterTriggerTypeInput.model_fields)))

        async def on_register(config: RxTriggerConfig) -> None:
            await _maybe_await(handler.register_trigger(_provider_config(config)))

        async def on_unregister(config: RxTriggerConfig) -> None:
            await _maybe_await(handler.unregister_trigger(_provider_config(config)))

        with self._lock:
            previous = self._trigger_types.pop(spec.id, None)
        if previous is not None:  # registering an id again replaces its handler
            previous.unregister()
        handle = self._client.register_trigger_type(
            spec.id, spec.description, on_register, on_unregister,
            trigger_request_format=_schema(spec.trigger_request_format),
            call_request_format=_schema(spec.call_request_format))
        with self._lock:
            self._trigger_types[spec.id] = handle
        return TriggerTypeRef[Any, Any](self, spec.id)

    def unregister_trigger_type(
        self, trigger_type: RegisterTriggerTypeInput | Mapping[str, Any]
    ) -> None:
        """Stop providing a trigger type (a ``RegisterTriggerTypeInput`` or ``{"id": ...}``)."""
        type_id = _fields(trigger_type, ("id",))["id"]
        with self._lock:
            handle = self._trigger_types.pop(type_id, None)
        if handle is not None:
            handle.unregister()

    # ------------------------------------------------------------------ channels

    def create_channel(self, buffer_size: int | None = None) -> Channel:
        """A channel pair (blocking); same as ``create_channel(iii, buffer_size)``."""
        return create_channel(self, buffer_size)

    async def create_channel_async(self, buffer_size: int | None = None) -> Channel:
        """A channel pair; same as ``await create_channel_async(iii, buffer_size)``."""
        return await create_channel_async(self, buffer_size)


C = TypeVar("C")
R = TypeVar("R")


class TriggerTypeRef(Generic[C, R]):
    """What :meth:`III.register_trigger_type` returns: binds functions to that type.

    Generic as the official class: ``C`` is the type of a binding's config, ``R`` of the
    request its functions receive (``register_trigger_type`` returns ``TriggerTypeRef[Any, Any]``).
    """

    def __init__(self, iii: III, trigger_type_id: str) -> None:
        self._iii = iii
        self._trigger_type_id = trigger_type_id

    def register_trigger(self, function_id: str, config: C,
                         metadata: dict[str, Any] | None = None) -> Trigger:
        """Bind ``function_id`` (in this worker's namespace) to this trigger type. A pydantic
        ``config`` is sent as the official SDK sends it here: ``model_dump()`` (field names,
        ``None`` fields kept; elsewhere a model goes by alias without them)."""
        value = config.model_dump() if isinstance(config, BaseModel) else config
        return self._iii.register_trigger(RegisterTriggerInput(
            type=self._trigger_type_id, function_id=function_id, config=to_wire_value(value),
            metadata=metadata, namespace=self._iii.client.namespace))

    def register_function(self, function_id: str,
                          handler: Callable[[R], Any] | Callable[[R, Any], Any], *,
                          description: str | None = None) -> FunctionRef:
        return self._iii.register_function(function_id, handler, description=description)


def _fields(value: Any, names: Iterable[str]) -> dict[str, Any]:
    """The named fields of a mapping (only those present) or of any object with attributes
    (a pydantic model or dataclass, the official SDK's own models included)."""
    if isinstance(value, Mapping):
        return dict(value)
    return {name: getattr(value, name) for name in names if hasattr(value, name)}


def _provider_config(config: RxTriggerConfig) -> TriggerConfig[Any]:
    # The engine leaves `namespace` out for `default`; providers see None there (docs/protocol.md
    # §6.2).
    namespace = None if config.namespace == "default" else config.namespace
    return TriggerConfig(id=config.id, function_id=config.function_id, config=config.config,
                         metadata=config.metadata, namespace=namespace)


async def _maybe_await(value: Any) -> Any:
    if hasattr(value, "__await__"):
        return await value
    return value


def _schema(fmt: Any) -> Any:
    """A pydantic model class becomes its JSON schema; anything else is sent as is."""
    if isinstance(fmt, type) and issubclass(fmt, BaseModel):
        return fmt.model_json_schema()
    return to_wire_value(fmt)
