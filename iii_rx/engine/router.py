"""Invocation routing: sync, void and enqueue calls, the pending map, result relay.

The hot path (a worker calls a function of another worker) is one decode, one dict lookup, one
encode and one queue append each way:

* ``invokefunction`` in: resolve ``(namespace or "default", function_id)``, add
  ``_caller_worker_id`` to an object payload (docs/protocol.md §4.3), queue the handler's frame;
* ``invocationresult`` in: pop the pending entry of the *handler's* connection by id and queue
  the handler's frame text to the caller **unchanged** (the caller's id is reused toward the
  handler, so the text is already the caller's answer; docs/protocol.md §12.3 item 11).

Pending entries live on the handler's connection keyed by the id sent to it, so a buggy client
reusing ids can only confuse itself (docs/protocol.md §4.2); an id already in flight to the same
handler gets a fresh id toward the handler and its result is re-encoded. Entries are also remembered
on the caller's connection so both sides' cleanup can find them, and a sweep expires very old
ones (``pending_max_age_ms``) with ``invocation_error`` (docs/protocol.md §12.3 item 13).

In-process functions (``engine::*`` builtins, HTTP-invoked functions) are awaited inline in the
caller's reader when marked ``inline`` and run as tasks otherwise. :meth:`Router.call` is the
entry point for engine-originated calls (trigger fires, the REST API).
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
import uuid
from collections.abc import Awaitable, Coroutine
from typing import Any

from iii_rx.aio import TaskSet
from iii_rx.engine.config import DEFAULT_NAMESPACE, EngineConfig
from iii_rx.engine.connection import Pending, WorkerConnection
from iii_rx.engine.logsafe import RateLimitedLog, printable
from iii_rx.engine.metrics import EngineMetrics, MeteredPending
from iii_rx.engine.registry import CallContext, FunctionEntry, Registry
from iii_rx.engine.wire import (
    HotInvoke,
    HotResult,
    error_body,
    function_not_found_message,
    invoke_text,
    result_text,
)
from iii_rx.errors import IIIInvocationError, IIITimeoutError
from iii_rx.protocol import EnqueueAction, InvocationResult, InvokeFunction

__all__ = ["QUEUE_FUNCTION", "Pending", "Router"]

log = logging.getLogger("iii_rx.engine")

QUEUE_FUNCTION = "engine::queue::enqueue"
"""Provider of the ``enqueue`` action (a queue worker); absent ⇒ ``enqueue_error``."""

_STOPPED = error_body("invocation_stopped", "Invocation stopped")


class Router:
    """Routes invocations between workers and in-process functions."""

    def __init__(self, registry: Registry, config: EngineConfig, *,
                 peer_log: RateLimitedLog | None = None) -> None:
        self.registry = registry
        self.config = config
        self._peer_log = peer_log if peer_log is not None else RateLimitedLog(log)
        """The engine's budget of lines a peer can cause (a router built alone: its own)."""
        self.metrics = EngineMetrics(registry)
        self._tasks = TaskSet("the engine router")

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the sweep of very old pending calls (on the engine loop)."""
        if self._tasks.closed:  # started again after a stop
            self._tasks = TaskSet("the engine router")
        if self.config.pending_max_age_ms > 0:
            self._tasks.spawn(self._sweep_loop(), name="iii-engine-pending-sweep")

    async def stop(self) -> None:
        """Cancel and await every task the router started (calls, fires, the sweep)."""
        await self._tasks.aclose()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        """Run ``coro`` as a task the engine cancels on stop; a crash of it is logged."""
        return self._tasks.spawn(coro, name=name)

    # ------------------------------------------------------------------ from workers

    def invoke(self, conn: WorkerConnection,
               frame: InvokeFunction | HotInvoke) -> Awaitable[None] | None:
        """Handle a worker's ``invokefunction``; returns an awaitable for inline builtins."""
        namespace = frame.namespace
        action = frame.action
        reply_id = frame.invocation_id if action is None or type(action) is EnqueueAction else None
        function_id = frame.function_id
        if namespace is None:
            namespace = DEFAULT_NAMESPACE
        elif not namespace.strip():
            if reply_id is not None:
                conn.send(result_text(reply_id, function_id, error=error_body(
                    "INVALID_NAMESPACE", "namespace must not be blank")))
            return None
        if type(action) is EnqueueAction:
            assert type(frame) is InvokeFunction
            self.spawn(self._enqueue(conn, frame, namespace, action, reply_id))
            return None
        entry = self.registry.functions.get((namespace, function_id))
        if entry is None:
            if reply_id is not None:
                conn.send(result_text(reply_id, function_id, error=self.not_found(
                    function_id, namespace)))
            else:
                log.debug("void call of missing function %s/%s from %s",
                          namespace, function_id, conn.label)
            return None
        data = frame.data
        if type(data) is dict:
            data["_caller_worker_id"] = conn.id
        if entry.handler is None:
            self._to_worker(conn, entry, frame, data, reply_id)
            return None
        ctx = CallContext(function_id, namespace, conn, reply_id, frame.metadata,
                          frame.traceparent, frame.baggage)
        run = self._run_local(conn, entry, data, ctx)
        if entry.inline:
            return run
        self.spawn(run)
        return None

    def _to_worker(self, conn: WorkerConnection, entry: FunctionEntry,
                   frame: InvokeFunction | HotInvoke,
                   data: Any, reply_id: str | None) -> None:
        handler = entry.owner
        assert handler is not None
        if handler.closed:
            if reply_id is not None:
                conn.send(result_text(reply_id, entry.function_id, error=_STOPPED))
            return
        if handler.queued_bytes > handler.call_limit:
            self._refuse_busy(conn, handler, entry.function_id, reply_id)
            return
        wire_id = reply_id
        fn_stats, worker_stats = self.metrics.stats_of(entry)
        if reply_id is not None:
            if reply_id in handler.inbound:
                wire_id = str(uuid.uuid4())
            assert wire_id is not None
            pending = MeteredPending(wire_id, reply_id, entry.function_id, handler, conn, None,
                                     time.monotonic(), fn_stats, worker_stats)
            fn_stats.begin()
            worker_stats.begin()
            handler.inbound[wire_id] = pending
            conn.outbound.add(pending)
        else:  # a void call: counted, never answered
            fn_stats.invocations += 1
            worker_stats.invocations += 1
        handler.send(invoke_text(wire_id, entry.local_id or entry.function_id, data,
                                 frame.metadata, frame.traceparent, frame.baggage))

    def _refuse_busy(self, conn: WorkerConnection, handler: WorkerConnection, function_id: str,
                     reply_id: str | None) -> None:
        """A call toward a peer that does not read: answered ``queue_full`` at once."""
        if reply_id is not None:
            conn.send(result_text(reply_id, function_id, error=handler.busy_error(function_id)))
        else:
            self._peer_log.log(logging.WARNING, "queue_full", "void call of %s from %s "
                               "dropped: worker %s is not reading its connection",
                               printable(function_id), printable(conn.label),
                               printable(handler.label))

    async def _run_local(self, conn: WorkerConnection | None, entry: FunctionEntry, data: Any,
                         ctx: CallContext) -> None:
        assert entry.handler is not None
        result: Any = None
        error: dict[str, Any] | None = None
        fn_stats, worker_stats = self.metrics.stats_of(entry)
        fn_stats.begin()
        worker_stats.begin()
        started = time.monotonic()
        try:
            result = await entry.handler(data, ctx)
        except IIIInvocationError as exc:
            error = error_body(exc.code, exc.message, exc.stacktrace)
        except Exception as exc:
            error = _failure_body(exc)
        finally:
            fn_stats.end(started, error is not None)
            worker_stats.end(started, error is not None)
        if conn is not None and ctx.invocation_id is not None:
            conn.send(result_text(ctx.invocation_id, entry.function_id, result, error))
        elif error is not None:  # a peer can make these at will: budgeted, escaped
            self._peer_log.log(logging.WARNING, "void call failed",
                               "void call of %s failed: %s", printable(entry.function_id),
                               printable(str(error["message"]), 300))

    def result(self, conn: WorkerConnection, frame: InvocationResult | HotResult,
               raw: str | bytes) -> None:
        """Handle a handler's ``invocationresult``: complete and relay, or drop if unknown."""
        pending = conn.inbound.pop(frame.invocation_id, None)
        if pending is None:
            return
        if type(pending) is MeteredPending:
            pending.end(frame.error is not None)
        caller = pending.caller
        if caller is not None:
            caller.outbound.discard(pending)
            if (pending.caller_id == pending.wire_id and type(raw) is str
                    and frame.function_id == pending.function_id):
                caller.send(raw)
            else:
                caller.send(_reencode(frame, pending))
        elif pending.future is not None and not pending.future.done():
            pending.future.set_result(frame)

    async def _enqueue(self, conn: WorkerConnection, frame: InvokeFunction, namespace: str,
                       action: EnqueueAction, reply_id: str | None) -> None:
        receipt = str(uuid.uuid4())
        error: dict[str, Any] | None = None
        if (DEFAULT_NAMESPACE, QUEUE_FUNCTION) not in self.registry.functions:
            error = error_body("enqueue_error", f"Cannot enqueue {frame.function_id}: no queue "
                               f"provider is installed ({QUEUE_FUNCTION} is not registered)")
        else:
            payload: dict[str, Any] = {
                "queue": action.queue, "function_id": frame.function_id, "data": frame.data,
                "messageReceiptId": receipt,
            }
            if frame.traceparent is not None:
                payload["traceparent"] = frame.traceparent
            if frame.baggage is not None:
                payload["baggage"] = frame.baggage
            if namespace != DEFAULT_NAMESPACE:
                payload["namespace"] = namespace
            try:
                await self.call(QUEUE_FUNCTION, payload)
            except IIIInvocationError as exc:
                error = error_body("enqueue_error", exc.message)
        if reply_id is not None:
            conn.send(result_text(reply_id, frame.function_id,
                                  None if error else {"messageReceiptId": receipt}, error))

    # ------------------------------------------------------------------ engine-originated

    async def call(self, function_id: str, data: Any, *, namespace: str = DEFAULT_NAMESPACE,
                   metadata: Any = None, traceparent: str | None = None,
                   baggage: str | None = None, timeout: float | None = None,
                   caller: WorkerConnection | None = None, fire: bool = False) -> Any:
        """Invoke a function from inside the engine; returns its result.

        Raises :class:`IIIInvocationError` with the error's code (``function_not_found``,
        ``invocation_stopped``, the handler's ``invocation_failed``, ...) and
        :class:`IIITimeoutError` when ``timeout`` (seconds) passes first. Cancelled, it
        withdraws a worker's call: the pending entry is forgotten, a late answer dropped.
        ``caller`` is the worker the call is made for (a read it asked for): when it leaves,
        a worker's call is withdrawn as its own calls are (``invocation_stopped``), so calls
        nobody waits for do not pile up on a worker that never answers. ``fire``: nobody waits
        for the result (a trigger's fire); a handler keeps at most
        ``max_pending_fires_per_worker`` of those without a result, the oldest is given up.
        """
        entry = self.registry.functions.get((namespace, function_id))
        if entry is None:
            body = self.not_found(function_id, namespace)
            raise IIIInvocationError(body["code"], body["message"], function_id=function_id)
        fn_stats, worker_stats = self.metrics.stats_of(entry)
        if entry.handler is not None:
            ctx = CallContext(function_id, namespace, None, None, metadata, traceparent, baggage)
            fn_stats.begin()
            worker_stats.begin()
            started, failed = time.monotonic(), True
            try:
                result = await asyncio.wait_for(entry.handler(data, ctx), timeout)
                failed = False
                return result
            except asyncio.TimeoutError:
                raise _timeout(function_id, None, timeout) from None
            except IIIInvocationError:
                raise
            except Exception as exc:
                body = _failure_body(exc)
                raise IIIInvocationError(body["code"], body["message"], function_id=function_id,
                                         stacktrace=body.get("stacktrace")) from exc
            finally:
                fn_stats.end(started, failed)
                worker_stats.end(started, failed)
        handler = entry.owner
        assert handler is not None
        if caller is not None and caller.closed:  # left already: nobody waits, nothing sent
            raise IIIInvocationError(_STOPPED["code"], _STOPPED["message"],
                                     function_id=function_id)
        if handler.queued_bytes > handler.call_limit and not handler.closed:
            body = handler.busy_error(function_id)
            raise IIIInvocationError(body["code"], body["message"], function_id=function_id)
        wire_id = str(uuid.uuid4())
        future: asyncio.Future[InvocationResult | HotResult] = (
            asyncio.get_running_loop().create_future())
        pending = MeteredPending(wire_id, None, function_id, handler, None, future,
                                 time.monotonic(), fn_stats, worker_stats)
        # Written before the call is counted: a payload that cannot be written leaves nothing.
        text = None if handler.closed else invoke_text(
            wire_id, entry.local_id or function_id, data, metadata, traceparent, baggage)
        fn_stats.begin()
        worker_stats.begin()
        if text is None:
            _complete_stopped(pending)
        else:
            handler.inbound[wire_id] = pending
            handler.send(text)
            if fire:
                self._bound_fires(handler, pending)
            if caller is not None:
                caller.outbound.add(pending)  # halt(caller) withdraws it
        timed_out = False
        try:
            frame = await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            timed_out = True
            raise _timeout(function_id, wire_id, timeout) from None
        finally:  # timed out or cancelled: a late result must find nothing
            if fire:
                handler.fires.pop(wire_id, None)
            if caller is not None:
                caller.outbound.discard(pending)
            if handler.inbound.get(wire_id) is pending:
                del handler.inbound[wire_id]
                if timed_out:
                    pending.end(True)
                else:  # cancelled: its caller left (a REST client gone), as in halt()
                    pending.drop()
        if frame.error is not None:
            raise IIIInvocationError(frame.error.code, frame.error.message,
                                     function_id=function_id, stacktrace=frame.error.stacktrace,
                                     invocation_id=wire_id)
        return frame.result

    def fire(self, function_id: str, data: Any, *, namespace: str = DEFAULT_NAMESPACE,
             metadata: Any = None, traceparent: str | None = None,
             baggage: str | None = None) -> None:
        """Call without waiting (trigger fires); failures are logged."""
        self.spawn(self._fire(function_id, data, namespace, metadata, traceparent, baggage))

    async def _fire(self, function_id: str, data: Any, namespace: str, metadata: Any,
                    traceparent: str | None, baggage: str | None) -> None:
        try:
            await self.call(function_id, data, namespace=namespace, metadata=metadata,
                            traceparent=traceparent, baggage=baggage, fire=True)
        except IIIInvocationError as exc:  # the handler's text: budgeted, escaped
            self._peer_log.log(logging.INFO, "trigger call failed",
                               "trigger call of %s/%s failed: %s", printable(namespace),
                               printable(function_id), printable(str(exc), 300))

    def _bound_fires(self, handler: WorkerConnection, pending: Pending) -> None:
        """Keep ``pending`` among the handler's unawaited fires; past the bound, forget the
        oldest. A fire's result is discarded anyway: a watcher that answers late loses nothing,
        one that never answers (a hung handler, an SDK that drops the call) no longer holds
        an hour of fires (``pending_max_age_ms``) at ~3 KB each.

        A forgotten fire is no failure: a handler that is only busy (a burst of events, a
        slow subscriber) may still be running it. It leaves the stats as a call whose caller
        left does (no longer in flight, no latency, no error), and its fire ends quietly."""
        fires = handler.fires
        fires[pending.wire_id] = pending
        limit = self.config.max_pending_fires_per_worker
        if 0 < limit < len(fires):
            oldest = fires.pop(next(iter(fires)))
            if handler.inbound.get(oldest.wire_id) is oldest:
                del handler.inbound[oldest.wire_id]
                if type(oldest) is MeteredPending:
                    oldest.drop()
                if oldest.future is not None and not oldest.future.done():
                    oldest.future.set_result(InvocationResult(  # nobody reads it
                        invocation_id=oldest.wire_id, function_id=oldest.function_id))

    # ------------------------------------------------------------------ errors, cleanup

    def not_found(self, function_id: str, namespace: str) -> dict[str, Any]:
        """The ``function_not_found`` body of docs/protocol.md §4.3, plus why a registration of
        the function was refused, if it was."""
        elsewhere = [ns for ns in self.registry.namespaces_of(function_id) if ns != namespace]
        refused = self.registry.refusal_reason((namespace, function_id))
        return error_body("function_not_found",
                          function_not_found_message(function_id, namespace, elsewhere, refused))

    def halt(self, conn: WorkerConnection) -> None:
        """Stop the calls sent to ``conn``, forget those it made (docs/protocol.md §2.10 step 3)."""
        inbound = list(conn.inbound.values())
        conn.inbound.clear()
        for pending in inbound:
            _complete_stopped(pending)
        for pending in list(conn.outbound):
            handler = pending.handler
            if handler.inbound.get(pending.wire_id) is pending:
                del handler.inbound[pending.wire_id]
                if type(pending) is MeteredPending:  # its caller left: no longer in flight
                    pending.drop()
            future = pending.future  # an engine call made for it (Router.call's caller)
            if future is not None and not future.done():
                future.set_result(InvocationResult(invocation_id=pending.wire_id,
                                                   function_id=pending.function_id,
                                                   error=_STOPPED))
        conn.outbound.clear()

    async def _sweep_loop(self) -> None:
        max_age = self.config.pending_max_age_ms / 1000
        period = min(max(max_age / 4, 0.01), 60.0)
        while True:
            await asyncio.sleep(period)
            self.expire(max_age)

    def expire(self, max_age: float) -> int:
        """Drop entries older than ``max_age`` seconds, failing them with ``invocation_error``."""
        cutoff = time.monotonic() - max_age
        expired = 0
        for conn in list(self.registry.workers.values()):
            old = [p for p in conn.inbound.values() if p.created < cutoff]
            for pending in old:
                del conn.inbound[pending.wire_id]
                if pending.caller is not None:
                    pending.caller.outbound.discard(pending)
                _complete(pending, error_body(
                    "invocation_error", f"Invocation expired after {max_age:g} s without result"))
                expired += 1
        return expired

    def pending_count(self) -> int:
        return sum(len(conn.inbound) for conn in self.registry.workers.values())


