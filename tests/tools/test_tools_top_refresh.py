"""``iii-rx top``'s refresh costs in proportion to the rows that changed, not to all rows: at
1,000 workers it re-read every row's metrics and rebuilt every row each second (a quarter of
a core at 2,000). What it shows stays what a fresh dashboard shows."""

from __future__ import annotations

from typing import Any

import pytest

from iii_rx.tools import rows as rows_module
from iii_rx.tools.rows import FunctionRow, WorkerRow
from iii_rx.tools.top import TopApp
from iii_rx.topology import FunctionInfo, Topology, WorkerInfo
from iii_rx.topology._frozen import freeze_mapping

SIZE = (150, 45)
_WORKERS = 50


def _scene(at: float, engine_calls: int, busy_calls: int = 5) -> Topology:
    """Fresh row objects each time, as every poll of the engine makes: ``_WORKERS`` idle
    workers with two counted functions each, one busy function, and the engine's own row
    whose counter moves (the dashboard's own discovery calls)."""
    def counted(calls: int) -> Any:
        return freeze_mapping({"metrics": {"invocations": calls, "errors": 0,
                                           "p50_ms": 0.1, "p99_ms": 2.0}})

    workers = [WorkerInfo(id=f"id-{i}", name=f"w{i}", runtime="python", function_count=2)
               for i in range(_WORKERS)]
    workers.append(WorkerInfo(id="iii-engine", name="iii-engine", runtime="engine",
                              extra=counted(engine_calls)))
    functions = [FunctionInfo(function_id=f"w{i}::f{j}", worker_name=f"w{i}",
                              extra=counted(busy_calls if (i, j) == (0, 0) else 5))
                 for i in range(_WORKERS) for j in range(2)]
    return Topology.of(workers, functions, (), (), taken_at=at)


class Counts:
    """How often the pure row code ran: metrics read from rows, cells made."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.metrics = 0
        self.cells = 0
        read = rows_module.metrics_of

        def metrics_of(extra: Any) -> Any:
            self.metrics += 1
            return read(extra)

        monkeypatch.setattr(rows_module, "metrics_of", metrics_of)
        for kind in (WorkerRow, FunctionRow):
            monkeypatch.setattr(kind, "cells", self._counting(kind.cells))

    def _counting(self, cells: Any) -> Any:
        def counted(row: Any, totals: bool = False) -> Any:
            self.cells += 1
            return cells(row, totals)
        return counted

    def take(self) -> tuple[int, int]:
        taken = (self.metrics, self.cells)
        self.metrics = self.cells = 0
        return taken


def _shown(app: TopApp) -> dict[str, list[tuple[str, ...]]]:
    return {t: app.table_cells(t) for t in ("workers", "functions", "triggers")}


async def test_a_refresh_redoes_only_the_rows_that_changed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    counts = Counts(monkeypatch)
    app = TopApp(url="ws://test", tick=None)
    async with app.run_test(size=SIZE) as pilot:
        app.show(_scene(1000.0, 1), now=1000.0)
        app.show(_scene(1001.0, 2), now=1001.0)
        for second in range(1002, 1010):  # every rate settles (the window is 5 s)
            app.refresh_rates(now=float(second))
        counts.take()

        app.refresh_rates(now=1010.0)  # the tick: same snapshot, nothing moved
        assert counts.take() == (0, 0)

        # A poll: every row a fresh but equal object, but the engine's and one function's
        # counters moved: their rows (and the busy function's owner's) are made again.
        app.show(_scene(1011.0, 3, busy_calls=9), now=1011.0)
        metrics, cells = counts.take()
        assert metrics == 2 and cells <= 3, (metrics, cells)
        await pilot.pause()
        shown = _shown(app)

    fresh = TopApp(url="ws://test", tick=None)  # what a dashboard shows that never refreshed
    async with fresh.run_test(size=SIZE):
        fresh._worker_rates, fresh._function_rates = app._worker_rates, app._function_rates
        fresh.show(_scene(1011.0, 3, busy_calls=9), now=1011.0)
        assert _shown(fresh) == shown
