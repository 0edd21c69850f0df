"""The notebook traps' parts that need no kernel (in a kernel: tests/notebooks/
test_kernel_traps.py): outside a kernel a second handler is refused saying what to do and
connect_sync() replaces nothing; the per-cell registry closes only what an earlier run of the
same cell opened."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest
from reactivex.subject import Subject

import iii_rx
from iii_rx.notebook import Cell, CellClients, current_cell, in_kernel
from iii_rx.operators import batch, retry_backoff, timeout


def test_outside_a_kernel_a_second_handler_is_refused_saying_what_to_do(name: str) -> None:
    with iii_rx.connect_sync(name=name) as iii:
        handle = iii.register_function("nb::f", lambda data: 1)
        with pytest.raises(ValueError, match=r"'nb::f' is already registered by this client: "
                                             r"call unregister\(\) on the handle"):
            iii.register_function("nb::f", lambda data: 2)
        assert iii.trigger("nb::f").result(timeout=10) == 1
        handle.unregister()
        iii.register_function("nb::f", lambda data: 2)
        assert iii.trigger("nb::f").result(timeout=10) == 2


def test_outside_a_kernel_nothing_is_a_cell(name: str) -> None:
    assert not in_kernel() and current_cell() is None
    with iii_rx.connect_sync(name=name) as first, iii_rx.connect_sync(name=f"{name}-2") as second:
        assert not first.closed and not second.closed   # two clients of a script: both live


class FakeClient:
    def __init__(self) -> None:
        self.closed = False
        self.name = "w"
        self.url = "ws://127.0.0.1:1"


def test_the_registry_returns_only_an_earlier_run_s_open_client() -> None:
    registry = CellClients()
    first, again = Cell("cell-a", 3), Cell("cell-a", 4)
    client: Any = FakeClient()
    registry.remember(first, client)
    assert registry.previous(Cell("cell-a", 3)) is None      # the same run (a loop): kept
    assert registry.previous(Cell("cell-b", 4)) is None      # another cell: not touched
    assert registry.previous(again) is client                 # the cell ran again
    assert registry.previous(again) is None                   # handed over once
    registry.remember(again, client)
    client.closed = True
    assert registry.previous(Cell("cell-a", 5)) is None       # closed by the user already
    other: Any = FakeClient()
    registry.remember(first, other)
    del other
    gc.collect()
    assert registry.previous(again) is None                   # held weakly: gone is gone
    with pytest.warns(UserWarning, match=r"connect_sync\(\) ran again in this cell: closing "
                                         r"the client its earlier run opened \(worker 'w'"):
        CellClients.warn_replacing(client, "connect_sync()")


def test_a_piped_single_s_timers_run_while_a_cell_blocks_on_it(name: str) -> None:
    """A cell (a loop running on the main thread, as a kernel's) blocked in ``result()`` on a
    piped Single: its ``timeout`` and its retry's backoff run on the client's loop, not on the
    kernel's loop the cell holds (the retry stood still until ``result`` gave up)."""
    with iii_rx.connect_sync(name=name) as iii:
        calls: list[Any] = []

        def flaky(data: Any) -> str:
            calls.append(data)
            if len(calls) == 1:
                raise RuntimeError("the first call fails")
            return "ok"

        iii.register_function("nb::flaky", flaky)

        async def cell() -> Any:
            return iii.trigger("nb::flaky").pipe(
                timeout(5), retry_backoff(initial_delay=0.05, retry_on=iii_rx.IIIInvocationError)
            ).result(timeout=5)

        assert asyncio.run(cell()) == "ok"
        assert len(calls) == 2


def test_a_cell_blocked_on_a_call_does_not_freeze_a_time_batch_of_an_earlier_cell(
        name: str) -> None:
    """A ``batch`` with a time limit subscribed in one cell arms its timers on the kernel's
    loop; items arriving on the client's loop while a later cell blocks replace those timers.
    Disposing one waited for the kernel's loop, held by the cell: the client froze, and the
    cell's own call was never answered."""
    with iii_rx.connect_sync(name=name) as iii:
        source: Subject[int] = Subject()
        batches: list[list[int]] = []

        async def feed(count: int) -> str:  # on the client's loop
            for i in range(count):
                source.on_next(i)
            return "fed"

        iii.register_function("nb::feed", feed)

        async def kernel() -> Any:
            source.pipe(batch(max_items=2, max_delay=30)).subscribe(batches.append)  # cell 1
            return iii.trigger("nb::feed", 5).result(timeout=5)  # cell 2

        assert asyncio.run(kernel()) == "fed"
        assert batches == [[0, 1], [2, 3]]
