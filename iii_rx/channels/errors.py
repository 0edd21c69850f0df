"""Errors of channel readers and writers."""

from __future__ import annotations

from iii_rx.errors import IIIError

__all__ = ["ChannelClosedError", "ChannelError", "CborDecodeError", "TruncatedStreamError"]


class ChannelError(IIIError):
    """Base of every channel failure."""


class ChannelClosedError(ChannelError, ConnectionError):
    """The channel ended abnormally: the peer or the engine went away, or the side was taken.

    ``code`` and ``reason`` are the websocket close code and reason when one was received
    (``None`` when the connection dropped without a close frame).
    """

    def __init__(self, message: str, *, code: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class TruncatedStreamError(ChannelError, ValueError):
    """A structured stream (CBOR sequence, JSON lines) ended in the middle of an item."""


class CborDecodeError(ChannelError, ValueError):
    """Bytes that are not a valid CBOR item arrived where a CBOR sequence was expected."""
