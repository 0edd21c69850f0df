"""batch: count, bytes and time limits, in virtual time."""

from __future__ import annotations

import asyncio

import pytest
import reactivex
from reactivex.subject import Subject
from reactivex.testing import ReactiveTest, TestScheduler

from iii_rx.operators import batch

on_next, on_completed, on_error = (
    ReactiveTest.on_next, ReactiveTest.on_completed, ReactiveTest.on_error
)


def run(messages: list, **limits: object) -> list:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(*messages)
    return scheduler.start(lambda: source.pipe(batch(**limits))).messages


def test_count_limit() -> None:
    out = run([on_next(210, 1), on_next(220, 2), on_next(230, 3), on_completed(300)], max_items=2)
    assert out == [on_next(220, [1, 2]), on_next(300, [3]), on_completed(300)]


def test_bytes_limit_never_exceeded_except_by_one_large_item() -> None:
    items = [b"aaaa", b"bbbb", b"cccc", b"x" * 25, b"dd", b"eeeeeeee"]
    out = run([on_next(210 + i, item) for i, item in enumerate(items)] + [on_completed(300)],
              max_bytes=10)
    assert out == [
        on_next(212, [b"aaaa", b"bbbb"]),  # adding cccc would make 12 > 10
        on_next(213, [b"cccc"]),  # the oversized item starts a batch of its own...
        on_next(213, [b"x" * 25]),  # ...and goes out alone at once
        on_next(215, [b"dd", b"eeeeeeee"]),  # exactly 10: full
        on_completed(300),
    ]


def test_time_limit_counts_from_first_item_of_a_batch() -> None:
    out = run([on_next(210, 1), on_next(220, 2), on_next(300, 3), on_completed(400)], max_delay=50)
    assert out == [on_next(260, [1, 2]), on_next(350, [3]), on_completed(400)]


def test_whichever_limit_comes_first() -> None:
    out = run(
        [on_next(210, 1), on_next(211, 2), on_next(212, 3), on_next(300, 4), on_completed(500)],
        max_items=2, max_delay=30,
    )
    # 1,2 by count; 3 by time (212 + 30); 4 by time (300 + 30)
    assert out == [on_next(211, [1, 2]), on_next(242, [3]), on_next(330, [4]), on_completed(500)]


def test_no_empty_batches_and_a_count_flush_cancels_the_timer() -> None:
    out = run([on_next(210, 1), on_next(220, 2), on_next(400, 3), on_completed(1000)],
              max_items=2, max_delay=50)
    # the timer of the first batch (due 260) must not emit an empty or a partial batch
    assert out == [on_next(220, [1, 2]), on_next(450, [3]), on_completed(1000)]


def test_pending_batch_goes_out_before_an_error() -> None:
    boom = ValueError("boom")
    out = run([on_next(210, 1), on_error(220, boom)], max_items=5)
    assert out == [on_next(220, [1]), on_error(220, boom)]


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="at least one"):
        batch()
    with pytest.raises(ValueError, match="max_items"):
        batch(max_items=0)
    with pytest.raises(ValueError, match="max_delay"):
        batch(max_delay=-1)


async def test_default_timer_runs_on_the_asyncio_loop() -> None:
    loop = asyncio.get_running_loop()
    got: asyncio.Future[tuple[list[int], bool]] = loop.create_future()
    subject: Subject[int] = Subject()

    def deliver(value: list[int]) -> None:
        import threading

        if not got.done():
            got.set_result((value, threading.current_thread() is threading.main_thread()))

    subject.pipe(batch(max_delay=0.01)).subscribe(deliver)
    subject.on_next(7)
    value, on_loop_thread = await asyncio.wait_for(got, 5)
    assert value == [7]
    assert on_loop_thread


def test_disposal_stops_everything() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(on_next(210, 1), on_next(500, 2))
    results = scheduler.start(lambda: source.pipe(batch(max_delay=100)), disposed=250)
    assert results.messages == []
    assert source.subscriptions == [ReactiveTest.subscribe(200, 250)]


def test_cold_source_with_reactivex_of() -> None:
    got: list[list[int]] = []
    reactivex.of(1, 2, 3, 4, 5).pipe(batch(max_items=2)).subscribe(got.append)
    assert got == [[1, 2], [3, 4], [5]]