def _complete_stopped(pending: Pending) -> None:
    _complete(pending, _STOPPED)


def _complete(pending: Pending, error: dict[str, Any]) -> None:
    if type(pending) is MeteredPending:
        pending.end(True)
    caller = pending.caller
    if caller is not None:
        caller.outbound.discard(pending)
        if pending.caller_id is not None:
            caller.send(result_text(pending.caller_id, pending.function_id, error=error))
    elif pending.future is not None and not pending.future.done():
        pending.future.set_result(InvocationResult(
            invocation_id=pending.wire_id, function_id=pending.function_id, error=error))


def _reencode(frame: InvocationResult | HotResult, pending: Pending) -> str:
    """The answer in the caller's terms: its invocation id and the function it called (as
    the Rust engine does, whatever ``function_id`` the handler's frame carried)."""
    assert pending.caller_id is not None
    error = frame.error.model_dump(exclude_unset=True) if frame.error is not None else None
    return result_text(pending.caller_id, pending.function_id, frame.result, error,
                       frame.traceparent, frame.baggage)


def _failure_body(exc: BaseException) -> dict[str, Any]:
    message = str(exc) or type(exc).__name__
    if isinstance(exc, NotImplementedError):
        message = f"not implemented: {message}"
    return error_body("invocation_failed", message,
                      "".join(traceback.format_exception(exc)))


def _timeout(function_id: str, invocation_id: str | None, timeout: float | None) -> IIITimeoutError:
    return IIITimeoutError("TIMEOUT", f"invocation timed out after {(timeout or 0) * 1000:g}ms",
                           function_id=function_id, invocation_id=invocation_id)
