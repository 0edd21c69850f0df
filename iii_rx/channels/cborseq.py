"""CBOR sequences (RFC 8742): structured items over a byte stream whose chunking means nothing.

A CBOR sequence is CBOR data items written back to back, with no framing, header or separator.
Item boundaries are found by parsing, so they do not depend on how the bytes were cut into
websocket frames, and a reader can tell a stream that ended between two items (a clean end)
from one cut inside an item (:class:`TruncatedStreamError`).

:class:`CborSequenceDecoder` is incremental: :meth:`~CborSequenceDecoder.feed` takes chunks as
they arrive and returns the items they complete. It first finds where an item ends with a
resumable scan of the CBOR heads (strings are skipped by length, never copied), and only then
decodes exactly those bytes with cbor2, so a large item split over many chunks costs one pass.
"""

from __future__ import annotations

from typing import Any

import cbor2

from iii_rx.channels.errors import CborDecodeError, TruncatedStreamError

__all__ = ["CborSequenceDecoder", "encode_item"]

_INDEFINITE = -1
_ARG_BYTES = {24: 1, 25: 2, 26: 4, 27: 8}


def encode_item(obj: Any) -> bytes:
    """One CBOR item (cbor2's canonical-free default encoding); append it to a sequence."""
    return cbor2.dumps(obj)


class CborSequenceDecoder:
    """Incremental decoder of a CBOR sequence fed in arbitrary chunks."""

    __slots__ = ("_buf", "_error", "_pos", "_stack")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._error: CborDecodeError | None = None  # raised after the items before it
        self._pos = 0  # next CBOR head to scan, relative to the start of _buf
        self._stack: list[int] = []  # items still expected by each open container

    @property
    def pending(self) -> int:
        """Bytes held that do not yet form a complete item."""
        return len(self._buf)

    def feed(self, chunk: bytes | bytearray | memoryview) -> list[Any]:
        """Add ``chunk``; return the items it completed, in order.

        Invalid CBOR raises :class:`CborDecodeError`; when valid items came before it in the
        same chunk, they are returned first and the error is raised by the next call.
        """
        self._raise_pending()
        self._buf += chunk
        items: list[Any] = []
        try:
            while self._buf:
                end = self._scan()
                if end is None:
                    break
                raw = bytes(self._buf[:end])
                del self._buf[:end]
                self._pos = 0
                try:
                    items.append(cbor2.loads(raw))
                except cbor2.CBORDecodeError as exc:
                    raise CborDecodeError(f"invalid CBOR item: {exc}") from exc
        except CborDecodeError as exc:
            if not items:
                raise
            self._error = exc
        return items

    def finish(self) -> None:
        """Declare the end of the stream; raise if it ended inside an item."""
        self._raise_pending()
        if self._buf:
            raise TruncatedStreamError(
                f"the stream ended inside a CBOR item ({len(self._buf)} bytes of an "
                "incomplete item were received)"
            )

    def _raise_pending(self) -> None:
        if self._error is not None:
            raise self._error

    def _scan(self) -> int | None:
        """End offset of the first complete item in ``_buf``, or None if more bytes are needed.

        The scan resumes where it stopped: ``_pos`` and ``_stack`` survive between calls.
        """
        buf = self._buf
        size = len(buf)
        pos = self._pos
        stack = self._stack
        while True:
            if pos >= size:
                self._pos = pos
                return None
            head = buf[pos]
            major = head >> 5
            info = head & 0x1F
            if info < 24:
                arg = info
                width = 0
            elif info in _ARG_BYTES:
                width = _ARG_BYTES[info]
                if pos + 1 + width > size:
                    self._pos = pos
                    return None
                arg = int.from_bytes(buf[pos + 1 : pos + 1 + width], "big")
            elif info == 31:
                arg = _INDEFINITE
                width = 0
            else:
                raise CborDecodeError(f"invalid CBOR head byte 0x{head:02x} at offset {pos}")
            start = pos
            pos += 1 + width
            done = False  # whether this head completed an item
            if major in (0, 1):
                if arg == _INDEFINITE:
                    raise CborDecodeError(f"invalid CBOR integer head 0x{head:02x}")
                done = True
            elif major in (2, 3):
                if arg == _INDEFINITE:
                    stack.append(_INDEFINITE)
                else:
                    if pos + arg > size:
                        self._pos = start  # re-read the head once the string has arrived
                        return None
                    pos += arg
                    done = True
            elif major in (4, 5):
                count = arg if arg == _INDEFINITE or major == 4 else 2 * arg
                if count == 0:
                    done = True
                else:
                    stack.append(count)
            elif major == 6:
                if arg == _INDEFINITE:
                    raise CborDecodeError(f"invalid CBOR tag head 0x{head:02x}")
                stack.append(1)  # a tag wraps exactly one item
            elif arg == _INDEFINITE:  # major 7, "break": closes an indefinite container
                if not stack or stack[-1] != _INDEFINITE:
                    raise CborDecodeError(f"unexpected CBOR break at offset {start}")
                stack.pop()
                done = True
            else:  # major 7: simple values and floats
                done = True
            while done and stack:
                if stack[-1] == _INDEFINITE:
                    done = False
                else:
                    stack[-1] -= 1
                    if stack[-1]:
                        done = False
                    else:
                        stack.pop()
            if done:
                self._pos = 0
                return pos
