"""The caller side, without I/O: the calls this client made and the answers they wait for.

:class:`Calls` is the one table of pending calls. It gives each call an invocation id, hands
its frame to an outbox (the transport, or a list in a test), arms its timer on the client's
loop, settles it when its ``invocationresult`` arrives, and fails what is still pending when
the connection is lost, the engine rejects the worker, or the client closes
(:meth:`Calls.fail_all`, the one place that does it). It opens no socket and starts no task, so
tests drive it with decoded frames and read what it sent.

:class:`Call` is what a ``trigger`` :class:`~iii_rx.single.Single` starts: the arguments of one
call, bound to its table. Every use of the Single starts it again (a new invocation id).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import numbers
import os
from collections.abc import Callable, Collection, Mapping
from typing import Any, Protocol

from pydantic_core import PydanticSerializationError

from iii_rx.aio import LoopBridge
from iii_rx.errors import IIIInvocationError, IIITimeoutError, PayloadTooLargeError, error_from_body
from iii_rx.frame_text import NON_FINITE, HotResult, NonFiniteError, invoke_text, unwritable
from iii_rx.protocol import EnqueueAction, InvocationResult, VoidAction
from iii_rx.single import Done
from iii_rx.telemetry.ids import wire_traceparent
from iii_rx.transport import CALL

__all__ = [
    "Call",
    "CallOutbox",
    "CallRequest",
    "Calls",
    "PendingCall",
    "call_namespace",
    "call_text",
    "new_id_source",
    "request_fields",
    "trigger_arguments",
    "settle",
    "trigger_action",
]

log = logging.getLogger("iii_rx.calls")

Target = Done | asyncio.Future[Any]
"""Who learns a call's outcome: a completion callback, or a future of the client's loop."""

CallSender = Callable[["Call", Target], Callable[[], None]]
""":meth:`Calls.send`: sends a call, returns its canceller."""


class CallOutbox(Protocol):
    """Where call frames go (the transport): ``send(text, CALL, invocation_id)``.

    Raises :class:`~iii_rx.errors.PayloadTooLargeError` or
    :class:`~iii_rx.errors.IIIConnectionError` when the frame cannot be sent or queued. An
    outbox that may hold a frame back (the transport while disconnected) also has
    ``withdraw(invocation_id)``: the call ended, and must never be sent.
    """

    def send(self, text: str, kind: int = ..., invocation_id: str | None = None) -> bool:
        """Send or queue one frame (on the loop); ``False`` when dropped."""


def settle(target: Target, value: Any, error: BaseException | None) -> None:
    """Hand a call's outcome to its target once (a raising callback is logged, not raised)."""
    if isinstance(target, asyncio.Future):
        if not target.done():
            if error is not None:
                target.set_exception(error)
            else:
                target.set_result(value)
    else:
        try:
            target(value, error)
        except Exception:
            log.exception("completion callback of a call raised")


def new_id_source() -> Callable[[], str]:
    """UUIDv4-shaped ids: a random per-client prefix and a counter (unique, and cheaper than
    ``uuid4()`` on the hot path)."""
    r = os.urandom(10).hex()
    prefix = f"{r[0:8]}-{r[8:12]}-4{r[12:15]}-{'89ab'[int(r[15], 16) & 3]}{r[16:19]}-"
    counter = itertools.count(int.from_bytes(os.urandom(4), "big"))
    return lambda: f"{prefix}{next(counter) & 0xFFFFFFFFFFFF:012x}"


def _noop() -> None:
    return None


def _sent_at_once(invocation_id: str) -> None:
    """The ``withdraw`` of an outbox that holds nothing back."""


class PendingCall:
    """A call waiting for its ``invocationresult``."""

    __slots__ = ("function_id", "target", "timeout_ms", "timer")

    def __init__(self, target: Target, function_id: str, timeout_ms: int) -> None:
        self.target = target
        self.function_id = function_id
        self.timeout_ms = timeout_ms
        self.timer: asyncio.TimerHandle | None = None


