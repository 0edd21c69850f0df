"""The reading end of a channel: pull first, with push views derived from it.

The primary form is the async iterator: ``async for chunk in reader`` asks the websocket for
the next frame only when the loop body is done, and websockets stops reading the socket once a
few frames wait unread, so a slow consumer slows the engine and, through it, the writer
(Rx has no backpressure, so the pull edge down to the socket is what bounds memory). Memory stays
bounded by those few frames.

One consumer reads the socket at a time; a second concurrent consumer gets
:class:`ChannelError` (as websockets' own concurrent ``recv``). Text frames are not data: while
any consumer reads, each text frame goes to the ``on_message`` callbacks and to the
``messages`` observable, in order with the chunks around it.

``chunks`` and ``messages`` are observables: subscribing starts one pump that reads the channel
(if no async iterator already does) and emits on the channel's loop; synchronous observers pace
it, so backpressure holds. A ``messages``-only pump drops binary chunks, and hands the socket
over when an async iterator starts reading, after which ``messages`` follows that iterator.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from types import TracebackType
from typing import Any, TypeVar

from reactivex import Observable, abc
from reactivex.disposable import Disposable
from reactivex.subject import Subject
from websockets.exceptions import ConnectionClosed

from iii_rx.aio import TaskSet
from iii_rx.channels._affinity import running_loop
from iii_rx.channels._end import ChannelEnd
from iii_rx.channels._socket import CLEAN_CLOSE_CODES, closed_error
from iii_rx.channels.cborseq import CborSequenceDecoder
from iii_rx.channels.errors import ChannelError
from iii_rx.protocol import StreamChannelRef

__all__ = ["ChannelReader"]

log = logging.getLogger("iii_rx.channels")

T = TypeVar("T")
Frame = bytes | str


class ChannelReader(ChannelEnd):
    """Reads binary chunks, text messages and CBOR items from a channel.

    - ``async for chunk in reader`` / ``for chunk in reader``: binary chunks, in order.
    - ``await reader.read_all()``: every chunk, joined.
    - ``reader.objects()``: the CBOR items written with ``write_obj`` (raises
      :class:`~iii_rx.channels.errors.TruncatedStreamError` if the stream was cut in an item).
    - ``reader.on_message(cb)``, ``reader.messages``: text frames.
    - ``reader.chunks``: binary chunks as an observable.

    The end of the stream is the writer's clean close; any other ending raises
    :class:`ChannelClosedError` after the chunks that did arrive (on the Rust engine, a writer
    that died also looks like a clean end, docs/protocol.md §7.4). The websocket opens on first use;
    ``close()`` (or ``async with reader``) closes it, which fails a writer still writing.
    """

    def __init__(
        self,
        engine_url: str,
        ref: StreamChannelRef | Mapping[str, Any],
        headers: Mapping[str, str] | None = None,
        *,
        max_queue: int = 16,
        open_timeout: float = 10.0,
    ) -> None:
        super().__init__(engine_url, ref, headers, "read", open_timeout=open_timeout,
                         max_queue=max_queue)
        self._receiving: object | None = None  # who is in recv() now
        self._ended = False
        self._error: BaseException | None = None
        self._callbacks: list[Callable[[str], Any]] = []
        self._messages: Subject[str] = Subject()
        self._chunks: Subject[bytes] = Subject()
        self._pump: asyncio.Task[None] | None = None
        self._pump_run: object | None = None  # the current pump's token (set before its task)
        self._released: asyncio.Task[None] | None = None  # a released pump, maybe unwinding
        self._pumps = TaskSet(f"channel {self.ref.channel_id} reader")  # also cancelled ones
        self._pump_chunk_subscribers = 0
        self._pump_subscribers = 0
        self._pulled = False  # an async iterator has read: pumps never start again
        self._unread: deque[bytes] = deque()  # chunks read for a waiter that gave up
        self._closed = False  # close() was called: nothing more is read
        self._cbor: tuple[CborSequenceDecoder, deque[Any]] | None = None  # objects() state

    def __repr__(self) -> str:
        state = ("ended" if self._ended else "open" if self._ws else "not connected")
        return f"<ChannelReader {self.ref.channel_id} {state}>"

    @property
    def ended(self) -> bool:
        """Whether the stream is over (cleanly, by error, or closed by this side)."""
        return self._ended

    # ------------------------------------------------------------------ pull API

    def __aiter__(self) -> AsyncIterator[bytes]:
        return _Chunks(self)

    async def read_all(self) -> bytes:
        """Every binary chunk until the end, joined (text frames go to the callbacks).

        Cancelled or interrupted, it loses nothing: the chunks it had read are the next
        read's first ones."""
        parts: list[bytes] = []
        try:
            async for chunk in _Chunks(self):
                parts.append(chunk)
        except BaseException:
            if parts:
                self._call_on_loop(lambda: self._give_back(parts))
            raise
        return b"".join(parts)

    def _give_back(self, parts: list[bytes]) -> None:
        if not self._closed:
            self._unread.extendleft(reversed(parts))

    def objects(self) -> AsyncIterator[Any]:
        """The CBOR sequence carried by the binary chunks, one decoded item at a time.

        Every pass shares one decoder: a pass that stopped early (a ``break``, a cancel) leaves
        the items it had decoded, and the start of the next one, to the next pass."""
        return _Objects(self)

    def on_message(self, callback: Callable[[str], Any]) -> Callable[[], None]:
        """Call ``callback(text)`` for every text frame; returns a function that unregisters.

        Callbacks run on the channel's loop, in order with the chunks; an exception in one is
        logged and does not stop the stream.
        """
        if not callable(callback):
            raise TypeError(f"on_message(callback): callback must be callable, got "
                            f"{type(callback).__name__}")
        self._callbacks.append(callback)

        def remove() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return remove

    async def close(self) -> None:
        """Close the websocket. A writer that has not finished is failed by the engine."""
        if not self._affinity.here():
            return await self._affinity.hop(self.close())
        self._closed = True
        self._finish(None)
        self._unread.clear()
        self._cbor = None
        await self._pumps.aclose()
        if self._opening is not None and not self._opening.done():
            await _cancel(self._opening)
        ws = self._opened()
        if ws is not None:
            await ws.close()

    async def give_up(self, reason: str) -> None:
        """Stop reading for good on behalf of a holder that failed or was cut short: the
        writer's next writes fail. An end that never connected connects first, or its writer
        would go on writing into the engine's buffer until the channel expires. (A reader's
        close carries no reason to the writer: ``reason`` is for the writer's side only.)"""
        if not self._affinity.here():
            return await self._affinity.hop(self.give_up(reason))
        if not self._ended and self._opened() is None:
            with contextlib.suppress(ChannelError):
                await self._open()
        await self.close()

    async def __aenter__(self) -> ChannelReader:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ sync twins

    def __iter__(self) -> Iterator[bytes]:
        """Blocking iteration over the binary chunks (not on the channel's own loop)."""
        return self._affinity.iterate(_Chunks(self), "iterating a ChannelReader",
                                      self._unread_chunk)

    def read_all_sync(self) -> bytes:
        """Blocking :meth:`read_all`."""
        return self._affinity.block(self.read_all(), "read_all_sync",
                                    lambda data: self._give_back([data]) if data else None)

    def objects_sync(self) -> Iterator[Any]:
        """Blocking :meth:`objects`."""
        return self._affinity.iterate(_Objects(self), "objects_sync", self._unread_object)

    def close_sync(self) -> None:
        """Blocking :meth:`close`."""
        self._affinity.block(self.close(), "close_sync")

    def __enter__(self) -> ChannelReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close_sync()

    # ------------------------------------------------------------------ push views

    @property
    def chunks(self) -> Observable[bytes]:
        """Binary chunks as an observable; each subscription shares one pump.

        Only one consumer can read the channel: subscribing while an async iterator reads it
        fails the subscription. Use ``ops.share()`` to fan out, and ``observe_on`` a pool
        scheduler for observers that block (which then lose the pacing).
        """
        def subscribe(
            observer: abc.ObserverBase[bytes], _: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            return self._subscribe(observer, chunks=True)

        return Observable(subscribe)

    @property
    def messages(self) -> Observable[str]:
        """Text frames as an observable; completes or fails with the stream.

        With no other consumer, subscribing starts reading the channel (binary chunks read that
        way are dropped); otherwise it follows the consumer that reads.
        """
        def subscribe(
            observer: abc.ObserverBase[str], _: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            return self._subscribe(observer, chunks=False)

        return Observable(subscribe)

    def _subscribe(self, observer: abc.ObserverBase[Any], *, chunks: bool) -> abc.DisposableBase:
        subject: Subject[Any] = self._chunks if chunks else self._messages
        if self._ended:
            if self._error is not None:
                observer.on_error(self._error)  # type: ignore[arg-type]
            else:
                observer.on_completed()
            return Disposable()
        if chunks and self._pulled:
            observer.on_error(ChannelError(
                f"channel {self.channel_id} is already read by an async iterator"))
            return Disposable()
        inner = subject.subscribe(_Guarded(observer))
        self._call_on_loop(lambda: self._pump_acquire(chunks))
        disposed = False

        def dispose() -> None:
            nonlocal disposed
            if not disposed:
                disposed = True
                inner.dispose()
                self._call_on_loop(lambda: self._pump_release(chunks))

        return Disposable(dispose)

    def _call_on_loop(self, action: Callable[[], None]) -> None:
        bridge = self._affinity.claim()
        if running_loop() is bridge.loop:
            action()
        else:
            bridge.run_sync_soon(action)

    def _pump_acquire(self, chunks: bool) -> None:
        self._pump_subscribers += 1
        self._pump_chunk_subscribers += chunks
        if self._pump_run is None and not self._pulled and not self._ended:
            # The token is set before the task: an eager task factory runs its first step
            # inside spawn(), which must already find itself the reader's pump.
            self._pump_run = run = object()
            pump = self._pumps.spawn(self._run_pump(run),
                                     name=f"iii-rx-channel-pump-{self.channel_id}")
            if not pump.done() and self._pump_run is run:
                self._pump = pump

    def _pump_release(self, chunks: bool) -> None:
        self._pump_subscribers -= 1
        self._pump_chunk_subscribers -= chunks
        if self._pump_subscribers == 0 and self._pump_run is not None:
            # recv() may be cancelled without losing a frame. This runs in a plain callback,
            # so the pump stays in the task set and close() awaits it if still unwinding.
            pump, self._pump, self._pump_run = self._pump, None, None
            if pump is not None:
                pump.cancel()
                self._released = pump  # an iterator coming at once waits for it to unwind

    async def _run_pump(self, run: object) -> None:
        owner = object()
        try:
            # Released (the last subscriber left, an iterator took over): stop before the next
            # frame. The cancel lands only where the pump suspends, and recv() of frames already
            # received does not: it read them on, for nobody, up to the end of the stream.
            while self._pump_run is run and (frame := await self._next(owner)) is not None:
                if isinstance(frame, bytes) and self._pump_chunk_subscribers:
                    self._chunks.on_next(frame)
        except ChannelError:
            pass  # already delivered to the subscribers by _finish
        except Exception as exc:
            log.exception("channel %s: reading failed", self.channel_id)
            self._finish(exc)
        finally:
            if self._pump_run is run:
                self._pump, self._pump_run = None, None

    # ------------------------------------------------------------------ frames

    async def _next(self, owner: object) -> Frame | None:
        """The next frame for ``owner``; text frames are dispatched before being returned."""
        if self._error is not None:
            raise self._error
        if self._ended:
            return None
        if self._receiving is not None and self._receiving is not owner:
            await self._take_over_from_pump(owner)
        self._receiving = owner
        try:
            ws = self._ws if self._ws is not None else await self._open()
            frame = await ws.recv()
        except ConnectionClosed as exc:
            frame_in = exc.rcvd
            if frame_in is not None and frame_in.code in CLEAN_CLOSE_CODES:
                self._finish(None)
                return None
            error = closed_error(exc, f"channel {self.channel_id} reader")
            self._finish(error)
            raise error from None
        except ChannelError as exc:
            self._finish(exc)
            raise
        finally:
            if self._receiving is owner:
                self._receiving = None
        if self.transfer is not None:
            self.transfer.moved(frame)
        if isinstance(frame, str):
            self._dispatch_text(frame)
        return frame

    async def _take_over_from_pump(self, owner: object) -> None:
        released = self._released
        if released is not None and not released.done():
            # Released, but still in its recv(): not another consumer. Whoever reads next
            # (an iterator, or a new pump, which an eager task factory starts at once) waits
            # for it to unwind (kept until then: a reader cancelled meanwhile is not the last).
            await _cancel(released)
            if self._released is released:
                self._released = None
            return
        self._released = None
        pump = self._pump
        if pump is None or pump is asyncio.current_task() or self._pump_chunk_subscribers:
            raise ChannelError(
                f"channel {self.channel_id} is already being read by another consumer"
            )
        self._pump, self._pump_run = None, None
        await _cancel(pump)

    def _unread_chunk(self, chunk: bytes) -> None:
        """Keep a chunk read for a waiter on another thread or loop that was interrupted or
        cancelled meanwhile: the next read returns it (the socket cannot take it back). It is
        the oldest chunk not delivered: before any that a cut read_all() gave back."""
        if not self._closed:
            self._unread.appendleft(chunk)

    def _cbor_state(self) -> tuple[CborSequenceDecoder, deque[Any]]:
        """The decoder and the decoded items not yet taken, shared by every objects() pass."""
        if self._cbor is None:
            self._cbor = (CborSequenceDecoder(), deque())
        return self._cbor

    def _unread_object(self, item: Any) -> None:
        """:meth:`_unread_chunk` for a CBOR item: the next objects() pass returns it first."""
        if not self._closed:
            self._cbor_state()[1].appendleft(item)

    def _dispatch_text(self, text: str) -> None:
        for callback in list(self._callbacks):
            try:
                callback(text)
            except Exception:
                log.exception("channel %s: on_message callback failed", self.channel_id)
        self._messages.on_next(text)

    def _finish(self, error: BaseException | None) -> None:
        if self._ended:
            return
        self._ended = True
        self._error = error
        self._end_transfer(error)
        if error is None:
            self._messages.on_completed()
            self._chunks.on_completed()
        else:
            self._messages.on_error(error)  # type: ignore[arg-type]
            self._chunks.on_error(error)  # type: ignore[arg-type]


class _Chunks(AsyncIterator[bytes]):
    """One pass of binary chunks; breaking out leaves the socket open for another pass."""

    __slots__ = ("_owner", "_reader")

    def __init__(self, reader: ChannelReader) -> None:
        self._reader = reader
        self._owner = object()

    async def __anext__(self) -> bytes:
        reader = self._reader
        if not reader._affinity.here():
            return await reader._affinity.hop(self.__anext__(), reader._unread_chunk)
        reader._pulled = True
        if reader._unread:
            return reader._unread.popleft()
        while True:
            frame = await reader._next(self._owner)
            if frame is None:
                raise StopAsyncIteration
            if isinstance(frame, bytes):
                return frame


class _Objects(AsyncIterator[Any]):
    """The CBOR items of the binary chunks; a stream cut inside an item raises at the end.
    The decoding state is the reader's: the next pass goes on where this one stopped."""

    __slots__ = ("_chunks", "_decoder", "_ready")

    def __init__(self, reader: ChannelReader) -> None:
        self._chunks = _Chunks(reader)
        self._decoder, self._ready = reader._cbor_state()

    async def __anext__(self) -> Any:
        while not self._ready:
            if self._decoder.error is not None:  # after the items before it, not a chunk later
                raise self._decoder.error
            try:
                chunk = await self._chunks.__anext__()
            except StopAsyncIteration:
                self._decoder.finish()
                raise
            self._ready.extend(self._decoder.feed(chunk))
        return self._ready.popleft()


class _Guarded(abc.ObserverBase[Any]):
    """Shields the reader from an observer that raises: log it and stop calling that observer."""

    __slots__ = ("_inner", "_stopped")

    def __init__(self, inner: abc.ObserverBase[Any]) -> None:
        self._inner = inner
        self._stopped = False

    def on_next(self, value: Any) -> None:
        if self._stopped:
            return
        try:
            self._inner.on_next(value)
        except Exception:
            self._stopped = True
            log.exception("a channel observer raised in on_next; it gets nothing more")

    def on_error(self, error: Exception) -> None:
        if not self._stopped:
            self._stopped = True
            try:
                self._inner.on_error(error)
            except Exception:
                log.exception("a channel observer raised in on_error")

    def on_completed(self) -> None:
        if not self._stopped:
            self._stopped = True
            try:
                self._inner.on_completed()
            except Exception:
                log.exception("a channel observer raised in on_completed")


async def _cancel(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and wait for it to finish; our own cancellation still propagates."""
    task.cancel()
    await asyncio.wait({task})
