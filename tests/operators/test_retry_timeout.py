"""retry_backoff and timeout, in virtual time."""

from __future__ import annotations

import math
from typing import Any

import pytest
import reactivex
from reactivex import Observable
from reactivex.testing import ReactiveTest, TestScheduler

from iii_rx.errors import IIIInvocationError, IIITimeoutError
from iii_rx.operators import is_retryable, retry_backoff, retrying, timeout
from iii_rx.operators.retry import Backoff

on_next, on_completed, on_error = (
    ReactiveTest.on_next, ReactiveTest.on_completed, ReactiveTest.on_error
)

STOPPED = IIIInvocationError("invocation_stopped", "worker went away")
FAILED = IIIInvocationError("invocation_failed", "handler raised")


def flaky(scheduler: TestScheduler, errors: list[Exception], calls: list[float]) -> Observable[str]:
    """A lazy 'call': each subscription is one attempt; fails with the next error, then answers."""

    def attempt(_: object) -> Observable[str]:
        calls.append(scheduler.clock)
        if len(calls) <= len(errors):
            return reactivex.throw(errors[len(calls) - 1])
        return reactivex.of("ok")

    return reactivex.defer(attempt)


def test_retries_timeouts_and_stopped_calls_with_growing_delays() -> None:
    scheduler = TestScheduler()
    calls: list[float] = []
    errors = [IIITimeoutError("TIMEOUT", "slow"), STOPPED]
    results = scheduler.start(
        lambda: flaky(scheduler, errors, calls).pipe(
            retry_backoff(max_attempts=3, initial_delay=10, max_delay=100, jitter=0)
        )
    )
    assert calls == [200, 210, 230]  # waits 10 then 20
    assert results.messages == [on_next(230, "ok"), on_completed(230)]


def test_delay_is_capped_by_max_delay() -> None:
    scheduler = TestScheduler()
    calls: list[float] = []
    errors = [STOPPED] * 4
    scheduler.start(
        lambda: flaky(scheduler, errors, calls).pipe(
            retry_backoff(max_attempts=5, initial_delay=10, max_delay=25, jitter=0)
        )
    )
    assert calls == [200, 210, 230, 255, 280]


def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    scheduler = TestScheduler()
    calls: list[float] = []
    last = IIITimeoutError("TIMEOUT", "third")
    errors: list[Exception] = [STOPPED, STOPPED, last, STOPPED]
    results = scheduler.start(
        lambda: flaky(scheduler, errors, calls).pipe(
            retry_backoff(max_attempts=3, initial_delay=1, jitter=0)
        )
    )
    assert len(calls) == 3
    assert results.messages == [on_error(203, last)]


def test_non_retryable_errors_pass_at_once() -> None:
    scheduler = TestScheduler()
    calls: list[float] = []
    results = scheduler.start(
        lambda: flaky(scheduler, [FAILED], calls).pipe(retry_backoff(max_attempts=5))
    )
    assert calls == [200]
    assert results.messages == [on_error(200, FAILED)]


def test_retry_on_accepts_exception_classes() -> None:
    scheduler = TestScheduler()
    calls: list[float] = []
    results = scheduler.start(
        lambda: flaky(scheduler, [KeyError("k")], calls).pipe(
            retry_backoff(initial_delay=5, jitter=0, retry_on=KeyError)
        )
    )
    assert calls == [200, 205]
    assert results.messages == [on_next(205, "ok"), on_completed(205)]


def test_default_policy() -> None:
    assert is_retryable(IIITimeoutError("TIMEOUT", "x"))
    assert is_retryable(TimeoutError())
    assert is_retryable(STOPPED)
    assert not is_retryable(FAILED)
    assert not is_retryable(IIIInvocationError("function_not_found", "x"))
    assert not is_retryable(ValueError())