class Call:
    """The starter of a ``trigger`` Single: everything needed to send one call, again and
    again (a :class:`~iii_rx.single.CallStarter`)."""

    __slots__ = ("action", "baggage", "bridge", "calls", "data", "function_id", "metadata",
                 "namespace", "timeout_ms", "traceparent")

    def __init__(self, calls: Calls, function_id: str, data: Any, action: Any,
                 timeout_ms: int, metadata: Any, namespace: str | None,
                 traceparent: str | None, baggage: str | None) -> None:
        self.calls = calls
        self.bridge = calls.bridge
        self.function_id = function_id
        self.data = data
        self.action = action
        self.timeout_ms = timeout_ms
        self.metadata = metadata
        self.namespace = namespace
        self.traceparent = traceparent
        self.baggage = baggage

    def start(self, done: Target) -> Callable[[], None]:
        """Send this call now (on the loop); returns its canceller."""
        return self.calls.start(self, done)

    def retraced(self, traceparent: str) -> Call:
        """A copy of this call sent with ``traceparent`` (a traced call is started again with
        a fresh span each time, so the call itself keeps its own)."""
        sent = object.__new__(Call)
        sent.calls = self.calls
        sent.bridge = self.bridge
        sent.function_id = self.function_id
        sent.data = self.data
        sent.action = self.action
        sent.timeout_ms = self.timeout_ms
        sent.metadata = self.metadata
        sent.namespace = self.namespace
        sent.traceparent = traceparent
        sent.baggage = self.baggage
        return sent


