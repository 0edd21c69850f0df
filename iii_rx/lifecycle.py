"""The lifecycle of a client: one state, and one kind of object for its close.

:class:`Lifecycle` is where a :class:`~iii_rx.client.Client` stands, as one value rather than a
set of flags. :class:`Closing` is what ``close()`` returns whatever the mode (async client or
``connect_sync`` client, called on the client's loop or elsewhere): it starts the close once,
on the client's loop, and can be awaited from any loop or waited for from any other thread.
:class:`ClientSettings` is what ``connect()`` resolved before building the client, and
:func:`wait_connected` how it waits for its first connection.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Callable, Coroutine, Generator, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from iii_rx.aio import LoopBridge
from iii_rx.errors import IIIConnectionError
from iii_rx.state import ConnectionState, ReconnectConfig
from iii_rx.telemetry.config import OtelConfig, repr_hiding

if TYPE_CHECKING:
    from iii_rx.transport import Transport

__all__ = ["ClientSettings", "Closing", "Lifecycle", "wait_connected"]


class Lifecycle(str, Enum):
    """Where a client stands in its life (its connection has its own
    :class:`~iii_rx.state.ConnectionState`: an open client may be reconnecting)."""

    NEW = "new"
    """Built, not started."""
    CONNECTING = "connecting"
    """Started; the engine has not accepted the worker yet."""
    OPEN = "open"
    """The engine accepted the worker once; calls and registrations work."""
    FAILED = "failed"
    """The engine rejected the worker: calls and registrations fail with its reason."""
    CLOSING = "closing"
    """``close()`` started: everything new is refused while it takes things down."""
    CLOSED = "closed"
    """Closed; nothing of it is left running."""


DEFAULT_MAX_WORKERS = 64
"""Threads for sync handlers (created on demand). Sync handlers that block on nested calls
each hold one while they wait, so the pool must be larger than such handlers run at once."""


@dataclass(frozen=True)
class ClientSettings:
    """What :func:`iii_rx.connect` resolved: the address, who this worker is, the defaults."""

    url: str
    headers: Mapping[str, str]
    name: str
    namespace: str | None
    worker_metadata: dict[str, Any]
    reconnect: ReconnectConfig
    timeout_ms: int
    max_workers: int | None = None
    max_concurrency: int = 1024
    """Async handlers running at once in the worker (``connect(max_concurrency=...)``)."""
    ping_interval: float | None = 2.0
    """Seconds between websocket pings of the client (``None``: no pings)."""
    ping_timeout: float | None = 1.5
    """Seconds to wait for the pong before the connection counts as cut."""
    otel: OtelConfig | None = None
    """OpenTelemetry in force (``connect(otel=...)`` resolved; ``None``: no spans)."""

    def __repr__(self) -> str:
        return repr_hiding(self, "headers")


class Closing:
    """The close of a client: started once, on its loop; awaitable from any loop.

    A sync client closed from outside its loop has finished closing when ``close()`` returns,
    so awaiting it is immediate; otherwise ``await`` waits for the close, and :meth:`wait`
    blocks for it (not on the client's loop thread).
    """

    __slots__ = ("_begun", "_bridge", "_done", "_shutdown", "_task", "started_on_loop")

    def __init__(self, bridge: LoopBridge,
                 shutdown: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._bridge = bridge
        self._shutdown = shutdown
        self._task: asyncio.Task[None] | None = None
        self._begun = False  # set before the task: an eager task factory runs it at once
        self._done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.started_on_loop = False
        """Whether ``close()`` was first asked for on the client's own loop (by a handler or a
        subscriber; :meth:`request`): then no caller outside stops a sync client's loop
        thread. A failed connect closes on the loop too, but its caller waits outside."""

    def start(self) -> Closing:
        """Start the close if it has not started (any thread); returns this object."""
        if self._bridge.on_loop():
            self._start_on_loop()
        else:
            try:
                self._bridge.run_sync_soon(self._start_on_loop)
            except RuntimeError:  # the loop is gone, and with it everything to close
                self._finish()
        return self

    def request(self) -> Closing:
        """:meth:`start`, as ``close()`` asks for it: a close first asked for on the client's
        loop is remembered (:attr:`started_on_loop`)."""
        if not self.started and self._bridge.on_loop():
            self.started_on_loop = True
        return self.start()

    def _start_on_loop(self) -> None:
        if self._begun or self._done.done():
            return
        if self._bridge.loop.is_closed():
            self._finish()
            return
        self._begun = True  # a close asked for while it runs in create_task starts no other
        self._task = self._bridge.loop.create_task(self._shutdown(), name="iii-rx close")
        self._task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        error = None if task.cancelled() else task.exception()
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            if error is not None:
                self._done.set_exception(error)
            else:
                self._done.set_result(None)

    def _finish(self) -> None:
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            self._done.set_result(None)

    @property
    def started(self) -> bool:
        """Whether the close has started (it may have finished)."""
        return self._begun or self._done.done()

    def done(self) -> bool:
        """Whether the client has finished closing."""
        return self._done.done()

    def wait(self, timeout: float | None = None,
             failed: concurrent.futures.Future[None] | None = None) -> bool:
        """Block until the client has closed; ``False`` if ``timeout`` seconds passed first;
        ``failed``'s exception once that future fails first (the client failed for good).

        On the client's loop thread it raises :class:`~iii_rx.errors.LoopDeadlockError`.
        """
        if not self._done.done():
            self._bridge.check_blocking("Closing.wait()")
        if failed is not None:
            concurrent.futures.wait((self._done, failed), timeout,
                                    concurrent.futures.FIRST_COMPLETED)
            if failed.done() and not self._done.done():
                failed.result()  # raises the failure
        try:
            self._done.result(timeout if failed is None else 0)
        except concurrent.futures.TimeoutError:
            return False
        return True

    def __await__(self) -> Generator[Any, None, None]:
        return self._wait().__await__()

    async def _wait(self) -> None:
        if self._done.done():
            return self._done.result()
        task = self._task
        if task is not None and asyncio.get_running_loop() is self._bridge.loop:
            await asyncio.shield(task)  # the close goes on if the awaiter is cancelled
        else:
            await asyncio.shield(asyncio.wrap_future(self._done))
        return None

    def __repr__(self) -> str:
        state = "done" if self.done() else "in progress" if self.started else "not started"
        return f"<Closing {state}>"


async def wait_connected(transport: Transport, failure: Callable[[], BaseException | None],
                         timeout: float) -> None:
    """Until the engine accepted the worker on ``transport``; what cannot succeed (the
    transport failed: a refused handshake, retries exhausted, ``failure()`` a fatal rejection)
    raises at once, with the cause; ``timeout`` seconds raise with the last attempt's."""
    fut: asyncio.Future[None] = transport.loop.create_future()

    def on_state(state: ConnectionState) -> None:
        if fut.done():
            return
        if state is ConnectionState.CONNECTED:
            fut.set_result(None)
        elif state is ConnectionState.FAILED:
            fut.set_exception(failure() or IIIConnectionError(
                f"could not connect to the iii engine at {transport.url}: "
                f"{transport.failure or 'reconnect attempts exhausted'}"))

    subscription = transport.state.subscribe(on_next=on_state)
    try:
        await asyncio.wait_for(fut, timeout)
    except asyncio.TimeoutError:
        raise IIIConnectionError(
            f"could not connect to the iii engine at {transport.url} within {timeout}s"
            + (f"; last attempt: {cause}" if (cause := _pending_cause(transport)) else "")
        ) from None
    finally:
        subscription.dispose()


def _pending_cause(transport: Transport) -> str | None:
    """What the connection attempt in progress is stuck on, for a timeout's message."""
    if transport.awaiting_acceptance:
        return ("the websocket is open, but the engine has not accepted the worker (no answer "
                "to engine::workers::register)")
    if transport.last_error:
        return transport.last_error
    if transport.connections == 0:
        return "the first attempt has not finished: no websocket handshake from that address yet"
    return None