def test_jitter_stays_within_its_band() -> None:
    low = Backoff(1.0, 100.0, 0.25, 2.0, random=lambda: 0.0)
    high = Backoff(1.0, 100.0, 0.25, 2.0, random=lambda: 1.0)
    assert low.delay(3) == pytest.approx(3.0)  # 4 * 0.75
    assert high.delay(3) == pytest.approx(5.0)  # 4 * 1.25
    assert Backoff(1.0, 4.5, 0.5, 2.0, random=lambda: 1.0).delay(3) == 4.5  # capped after jitter


def test_disposing_during_the_wait_cancels_the_next_attempt() -> None:
    scheduler = TestScheduler()
    calls: list[float] = []
    scheduler.start(
        lambda: flaky(scheduler, [STOPPED], calls).pipe(
            retry_backoff(initial_delay=100, max_delay=1000, jitter=0)
        ),
        disposed=250,
    )
    assert calls == [200]


def test_timeout_raises_the_typed_error() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(on_next(210, 1), on_next(240, 2), on_next(400, 3))
    results = scheduler.start(lambda: source.pipe(timeout(50)))
    assert results.messages[:2] == [on_next(210, 1), on_next(240, 2)]
    (failure,) = results.messages[2:]
    assert failure.time == 290
    error = failure.value.exception
    assert isinstance(error, IIITimeoutError) and error.code == "TIMEOUT"
    assert "50" in error.message


def test_timeout_then_retry_backoff_resubscribes() -> None:
    scheduler = TestScheduler()
    calls: list[float] = []

    def attempt(_: object) -> Observable[str]:
        calls.append(scheduler.clock)
        if len(calls) == 1:
            return reactivex.never()  # the first call hangs
        return reactivex.of("late but fine")

    results = scheduler.start(
        lambda: reactivex.defer(attempt).pipe(
            timeout(30), retry_backoff(max_attempts=2, initial_delay=5, jitter=0)
        )
    )
    assert calls == [200, 235]
    assert results.messages == [on_next(235, "late but fine"), on_completed(235)]


def test_retrying_for_ever_keeps_the_max_delay_past_float_range() -> None:
    """``multiplier ** attempt`` leaves the float range at attempt ~1025 (2x): the delay stays
    ``max_delay``, and ``max_attempts=math.inf`` retries on (it raised into the source)."""
    backoff = Backoff(0.1, 10.0, 0.0, 2.0, lambda: 0.5)
    assert [backoff.delay(n) for n in (1, 2, 1025, 10**6)] == [0.1, 0.2, 10.0, 10.0]
    assert Backoff(0.1, 10.0, 0.0, 2, lambda: 0.5).delay(5000) == 10.0  # int multiplier
    scheduler = TestScheduler()
    calls: list[float] = []
    results = scheduler.start(
        lambda: flaky(scheduler, [STOPPED] * 1100, calls).pipe(
            retry_backoff(max_attempts=math.inf, initial_delay=0.001, max_delay=0.001,
                          jitter=0, multiplier=2.0)),
        disposed=10**9)
    assert len(calls) == 1101
    assert [m.value.kind for m in results.messages] == ["N", "C"]


def test_a_scheduling_failure_fails_the_stream() -> None:
    def broken_random() -> float:
        raise RuntimeError("no entropy")

    errors: list[Exception] = []
    reactivex.throw(STOPPED).pipe(retry_backoff(random=broken_random)).subscribe(
        on_error=errors.append)
    assert [str(e) for e in errors] == ["no entropy"]


def test_attempt_counts_and_factories_are_checked_when_made() -> None:
    with pytest.raises(TypeError, match="max_attempts must be a number, got str"):
        retry_backoff(max_attempts="3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_attempts must be >= 1"):
        retry_backoff(max_attempts=math.nan)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="multiplier"):
        retry_backoff(multiplier=math.nan)

    async def pages() -> Any:
        yield 1

    with pytest.raises(TypeError, match=r"retrying needs a factory .* got async_generator"):
        retrying(pages())  # type: ignore[arg-type]
