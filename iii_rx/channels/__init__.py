"""Client side of channels (docs/protocol.md §7): one-way streams of bytes, text and CBOR items.

``await client.create_channel_async()`` (through :func:`open_channel`) gives a
:class:`Channel` with a :class:`ChannelWriter` and a :class:`ChannelReader`; refs found in a
handler's payload become live ends (:func:`resolve_channel_refs`). See docs/channels.md.

These are the reactive ends, imported from here (``from iii_rx.channels import ChannelReader``);
``iii_rx.compat`` has the official SDK's classes of the same names, wrappers with its method
shapes, so the top-level ``iii_rx`` exports neither. Channels sit below the client: they reach
it only through :class:`ChannelOpener`.
"""

from __future__ import annotations

from iii_rx.channels.cborseq import CborSequenceDecoder, encode_item
from iii_rx.channels.errors import (
    CborDecodeError,
    ChannelClosedError,
    ChannelCloseUnconfirmedError,
    ChannelError,
    TruncatedStreamError,
)
from iii_rx.channels.reader import ChannelReader
from iii_rx.channels.refs import (
    Channel,
    ChannelOpener,
    is_channel_ref,
    open_channel,
    resolve_channel_refs,
)
from iii_rx.channels.url import build_channel_url
from iii_rx.channels.writer import ChannelWriter
from iii_rx.protocol import StreamChannelRef

__all__ = [
    "CborDecodeError",
    "CborSequenceDecoder",
    "Channel",
    "ChannelClosedError",
    "ChannelCloseUnconfirmedError",
    "ChannelError",
    "ChannelOpener",
    "ChannelReader",
    "ChannelWriter",
    "StreamChannelRef",
    "TruncatedStreamError",
    "build_channel_url",
    "encode_item",
    "is_channel_ref",
    "open_channel",
    "resolve_channel_refs",
]
