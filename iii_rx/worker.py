"""The worker side: an invocation comes in, a handler runs, its answer goes out.

:class:`Worker` turns an ``invokefunction`` frame into an :class:`~iii_rx.context.Invocation`
(channel refs made live), shows it on ``iii.invocations``, and pushes it to the sinks of its
function (or answers ``function_not_found``). It is also the invocation's reply sink: it encodes
the ``invocationresult`` on whatever thread the answer comes from and hands it to an outbox.

:class:`HandlerSink` runs ``iii.register_function`` handlers: async handlers as tasks on the
loop, sync handlers in the client's :class:`~iii_rx._pool.HandlerPool` (the invocation context
follows them), results sent from where they are produced, and ``max_concurrency`` keeps the
excess waiting in arrival order (none is refused or dropped; the queue has no bound of its
own: see docs/guarantees.md). Its tasks belong to the client's
:class:`WorkerTasks`, cancelled and awaited on close.

**A bound for the whole worker.** An engine may deliver thousands of invocations at once (a
flood started 20,000 tasks); the :class:`Gate` of the worker (``connect(max_concurrency=...)``,
default :data:`DEFAULT_MAX_CONCURRENCY`) lets that many async handlers run at once and keeps the
rest waiting in arrival order, never refused. Sync handlers are bounded by the
pool's threads (``max_workers``) instead, where the excess waits in order too, so counting
them here would only add a loop hop per call.

Nothing here opens a socket: the outbox is anything with the transport's ``send`` and
``send_threadsafe``, so tests feed frames in and read the frames out.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast

from pydantic import BaseModel
from pydantic_core import PydanticSerializationError

from iii_rx import _pool, channels
from iii_rx._pool import HandlerPool
from iii_rx.aio import LoopBridge, TaskSet
from iii_rx.context import Invocation, current_context, error_body_of
from iii_rx.frame_text import NON_FINITE, HotInvoke, NonFiniteError, result_text, unwritable
from iii_rx.functions import Sink
from iii_rx.handler_shape import (
    METADATA_KEYWORD,
    NO_METADATA,
    check_takes_data,
    is_async,
    metadata_mode,
)
from iii_rx.protocol import ErrorBody, InvokeFunction
from iii_rx.registrations import Registrations
from iii_rx.streams import HotStream
from iii_rx.telemetry.ids import wire_traceparent
from iii_rx.transport import MAX_FRAME, MAX_MESSAGE, RESULT

__all__ = ["DEFAULT_MAX_CONCURRENCY", "Gate", "HandlerSink", "ReplyOutbox", "Worker",
           "WorkerTasks"]

log = logging.getLogger("iii_rx.worker")

DEFAULT_MAX_CONCURRENCY = 1024
"""Async handlers one worker runs at once unless ``connect(max_concurrency=...)`` says
otherwise; later invocations wait in arrival order."""

CUT_CHANNELS_WAIT = 2.0
"""How long a close waits for the channel ends of the handlers it cut short to end."""


class Gate:
    """Invocations running under a ``max_concurrency``, and those waiting for a slot: the
    worker's async handlers (``Worker.gate``), or one function's handlers (its own gate).

    Plain attributes, read and changed on the loop by :class:`HandlerSink` without a method
    call on the hot path. A waiting invocation keeps a copy of the context it arrived in and
    starts in it (by the start it was queued with), not in the context of the handler whose
    end freed its slot.
    """

    __slots__ = ("limit", "resuming", "running", "waiting")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.limit = limit
        self.running = 0
        self.waiting: deque[tuple[Callable[[Invocation], None], Invocation,
                                  contextvars.Context]] = deque()
        self.resuming = False

    def resume(self) -> None:
        """Start waiting invocations while there are free slots (after a handler ended); the
        call of one that ended inside ``create_task`` (eager tasks) returns: no recursion."""
        if self.resuming:
            return
        self.resuming = True
        try:
            waiting = self.waiting
            while waiting and self.running < self.limit:
                start, invocation, context = waiting.popleft()
                self.running += 1
                context.run(start, invocation)
        finally:
            self.resuming = False

    def close(self) -> None:
        """The client is closing: the waiting invocations are abandoned (the engine answers
        their callers)."""
        waiting = list(self.waiting)
        self.waiting.clear()
        for _, invocation, _ in waiting:
            invocation.abandon()


class ReplyOutbox(Protocol):
    """Where results go (the transport): ``send`` on the loop, ``send_threadsafe`` elsewhere."""

    def send(self, text: str, kind: int = ..., invocation_id: str | None = None) -> bool:
        """Send one frame, on the loop."""

    def send_threadsafe(self, text: str, kind: int = ...) -> None:
        """Send one frame from any other thread."""


class WorkerTasks(TaskSet):
    """The client's background tasks (handlers, providers), with a lean way in for handlers.

    :meth:`own` and :meth:`release` skip the done callback of :meth:`TaskSet.add`: a handler's
    task catches its own errors and releases itself in its ``finally``, which saves one loop
    callback per invocation on the worker's hot path (:attr:`lean` is the set behind them,
    for a caller that cannot afford even a method call). :meth:`aclose` cancels and awaits
    those tasks first, then the others.
    """

    __slots__ = ("_lean", "cancelling")

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._lean: set[asyncio.Task[Any]] = set()
        self.cancelling = False
        """Set when :meth:`aclose` starts: a handler cancelled now is cut short by the close
        (the engine answers its caller); a ``CancelledError`` before that is the handler's
        own failure."""

    @property
    def lean(self) -> set[asyncio.Task[Any]]:
        """The set :meth:`own` adds to and :meth:`release` discards from (always this object:
        its bound ``add``/``discard`` may be kept). Adding to it skips the closed check."""
        return self._lean

    def own(self, task: asyncio.Task[Any]) -> None:
        """Own a task that calls :meth:`release` when it ends (cancelled at once if closed)."""
        if self.closed:
            task.cancel()
            return
        self._lean.add(task)

    def release(self, task: asyncio.Task[Any] | None) -> None:
        """Forget a task owned with :meth:`own`."""
        self._lean.discard(task)

    def __len__(self) -> int:
        return super().__len__() + len(self._lean)

    def exempt_current(self) -> None:
        """If the caller is a handler's task, :meth:`aclose` no longer cancels it."""
        with contextlib.suppress(RuntimeError):  # no running loop: a thread
            self._lean.discard(asyncio.current_task())

    async def aclose(self) -> None:
        """Cancel and await the handler tasks (also those started meanwhile), then close the
        rest as :meth:`TaskSet.aclose` does. A handler that goes on after its cancellation
        is waited for as long as sync handlers are (``_pool.CLOSE_WAIT``), then named in a
        warning and left behind."""
        self.cancelling = True
        current = asyncio.current_task()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _pool.CLOSE_WAIT
        while True:
            # A task cancelled before its first step never runs its ``finally``, so it never
            # releases itself: forget the ended ones here.
            self._lean.difference_update([task for task in self._lean if task.done()])
            tasks = [task for task in self._lean if task is not current]
            if not tasks:
                break
            for task in tasks:
                task.cancel()
            done, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - loop.time()))
            for task in done:
                if not task.cancelled():
                    task.exception()  # retrieved (a handler's task catches its own errors)
            if pending:
                log.warning("closing: %d async handler(s) still running %.0fs after they were "
                            "cancelled; going on without them: %s", len(pending),
                            _pool.CLOSE_WAIT, "; ".join(map(_pool.describe_task, pending)))
                self._lean.difference_update(pending)
                break
        await super().aclose()


