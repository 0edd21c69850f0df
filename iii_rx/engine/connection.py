"""One worker connection: its identity, what it owns, and its outbound queue.

Sending never blocks the sender. :meth:`WorkerConnection.send` writes the frame straight into
the socket's transport when nothing is queued and the transport is not applying back-pressure
(the common case: no task switch on the relay path); otherwise it appends the text to a queue
that one writer task per connection drains with flow control. Either way a slow or stuck worker
can delay only its own frames, never the reader of the worker that called it (spec 12.2 item
9a). The direct write uses the websockets connection's sans-I/O ``protocol`` and
``send_data()``; where a websockets version lacks them, every frame takes the queue.

The sets on the connection are what the disconnect cleanup of spec 2.10 walks: the functions,
trigger bindings and trigger types it owns, and the invocations in flight in both directions
(:class:`Pending`, kept here because a call in flight and its two connections refer to each
other).
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

if TYPE_CHECKING:
    from websockets.asyncio.server import ServerConnection

    from iii_rx.protocol import Frame, InvocationResult

__all__ = ["Pending", "WorkerConnection"]

log = logging.getLogger("iii_rx.engine")


@dataclass(eq=False, slots=True)
class Pending:
    """One call in flight to a worker (see :mod:`iii_rx.engine.router`)."""

    wire_id: str
    """The id sent to the handler (the caller's id unless it collided)."""
    caller_id: str | None
    function_id: str
    handler: WorkerConnection
    caller: WorkerConnection | None
    future: asyncio.Future[InvocationResult] | None
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
        # registrations arriving meanwhile wait in ``buffer`` in arrival order (spec 2.5).
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

        self._direct = _direct_writer(ws) if ws is not None else None
        self._queue: deque[str] = deque()
        self._wake: asyncio.Future[None] | None = None
        self._drained = asyncio.Event()
        self._drained.set()
        self._writer: asyncio.Task[None] | None = None
        self._tasks = TaskSet(f"worker connection {worker_id}")

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

    # ------------------------------------------------------------------ outbound

    def start_writer(self) -> None:
        """Start the task that drains the outbound queue (call on the engine loop)."""
        if self._writer is None:
            self._writer = self._tasks.spawn(self._write_loop(),
                                             name=f"iii-engine-writer-{self.id}")

    def send(self, text: str) -> None:
        """Queue one frame for this worker; never blocks, silently dropped once closed."""
        if self.closed:
            return
        if not self._queue and self._direct is not None and self._direct(text):
            return
        self._queue.append(text)
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
                    await ws.send(queue.popleft())
                self._drained.set()
                if self.closed:
                    return
                self._wake = loop.create_future()
                await self._wake
        except ConnectionClosed:
            pass
        finally:
            queue.clear()
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
        chunks = data_to_send()
        if chunks:
            ws.transport.write(b"".join(chunks))

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
