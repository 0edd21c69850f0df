"""Channels with the official SDK's method shapes, wrapping iii_rx's channel ends.

The reactive ends (:class:`iii_rx.channels.ChannelWriter` / ``ChannelReader``) have awaitable
methods only. The conventional API also has fire-and-forget ones, kept with the official semantics:
``writer.send_message(text)`` and ``writer.close()`` return at once and run on the client's
loop; ``send_message_async`` / ``close_async`` / ``write`` are awaitable. Every operation of a
writer, fire-and-forget or awaited, runs in the order it was made, so
``await w.write(b); w.send_message("done"); w.close()`` arrives as written.

Handlers receive these wrappers wherever a channel ref was in their payload; ``create_channel``
/ ``create_channel_async`` (functions taking the worker, as ``iii.helpers`` spells them, and
methods of the worker) make new pairs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol, TypeVar

from iii_rx.aio import LoopBridge, TaskSet
from iii_rx.channels import Channel as RxChannel
from iii_rx.channels import ChannelReader as RxChannelReader
from iii_rx.channels import ChannelWriter as RxChannelWriter
from iii_rx.channels import is_channel_ref
from iii_rx.client import Client
from iii_rx.compat._nested import map_leaves
from iii_rx.protocol import StreamChannelRef

__all__ = [
    "Channel",
    "ChannelDirection",
    "ChannelItem",
    "ChannelReader",
    "ChannelWriter",
    "ReadableStream",
    "StreamChannelRef",
    "WritableStream",
    "create_channel",
    "create_channel_async",
    "extract_channel_refs",
    "is_channel_ref",
    "wrap_channel_ends",
]

T = TypeVar("T")


class ChannelDirection(str, Enum):
    """Direction of a ref, as on the wire."""

    READ = "read"
    WRITE = "write"


@dataclass
class ChannelItem:
    """One frame of a channel: exactly one of ``text`` or ``binary``."""

    text: str | None = None
    binary: bytes | None = None

    def __post_init__(self) -> None:
        if (self.text is None) == (self.binary is None):
            raise ValueError("ChannelItem holds exactly one of text or binary")

    @classmethod
    def text_item(cls, value: str) -> ChannelItem:
        return cls(text=value)

    @classmethod
    def binary_item(cls, value: bytes) -> ChannelItem:
        return cls(binary=value)

    @property
    def is_text(self) -> bool:
        return self.text is not None

    @property
    def is_binary(self) -> bool:
        return self.binary is not None


class _Ordered:
    """Runs one end's operations on its loop, one after the other, in call order.

    An operation takes its turn when it is made (on the loop; from elsewhere, when the hop
    reaches the loop, in the order of the calls) and starts when the one before it is done.
    Fire-and-forget ones are tasks of a :class:`~iii_rx.aio.TaskSet`, so they stay referenced
    until done and a failure is logged (there is nobody else to tell); the loop's owner cancels
    what is left when it stops.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, what: str) -> None:
        self._bridge = LoopBridge(loop, None)
        self._tail: asyncio.Future[None] | None = None
        self._fired = TaskSet(what)

    def _claim(self, op: Callable[[], Coroutine[Any, Any, T]]
               ) -> tuple[asyncio.Future[None], Coroutine[Any, Any, T]]:
        """Take the next turn now (on the loop): the turn's end and the coroutine to run in it."""
        previous = self._tail
        mine: asyncio.Future[None] = self._bridge.loop.create_future()
        self._tail = mine
        return mine, self._turn(previous, mine, op)

    @staticmethod
    async def _turn(previous: asyncio.Future[None] | None, mine: asyncio.Future[None],
                    op: Callable[[], Coroutine[Any, Any, T]]) -> T:
        try:
            if previous is not None and not previous.done():
                await asyncio.wait((previous,))  # being cancelled must not cancel `previous`
            return await op()
        finally:
            _end_turn(mine)

    async def _in_turn(self, op: Callable[[], Coroutine[Any, Any, T]]) -> T:
        _, turn = self._claim(op)
        return await turn

    async def _fired_in_turn(self, op: Callable[[], Coroutine[Any, Any, Any]],
                             name: str) -> None:
        task = asyncio.current_task()
        assert task is not None
        task.set_name(name)
        self._fired.add(task)
        await self._in_turn(op)

    def _on_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._bridge.loop
        except RuntimeError:
            return False

    async def run(self, op: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Await ``op`` in turn, from any loop."""
        return await self._bridge.run(self._in_turn(op))

    def fire(self, op: Callable[[], Coroutine[Any, Any, Any]], name: str) -> None:
        """Start ``op`` in turn and return at once, from any thread; a failure is logged."""
        if self._on_loop():
            mine, turn = self._claim(op)
            task = self._fired.spawn(turn, name=name)
            # A task cancelled before its first step never runs its `finally`.
            task.add_done_callback(lambda _: _end_turn(mine))
        else:
            self._bridge.submit(self._fired_in_turn(op, name))


def _end_turn(turn: asyncio.Future[None]) -> None:
    if not turn.done():
        turn.set_result(None)


class WritableStream:
    """Node-style view of a writer: fire-and-forget ``write`` and ``end``."""

    def __init__(self, writer: ChannelWriter) -> None:
        self._writer = writer

    def write(self, data: bytes) -> None:
        self._writer._ops.fire(lambda: self._writer.inner.write(data), "write")

    def end(self, data: bytes | None = None) -> None:
        if data is not None:
            self.write(data)
        self._writer.close()


class ReadableStream:
    """Node-style view of a reader: async iteration over the binary chunks."""

    def __init__(self, reader: ChannelReader) -> None:
        self._reader = reader

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._reader:
            yield chunk


class ChannelWriter:
    """The writing end: ``await write(data)``, ``send_message(text)`` (fire and forget),
    ``await send_message_async(text)``, ``close()`` (fire and forget), ``await close_async()``.

    :attr:`inner` is the reactive :class:`iii_rx.channels.ChannelWriter` (``write_obj``,
    ``abort``, sync twins).
    """

    def __init__(self, inner: RxChannelWriter, loop: asyncio.AbstractEventLoop) -> None:
        self.inner = inner
        self._ops = _Ordered(loop, f"channel {inner.channel_id} writer")
        self.stream = WritableStream(self)

    def __repr__(self) -> str:
        return f"<compat {self.inner!r}>"

    @property
    def ref(self) -> StreamChannelRef:
        return self.inner.ref

    async def write(self, data: bytes) -> None:
        """Send ``data`` (split into 64 KiB frames), waiting for flow control."""
        await self._ops.run(lambda: self.inner.write(data))

    def send_message(self, msg: str) -> None:
        """Send a text frame without waiting (it still goes out in call order).

        As the official SDK's, bytes go out as a binary frame, into the reader's data.
        """
        self._ops.fire(self._message(msg), "send_message")

    async def send_message_async(self, msg: str) -> None:
        await self._ops.run(self._message(msg))

    def _message(self, msg: str | bytes | bytearray | memoryview
                 ) -> Callable[[], Coroutine[Any, Any, None]]:
        """What sends ``msg``, checked at the call (a fire-and-forget failure is only logged)."""
        if isinstance(msg, str):
            return lambda: self.inner.send_message(msg)
        if isinstance(msg, (bytes, bytearray, memoryview)):
            return lambda: self.inner.write(msg)
        raise TypeError(f"send_message(msg): msg must be a str (one text frame), got "
                        f"{type(msg).__name__}; a dict as json.dumps(...)")

    def close(self) -> None:
        """End the stream without waiting, after everything sent before."""
        self._ops.fire(self.inner.close, "close")

    async def close_async(self) -> None:
        """End the stream, after everything sent before."""
        await self._ops.run(self.inner.close)


class ChannelReader:
    """The reading end: ``async for chunk in reader``, ``await read_all()``,
    ``on_message(callback)`` for text frames, ``await close_async()``.

    A stream that ends abnormally raises :class:`iii_rx.channels.ChannelClosedError` after the
    chunks that arrived (``docs/migration.md``). :attr:`inner` is the reactive reader.
    """

    def __init__(self, inner: RxChannelReader) -> None:
        self.inner = inner
        self.stream = ReadableStream(self)

    def __repr__(self) -> str:
        return f"<compat {self.inner!r}>"

    @property
    def ref(self) -> StreamChannelRef:
        return self.inner.ref

    def on_message(self, callback: Callable[[str], Any]) -> Callable[[], None]:
        """Call ``callback(text)`` for each text frame read; returns a remover."""
        return self.inner.on_message(callback)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.inner.__aiter__()

    async def read_all(self) -> bytes:
        return await self.inner.read_all()

    async def close_async(self) -> None:
        await self.inner.close()


@dataclass
class Channel:
    """A new channel: local ``writer`` and ``reader`` and the refs to pass to functions."""

    writer: ChannelWriter
    reader: ChannelReader
    writer_ref: StreamChannelRef
    reader_ref: StreamChannelRef


class Worker(Protocol):
    """What the channel helpers need of a worker: the reactive client underneath."""

    @property
    def client(self) -> Client: ...


def _wrap_channel(channel: RxChannel, loop: asyncio.AbstractEventLoop) -> Channel:
    return Channel(writer=ChannelWriter(channel.writer, loop),
                   reader=ChannelReader(channel.reader),
                   writer_ref=channel.writer_ref, reader_ref=channel.reader_ref)


def create_channel(iii: Worker, buffer_size: int | None = None) -> Channel:
    """A new channel (blocking; not from the worker's own loop thread)."""
    client = iii.client
    return _wrap_channel(client.create_channel(buffer_size), client.loop)


async def create_channel_async(iii: Worker, buffer_size: int | None = None) -> Channel:
    """A new channel; ``buffer_size`` frames wait in the engine for a late reader (64)."""
    client = iii.client
    return _wrap_channel(await client.create_channel_async(buffer_size), client.loop)


def wrap_channel_ends(value: Any, loop: asyncio.AbstractEventLoop) -> Any:
    """``value`` with the reactive channel ends in it replaced by these wrappers."""

    def wrap(item: Any) -> Any:
        if isinstance(item, RxChannelReader):
            return ChannelReader(item)
        if isinstance(item, RxChannelWriter):
            return ChannelWriter(item, loop)
        return item

    return map_leaves(value, wrap)


def extract_channel_refs(data: Any) -> list[tuple[str, StreamChannelRef]]:
    """Every channel ref in ``data`` with its path (``a.b``, ``items[0].writer``)."""
    found: list[tuple[str, StreamChannelRef]] = []

    def walk(value: Any, path: str) -> None:
        if is_channel_ref(value):
            found.append((path, StreamChannelRef(channel_id=value["channel_id"],
                                                 access_key=value["access_key"],
                                                 direction=value["direction"])))
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}" if path else str(key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{path}[{index}]")

    walk(data, "")
    return found
