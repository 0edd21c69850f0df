"""rate_limit: spacing in virtual time, nothing dropped."""

from __future__ import annotations

import pytest
from reactivex.testing import ReactiveTest, TestScheduler

from iii_rx.operators import rate_limit
from iii_rx.operators.rate import TokenBucket

on_next, on_completed, on_error = (
    ReactiveTest.on_next, ReactiveTest.on_completed, ReactiveTest.on_error
)


def test_items_are_spaced_and_completion_waits_for_them() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        on_next(210, "a"), on_next(210, "b"), on_next(210, "c"), on_completed(211)
    )
    results = scheduler.start(lambda: source.pipe(rate_limit(per_second=0.1)))  # 1 per 10 ticks
    assert results.messages == [
        on_next(210, "a"), on_next(220, "b"), on_next(230, "c"), on_completed(230)
    ]


def test_burst_lets_several_through_then_spaces() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(*(on_next(210, i) for i in range(4)))
    results = scheduler.start(lambda: source.pipe(rate_limit(per_second=0.1, burst=2)))
    assert [m.time for m in results.messages] == [210, 210, 220, 230]


def test_slow_items_are_not_delayed() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(on_next(210, 1), on_next(300, 2), on_next(400, 3))
    results = scheduler.start(lambda: source.pipe(rate_limit(per_second=0.1)))
    assert [m.time for m in results.messages] == [210, 300, 400]


def test_error_comes_after_the_waiting_items() -> None:
    scheduler = TestScheduler()
    boom = RuntimeError("boom")
    source = scheduler.create_hot_observable(on_next(210, 1), on_next(210, 2), on_error(212, boom))
    results = scheduler.start(lambda: source.pipe(rate_limit(per_second=0.1)))
    assert results.messages == [on_next(210, 1), on_next(220, 2), on_error(220, boom)]


def test_bucket_arithmetic_and_validation() -> None:
    bucket = TokenBucket(per_second=2.0, burst=1)
    assert bucket.take(0.0) == 0.0
    assert bucket.take(0.0) == pytest.approx(0.5)
    assert bucket.take(0.5) == 0.0
    with pytest.raises(ValueError):
        rate_limit(0)
    with pytest.raises(ValueError):
        rate_limit(1, burst=0)