# ====================================================================== handlers


class HandlerSink(Sink):
    """Runs a handler for each invocation and answers with its result or its exception."""

    exclusive = True

    def __init__(
        self,
        worker: Worker,
        handler: Callable[..., Any],
        max_concurrency: int | None = None,
    ) -> None:
        if max_concurrency is not None:
            if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int):
                raise TypeError(f"max_concurrency must be an int (or None for no limit), not "
                                f"{type(max_concurrency).__name__}")
            if max_concurrency < 1:
                raise ValueError("max_concurrency must be at least 1 (or None for no limit)")
        self._bridge = worker.bridge
        self._loop = worker.bridge.loop
        self._tasks = worker.tasks
        # The hot path of async handlers: a task is added before it starts (again as it starts:
        # an eager task factory starts it inside create_task) and discarded in its finally, one
        # C call each (an invocation arrives only while the client is open).
        self._track = worker.tasks.lean.add
        self._untrack = worker.tasks.lean.discard
        self._pool = worker.pool
        self._gate = worker.gate
        self._worker = worker
        self._handler = handler
        self._async = is_async(handler)
        self._metadata = metadata_mode(handler)
        check_takes_data(handler, self._metadata)
        self._own = Gate(max_concurrency) if max_concurrency is not None else None
        """The function's own ``max_concurrency``: its invocations wait there first."""

    @property
    def in_flight(self) -> int:
        """Invocations running now (counted only with a ``max_concurrency``)."""
        return self._own.running if self._own is not None else 0

    @property
    def waiting(self) -> int:
        """Invocations waiting for a ``max_concurrency`` slot."""
        return len(self._own.waiting) if self._own is not None else 0

    def __call__(self, invocation: Invocation) -> None:
        own = self._own
        if own is not None:
            if own.running >= own.limit:
                own.waiting.append((self._start, invocation, contextvars.copy_context()))
                return
            own.running += 1
        self._start(invocation)

    def _start(self, invocation: Invocation) -> None:
        if self._async:
            gate = self._gate
            if gate.running >= gate.limit:
                gate.waiting.append((self._spawn, invocation, contextvars.copy_context()))
                return
            gate.running += 1
            self._spawn(invocation)
        else:
            try:
                self._pool.submit(self._run_sync, invocation)
            except RuntimeError as exc:
                if self._pool.closed:  # the client is closing: the engine answers the caller
                    invocation.abandon()
                    return
                self._fail(invocation, exc)  # no thread could start for it: say so, now
                if self._own is not None:
                    self._loop.call_soon(self._finished)

    def _spawn(self, invocation: Invocation) -> None:
        """Start the async handler's task (it holds a slot of the worker's gate)."""
        token = current_context.set(invocation)
        span = invocation.trace.attach() if invocation.trace is not None else None
        try:
            task = self._loop.create_task(coro := self._run_async(invocation))
        finally:
            current_context.reset(token)
            if span is not None:
                invocation.trace.detach(span)
        if inspect.getcoroutinestate(coro) == inspect.CORO_CREATED:  # else an eager task
            self._track(task)  # factory ran it: it owned itself (and may have ended)

    def _call(self, invocation: Invocation) -> Any:
        if self._metadata == NO_METADATA:
            return self._handler(invocation.data)
        if self._metadata == METADATA_KEYWORD:
            return self._handler(invocation.data, metadata=invocation.metadata)
        return self._handler(invocation.data, invocation.metadata)

    def _drop_if_stale(self, invocation: Invocation) -> bool:
        """Give ``invocation`` up if it came on a connection that is gone (it waited for a
        slot meanwhile) and has a caller, who was told ``invocation_stopped``; ``True`` if so,
        and it must not run (a void one, with nobody told, still does)."""
        if invocation.link == self._worker.link or invocation.invocation_id is None:
            return False
        ends, invocation.ends = invocation.ends, ()
        invocation.abandon()  # its channel ends are ended now, not at the close
        self._end_soon(ends, f"the connection to the engine was lost while the handler of "
                             f"{invocation.function_id!r} waited for a slot")
        return True

    async def _run_async(self, invocation: Invocation) -> None:
        task = cast("asyncio.Task[None]", asyncio.current_task(self._loop))
        self._track(task)  # owned before the handler runs (its close may exempt it)
        try:
            if self._drop_if_stale(invocation):
                return
            result = await self._call(invocation)
        except asyncio.CancelledError as exc:
            if self._tasks.cancelling or _cancel_requested():
                invocation.abandon()  # the close (or someone) cancelled the handler's task
                raise
            self._fail(invocation, _cancelled(exc))  # the handler's own (something it awaited)
        except BaseException as exc:
            self._fail(invocation, exc)
        else:
            invocation.reply(result)
        finally:
            # Here rather than in a done callback: that would cost one more loop callback.
            self._untrack(task)
            gate = self._gate
            gate.running -= 1
            if gate.waiting:
                gate.resume()
            if self._own is not None:
                self._finished()

    def _run_sync(self, invocation: Invocation) -> None:
        token = current_context.set(invocation)
        span = invocation.trace.attach() if invocation.trace is not None else None
        try:
            if self._drop_if_stale(invocation):
                return
            result = self._call(invocation)
            if inspect.isawaitable(result):
                result = self._bridge.submit(self._await(result)).result()
        except concurrent.futures.CancelledError as exc:
            if self._tasks.cancelling:
                invocation.abandon()  # the client is closing: the engine answers the caller
            else:
                self._fail(invocation, _cancelled(exc))
        except BaseException as exc:
            self._fail(invocation, exc)
        else:
            invocation.reply(result)
        finally:
            current_context.reset(token)
            if span is not None:
                invocation.trace.detach(span)
            if self._own is not None:
                with contextlib.suppress(RuntimeError):  # loop closed
                    self._bridge.run_sync_soon(self._finished)

    def _fail(self, invocation: Invocation, error: BaseException) -> None:
        """Fail the invocation; the channel ends it received are ended too (a writer
        aborted, a reader closed), or their peers would wait for ever (any thread)."""
        invocation.fail(error)
        self._end_soon(invocation.ends, f"the handler of {invocation.function_id!r} failed")

    def _end_soon(self, ends: tuple[Any, ...], reason: str) -> None:
        """End these channel ends on the loop (from any thread), if there are any."""
        if ends:
            with contextlib.suppress(RuntimeError):  # the loop is closed: so are the sockets
                self._bridge.run_sync_soon(self._end_channels, ends, reason)

    def _end_channels(self, ends: tuple[Any, ...], reason: str) -> None:
        self._tasks.spawn(_end_channels(ends, reason), name="iii-rx failed handler's channels")

    async def _await(self, awaitable: Awaitable[Any]) -> Any:
        """Await what a sync handler returned, as a task the client cancels on close."""
        task = asyncio.current_task()
        assert task is not None
        self._tasks.own(task)
        try:
            return await awaitable
        finally:
            self._tasks.release(task)

    def _finished(self) -> None:
        own = self._own
        assert own is not None
        own.running -= 1
        own.resume()

    def close(self) -> None:
        """Invocations still waiting for a slot are abandoned: the engine answers them."""
        if self._own is not None:
            self._own.close()