class Calls:
    """The pending calls of one client: ids, timers, answers, and failing them all.

    Runs on the loop of ``bridge`` (every method but :attr:`bridge` and ``len()``). ``outbox``
    receives each call frame.
    """

    def __init__(self, bridge: LoopBridge, outbox: CallOutbox,
                 new_id: Callable[[], str] | None = None) -> None:
        self.bridge = bridge
        self._outbox = outbox
        self._withdraw: Callable[[str], None] = getattr(outbox, "withdraw", _sent_at_once)
        self._loop = bridge.loop
        self._pending: dict[str, PendingCall] = {}
        self._refusal: Callable[[str], BaseException] | None = None
        self.new_id = new_id or new_id_source()
        """A new invocation id (also for calls sent by others, e.g. the worker registration)."""
        self.trace_call: Callable[[Call, Target, CallSender], Callable[[], None]] | None = None
        """Set when the client traces or measures: starts each call through
        :meth:`send`, around it its span and its metrics (telemetry)."""

    def __len__(self) -> int:
        return len(self._pending)

    def call(self, function_id: str, data: Any, *, action: Any = None, timeout_ms: int,
             metadata: Any = None, namespace: str | None = None,
             traceparent: str | None = None, baggage: str | None = None) -> Call:
        """A :class:`Call` of this table (nothing is sent until it is started)."""
        return Call(self, function_id, data, trigger_action(action), timeout_ms, metadata,
                    namespace, traceparent, baggage)

    def refuse(self, reason: Callable[[str], BaseException]) -> None:
        """From now on, fail every new call at once with ``reason(function_id)``.

        The first refusal wins: a worker the engine rejected keeps saying why after it closes.
        """
        if self._refusal is None:
            self._refusal = reason

    # ------------------------------------------------------------------ sending

    def start(self, call: Call, target: Target) -> Callable[[], None]:
        """Send ``call`` (on the loop); returns the function that cancels it.

        A void call (``TriggerAction.void()``) gets no id, no timer and no answer: it settles
        with ``None`` once its frame is handed to the outbox.
        """
        if self.trace_call is not None:
            return self.trace_call(call, target, self.send)
        return self.send(call, target)

    def send(self, call: Call, target: Target) -> Callable[[], None]:
        """:meth:`start` without telemetry."""
        if self._refusal is not None:
            settle(target, None, self._refusal(call.function_id))
            return _noop
        iid = None if isinstance(call.action, VoidAction) else self.new_id()
        try:
            text = call_text(call, iid)
            if iid is None:
                self._outbox.send(text, CALL)
        except Exception as exc:
            settle(target, None, _send_error(exc, call.function_id, iid))
            return _noop
        if iid is None:
            settle(target, None, None)
            return _noop
        pending = PendingCall(target, call.function_id, call.timeout_ms)
        self._pending[iid] = pending
        try:
            self._outbox.send(text, CALL, iid)
        except Exception as exc:
            del self._pending[iid]
            settle(target, None, _send_error(exc, call.function_id, iid))
            return _noop
        pending.timer = self._loop.call_later(call.timeout_ms / 1000, self._on_timeout, iid)
        return functools.partial(self.cancel, iid)

    def expect(self, iid: str, target: Target, function_id: str, timeout_ms: int) -> None:
        """Wait for the answer to a call someone else sends with id ``iid`` (armed timer)."""
        pending = PendingCall(target, function_id, timeout_ms)
        pending.timer = self._loop.call_later(timeout_ms / 1000, self._on_timeout, iid)
        self._pending[iid] = pending

    def cancel(self, iid: str) -> None:
        """Forget a call: its answer, if one comes, is dropped; its target is not settled.
        Not written yet, it never will be."""
        call = self._pending.pop(iid, None)
        if call is not None:
            if call.timer is not None:
                call.timer.cancel()
            self._withdraw(iid)

    # ------------------------------------------------------------------ answers

    def on_result(self, frame: InvocationResult | HotResult) -> None:
        """Settle the call ``frame`` answers; a late or foreign answer is dropped, as the SDKs
        do."""
        call = self._pending.pop(frame.invocation_id, None)
        if call is None:
            return
        if call.timer is not None:
            call.timer.cancel()
        error = frame.error
        if error is None:
            settle(call.target, frame.result, None)
        else:
            settle(call.target, None, error_from_body(
                error.code, error.message, function_id=call.function_id,
                stacktrace=error.stacktrace, invocation_id=frame.invocation_id))

    def _on_timeout(self, iid: str) -> None:
        call = self._pending.pop(iid, None)
        if call is not None:
            self._withdraw(iid)  # still queued (disconnected): its caller is told it failed
            settle(call.target, None, IIITimeoutError(
                "TIMEOUT", f"invocation timed out after {call.timeout_ms}ms",
                function_id=call.function_id, invocation_id=iid))

    def fail_all(self, error_of: Callable[[str, PendingCall], BaseException | None], *,
                 keep: Collection[str] = ()) -> None:
        """Take every pending call out (but those in ``keep``), stop its timer and settle it
        with ``error_of(invocation_id, call)`` (``None``: drop it without settling).

        Every call is taken out before the first one is settled, so a target that starts a
        new call (``retry``) does not see it failed by the same sweep.
        """
        if keep:
            taken = [(iid, self._pending.pop(iid)) for iid in list(self._pending)
                     if iid not in keep]
        else:
            taken = list(self._pending.items())
            self._pending = {}
        for _, call in taken:
            if call.timer is not None:
                call.timer.cancel()
        for iid, call in taken:
            error = error_of(iid, call)
            if error is not None:
                settle(call.target, None, error)


# ====================================================================== frames of a call


def call_text(call: Call, iid: str | None) -> str:
    """The ``invokefunction`` of ``call``. A payload or metadata JSON cannot carry raises
    ``TypeError`` (a type) or ``ValueError`` (a value: NaN, a cycle) naming the call."""
    try:
        return invoke_text(call.function_id, call.data, invocation_id=iid,
                           metadata=call.metadata, traceparent=wire_traceparent(call.traceparent),
                           baggage=call.baggage, action=call.action, namespace=call.namespace,
                           allow_nan=False)
    except NonFiniteError:
        raise ValueError(
            f"the call to {call.function_id!r} was not sent: {NON_FINITE}") from None
    except PydanticSerializationError as exc:
        raise unwritable(exc, f"the call to {call.function_id!r} was not sent") from None


