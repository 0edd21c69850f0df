"""A Single dropped unused warns, like a coroutine never awaited; any use silences it."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import reactivex
from reactivex import operators as ops

import iii_rx
from iii_rx import Single
from iii_rx.engine import Engine

NEVER = "was never awaited, blocked on or subscribed"


def _never_used(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record
            if issubclass(w.category, RuntimeWarning) and NEVER in str(w.message)]


@pytest.fixture
def caught() -> Iterator[list[warnings.WarningMessage]]:
    """Every warning raised while the test runs, collected after a full gc."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        yield record
        gc.collect()


class Counter:
    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, data: Any) -> Any:
        with self.lock:
            self.calls += 1
        return data


async def test_a_dropped_trigger_warns_with_its_function_and_sends_nothing(
        engine: Engine, name: str, caught: list[warnings.WarningMessage]) -> None:
    async with iii_rx.connect(engine.url, name=name) as iii:
        counter = Counter()
        iii.register_function("warn::echo", counter)
        iii.trigger("warn::echo", 1)          # the mistake: the Single is dropped at once
        gc.collect()
        ours = [w for w in caught if NEVER in str(w.message)]
        assert len(ours) == 1 and ours[0].category is RuntimeWarning
        message = str(ours[0].message)
        assert message.startswith("Single for trigger('warn::echo') was never awaited")
        assert "nothing was sent" in message
        assert ours[0].filename.endswith("single.py")  # one place: filterable by module
        assert await iii.trigger("warn::echo", 2) == 2    # the engine saw only this call
        assert counter.calls == 1
        assert iii.pending_calls == 0


async def test_a_piped_single_never_used_warns_and_the_source_does_not(
        engine: Engine, name: str, caught: list[warnings.WarningMessage]) -> None:
    async with iii_rx.connect(engine.url, name=name) as iii:
        iii.register_function("warn::echo", lambda d: d)
        piped = iii.trigger("warn::echo", 1).pipe(ops.map(lambda v: v + 1))
        del piped
        gc.collect()
        assert _never_used(caught) == [
            f"Single for trigger('warn::echo') | 1 operator(s) {NEVER}: nothing was sent "
            "(a trigger is lazy: use `await`, `.result()` or `.subscribe()`)"]


UseAsync = Callable[[Single[Any]], Any]


async def _await(single: Single[Any]) -> Any:
    return await single


async def _subscribe(single: Single[Any]) -> Any:
    got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    single.subscribe(got.set_result)
    return await got


async def _future(single: Single[Any]) -> Any:
    return await asyncio.wrap_future(single.future())


async def _result(single: Single[Any]) -> Any:
    return await asyncio.to_thread(single.result, 5)


async def _piped(single: Single[Any]) -> Any:
    return await single.pipe(ops.map(lambda v: v))


async def _via_rx(single: Single[Any]) -> Any:
    got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    reactivex.concat(single).pipe(ops.to_list()).subscribe(got.set_result)
    return await got


@pytest.mark.parametrize("use", [_await, _subscribe, _future, _result, _piped, _via_rx])
async def test_every_use_silences_it(engine: Engine, name: str, use: UseAsync,
                                     caught: list[warnings.WarningMessage]) -> None:
    async with iii_rx.connect(engine.url, name=name) as iii:
        iii.register_function("warn::echo", lambda d: d)
        assert await use(iii.trigger("warn::echo", 7)) in (7, [7])
        gc.collect()
        assert _never_used(caught) == []


def test_blocking_use_from_a_sync_client_silences_it_and_a_drop_warns(
        name: str, caught: list[warnings.WarningMessage]) -> None:
    with iii_rx.connect_sync(name=name) as iii:   # its own embedded engine
        iii.register_function("warn::echo", lambda d: d)
        assert iii.trigger("warn::echo", 3).result(timeout=5) == 3
        assert iii.trigger("warn::echo", 4).future().result(5) == 4
        gc.collect()
        assert _never_used(caught) == []
        unused = iii.trigger("warn::echo", 5)
        del unused
        gc.collect()
        assert len(_never_used(caught)) == 1


async def test_mark_used_silences_a_deliberate_drop(
        engine: Engine, name: str, caught: list[warnings.WarningMessage]) -> None:
    async with iii_rx.connect(engine.url, name=name) as iii:
        single = iii.trigger("warn::echo", 1)
        assert repr(single) == ("<Single trigger('warn::echo') (lazy, not sent yet: await it "
                                "or call .result())>")   # what a notebook cell displays
        assert single.mark_used() is single
        assert repr(single) == "<Single trigger('warn::echo')>"
        del single
        gc.collect()
        assert _never_used(caught) == []


def test_a_single_whose_construction_failed_does_not_warn(
        caught: list[warnings.WarningMessage]) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Single(None)  # type: ignore[arg-type]
    gc.collect()
    assert _never_used(caught) == []


async def test_as_an_error_it_is_reported_as_unraisable(engine: Engine, name: str) -> None:
    """Under ``-W error::RuntimeWarning`` the warning reaches ``sys.unraisablehook`` (as an
    un-awaited coroutine's does): a test run in that mode finds every dropped Single."""
    seen: list[BaseException | None] = []
    previous = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: seen.append(unraisable.exc_value)
    try:
        async with iii_rx.connect(engine.url, name=name) as iii:
            with warnings.catch_warnings():
                warnings.simplefilter("error", RuntimeWarning)
                iii.trigger("warn::echo")
                gc.collect()
    finally:
        sys.unraisablehook = previous
    ours = [e for e in seen if isinstance(e, RuntimeWarning) and NEVER in str(e)]
    assert len(ours) == 1 and "trigger('warn::echo')" in str(ours[0])