async def _end_channels(ends: tuple[Any, ...], reason: str) -> None:
    """End the channel ends of a handler that failed or was cut short: abort writers (their
    readers learn it), close readers (their writers stop)."""
    for end in ends:
        with contextlib.suppress(Exception):  # an end already ended, or whose socket is gone
            await end.give_up(reason)


def _cancel_requested() -> bool:
    """Whether the running task was asked to cancel (Python 3.11+ counts the requests; 3.10
    cannot tell that from a ``CancelledError`` the handler raised itself)."""
    cancelling = getattr(asyncio.current_task(), "cancelling", None)
    return cancelling is not None and cancelling() > 0


def _cancelled(error: BaseException) -> BaseException:
    """A ``CancelledError`` a handler raised itself (not the close's), as its failure: its
    text, or what happened when it has none."""
    if str(error):
        return error
    return type(error)(f"the handler was cancelled (it raised {type(error).__qualname__})"
                       ).with_traceback(error.__traceback__)


# ====================================================================== the worker


class Worker:
    """Invocations in, answers out (see the module docstring).

    ``invocations`` is the client's monitoring stream; ``url`` and ``headers`` are what live
    channel ends found in payloads connect with.
    """

    def __init__(
        self,
        bridge: LoopBridge,
        outbox: ReplyOutbox,
        registrations: Registrations,
        invocations: HotStream[Invocation],
        pool: HandlerPool,
        tasks: WorkerTasks,
        *,
        url: str,
        headers: dict[str, str],
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    ) -> None:
        self.bridge = bridge
        self.gate = Gate(max_concurrency)
        """Async handlers running, and invocations waiting for a slot (``max_concurrency``)."""
        self.pool = pool
        """The threads of sync handlers (and of sync trigger-type callbacks)."""
        self.tasks = tasks
        """The tasks of async handlers, cancelled and awaited when the client closes."""
        self._outbox = outbox
        self._registrations = registrations
        self._functions = registrations.functions
        self._invocations = invocations
        self._url = url
        self._headers = headers
        self.telemetry: Any = None
        """The client's ``Tracing`` when it traces: each invocation gets a span."""
        self._cut: list[tuple[tuple[Any, ...], str]] = []
        """The channel ends of invocations given up by the close, with why (see
        :meth:`end_cut_channels`)."""
        self.link = 0
        """The connection invocations arrive on now (counts the connections lost)."""

    def link_lost(self) -> None:
        """The connection went (on the loop): the engine has told the callers of what it
        delivered ``invocation_stopped``. Invocations still waiting for a handler slot will
        not run (``HandlerSink._drop_if_stale``): nobody would get their answers, fresh calls
        would queue behind them, and a caller that retried would run the handler twice."""
        self.link += 1

    def exempt_caller(self) -> None:
        """A handler that closes its client: the close neither waits for its thread nor
        cancels its task (either would cut the handler short on itself, and an async one would
        lose the rest of its body, its cleanup). A wait for the close exempts only while it
        waits (``HandlerPool.exempt_while``)."""
        self.pool.exempt_current()
        self.tasks.exempt_current()

    def handler(self, handler: Callable[..., Any],
                max_concurrency: int | None = None) -> HandlerSink:
        """A sink running ``handler`` for each invocation (see :class:`HandlerSink`)."""
        return HandlerSink(self, handler, max_concurrency)

    def on_invoke(self, frame: InvokeFunction | HotInvoke, raw: str | bytes) -> None:
        """An invocation for this worker (on the loop). ``raw`` is the frame's text: channel
        refs are only looked for when it mentions an ``access_key``."""
        data = frame.data
        invocation = Invocation(self, frame.function_id, frame.invocation_id, data,
                                frame.metadata, frame.traceparent, frame.baggage)
        invocation.link = self.link
        if self.telemetry is not None:
            self.telemetry.on_invoke(invocation)
        if isinstance(data, (dict, list)) and isinstance(raw, str) and '"access_key"' in raw:
            made: list[Any] = []
            try:
                invocation.data = channels.resolve_channel_refs(
                    data, engine_url=self._url, headers=self._headers, made=made)
                invocation.ends = tuple(made)
            except Exception as exc:
                invocation.fail(exc)
                return
        if self._invocations.has_observers:
            self._invocations.on_next(invocation)
        entry = self._functions.get(frame.function_id)
        if entry is None or not entry.sinks:
            if entry is not None and entry.spec.invocation is not None:
                invocation.fail("Function is HTTP-invoked and cannot be invoked locally",
                                code="function_not_invokable")
            else:
                invocation.fail(f"Function '{frame.function_id}' not found",
                                code="function_not_found")
            return
        for sink in entry.sinks:
            sink(invocation)

    def abandoned(self, invocation: Invocation) -> None:
        """Keep the channel ends of an invocation the close gave up, for
        :meth:`end_cut_channels` (any thread: a list append is atomic)."""
        self._cut.append((invocation.ends, f"the worker closed before the handler of "
                                           f"{invocation.function_id!r} finished"))

    async def end_cut_channels(self) -> None:
        """End the channel ends of the invocations the close gave up (after their handlers
        were stopped): their peers learn it, rather than waiting until this process exits.
        Bounded by :data:`CUT_CHANNELS_WAIT` (a frozen engine does not hold the close)."""
        cut, self._cut = self._cut, []
        if not cut:
            return
        ending = [asyncio.ensure_future(_end_channels(ends, reason)) for ends, reason in cut]
        _, late = await asyncio.wait(ending, timeout=CUT_CHANNELS_WAIT)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)

    def send_reply(self, invocation: Invocation, result: Any, error: ErrorBody | None) -> None:
        """Encode and send an ``invocationresult`` (any thread)."""
        iid, function_id = invocation.invocation_id, invocation.function_id
        assert iid is not None and function_id is not None
        traceparent = (wire_traceparent(invocation.outgoing_trace()[0])
                       if invocation.traceparent is not None else None)
        text: str | None = None
        if error is None:
            try:
                if isinstance(result, BaseModel):  # a model that cannot dump fails the call
                    to_wire = getattr(result, "to_wire", None)
                    result = (to_wire() if callable(to_wire) else
                              result.model_dump(mode="json", by_alias=True, exclude_none=True))
                text = result_text(iid, function_id, result, traceparent=traceparent,
                                   null_result=True, allow_nan=False)
            except NonFiniteError:
                log.warning("result of %r (invocation %s) refused: %s", function_id, iid,
                            NON_FINITE)
                error = ErrorBody(code="invocation_failed",
                                  message=f"the result of {function_id!r} was refused: "
                                          f"{NON_FINITE}")
            except PydanticSerializationError as exc:  # a cycle, a type JSON cannot hold
                failure = unwritable(exc, f"the result of {function_id!r} could not be sent")
                log.warning("%s (invocation %s)", failure, iid)
                error = ErrorBody(code="invocation_failed", message=str(failure))
            except Exception as exc:  # a model's own dump failed
                error = error_body_of(exc)
            else:
                if len(text) > MAX_FRAME and len(text.encode()) > MAX_MESSAGE:
                    error = ErrorBody(code="payload_too_large",
                                      message=f"the result is larger than {MAX_MESSAGE} bytes")
        if error is not None:
            text = result_text(iid, function_id, error=error, traceparent=traceparent)
        assert text is not None
        if self.bridge.on_loop():
            self._outbox.send(text, RESULT)
        else:
            self._outbox.send_threadsafe(text, RESULT)

    def close(self) -> None:
        """The client is closing: forget the functions and tell each sink (observers
        complete, invocations waiting for a handler slot are abandoned)."""
        for entry in self._registrations.close():
            for sink in entry.sinks:
                sink.close()
        self.gate.close()

    def fail(self, error: Exception) -> None:
        """The engine rejected the worker: end every function's observers with ``error``."""
        for sink in self._registrations.sinks():
            sink.fail(error)
