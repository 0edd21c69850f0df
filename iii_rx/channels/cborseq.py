"""CBOR sequences (RFC 8742): structured items over a byte stream whose chunking means nothing.

A CBOR sequence is CBOR data items written back to back, with no framing, header or separator.
Item boundaries are found by parsing, so they do not depend on how the bytes were cut into
websocket frames, and a reader can tell a stream that ended between two items (a clean end)
from one cut inside an item (:class:`TruncatedStreamError`).

:class:`CborSequenceDecoder` is incremental: :meth:`~CborSequenceDecoder.feed` takes chunks as
they arrive and returns the items they complete. Each chunk goes to cbor2 whole: one
``CBORDecoder`` decodes every complete item in it, in C. Only where cbor2 stops (the chunk
ends inside an item, or the bytes are bad) does Python look: a resumable scan of the CBOR heads
(strings skipped by length, never copied) tells a cut item, which waits for the next chunks
and is decoded once complete, from invalid data. A large item split over many chunks is
scanned once, not re-decoded at every chunk.
"""

from __future__ import annotations

import io
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import cbor2

from iii_rx.channels.errors import CborDecodeError, TruncatedStreamError

__all__ = ["CborSequenceDecoder", "encode_item"]

_INDEFINITE = -1
_ARG_BYTES = {24: 1, 25: 2, 26: 4, 27: 8}

# cbor2 before 6 keeps shared values (tags 28/29) from one decode() to the next: there, each
# item gets a decoder of its own, so that an item cannot refer to a value of an earlier one.
def _decoder_per_item() -> bool:
    try:
        return int(version("cbor2").split(".")[0]) < 6
    except (PackageNotFoundError, ValueError):  # no metadata: take the safe side
        return True


_DECODER_PER_ITEM = _decoder_per_item()

_BREAK = getattr(cbor2, "break_marker", object())
"""What older cbor2 (5.6, our floor) decodes a stray break code (0xff) to, where current ones
raise: it is no item (it was handed to the consumer as one)."""

_SHAREABLE_HEADS = (b"\xd8\x1c", b"\xd9\x00\x1c", b"\xda\x00\x00\x00\x1c",
                    b"\xdb\x00\x00\x00\x00\x00\x00\x00\x1c")
"""Tag 28 ("shareable") with each width of argument cbor2 accepts. Value sharing (tags 28 and
29) lets a few bytes decode to a cyclic item, or to a DAG whose walk or re-encoding is
exponential; a peer's stream may not use it. Without a tag 28, a tag 29 refers to nothing and
cbor2 rejects it, so a chunk without these bytes needs no further check."""


def _first_shared(items: list[Any]) -> int | None:
    """Index of the first item in which one non-empty container occurs twice (a value shared
    by tags 28/29: a cycle, or the same object in two places), else ``None``.

    Distinct decoded values are distinct objects, so only sharing makes an ``id`` repeat;
    empty containers are skipped (CPython keeps one empty tuple and frozenset)."""
    for index, item in enumerate(items):
        seen: set[int] = set()
        todo = [item]
        while todo:
            value = todo.pop()
            if isinstance(value, cbor2.CBORTag):
                todo.append(value.value)
                continue
            if not isinstance(value, (list, dict, tuple, set, frozenset)) or not value:
                continue
            if id(value) in seen:
                return index
            seen.add(id(value))
            if isinstance(value, dict):
                todo.extend(value.keys())
                todo.extend(value.values())
            else:
                todo.extend(value)
    return None


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
    def error(self) -> CborDecodeError | None:
        """Invalid CBOR found after the items a call already returned: the next call raises
        it. A consumer that has handed those items out raises it now rather than waiting for a
        chunk that may never come."""
        return self._error

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
        items: list[Any] = []
        if self._buf:  # an item cut at the end of the last chunk: resume its scan
            self._buf += chunk
            if self._scan() is None:
                return items
            data = bytes(self._buf)
            self._buf.clear()
        elif not chunk:
            return items
        else:
            data = chunk if type(chunk) is bytes else _as_bytes(chunk)
        try:
            self._decode(data, items)
        except CborDecodeError as exc:
            if not items:
                raise
            self._error = exc
        if any(head in data for head in _SHAREABLE_HEADS):
            shared = _first_shared(items)
            if shared is not None:
                del items[shared:]
                self._buf.clear()
                self._error = CborDecodeError(
                    "CBOR value sharing (tags 28/29) is refused: it can make an item cyclic "
                    "or exponentially large")
                if not items:
                    self._raise_pending()
        return items

    def _decode(self, data: bytes, items: list[Any]) -> None:
        """Decode the items of ``data`` into ``items``; keep a cut last item for later."""
        fp = io.BytesIO(data)
        size = len(data)
        start = 0
        decoder = cbor2.CBORDecoder(fp)
        append = items.append
        tell = fp.tell
        while start < size:
            try:
                if _DECODER_PER_ITEM:
                    decoder = cbor2.CBORDecoder(fp)
                item = decoder.decode()
                if item is _BREAK:
                    raise ValueError("break code encountered where a data item was expected")
                append(item)
            except Exception as exc:  # cbor2's own, or of a tag's decoder (OverflowError...)
                # Cut by the end of the chunk, or invalid: the scan tells which.
                self._buf = bytearray(memoryview(data)[start:])
                self._pos = 0
                self._stack.clear()
                if self._scan() is None:
                    return  # the rest of the item will follow
                raise CborDecodeError(f"invalid CBOR item: {exc}") from exc
            start = tell()

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


def _as_bytes(chunk: Any) -> bytes:
    """A chunk's bytes; ``bytes(n)`` of an int would be ``n`` zero bytes, decoded as items."""
    if not isinstance(chunk, (bytearray, memoryview)):
        raise TypeError(f"a chunk must be bytes, bytearray or memoryview, not "
                        f"{type(chunk).__name__}")
    return bytes(chunk)