def call_namespace(function_id: str, explicit: str | None, worker: str | None) -> str | None:
    """The namespace a call (or binding) of ``function_id`` goes to: ``explicit`` (not blank),
    else ``"default"`` for ``engine::`` / ``configuration::`` ids, else the worker's."""
    if explicit is not None:
        if not isinstance(explicit, str):
            raise TypeError(f"namespace must be a string, not {type(explicit).__name__}")
        if not explicit.strip():
            raise ValueError("namespace must not be blank")
        return explicit
    if function_id.startswith(("engine::", "configuration::")):
        return "default"
    return worker


_CALL_FIELDS = ("function_id", "payload", "action", "timeout_ms", "metadata", "namespace")


class CallRequest(Protocol):
    """A call given as one object (the official SDK's ``TriggerRequest``, a dataclass...): its
    ``function_id``, and what it has of ``payload``, ``action``, ``timeout_ms``, ``metadata``,
    ``namespace``. A type, so that ``trigger(42)`` fails the type check, not only the call."""

    @property
    def function_id(self) -> str: ...


def trigger_arguments(function_id: Any, payload: Any, action: Any, timeout_ms: Any,
                      metadata: Any, namespace: Any) -> tuple[str, Any, Any, Any, Any, Any]:
    """The arguments of ``Client.trigger``, checked; taken from the request when
    ``function_id`` is one (a mapping or an object with those fields) rather than a string.
    ``timeout_ms`` must be a number: a text (read from the environment) would fail on the
    loop and leave the call without a timer, waiting for ever."""
    if not isinstance(function_id, str):
        request = request_fields(function_id, _CALL_FIELDS)
        function_id, payload, action, timeout_ms, metadata, namespace = (
            request.get(key) for key in _CALL_FIELDS)
        if not isinstance(function_id, str):
            raise TypeError("trigger() needs a function_id string")
    if not function_id or not function_id.strip():
        raise ValueError("function_id must not be empty")
    if timeout_ms is not None:
        if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, numbers.Real):
            raise TypeError(f"timeout_ms must be a number of milliseconds, "
                            f"not {type(timeout_ms).__name__}")
        if not float(timeout_ms) >= 0:  # also NaN
            raise ValueError(f"timeout_ms must be >= 0 (0: the client's default), got "
                             f"{timeout_ms!r}")
    return function_id, payload, action, timeout_ms, metadata, namespace


def request_fields(request: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    """The fields of a request given as a mapping or as an object with those attributes (the
    official SDK's request models), keeping only ``keys`` from an object."""
    if isinstance(request, Mapping):
        return dict(request)
    return {key: getattr(request, key, None) for key in keys}


def trigger_action(action: Any) -> VoidAction | EnqueueAction | None:
    """The wire model of a call action given as a model, a mapping or an object with ``type``
    (and ``queue``), e.g. the official SDK's; ``ValueError`` for anything else."""
    if action is None or isinstance(action, (VoidAction, EnqueueAction)):
        return action
    given = action
    if isinstance(action, Mapping):
        kind = action.get("type")
    else:
        kind = getattr(action, "type", None)
        if hasattr(action, "model_dump"):
            action = action.model_dump()
        else:
            action = {"type": kind, "queue": getattr(action, "queue", None)}
    if kind == "void":
        return VoidAction()
    if kind == "enqueue":
        queue = action.get("queue")
        if not isinstance(queue, str) or not queue:
            raise ValueError("an enqueue action needs a queue name")
        return EnqueueAction(queue=queue)
    raise ValueError(f"unknown trigger action {given!r}: use TriggerAction.void() or "
                     f"TriggerAction.enqueue(queue)")


def _send_error(exc: Exception, function_id: str, iid: str | None) -> Exception:
    """What a call that could not be sent fails with (too large: a typed invocation error)."""
    if isinstance(exc, PayloadTooLargeError):
        return IIIInvocationError("payload_too_large", str(exc), function_id=function_id,
                                  invocation_id=iid)
    return exc
