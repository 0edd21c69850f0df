"""decode_cbor and decode_json_lines over arbitrary chunking; truncation is detected."""

from __future__ import annotations

import random

import cbor2
import pytest
import reactivex

from iii_rx.channels.cborseq import CborSequenceDecoder, encode_item
from iii_rx.channels.errors import CborDecodeError, TruncatedStreamError
from iii_rx.errors import IIIError
from iii_rx.operators import JsonLinesDecodeError, decode_cbor, decode_json_lines

ITEMS = [
    0, -1, 2**70, 1.5, "héllo", b"\x00" * 70_000, None, True, [1, [2, [3]]],
    {"a": {"b": [b"x", "y"]}}, cbor2.CBORTag(4242, "tagged"), [], {}, "",
]


def chunks_of(data: bytes, rng: random.Random) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        n = rng.randint(1, 9000)
        out.append(data[i : i + n])
        i += n
    return out


def collect(observable: reactivex.Observable) -> tuple[list, Exception | None]:
    values: list = []
    errors: list[Exception] = []
    observable.subscribe(values.append, errors.append)
    return values, (errors[0] if errors else None)


@pytest.mark.parametrize("seed", range(5))
def test_cbor_items_survive_any_chunking(seed: int) -> None:
    data = b"".join(encode_item(item) for item in ITEMS)
    # Indefinite-length containers and strings are valid CBOR too (other encoders use them).
    data += bytes.fromhex("9f0102ff") + bytes.fromhex("5f4261624163ff")
    chunks = chunks_of(data, random.Random(seed))
    values, error = collect(reactivex.from_iterable(chunks).pipe(decode_cbor()))
    assert error is None
    assert values == [*ITEMS, [1, 2], b"abc"]


def test_cbor_stream_cut_inside_an_item_raises() -> None:
    data = encode_item({"k": b"v" * 1000}) + encode_item([1, 2, 3])
    values, error = collect(reactivex.of(data[:-1]).pipe(decode_cbor()))
    assert values == [{"k": b"v" * 1000}]
    assert isinstance(error, TruncatedStreamError)
    assert "inside a CBOR item" in str(error)


def test_cbor_every_cut_point_is_told_apart_from_a_clean_end() -> None:
    one, two = encode_item({"n": [1, "two", b"3"]}), encode_item(4.5)
    data = one + two
    for cut in range(1, len(data)):
        decoder = CborSequenceDecoder()
        decoder.feed(data[:cut])
        if cut == len(one):
            decoder.finish()  # between two items: a clean end
        else:
            with pytest.raises(TruncatedStreamError):
                decoder.finish()


def test_invalid_cbor_is_an_error_not_a_hang() -> None:
    _, error = collect(reactivex.of(b"\x1c").pipe(decode_cbor()))  # reserved additional info
    assert isinstance(error, CborDecodeError)


def test_json_lines() -> None:
    text = '{"a": 1}\r\n\n[1, 2]\n"é"\n3'
    data = text.encode()
    chunks = [data[i : i + 3] for i in range(0, len(data), 3)]
    values, error = collect(reactivex.from_iterable(chunks).pipe(decode_json_lines()))
    assert error is None
    assert values == [{"a": 1}, [1, 2], "é", 3]


def test_json_lines_accepts_text_chunks() -> None:
    values, _ = collect(reactivex.of('{"x":', ' 1}\n', '2\n').pipe(decode_json_lines()))
    assert values == [{"x": 1}, 2]


def test_json_lines_cut_last_line_raises() -> None:
    values, error = collect(reactivex.of(b'1\n{"a": ').pipe(decode_json_lines()))
    assert values == [1]
    assert isinstance(error, TruncatedStreamError)


def test_json_lines_bad_line_names_its_number() -> None:
    values, error = collect(reactivex.of(b"1\n2\nnope\n4\n").pipe(decode_json_lines()))
    assert values == [1, 2]
    assert isinstance(error, ValueError) and "line 3" in str(error)
    assert isinstance(error, JsonLinesDecodeError) and isinstance(error, IIIError)
