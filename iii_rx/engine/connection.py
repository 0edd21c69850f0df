"""One worker connection: its identity, what it owns, its outbound queue and its liveness.

Sending never blocks the sender. :meth:`WorkerConnection.send` writes the frame straight into
the socket's transport when nothing is queued and the transport is not applying back-pressure
(the common case: no task switch on the relay path); otherwise it appends the text to a queue
that one writer task per connection drains with flow control. Either way a slow or stuck worker
can delay only its own frames, never the reader of the worker that called it (docs/protocol.md §12.2
item 9a). The direct write uses the websockets connection's sans-I/O ``protocol`` and
``send_data()``; where a websockets version lacks them, every frame takes the queue.

**Bounds** (docs/guarantees.md, "Bounds and fault detection"). The queue is counted in UTF-8
bytes (:attr:`WorkerConnection.queued_bytes`); the socket's own write buffer (the server's
``write_limit``) comes on top. Once more than half of ``max_queue_bytes`` waits, the router
refuses new calls toward the peer (``queue_full``, :meth:`WorkerConnection.busy_error`): the
other half is room for the results and control frames it is owed. A frame that would take the
queue past ``max_queue_bytes`` means the peer does not read what it asked for: it is dropped
(:meth:`WorkerConnection.drop`). It is dropped as well when frames wait and none could be handed
to the socket for ``stuck_timeout`` seconds, or when it does not answer a websocket ping within
``ping_timeout`` and showed no life meanwhile (:meth:`WorkerConnection.start_keepalive`; on a
slow link a pong waits behind a large message, which is life: :func:`iii_rx.wslane.answers_ping`).
Dropping aborts the socket; the
reader then ends and the disconnect cleanup fails its calls with ``invocation_stopped``. A frame
is always accepted into an empty queue, so one message up to the size limit still goes out.

The sets on the connection are what the disconnect cleanup of docs/protocol.md §2.10 walks: the
functions, trigger bindings and trigger types it owns, and the invocations in flight in both
directions (:class:`Pending`, kept here because a call in flight and its two connections refer to
each other).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from iii_rx.aio import TaskSet
from iii_rx.engine.hotsocket import HotConnection
from iii_rx.engine.logsafe import printable
from iii_rx.engine.wire import error_body
from iii_rx.wslane import answers_ping

if TYPE_CHECKING:
    from websockets.asyncio.server import ServerConnection

    from iii_rx.engine.wire import HotResult
    from iii_rx.protocol import Frame, InvocationResult

__all__ = ["QUEUE_FULL", "Pending", "WorkerConnection"]

log = logging.getLogger("iii_rx.engine")

QUEUE_FULL = "queue_full"
"""Error code of a call refused because its target does not read its connection."""

_UNBOUNDED = 1 << 62


@dataclass(eq=False, slots=True)
class Pending:
    """One call in flight to a worker (see :mod:`iii_rx.engine.router`)."""

    wire_id: str
    """The id sent to the handler (the caller's id unless it collided)."""
    caller_id: str | None
    function_id: str
    handler: WorkerConnection
    caller: WorkerConnection | None
    future: asyncio.Future[InvocationResult | HotResult] | None
    created: float


class WorkerConnection:
    """Engine-side state of one worker socket (``/``)."""

    def __init__(
        self,
        ws: ServerConnection | None,
        worker_id: str,
        reattach_token: str,
        *,
        ip_address: str | None = None,
    ) -> None:
        self.ws = ws
        self.id = worker_id
        self.reattach_token = reattach_token
        self.ip_address = ip_address
        self.connected_at_ms = int(time.time() * 1000)
        self.closed = False

        # Identity reported by engine::workers::register.
        self.name: str | None = None
        self.info: dict[str, Any] = {}
        self.lease: tuple[str, str] | None = None
        self.registered = False
        self.rejected = False
        """Refused by a worker-name conflict: its registrations are ignored until it closes."""

        # Namespace: None until engine::workers::register or the grace period fixes it;
        # registrations arriving meanwhile wait in ``buffer`` in arrival order
        # (docs/protocol.md §2.5).
        self.namespace: str | None = None
        self.buffer: deque[Frame] | None = deque()
        self.draining = False
        self.grace_timer: asyncio.TimerHandle | None = None

        # Ownership, walked by the disconnect cleanup.
        self.functions: set[tuple[str, str]] = set()
        self.refused: set[tuple[str, str]] = set()
        self.bindings: set[str] = set()
        self.trigger_types: set[tuple[str, str]] = set()
        self.inbound: dict[str, Pending] = {}
        self.outbound: set[Pending] = set()
        self.fires: dict[str, Pending] = {}
        """The trigger calls in ``inbound`` nobody waits for, oldest first (their bound)."""

        self._direct = _direct_writer(ws) if ws is not None else None
        self._queue: deque[bytes] = deque()
        self._wake: asyncio.Future[None] | None = None
        self._drained = asyncio.Event()
        self._drained.set()
        self._writer: asyncio.Task[None] | None = None
        self._tasks = TaskSet(f"worker connection {worker_id}")

        # Bounds and liveness (set_bounds, start_keepalive).
        self.queued_bytes = 0
        """UTF-8 bytes of the frames waiting in the queue (not yet handed to the socket)."""
        self.peak_queued_bytes = 0
        """The most :attr:`queued_bytes` ever reached (the bound tests read it)."""
        self.max_queue_bytes = 0
        self.call_limit = _UNBOUNDED
        """Calls toward this peer are refused while more than this many bytes wait."""
        self.stuck_timeout = 0.0
        self.pongs = 0
        """Keepalive pings this peer answered."""
        self.dropped: str | None = None
        """Why the engine dropped this peer (None unless it did)."""
        self._written = 0
        self._watchdog: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"<WorkerConnection {self.label}>"

    @property
    def label(self) -> str:
        """``id`` plus the worker name when known, for log lines."""
        return f"{self.id} ({self.name})" if self.name else self.id

    @property
    def effective_namespace(self) -> str:
        """The connection's namespace, ``default`` while it is still unknown."""
        return self.namespace if self.namespace is not None else "default"

    # ------------------------------------------------------------------ bounds

    def set_bounds(self, max_queue_bytes: int, stuck_timeout_ms: int) -> None:
        """Bound the outbound queue (0 = unbounded) and the time it may stay stuck (0 = ever)."""
        self.max_queue_bytes = max_queue_bytes
        self.call_limit = max_queue_bytes // 2 if max_queue_bytes > 0 else _UNBOUNDED
        self.stuck_timeout = stuck_timeout_ms / 1000

    def busy_error(self, function_id: str) -> dict[str, Any]:
        """The error body of a call of ``function_id`` refused because this peer is behind."""
        return error_body(QUEUE_FULL, (
            f"Worker {self.label} is not reading its connection: {self.queued_bytes} bytes "
            f"wait to be sent to it (limit {self.max_queue_bytes}); the call of {function_id} "
            "was not sent"))

    def drop(self, reason: str) -> None:
        """Abort the socket of a peer that is stuck or frozen; the reader then cleans up.

        An aborted socket needs no closing handshake, which a peer that does not read could
        never complete. What was queued for it is freed at once.
        """
        if self.closed or self.dropped is not None:
            return
        self.dropped = reason
        log.warning("dropping worker %s: %s", printable(self.label), reason)
        self._direct = None
        self._queue.clear()
        self.queued_bytes = 0
        self._drained.set()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self.ws is not None:
            self.ws.transport.abort()

    def start_keepalive(self, interval_ms: int, timeout_ms: int) -> None:
        """Ping every ``interval_ms``; drop the peer if a pong takes over ``timeout_ms``."""
        if self.ws is not None and interval_ms > 0 and timeout_ms > 0:
            self._tasks.spawn(self._keepalive(interval_ms / 1000, timeout_ms / 1000),
                              name=f"iii-engine-keepalive-{self.id}")

    async def _keepalive(self, interval: float, timeout: float) -> None:
        ws = self.ws
        assert ws is not None
        try:
            while True:
                await asyncio.sleep(interval)
                if not await answers_ping(ws, timeout):  # a slow link's large message is life
                    self.drop(f"no answer to a ping within {timeout * 1000:g} ms, and "
                              "nothing received from it or taken by it meanwhile")
                    return
                self.pongs += 1
        except ConnectionClosed:
            return

    def _check_stuck(self, written: int) -> None:
        self._watchdog = None
        if self.closed or self.dropped is not None or not self._queue:
            return
        if self._written == written:
            self.drop(f"{self.queued_bytes} bytes waited {self.stuck_timeout * 1000:g} ms "
                      "and none could be written to its socket")
        else:
            self._arm_watchdog()

    def _arm_watchdog(self) -> None:
        """Check after ``stuck_timeout`` whether the writer handed anything to the socket."""
        self._watchdog = asyncio.get_running_loop().call_later(
            self.stuck_timeout, self._check_stuck, self._written)

    # ------------------------------------------------------------------ outbound

    def start_writer(self) -> None:
        """Start the task that drains the outbound queue (call on the engine loop)."""
        if self._writer is None:
            self._writer = self._tasks.spawn(self._write_loop(),
                                             name=f"iii-engine-writer-{self.id}")

    def send(self, text: str) -> None:
        """Queue one frame for this worker; never blocks, silently dropped once closed.

        A frame that would take the queue past ``max_queue_bytes`` drops the peer instead.
        """
        if self.closed:
            return
        if not self._queue and self._direct is not None and self._direct(text):
            return
        self._enqueue(text)

    def _enqueue(self, text: str) -> None:
        if self.dropped is not None:
            return
        data = text.encode()
        queued = self.queued_bytes + len(data)
        if self._queue:
            if 0 < self.max_queue_bytes < queued:
                self.drop(f"{queued} bytes would wait to be sent to it (limit "
                          f"{self.max_queue_bytes}): it does not read its connection")
                return
        elif self.stuck_timeout > 0 and self._watchdog is None:
            self._arm_watchdog()
        self._queue.append(data)
        self.queued_bytes = queued
        if queued > self.peak_queued_bytes:
            self.peak_queued_bytes = queued
        self._drained.clear()
        wake = self._wake
        if wake is not None:
            self._wake = None
            if not wake.done():
                wake.set_result(None)

    async def _write_loop(self) -> None:
        ws = self.ws
        assert ws is not None
        queue = self._queue
        loop = asyncio.get_running_loop()
        try:
            while True:
                while queue:
                    data = queue.popleft()
                    self.queued_bytes -= len(data)
                    await ws.send(data, text=True)
                    self._written += 1
                self._drained.set()
                if self.closed:
                    return
                self._wake = loop.create_future()
                await self._wake
        except ConnectionClosed:
            pass
        finally:
            queue.clear()
            self.queued_bytes = 0
            self._drained.set()

    async def flush(self, timeout: float = 1.0) -> None:
        """Wait (bounded) until the queued frames were handed to the socket."""
        if self._writer is None or self.ws is None or self.ws.state is not State.OPEN:
            return
        try:
            await asyncio.wait_for(self._drained.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Flush what is queued (briefly), then close the socket."""
        if self.ws is None:
            return
        await self.flush()
        await self.ws.close(code, reason)

    async def stop_writer(self) -> None:
        """End the writer task (after the socket closed); a crash of it was logged."""
        self.closed = True
        self._writer = None
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)
        await self._tasks.aclose()


def _direct_writer(ws: ServerConnection) -> Callable[[str], bool] | None:
    """A synchronous ``write(text) -> bool`` into ``ws``, or ``None`` if unsupported.

    The frame goes into the connection's sans-I/O protocol buffer at once (so it stays in
    order with every other frame of the connection) and the buffer is flushed into the
    transport once per loop iteration, in one write: a burst of results to one caller costs one
    system call. It declines (returns ``False``) unless the connection is open and its
    transport is not paused by flow control, so the caller queues instead.
    """
    if isinstance(ws, HotConnection) and ws.hot_in is not None:
        return ws.hot_send
    protocol = getattr(ws, "protocol", None)
    send_data = getattr(ws, "send_data", None)
    if protocol is None or send_data is None or not hasattr(ws, "paused"):
        return None
    send_text = protocol.send_text
    data_to_send = protocol.data_to_send
    loop = asyncio.get_running_loop()
    scheduled = False

    def flush() -> None:
        nonlocal scheduled
        scheduled = False
        if protocol.state is not State.OPEN:
            send_data()  # closing: let the library write what is left (and half-close)
            return
        if ws.transport.is_closing():  # dropped (aborted) before this flush
            return
        chunks = data_to_send()
        if chunks:
            data = b"".join(chunks)
            if isinstance(ws, HotConnection):  # the keepalive's measure (a pong waits behind)
                ws.sent += len(data)
            ws.transport.write(data)

    def write(text: str) -> bool:
        nonlocal scheduled
        if ws.paused or protocol.state is not State.OPEN:
            return False
        send_text(text.encode())
        if not scheduled:
            scheduled = True
            loop.call_soon(flush)
        return True

    return write
