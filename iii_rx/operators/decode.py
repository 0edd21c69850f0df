"""``decode_cbor`` and ``decode_json_lines``: turn a stream of byte chunks into items.

Chunk boundaries mean nothing to either format: an item may span chunks and a chunk may hold
many items. Both detect a stream that ends inside an item and fail with
:class:`~iii_rx.channels.errors.TruncatedStreamError`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any, Protocol

from reactivex import Observable, abc
from reactivex.disposable import SingleAssignmentDisposable

from iii_rx.channels.cborseq import CborSequenceDecoder
from iii_rx.errors import JsonLinesDecodeError, TruncatedStreamError

__all__ = ["ChunkDecoder", "JsonLinesDecodeError", "JsonLinesDecoder", "decode_cbor",
           "decode_json_lines"]

Chunk = bytes | bytearray | memoryview | str


class ChunkDecoder(Protocol):
    """An incremental decoder: ``feed`` chunks, ``finish`` at the end of the stream."""

    def feed(self, chunk: Any) -> list[Any]: ...

    def finish(self) -> list[Any]: ...

    @property
    def error(self) -> Exception | None:
        """An error found after the items ``feed`` returned (its next call raises it)."""


class JsonLinesDecoder:
    """Incremental JSON Lines (one JSON value per ``\\n``-terminated line, UTF-8).

    ``\\r\\n`` endings and blank lines are accepted. A last line without a newline is decoded
    at the end; if it is not valid JSON the stream was cut inside it (``TruncatedStreamError``).
    Text chunks (``str``) are accepted too and encoded as UTF-8.
    """

    __slots__ = ("_buf", "_error", "_line")

    def __init__(self) -> None:
        self._buf = bytearray()  # the start of a line whose newline has not come yet
        self._error: JsonLinesDecodeError | None = None  # raised after the values before it
        self._line = 0  # lines decoded so far, for error messages

    def feed(self, chunk: Chunk) -> list[Any]:
        """Add ``chunk``; return the values of the lines it completed.

        A line that is not JSON raises :class:`JsonLinesDecodeError`; values of the lines
        before it in the same chunk are returned first and the error is raised by the next call.
        The complete lines of a chunk are decoded from UTF-8 at once and split in C, and the
        newline search covers only the new chunk, so a long line costs one pass.
        """
        if self._error is not None:
            raise self._error
        if isinstance(chunk, str):
            data: bytes | bytearray = chunk.encode()
        elif isinstance(chunk, (bytes, bytearray)):
            data = chunk
        elif isinstance(chunk, memoryview):
            data = bytes(chunk)
        else:  # bytes(n) of an int would be n zero bytes
            raise TypeError(f"a chunk must be bytes-like or str, not {type(chunk).__name__}")
        last = data.rfind(b"\n")
        if last < 0:
            self._buf += data
            return []
        if self._buf:
            self._buf += memoryview(data)[: last + 1]
            complete = bytes(self._buf)
            self._buf = bytearray(memoryview(data)[last + 1 :])
        else:
            complete = bytes(memoryview(data)[: last + 1])
            if last + 1 < len(data):
                self._buf += memoryview(data)[last + 1 :]
        values: list[Any] = []
        try:
            try:
                lines: list[Any] = complete.decode().split("\n")
            except UnicodeDecodeError:
                lines = complete.split(b"\n")  # each line then fails or passes on its own
            lines.pop()  # what follows the last newline: nothing
            for line in lines:
                self._parse(line, values)
        except JsonLinesDecodeError as exc:
            self._error = exc  # the lines after a bad one are not decoded: every call fails
            if not values:
                raise
        return values

    @property
    def error(self) -> JsonLinesDecodeError | None:
        """A bad line found after the values a ``feed`` returned (the next call raises it)."""
        return self._error

    def finish(self) -> list[Any]:
        """Decode a last line left without a newline; raise if it is incomplete."""
        if self._error is not None:
            raise self._error
        rest = bytes(self._buf)
        self._buf.clear()
        values: list[Any] = []
        if rest.strip():
            try:
                self._parse(rest, values)
            except JsonLinesDecodeError as exc:
                raise TruncatedStreamError(  # _parse counted the line it refused
                    f"the stream ended inside JSON line {self._line} "
                    f"({len(rest)} bytes without a newline that are not valid JSON)"
                ) from exc
        return values

    def _parse(self, line: str | bytes, values: list[Any]) -> None:
        self._line += 1
        if not line.strip():
            return
        try:
            values.append(json.loads(line))
        except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
            if isinstance(line, str):  # as bytes, json also reads a BOM or UTF-16/32
                with contextlib.suppress(ValueError, RecursionError):
                    values.append(json.loads(line.encode()))
                    return
            raise JsonLinesDecodeError(f"JSON line {self._line} is not valid JSON: {exc}") from exc


class _CborDecoder:
    """Adapts :class:`CborSequenceDecoder` to :class:`ChunkDecoder`."""

    __slots__ = ("_inner",)

    def __init__(self) -> None:
        self._inner = CborSequenceDecoder()

    def feed(self, chunk: bytes | bytearray | memoryview) -> list[Any]:
        return self._inner.feed(chunk)

    def finish(self) -> list[Any]:
        self._inner.finish()
        return []

    @property
    def error(self) -> Exception | None:
        return self._inner.error


def _decode_with(
    make_decoder: Callable[[], ChunkDecoder],
) -> Callable[[Observable[Any]], Observable[Any]]:
    def _decode(source: Observable[Any]) -> Observable[Any]:
        def subscribe(
            observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            decoder = make_decoder()
            upstream = SingleAssignmentDisposable()
            failed = False

            def fail(error: Exception) -> None:
                nonlocal failed
                failed = True
                upstream.dispose()
                observer.on_error(error)

            def on_next(chunk: Any) -> None:
                if failed:
                    return
                try:
                    values = decoder.feed(chunk)
                except Exception as exc:
                    fail(exc)
                    return
                for value in values:
                    observer.on_next(value)
                if decoder.error is not None:  # bad data after those values: fail now
                    fail(decoder.error)

            def on_completed() -> None:
                if failed:
                    return
                try:
                    values = decoder.finish()
                except Exception as exc:
                    fail(exc)
                    return
                for value in values:
                    observer.on_next(value)
                observer.on_completed()

            def on_error(error: Exception) -> None:
                if not failed:
                    observer.on_error(error)

            upstream.disposable = source.subscribe(
                on_next, on_error, on_completed, scheduler=scheduler
            )
            return upstream

        return Observable(subscribe)

    return _decode


def decode_cbor() -> Callable[[Observable[Any]], Observable[Any]]:
    """Byte chunks carrying a CBOR sequence (RFC 8742) -> the decoded items, in order.

    This is the format of ``ChannelWriter.write_obj``; see docs/channels.md.
    """
    return _decode_with(_CborDecoder)


def decode_json_lines() -> Callable[[Observable[Any]], Observable[Any]]:
    """Byte (or text) chunks carrying JSON Lines -> one decoded value per line, in order."""
    return _decode_with(JsonLinesDecoder)
