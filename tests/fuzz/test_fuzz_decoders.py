"""Channel decoders (CBOR sequence, JSON lines) in every public form: bad bytes in any
chunking give a typed ``IIIError`` and nothing else; good items survive any chunking.

Forms: ``iii_rx.channels.CborSequenceDecoder`` / ``iii_rx.operators.JsonLinesDecoder``
(``feed``/``finish``), the Rx operators ``decode_cbor()`` / ``decode_json_lines()`` and the
async iterators ``cbor_items()`` / ``json_lines()``; the three must agree. Over a real channel:
``ChannelReader.objects()`` (see ``test_channel_reader_objects_on_garbage``).
"""

from __future__ import annotations

import asyncio
import json
import math

import pytest
from fuzz_strategies import (
    CBOR_SNIPPETS,
    cbor_items,
    cbor_streams,
    cuts,
    dumps,
    fuzz_settings,
    json_values,
    jsonl_streams,
)
from fuzz_support import LoopThread, Msg, iter_chunks
from fuzz_targets import EngineEnv, check_cbor, check_json_lines
from hypothesis import assume, given
from hypothesis import strategies as st

import iii_rx
from iii_rx.channels import CborSequenceDecoder, encode_item
from iii_rx.errors import CborDecodeError, IIIError, TruncatedStreamError
from iii_rx.operators import JsonLinesDecoder


def chunked(data: bytes, offsets: list[int]) -> list[Msg]:
    return [Msg(chunk) for chunk in iter_chunks(data, offsets)]


@fuzz_settings(150)
@given(cbor_streams, cuts)
def test_cbor_bad_bytes_raise_only_typed_errors(data: bytes, offsets: list[int]) -> None:
    check_cbor(chunked(data, offsets))


@fuzz_settings(80)
@given(st.lists(cbor_items(), min_size=1, max_size=5), cuts)
def test_cbor_items_survive_any_chunking(items: list, offsets: list[int]) -> None:
    data = b"".join(encode_item(item) for item in items)
    decoder = CborSequenceDecoder()
    out = []
    for chunk in iter_chunks(data, [o % (len(data) + 1) for o in offsets]):
        out += decoder.feed(chunk)
    decoder.finish()
    assert out == items


@fuzz_settings(50)
@given(st.lists(cbor_items(), min_size=1, max_size=3), st.integers(min_value=1))
def test_cbor_cut_inside_an_item_is_truncated(items: list, cut: int) -> None:
    data = b"".join(encode_item(item) for item in items)
    last = len(encode_item(items[-1]))
    assume(last > 1)
    keep = len(data) - 1 - cut % (last - 1)  # keep 1..last-1 bytes of the last item
    decoder = CborSequenceDecoder()
    decoder.feed(data[:keep])
    with pytest.raises(TruncatedStreamError):
        decoder.finish()


@pytest.mark.parametrize("snippet", CBOR_SNIPPETS, ids=lambda s: s[:6].hex())
def test_cbor_snippets(snippet: bytes) -> None:
    check_cbor([Msg(snippet)])
    check_cbor([Msg(snippet[i:i + 1]) for i in range(min(len(snippet), 64))]
               + [Msg(snippet[64:])])


def test_cbor_100000_nested_arrays_is_a_typed_error() -> None:
    decoder = CborSequenceDecoder()
    with pytest.raises(CborDecodeError):
        decoder.feed(b"\x81" * 100_000 + b"\x00")


@fuzz_settings(150)
@given(jsonl_streams, cuts)
def test_json_lines_bad_bytes_raise_only_typed_errors(data: bytes, offsets: list[int]) -> None:
    check_json_lines(chunked(data, offsets))


def _finite(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    return True


@fuzz_settings(80)
@given(st.lists(json_values.filter(_finite), min_size=1, max_size=5), cuts, st.booleans())
def test_json_lines_survive_any_chunking(values: list, offsets: list[int], crlf: bool) -> None:
    end = b"\r\n" if crlf else b"\n"
    data = b"".join(dumps(v).encode() + end for v in values)
    decoder = JsonLinesDecoder()
    out = []
    for chunk in iter_chunks(data, [o % (len(data) + 1) for o in offsets]):
        out += decoder.feed(chunk)
    out += decoder.finish()
    assert out == json.loads(json.dumps(values))


def test_json_lines_cut_inside_a_line_is_truncated() -> None:
    decoder = JsonLinesDecoder()
    assert decoder.feed(b'{"a": 1}\n{"b": [1, 2') == [{"a": 1}]
    with pytest.raises(TruncatedStreamError):
        decoder.finish()


# ---------------------------------------------------------------------- over a real channel


GARBAGE_STREAMS = [b"\xff\xfe\xfd", b"\x81" * 100_000 + b"\x00", b"\xc0\x01",
                   encode_item({"ok": 1}) + b"\x1f", encode_item([1, 2, 3])[:-1],
                   b"\x7f\x41a\xff", b"\x62\xff\xfe"]


@pytest.mark.parametrize("payload", GARBAGE_STREAMS, ids=lambda p: p[:4].hex())
def test_channel_reader_objects_on_garbage(loop: LoopThread, engine_env: EngineEnv,
                                           payload: bytes) -> None:
    """Bad CBOR written to a real channel: ``reader.objects()`` raises a typed error after
    the items before it, and the engine keeps serving."""

    async def scenario() -> tuple[list, BaseException | None]:
        async with iii_rx.connect(engine_env.engine.url, name=None,
                                  connect_timeout=10) as iii:
            channel = await iii.create_channel_async()
            items: list = []
            error: BaseException | None = None

            async def write() -> None:
                async with channel.writer as writer:
                    for start in range(0, len(payload), 4096):
                        await writer.write(payload[start:start + 4096])

            writing = asyncio.ensure_future(write())
            try:
                async for item in channel.reader.objects():
                    items.append(item)
            except Exception as exc:
                error = exc
            finally:
                await channel.reader.close()
            await asyncio.wait_for(writing, 10)
            return items, error

    items, error = loop.run(scenario(), 60)
    assert error is not None, items
    assert isinstance(error, IIIError), repr(error)
    loop.run(engine_env.healthy(), 60)
