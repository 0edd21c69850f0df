"""Channels as values: the ``Channel`` pair, refs in payloads, and creating a channel."""

from __future__ import annotations

from collections.abc import Awaitable, Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard

from iii_rx.channels.reader import ChannelReader
from iii_rx.channels.writer import ChannelWriter
from iii_rx.errors import IIIConnectionError
from iii_rx.protocol import StreamChannelRef

if TYPE_CHECKING:
    from iii_rx.aio import LoopBridge

__all__ = ["MAX_BUFFER_SIZE", "Channel", "ChannelOpener", "ClientOpener", "create_channel",
           "create_channel_async", "is_channel_ref", "open_channel", "resolve_channel_refs"]


@dataclass(frozen=True)
class Channel:
    """Both ends of a new channel: the live ``writer`` and ``reader``, and their refs.

    Typically one end is used here and the other's ref is passed to a function, e.g.
    ``await client.trigger("resize", {"out": channel.writer_ref})`` then
    ``await channel.reader.read_all()``. Refs go into payloads as they are (pydantic models or
    their dicts); the receiving SDK turns them back into live ends.
    """

    writer: ChannelWriter
    reader: ChannelReader
    writer_ref: StreamChannelRef
    reader_ref: StreamChannelRef


def is_channel_ref(value: Any) -> TypeGuard[Mapping[str, Any]]:
    """Whether ``value`` is a ref: string ``channel_id`` and ``access_key``, ``direction``
    ``read`` or ``write`` (extra keys allowed, docs/protocol.md §7.6)."""
    return (
        isinstance(value, Mapping)
        and isinstance(value.get("channel_id"), str)
        and isinstance(value.get("access_key"), str)
        and value.get("direction") in ("read", "write")
    )


def resolve_channel_refs(value: Any, *, engine_url: str, headers: Mapping[str, str],
                         made: list[ChannelReader | ChannelWriter] | None = None) -> Any:
    """Replace channel refs anywhere in ``value`` by live readers/writers (docs/protocol.md §7.6).

    Dicts, lists and tuples are walked at any depth and rebuilt only where a ref was found;
    a ``read`` ref becomes a :class:`ChannelReader`, a ``write`` ref a :class:`ChannelWriter`
    (each also appended to ``made``, when given). The ends connect lazily, on first use.
    """
    return _resolve(value, engine_url, headers, made)


MAX_BUFFER_SIZE = 1024
"""The most frames the engine holds for a channel (docs/protocol.md §7.1): it caps a larger
``buffer_size``."""

_LEAVES = frozenset({str, int, float, bool, type(None), bytes})
"""Types that hold no ref: skipped without a call (most of a payload's values)."""


def _resolve(value: Any, engine_url: str, headers: Mapping[str, str],
             made: list[ChannelReader | ChannelWriter] | None) -> Any:
    if isinstance(value, dict):
        if "access_key" in value and is_channel_ref(value):
            return _live_end(value, engine_url, headers, made)
        out: dict[Any, Any] | None = None
        for key, item in value.items():
            if type(item) in _LEAVES:
                continue
            resolved = _resolve(item, engine_url, headers, made)
            if resolved is not item:
                if out is None:
                    out = dict(value)
                out[key] = resolved
        return value if out is None else out
    if isinstance(value, (list, tuple)):
        items: list[Any] | None = None
        for index, item in enumerate(value):
            if type(item) in _LEAVES:
                continue
            resolved = _resolve(item, engine_url, headers, made)
            if resolved is not item:
                if items is None:
                    items = list(value)
                items[index] = resolved
        if items is None:
            return value
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, StreamChannelRef):
        return _live_end(value.model_dump(), engine_url, headers, made)
    return value


def _live_end(
    ref: Mapping[str, Any], engine_url: str, headers: Mapping[str, str],
    made: list[ChannelReader | ChannelWriter] | None,
) -> ChannelReader | ChannelWriter:
    model = StreamChannelRef(channel_id=ref["channel_id"], access_key=ref["access_key"],
                             direction=ref["direction"])
    end: ChannelReader | ChannelWriter = (ChannelReader(engine_url, model, headers)
                                          if model.direction == "read"
                                          else ChannelWriter(engine_url, model, headers))
    if made is not None:
        made.append(end)
    return end


class ChannelOpener(Protocol):
    """What :func:`open_channel` needs of a client, and nothing more (a :class:`iii_rx.Client`
    is one): channels stay below the client and never import it."""

    @property
    def url(self) -> str:
        """The engine's websocket address."""
        ...

    @property
    def headers(self) -> Mapping[str, str]:
        """The handshake headers, sent on channel sockets too."""
        ...

    def trigger(self, function_id: str, payload: Any, /) -> Awaitable[Any]:
        """Call an engine function."""
        ...


class ClientOpener(ChannelOpener, Protocol):
    """A :class:`ChannelOpener` with its own loop, which may have closed with the client."""

    @property
    def bridge(self) -> LoopBridge:
        """The client's loop."""
        ...

    @property
    def closed(self) -> bool:
        """Whether the client was closed."""
        ...


def check_buffer_size(buffer_size: object) -> None:
    """Refuse at the call what the engine would answer with a ``deserialization_error``."""
    if buffer_size is None:
        return
    if isinstance(buffer_size, bool) or not isinstance(buffer_size, int):
        raise TypeError(f"create_channel(buffer_size): buffer_size must be an int (a number of "
                        f"frames) or None, got {type(buffer_size).__name__} {buffer_size!r}")
    if buffer_size < 0:
        raise ValueError(f"create_channel(buffer_size): buffer_size must be at least 0 (the "
                         f"engine holds 1 to {MAX_BUFFER_SIZE} frames), got {buffer_size}")


def _opened_on(client: ClientOpener, buffer_size: int | None) -> Coroutine[Any, Any, Channel]:
    if client.closed:  # a sync client's loop has stopped: nothing could run there
        raise IIIConnectionError("the client is closed; cannot create a channel")
    return open_channel(client, buffer_size)


async def create_channel_async(client: ClientOpener, buffer_size: int | None = None) -> Channel:
    """:func:`open_channel` on ``client``'s loop, from any loop."""
    return await client.bridge.run(_opened_on(client, buffer_size))


def create_channel(client: ClientOpener, buffer_size: int | None = None) -> Channel:
    """:func:`open_channel`, blocking this thread (not ``client``'s loop thread)."""
    return client.bridge.run_blocking(_opened_on(client, buffer_size), "create_channel()")


async def open_channel(client: ChannelOpener, buffer_size: int | None = None) -> Channel:
    """Create a channel through ``engine::channels::create`` and return a ``Channel``.

    ``buffer_size`` counts frames the engine holds for a slow or late reader (default 64; the
    engine holds at least 1 and at most :data:`MAX_BUFFER_SIZE`, a larger size is capped).
    """
    check_buffer_size(buffer_size)
    result = await client.trigger("engine::channels::create", {"buffer_size": buffer_size})
    writer_ref = StreamChannelRef(**result["writer"])
    reader_ref = StreamChannelRef(**result["reader"])
    headers = client.headers
    return Channel(
        writer=ChannelWriter(client.url, writer_ref, headers),
        reader=ChannelReader(client.url, reader_ref, headers),
        writer_ref=writer_ref,
        reader_ref=reader_ref,
    )
