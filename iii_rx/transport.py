"""One websocket to the engine, kept open: connect, reconnect with backoff, ordered writes.

The transport knows frames only as text. Its caller (the client) says what to send first on
every new connection (the replay of docs/protocol.md §2.3) and receives every message, every loss
and every state change. Rules it keeps:

* **Ordered, cheap writes.** ``send`` appends to an outbox drained by one writer task per
  connection, so frames leave in the order they were sent and a burst costs one wake-up.
  ``send_threadsafe`` does the same from any thread, through the client's one queue of work
  handed to its loop (one loop hop per burst; a thread's frames and calls keep their order).
* **Nothing lost silently.** While disconnected, calls (``CALL`` frames) wait in a bounded queue
  (``ReconnectConfig.max_queued``; one more raises :class:`~iii_rx.errors.IIIConnectionError`)
  and go out once the engine has accepted the worker again (:meth:`Transport.set_ready`).
* **A call that ended is never sent.** A call that timed out or was cancelled before it was
  written is taken back (:meth:`Transport.withdraw`): out of the queue, or skipped by the
  writer. Sent later, it would run a handler whose caller was already told it failed.
* **A cut is noticed.** The websocket is pinged every ``ping_interval``; no pong within
  ``ping_timeout`` fails it, unless the link showed life meanwhile (on a slow link a pong waits
  behind a large message: :func:`~iii_rx.wslane.answers_ping`); it is then aborted (a cut
  link never completes a closing handshake), so a black hole is noticed within
  ``ping_interval + ping_timeout``, plus up to ``3 * ping_timeout`` after the client was busy
  sending.
* **Fail fast.** Before the first connection, a handshake answered with an HTTP status that
  retrying cannot change (a wrong path, the REST port, a missing token) stops the transport in
  state ``failed`` with the cause in :attr:`Transport.failure`; every other failure is retried,
  the first of each kind logged at WARNING with its cause (:func:`describe_failure`), and the
  last one kept in :attr:`Transport.last_error`. A socket that closes before the engine
  accepted the worker (an RBAC auth function refused it with ``AUTH_ERROR``: the client hands
  that over as :meth:`Transport.refused`) is a failed attempt too: the backoff grows and
  ``max_retries`` counts it, since only an accepted connection resets the count
  (docs/protocol.md §2.8). Every loss is logged with its close code and reason.
  Registrations are not queued: the client replays its registries on every connection, which
  is the authoritative state. Results of invocations that arrived on
  a lost connection are dropped: the engine has already answered their callers with
  ``invocation_stopped``.
* **Large messages** (docs/protocol.md §1.5): above 16 MiB a message is sent in 1 MiB fragments,
  above 64 MiB it is refused.
* **A writer never dies silently.** A writer that crashes is logged, drops the frame it choked
  on and closes its connection with 1011, so the reconnect loop takes over instead of leaving a
  socket that reads but never writes.

websockets is used through its documented API (``websockets.asyncio.client.connect``, the
connection's ``send``, ``close`` and iteration, the sans-I/O ``Protocol``), plus two undocumented
attributes of the asyncio connection that only the batched write needs, ``protocol`` and
``transport`` (see :func:`batch_handles`; a test fails if an upgrade renames them). Where they
are missing the writer calls ``send`` for every frame: slower, never wrong. Whole data frames
are read and framed by the fast lane of :mod:`iii_rx.wslane` where this websockets has what it
needs (the library's path otherwise).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import cast

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.protocol import Protocol, State

from iii_rx.aio import LoopBridge, TaskSet
from iii_rx.errors import IIIConnectionError, PayloadTooLargeError
from iii_rx.link_failures import describe_close, describe_failure
from iii_rx.state import ConnectionState, ReconnectConfig
from iii_rx.streams import HotStream
from iii_rx.wslane import HotClientConnection, HotLane, answers_ping

__all__ = [
    "CALL",
    "CONTROL",
    "MAX_FRAME",
    "MAX_MESSAGE",
    "RESULT",
    "PayloadTooLargeError",
    "Transport",
    "batch_handles",
    "describe_close",
    "describe_failure",
]

log = logging.getLogger("iii_rx.transport")

CONTROL = 0
"""Registration and other state frames: dropped while disconnected (the replay covers them)."""
CALL = 1
"""Calls (``invokefunction``): queued while disconnected, bounded."""
RESULT = 2
"""Results of invocations: dropped while disconnected (the engine already failed them)."""

MAX_FRAME = 16 * 1024 * 1024
"""Largest message sent as one frame; the Rust engine refuses bigger frames."""
MAX_MESSAGE = 64 * 1024 * 1024
"""Largest message sent or received at all."""
_FRAGMENT = 1024 * 1024
_BATCH = 512  # frames written at once at most (bounds the loop's time per burst)
_INTERNAL_ERROR = 1011  # close code of a connection whose writer crashed (RFC 6455 7.4.1)

_CLOSE_TIMEOUT = 10.0  # the closing handshake's bound when there are no pings

OnOpen = Callable[[], list[str]]
"""Called on each new connection: the frames to send first (the replay, docs/protocol.md §2.3)."""
Item = tuple[str, int, str | None]
"""One frame waiting: its text, its kind, the invocation id of a call."""


class Transport:
    """The engine websocket, its reconnect loop, its outbox and its state stream."""

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str],
        config: ReconnectConfig,
        state: HotStream[ConnectionState],
        *,
        on_open: OnOpen,
        on_message: Callable[[str | bytes], None],
        on_lost: Callable[[set[str]], None],
        open_timeout: float = 10.0,
        ping_interval: float | None = 2.0,
        ping_timeout: float | None = 1.5,
        bridge: LoopBridge | None = None,
    ) -> None:
        self.url = url
        self.headers = dict(headers)
        self.config = config
        self.state = state
        self._on_open = on_open
        self._on_message = on_message
        self._on_lost = on_lost
        self._open_timeout = open_timeout
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self.loop = state.loop
        self._ws: ClientConnection | None = None
        self._ready = False
        self._outbox: deque[Item] = deque()
        self._withdrawn: set[str] = set()  # calls in the outbox the writer must skip
        self._held: dict[object, Item] = {}  # by invocation id (a fresh key for void calls)
        self._wakeup: asyncio.Future[None] | None = None
        self._bridge = bridge if bridge is not None else LoopBridge(self.loop, None)
        self._run_task: asyncio.Task[None] | None = None
        self._tasks = TaskSet(f"the transport to {url}")
        self._sleep_wakeup: asyncio.Future[None] | None = None
        self._closing = False
        self._failed = False
        self.connections = 0
        """How many times a websocket was opened (1 after the first connection)."""
        self.last_error: str | None = None
        """Why the last connection attempt failed (``None`` once the engine accepted one)."""
        self._refusal: str | None = None  # why the engine refused the current connection
        self._accepted = False  # whether the engine accepted the current connection
        self._lost: str | None = None  # why the keepalive dropped the current connection
        self._lost_at: float | None = None  # when the last accepted connection was lost
        self.failure: str | None = None
        """Why the transport stopped for good before its first connection, if it did."""

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start connecting (on the loop thread)."""
        self._run_task = self.loop.create_task(self._run(), name="iii-rx transport")
        self._tasks.add(self._run_task)

    def set_ready(self) -> None:
        """The engine accepted the worker: send the queued calls, then state ``connected``.

        Calls wait for this (not just for the socket) so that a call to one of this worker's
        own functions cannot overtake the registrations the engine buffers until
        ``engine::workers::register`` (docs/protocol.md §2.5).
        """
        if self._ws is None or self._ready:
            return
        self._ready = self._accepted = True
        self.last_error = None
        if self._lost_at is not None:  # the loss and each failed attempt were logged: end it
            log.info("reconnected to %s: the engine accepted this worker again %.1fs after the "
                     "connection was lost", self.url, self.loop.time() - self._lost_at)
            self._lost_at = None
        if self._held:
            self._outbox.extend(self._held.values())
            self._held.clear()
            self._wake_writer()
        self.set_state(ConnectionState.CONNECTED)

    def refused(self, cause: str) -> None:
        """The engine refused this worker on the current connection (it closes it next): the
        attempt failed with ``cause`` (``AUTH_ERROR: ...``)."""
        self._refusal = f"the engine refused this worker: {cause}"

    @property
    def awaiting_acceptance(self) -> bool:
        """Whether a socket is open that the engine has not accepted the worker on yet."""
        return self._ws is not None and not self._ready

    def set_state(self, state: ConnectionState) -> None:
        if not self.state._has_value or self.state.value is not state:
            self.state.on_next(state)

    def fail(self) -> None:
        """Stop for good (fatal rejection): no more reconnects, state ``failed``."""
        if self._failed:
            return
        self._failed = True
        self._drop_held()
        self.set_state(ConnectionState.FAILED)
        self._kick()
        task = self._run_task
        if task is not None and not task.done():
            task.cancel()  # its finally closes the socket

    async def close(self) -> None:
        """Close the socket and stop reconnecting; state ``disconnected`` unless ``failed``."""
        self._closing = True
        self._kick()
        ws = self._ws
        if ws is not None:
            try:
                await ws.close()
            except Exception:  # already broken: nothing to do
                pass
        await self._tasks.aclose()  # the reconnect loop and the writer; a crash was logged
        self._drop_held()
        if not self._failed:
            self.set_state(ConnectionState.DISCONNECTED)

    def _drop_held(self) -> None:
        self._held.clear()

    def withdraw(self, invocation_id: str) -> None:
        """The call ``invocation_id`` ended (timed out, cancelled): it must never be sent.

        Out of the queue if it waits there (its place is free again); skipped by the writer
        if it is in the outbox; nothing if it was written already (on the loop).
        """
        if self._held.pop(invocation_id, None) is None and self._outbox:
            self._withdrawn.add(invocation_id)

    def _kick(self) -> None:
        """Wake the backoff sleep (close/fail)."""
        fut, self._sleep_wakeup = self._sleep_wakeup, None
        if fut is not None and not fut.done():
            fut.set_result(None)

    async def _sleep(self, seconds: float) -> None:
        self._sleep_wakeup = self.loop.create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self._sleep_wakeup), seconds)
        except asyncio.TimeoutError:
            pass
        finally:
            self._sleep_wakeup = None

    async def _connect_once(self) -> ClientConnection:
        # websockets.asyncio.client.connect, not websockets.connect: before 14.0 the latter is
        # the legacy client, which knows none of these arguments.
        return await connect(
            self.url,
            additional_headers=self.headers or None,
            compression=None,
            max_size=MAX_MESSAGE,
            max_queue=256,
            open_timeout=self._open_timeout,
            ping_interval=None,  # the keepalive is ours (_keepalive)
            ping_timeout=None,
            close_timeout=self._ping_timeout or _CLOSE_TIMEOUT,
            user_agent_header="iii-rx",
            create_connection=HotClientConnection,
        )

    def _give_up(self, why: str) -> None:
        log.error("stopped connecting: %s", why)
        self.failure = why
        self._failed = True
        self._drop_held()
        self.set_state(ConnectionState.FAILED)

    async def _run(self) -> None:
        attempt = 0
        said: set[str] = set()  # causes logged at WARNING in this run of failures
        while not (self._closing or self._failed):
            self.set_state(ConnectionState.CONNECTING if self.connections == 0
                           else ConnectionState.RECONNECTING)
            try:
                ws = await self._connect_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._closing or self._failed:
                    return
                cause, retryable = describe_failure(self.url, exc)
                self.last_error = cause
                if not retryable and self.connections == 0:
                    self._give_up(cause)
                    return
                if 0 <= self.config.max_retries <= attempt:
                    self._give_up(f"reconnect attempts exhausted ({attempt + 1}), the last "
                                  f"one: {cause}")
                    return
                delay = self.config.delay(attempt)
                attempt += 1
                kind = type(exc).__name__ + str(getattr(getattr(exc, "response", None),
                                                        "status_code", ""))
                log.log(logging.INFO if kind in said else logging.WARNING,
                        "%s; retrying in %.2fs", cause, delay)
                said.add(kind)
                await self._sleep(delay)
                continue
            if self._closing or self._failed:
                await ws.close()
                return
            lost = "the connection failed"
            try:
                lost = await self._serve(ws)
            except Exception:  # a bug, not the network: say so, and back off as for a failure
                log.exception("connection to %s failed", self.url)
            if self._closing or self._failed:
                return
            if self._accepted:
                attempt = 0
                said.clear()
                self._lost_at = self.loop.time()
                kind, level = lost, logging.WARNING
                what = f"connection to {self.url} lost ({lost})"
            else:  # refused, or closed before the engine accepted the worker: a failed attempt
                what = self.last_error = self._refusal or (
                    f"{self.url} closed the connection before accepting the worker ({lost})")
                if 0 <= self.config.max_retries <= attempt:
                    self._give_up(f"reconnect attempts exhausted ({attempt + 1}), the last "
                                  f"one: {what}")
                    return
                kind = self._refusal or lost
                level = logging.INFO if kind in said else logging.WARNING
                said.add(kind)
            self.set_state(ConnectionState.RECONNECTING)
            delay = self.config.delay(attempt)
            attempt += 1
            log.log(level, "%s; reconnecting in %.2fs", what, delay)
            await self._sleep(delay)

    async def _serve(self, ws: ClientConnection) -> str:
        """Replay, flush the queue, then read until the socket closes; returns how it closed
        (:func:`describe_close`)."""
        self.connections += 1
        self._refusal, self._accepted, self._lost = None, False, None
        lost = "the connection failed"
        outbox = self._outbox
        outbox.clear()
        try:
            outbox.extend((text, CONTROL, None) for text in self._on_open())
        except Exception:
            await ws.close(_INTERNAL_ERROR, "iii-rx client error")
            raise
        self._ready = False
        self._ws = ws
        writer = self._tasks.spawn(self._write(ws), name="iii-rx writer")
        keepalive = (self._tasks.spawn(self._keepalive(ws), name="iii-rx keepalive")
                     if self._ping_interval and self._ping_timeout else None)
        on_message = self._on_message
        lane = ws if isinstance(ws, HotClientConnection) and ws.enable_hot() else None
        messages = lane.next_message if lane is not None else ws.recv
        queued = lane.hot_in if lane is not None else None
        try:
            while True:
                # The lane's queue directly while it has messages and reading runs.
                if queued and not lane.hot_paused:  # type: ignore[union-attr]
                    message = queued.popleft()
                else:
                    message = await messages()
                try:
                    on_message(message)
                except Exception:
                    log.exception("error while handling a frame from the engine")
        except ConnectionClosed as closed:
            lost = self._lost or describe_close(closed)
        except Exception:
            log.exception("reader of %s failed", self.url)
        finally:
            self._ws = None
            self._ready = False
            writer.cancel()
            if keepalive is not None:
                keepalive.cancel()
            # A crash of the writer was logged by _write or the task set.
            await asyncio.wait((writer,) if keepalive is None else (writer, keepalive))
            # Calls not yet written go back to the queue; everything else is stale.
            withdrawn = self._withdrawn
            for item in outbox:
                if item[1] == CALL and item[2] not in withdrawn:
                    self._held[item[2] or object()] = item
            outbox.clear()
            withdrawn.clear()
            held_ids = {iid for iid in self._held if isinstance(iid, str)}
            try:
                self._on_lost(held_ids)
            except Exception:
                log.exception("error while failing calls of a lost connection")
            try:
                await ws.close()
            except Exception:
                pass
        return lost

    async def _keepalive(self, ws: ClientConnection) -> None:
        """Ping every ``ping_interval``; drop the connection when a pong does not come within
        ``ping_timeout`` and the link showed no life meanwhile. Aborted, not closed: a
        closing handshake first waits for room in the write buffer, which a cut link never
        makes while an upload fills it."""
        assert self._ping_interval is not None and self._ping_timeout is not None
        try:
            while True:
                await asyncio.sleep(self._ping_interval)
                if not await answers_ping(ws, self._ping_timeout):
                    self._lost = (f"no pong within {self._ping_timeout:g}s, and no other sign "
                                  "of life from the engine: the link looks cut")
                    ws.transport.abort()
                    return
        except ConnectionClosed:
            pass

    async def _write(self, ws: ClientConnection) -> None:
        """Run the writer of ``ws``; if it crashes, say so and close ``ws``.

        A connection that can read but no longer write would look alive while every call
        waits forever: closing it hands over to the reconnect loop. The frame at the head of
        the outbox, the one being written, is dropped: it may be what crashed the writer, and
        sent again it would crash every new connection. A call in it fails with the connection
        (``invocation_stopped``), like every call already written.
        """
        try:
            await self._write_loop(ws)
        except ConnectionClosed:
            pass  # the reader sees the close too
        except Exception:
            dropped = self._outbox.popleft() if self._outbox else None
            log.exception(
                "writer of %s crashed; closing the connection to reconnect%s", self.url,
                f" (dropped a frame of {len(dropped[0])} characters)" if dropped else "")
            await ws.close(_INTERNAL_ERROR, "iii-rx writer failed")

    async def _write_loop(self, ws: ClientConnection) -> None:
        """Drain the outbox: bursts in one socket write, ``ws.send`` when flow control bites.

        Every ``ws.send`` is one ``socket.send``: with many calls in flight that is one system
        call (and one GIL hand-off) per frame. When the connection is open and its write buffer
        is below the high-water mark, the frames waiting are framed with the sans-I/O protocol
        and written together; otherwise (buffer full, a fragmented message, closing) the regular
        ``ws.send`` path applies, with its flow control and its errors. This task is the only
        sender of data frames on ``ws`` (a fragmented ``send`` is awaited here), so a batch can
        never land inside another message's fragments.
        """
        outbox, withdrawn = self._outbox, self._withdrawn
        handles = batch_handles(ws)
        if handles is None:
            protocol = transport = None
            high = 0
        else:
            protocol, transport = handles
            high = transport.get_write_buffer_limits()[1]
        lane = ws.frame if isinstance(ws, HotClientConnection) and ws.hot_in is not None else None
        frames: list[bytes] = []
        while True:
            if not outbox:
                withdrawn.clear()  # whatever was withdrawn has left the outbox
                self._wakeup = self.loop.create_future()
                await self._wakeup
                continue
            if withdrawn:
                head = outbox[0][2]
                if head is not None and head in withdrawn:
                    outbox.popleft()
                    withdrawn.discard(head)
                    continue
            if (protocol is not None and transport is not None
                    and protocol.state is State.OPEN
                    and not transport.is_closing()
                    and transport.get_write_buffer_size() <= high):
                framed = 0
                while outbox and framed < _BATCH:
                    text, _, iid = outbox[0]
                    if withdrawn and iid is not None and iid in withdrawn:
                        outbox.popleft()
                        withdrawn.discard(iid)
                        continue
                    if len(text) > MAX_FRAME:
                        break
                    if lane is not None:
                        frames.append(lane(text.encode()))
                    else:
                        protocol.send_text(text.encode())
                    outbox.popleft()
                    framed += 1
                if framed:
                    frames[:0] = [data for data in protocol.data_to_send() if data]
                    if lane is None and isinstance(ws, HotLane):  # the lane counts its own
                        ws.sent += sum(map(len, frames))  # (a pong may wait behind them)
                    transport.writelines(frames)
                    frames.clear()
                    continue
            text = outbox[0][0]
            if len(text) > MAX_FRAME:
                await ws.send(_fragments(text))
            else:
                await ws.send(text)
            outbox.popleft()

    # ------------------------------------------------------------------ sending

    def send(self, text: str, kind: int = CONTROL, invocation_id: str | None = None) -> bool:
        """Send (or queue) one frame; loop thread only. ``False`` when dropped.

        Raises :class:`PayloadTooLargeError` above 64 MiB and
        :class:`~iii_rx.errors.IIIConnectionError` when a call cannot be queued.
        """
        if len(text) > MAX_FRAME and len(text.encode()) > MAX_MESSAGE:
            raise PayloadTooLargeError(
                f"message of {len(text.encode())} bytes exceeds the 64 MiB limit")
        if self._ws is not None and (self._ready or kind != CALL):
            self._outbox.append((text, kind, invocation_id))
            if self._wakeup is not None:
                self._wake_writer()
            return True
        if kind != CALL:
            return False
        if self._closing or self._failed:
            raise IIIConnectionError("the client is closed; the call was not sent")
        if len(self._held) >= self.config.max_queued:
            raise IIIConnectionError(
                f"not connected to {self.url} and {self.config.max_queued} calls are already "
                "queued (ReconnectConfig.max_queued); the call was not sent")
        self._held[invocation_id or object()] = (text, kind, invocation_id)
        return True

    def _wake_writer(self) -> None:
        wakeup, self._wakeup = self._wakeup, None
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    def send_threadsafe(self, text: str, kind: int = CONTROL) -> None:
        """Send from any thread (results of sync handlers, registrations); errors are logged,
        not raised. The frame joins the one queue of work handed to the client's loop from
        other threads, so a thread's registration and its next call keep their order."""
        try:
            self._bridge.run_sync_soon(self._send_handed_over, text, kind)
        except RuntimeError:  # loop closed: the client is gone
            pass

    def _send_handed_over(self, text: str, kind: int) -> None:
        if self._closing:
            return
        try:
            self.send(text, kind)
        except Exception as exc:
            log.warning("frame dropped: %s", exc)


def _fragments(text: str) -> Iterator[str]:
    for start in range(0, len(text), _FRAGMENT):
        yield text[start:start + _FRAGMENT]


_BATCH_CALLS = ("writelines", "is_closing", "get_write_buffer_size", "get_write_buffer_limits")
"""What the batched write calls on the transport."""


def batch_handles(ws: ClientConnection) -> tuple[Protocol, asyncio.WriteTransport] | None:
    """The sans-I/O protocol and the asyncio transport of ``ws``, for the batched write.

    Neither attribute is documented by websockets (both exist from 13.0 to at least 17.x);
    ``None`` when this version or event loop lacks them, and the writer falls back to
    ``ws.send``. ``tests/client/test_transport_websockets.py`` pins them. The transport is
    checked for the methods the write calls, not for a class: uvloop's have them all without
    deriving from ``asyncio.WriteTransport``.
    """
    protocol = getattr(ws, "protocol", None)
    transport = getattr(ws, "transport", None)
    if isinstance(protocol, Protocol) and all(
            callable(getattr(transport, name, None)) for name in _BATCH_CALLS):
        return protocol, cast(asyncio.WriteTransport, transport)
    return None
