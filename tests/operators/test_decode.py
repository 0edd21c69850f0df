"""decode_cbor and decode_json_lines over arbitrary chunking; truncation is detected."""

from __future__ import annotations

import json
import random
from typing import Any

import cbor2
import pytest
import reactivex
from reactivex.subject import Subject

from iii_rx.channels.cborseq import CborSequenceDecoder, encode_item
from iii_rx.channels.errors import CborDecodeError, TruncatedStreamError
from iii_rx.errors import IIIError
from iii_rx.operators import JsonLinesDecodeError, JsonLinesDecoder, decode_cbor, decode_json_lines

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


# ---------------------------------------------------------- whole chunks to the C decoders


def test_cbor_items_cut_at_every_chunk_end_come_out_once_in_order() -> None:
    items = [{"n": i, "s": "x" * (i % 7)} for i in range(2000)]
    data = b"".join(encode_item(item) for item in items)
    decoder = CborSequenceDecoder()
    out: list = []
    for size in (1, 2, 3, 5, 64, 1000):  # chunk sizes that cut items everywhere
        out.clear()
        decoder = CborSequenceDecoder()
        for i in range(0, len(data), size):
            out += decoder.feed(data[i : i + size])
            assert decoder.pending < 64  # only the cut item waits, never the whole stream
        decoder.finish()
        assert out == items


def test_cbor_indefinite_length_items_cut_anywhere_wait_for_their_break() -> None:
    """Another encoder may write indefinite-length arrays, maps and strings (ours does not):
    a cut inside one is told apart from bad data and waits for the rest."""
    data = (b"\x9f\x01\x82\x02\x03\xff"      # [_ 1, [2, 3]]
            b"\xbf\x61a\x9f\xff\xff"            # {_ "a": [_ ]}
            b"\x7f\x62ab\x61c\xff"              # (_ "ab", "c")
            b"\x5f\x41\x01\xff")                # (_ h'01')
    items = [[1, [2, 3]], {"a": []}, "abc", b"\x01"]
    for cut in range(1, len(data)):
        decoder = CborSequenceDecoder()
        out = decoder.feed(data[:cut]) + decoder.feed(data[cut:])
        decoder.finish()
        assert out == items, cut


def test_cbor_a_large_item_over_many_chunks_waits_then_decodes() -> None:
    big = {"blob": b"\x01" * 3_000_000, "list": list(range(50_000))}
    data = encode_item(big) + encode_item("after")
    decoder = CborSequenceDecoder()
    out: list = []
    for i in range(0, len(data), 65536):
        out += decoder.feed(memoryview(data)[i : i + 65536])  # memoryview chunks too
    decoder.finish()
    assert out == [big, "after"]


def test_cbor_items_before_a_bad_one_come_first_then_the_error_stays() -> None:
    decoder = CborSequenceDecoder()
    good = encode_item([1, 2])
    assert decoder.feed(good + b"\x1c" + good) == [[1, 2]]
    for _ in range(2):
        with pytest.raises(CborDecodeError):
            decoder.feed(good)
    with pytest.raises(CborDecodeError):
        decoder.finish()


def test_cbor_a_bad_item_completed_by_a_later_chunk_is_an_error() -> None:
    bad = b"\x62\xff\xfe"  # a 2-byte text string that is not UTF-8
    decoder = CborSequenceDecoder()
    assert decoder.feed(encode_item(1) + bad[:2]) == [1]  # cut: it waits
    with pytest.raises(CborDecodeError):
        decoder.feed(bad[2:] + encode_item(2))


def test_cbor_an_error_of_a_tag_decoder_is_a_cbor_decode_error() -> None:
    huge_exponent = b"\xc4\x82\x1b\xff\xff\xff\xff\xff\xff\xff\xff\x01"  # decimal fraction
    with pytest.raises(CborDecodeError):
        CborSequenceDecoder().feed(huge_exponent)


def test_json_lines_a_long_line_over_many_chunks() -> None:
    line = json.dumps({"k": "v" * 200_000}).encode() + b"\n"
    decoder = JsonLinesDecoder()
    out: list = []
    for i in range(0, len(line) * 2, 1000):
        out += decoder.feed((line * 2)[i : i + 1000])
    assert out == [{"k": "v" * 200_000}] * 2 and decoder.finish() == []


def test_json_lines_other_encodings_json_reads_from_bytes_still_decode() -> None:
    values, error = collect(reactivex.of(b'\xef\xbb\xbf{"bom": 1}\n2\n').pipe(decode_json_lines()))
    assert error is None and values == [{"bom": 1}, 2]


def test_json_lines_a_bad_line_fails_every_later_call() -> None:
    decoder = JsonLinesDecoder()
    assert decoder.feed(b"1\nnope\n3\n") == [1]
    for _ in range(2):
        with pytest.raises(JsonLinesDecodeError, match="line 2"):
            decoder.feed(b"4\n")
    with pytest.raises(JsonLinesDecodeError):
        decoder.finish()


@pytest.mark.parametrize(("operator", "chunk"), [
    (decode_json_lines, b'{"ok": 1}\n{oops\n'),
    (decode_cbor, encode_item({"ok": 1}) + b"\xff"),
], ids=["json_lines", "cbor"])
def test_bad_data_after_good_items_in_a_chunk_fails_at_once(operator: Any, chunk: bytes) -> None:
    """The error follows the good items of the same chunk, not the next chunk (on a live
    channel that may never come: the consumer waited for ever)."""
    source: Subject[bytes] = Subject()
    events: list[Any] = []
    source.pipe(operator()).subscribe(events.append, lambda e: events.append(type(e)))
    source.on_next(chunk)
    assert events[0] == {"ok": 1}
    assert events[1:] in ([JsonLinesDecodeError], [CborDecodeError])


@pytest.mark.parametrize("operator", [decode_json_lines, decode_cbor])
def test_a_chunk_that_is_not_bytes_is_refused(operator: Any) -> None:
    """``bytes(7)`` is seven zero bytes: ints (iterating a bytes object gives them) were
    decoded as zeros."""
    errors: list[Exception] = []
    reactivex.from_iterable(b"\x81\x07").pipe(operator()).subscribe(on_error=errors.append)
    assert [type(e) for e in errors] == [TypeError]
    assert "int" in str(errors[0])
