"""The engine's span ring decodes frames when read and drops the ones pushed out unread."""

from __future__ import annotations

import json

from iii_rx.engine.workers.span_store import SpanStore


def frame(*names: str, service: str = "svc") -> bytes:
    """An ``OTLP`` frame of one span per name (span ids from the names)."""
    spans = [{"traceId": "ab" * 16, "spanId": f"{i:016x}", "name": name, "kind": 2,
              "startTimeUnixNano": "1000", "endTimeUnixNano": "2000",
              "events": [{"name": "e", "timeUnixNano": "1500", "attributes": []}]}
             for i, name in enumerate(names, 1)]
    return b"OTLP" + json.dumps({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name",
                                     "value": {"stringValue": service}}]},
        "scopeSpans": [{"scope": {"name": "s"}, "spans": spans}]}]}).encode()


# A frame that claims one span (its key is there) and does not decode.
BROKEN = b'OTLP{"resourceSpans": [{"startTimeUnixNano": '


class Store:
    def __init__(self, max_spans: int) -> None:
        self.errors: list[ValueError] = []
        self.store = SpanStore(max_spans, self.errors.append)

    def names(self) -> list[str]:
        return [s["name"] for s in self.store.records()]


def test_spans_are_decoded_when_read_in_arrival_order() -> None:
    s = Store(10)
    s.store.add(frame("a", "b"))
    s.store.add(frame("c"))
    assert s.names() == ["a", "b", "c"]
    (first, *_) = s.store.records()
    assert first["service_name"] == "svc" and first["events"][0]["name"] == "e"
    s.store.add(frame("d"))
    assert s.names() == ["a", "b", "c", "d"]


def test_the_ring_keeps_the_last_max_spans() -> None:
    s = Store(3)
    s.store.add(frame("a", "b"))
    s.store.add(frame("c", "d"))
    s.store.add(frame("e"))
    assert s.names() == ["c", "d", "e"]
    s.store.add(frame("f", "g", "h", "i"))
    assert s.names() == ["g", "h", "i"]


def test_decoded_spans_are_pushed_out_by_later_frames() -> None:
    s = Store(3)
    s.store.add(frame("a", "b", "c"))
    assert s.names() == ["a", "b", "c"]
    s.store.add(frame("d"))
    assert s.names() == ["b", "c", "d"]
    s.store.add(frame("e", "f", "g"))
    assert s.names() == ["e", "f", "g"]


def test_a_frame_pushed_out_unread_is_never_decoded() -> None:
    s = Store(2)
    s.store.add(BROKEN)
    s.store.add(frame("a", "b"))
    assert s.names() == ["a", "b"]
    assert s.errors == []  # the broken frame left the ring before anyone read it


def test_a_broken_frame_is_rejected_when_read() -> None:
    s = Store(10)
    s.store.add(frame("a"))
    s.store.add(BROKEN)
    s.store.add(frame("b"))
    assert s.errors == []
    assert s.names() == ["a", "b"]
    assert len(s.errors) == 1 and "not JSON" in str(s.errors[0])


def test_a_frame_without_spans_is_decoded_at_once() -> None:
    s = Store(10)
    s.store.add(b"OTLP{not json")
    assert len(s.errors) == 1
    s.store.add(b'OTLP{"resourceSpans": []}')
    assert len(s.errors) == 1 and s.names() == []


def test_clear_drops_decoded_and_pending_spans() -> None:
    s = Store(10)
    s.store.add(frame("a"))
    s.names()
    s.store.add(frame("b"))
    s.store.clear()
    assert s.names() == []
    s.store.add(frame("c"))
    assert s.names() == ["c"]


def test_waiting_frames_are_bounded_in_bytes() -> None:
    """Past ``max_pending_bytes`` the oldest waiting frame is decoded at once (a frame may be
    large and hold one span): the order and the ring stay the same."""
    errors: list[ValueError] = []
    small = frame("a")
    store = SpanStore(10, errors.append, max_pending_bytes=2 * len(small))
    store.add(BROKEN)
    assert errors == []  # waiting
    store.add(frame("b"))
    store.add(frame("c"))  # over the budget: the oldest (BROKEN) is decoded now
    assert len(errors) == 1
    store.add(frame("d"))
    assert [s["name"] for s in store.records()] == ["b", "c", "d"]
    assert len(errors) == 1


def test_the_ring_bound_holds_across_eager_and_lazy_decoding() -> None:
    for budget in (len(frame("a", "b")), 1 << 20):  # decoded at once by size, or on read
        store = SpanStore(3, [].append, max_pending_bytes=budget)
        for name in "abcdefg":
            store.add(frame(name))
            waiting = store._pending  # the byte count is what waits, after every drop
            assert store._pending_bytes == sum(len(f) for f, _ in waiting)
        assert [s["name"] for s in store.records()] == ["e", "f", "g"]
