"""The notebook traps' parts that need no kernel (in a kernel: tests/notebooks/
test_kernel_traps.py): outside a kernel a second handler is refused saying what to do and
connect_sync() replaces nothing; the per-cell registry closes only what an earlier run of the
same cell opened."""

from __future__ import annotations

import gc
from typing import Any

import pytest

import iii_rx
from iii_rx.notebook import Cell, CellClients, current_cell, in_kernel


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
