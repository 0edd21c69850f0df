"""Operators fed from two threads (the source's and a timer's) never hold the source's thread
while their observer blocks on the other: a subscriber waiting there for a call's answer would
otherwise freeze the client's loop, which that answer needs."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from reactivex.scheduler import TimeoutScheduler
from reactivex.subject import Subject

from iii_rx.operators import batch, rate_limit

TIMER = TimeoutScheduler.singleton()


def _flat(emitted: list[Any]) -> list[Any]:
    return [x for item in emitted for x in (item if isinstance(item, list) else [item])]


@pytest.mark.parametrize(("operator", "first"), [
    (lambda: batch(max_items=3, max_delay=0.01, scheduler=TIMER), ["a"]),
    (lambda: rate_limit(per_second=50, scheduler=TIMER), ["a", "b"]),
], ids=["batch", "rate_limit"])
def test_an_observer_blocked_on_the_timer_thread_does_not_hold_the_source(
        operator: Callable[[], Any], first: list[str]) -> None:
    source: Subject[str] = Subject()
    main = threading.get_ident()
    blocked, release, done = threading.Event(), threading.Event(), threading.Event()
    emitted: list[Any] = []

    def observe(value: Any) -> None:
        emitted.append(value)
        if threading.get_ident() != main and not blocked.is_set():
            blocked.set()  # the timer's emission: block it as a waiting subscriber would
            release.wait(10)

    source.pipe(operator()).subscribe(observe, on_completed=done.set)
    for item in first:
        source.on_next(item)
    assert blocked.wait(5)
    pusher = threading.Thread(target=lambda: (source.on_next("c"), source.on_next("d"),
                                              source.on_completed()))
    pusher.start()
    pusher.join(2)
    source_was_free = not pusher.is_alive()
    release.set()
    pusher.join()
    assert source_was_free  # before: it waited at the operator's lock for the observer
    assert done.wait(5)
    assert _flat(emitted) == [*first, "c", "d"]


def test_a_size_of_that_raises_fails_the_stream_after_the_pending_batch() -> None:
    """As reactivex's ``map``: the error goes downstream, not into the source (a hot source,
    an ``iii.subscribe`` stream say, would lose the subscriber without a word)."""
    source: Subject[Any] = Subject()
    emitted: list[Any] = []
    errors: list[Exception] = []
    source.pipe(batch(max_bytes=10)).subscribe(emitted.append, errors.append)
    source.on_next("abc")
    source.on_next(5)  # len(5) raises
    source.on_next("de")
    assert emitted == [["abc"]]
    assert [type(e) for e in errors] == [TypeError]
    assert not source.observers  # unsubscribed


def test_a_reentrant_source_keeps_the_order() -> None:
    """An observer that feeds the source again (same thread, while being called): its item
    comes after the batch being emitted, not inside it."""
    source: Subject[int] = Subject()
    emitted: list[list[int]] = []

    def observe(items: list[int]) -> None:
        emitted.append(items)
        if items == [1, 2]:
            source.on_next(3)
            source.on_next(4)

    source.pipe(batch(max_items=2)).subscribe(observe)
    source.on_next(1)
    source.on_next(2)
    assert emitted == [[1, 2], [3, 4]]
