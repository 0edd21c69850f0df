"""``iii-rx top`` run headlessly under textual's pilot, against an engine and made-up scenes."""

from __future__ import annotations

import asyncio
import html
import os
import re
from collections.abc import Callable
from typing import Any

import pytest
from textual.widgets import DataTable
from tools_helpers import WAIT, unique_name

import iii_rx
from iii_rx.engine import Engine
from iii_rx.state import ConnectionState
from iii_rx.tools.rows import FUNCTION_COLUMNS, WORKER_COLUMNS
from iii_rx.tools.source import ClientSource
from iii_rx.tools.top import TopApp
from iii_rx.topology import FunctionInfo, RegisteredTrigger, Topology, TopologyStream, WorkerInfo

SIZE = (150, 45)
W = {c.key: i for i, c in enumerate(WORKER_COLUMNS)}
F = {c.key: i for i, c in enumerate(FUNCTION_COLUMNS)}


def row(app: TopApp, table: str, first: str) -> tuple[str, ...] | None:
    """The row of ``table`` whose first cell is ``first``."""
    return next((r for r in app.table_cells(table) if r[0] == first), None)


def cell(app: TopApp, table: str, first: str, column: int) -> str | None:
    found = row(app, table, first)
    return found[column] if found is not None else None


async def test_a_worker_appears_shows_its_load_and_goes(engine: Engine) -> None:
    name = unique_name("calc")
    async with iii_rx.connect(engine.url, name=unique_name("viewer")) as viewer:
        app = TopApp(ClientSource(viewer, TopologyStream(viewer, poll_interval=0.2)))
        async with app.run_test(size=SIZE) as pilot:
            await app.wait_until(lambda: app.snapshot is not None, WAIT)
            assert app.state is ConnectionState.CONNECTED
            assert row(app, "workers", viewer.name) is None  # the tool leaves itself out

            gate = asyncio.Event()

            async def slow(data: Any) -> dict[str, Any]:
                await gate.wait()
                return {"ok": True}

            worker = await iii_rx.connect(engine.url, name=name)
            worker.register_function("calc::slow", slow, description="waits")
            await app.wait_until(lambda: row(app, "functions", "calc::slow") is not None, WAIT)
            await app.wait_until(lambda: cell(app, "workers", name, W["pid"]) != "", WAIT)
            shown = row(app, "workers", name)
            assert shown is not None
            assert (shown[W["namespace"]], shown[W["runtime"]], shown[W["pid"]],
                    shown[W["functions"]], shown[W["active"]]) == (
                "default", "python", str(os.getpid()), "1", "0")
            assert row(app, "functions", "calc::slow")[F["owner"]] == name  # type: ignore[index]

            # Under load the row follows the engine's counters: in flight, then calls/s
            # when the engine sends metrics (blank, and nothing else, when it does not).
            calls = [asyncio.ensure_future(viewer.trigger("calc::slow", {})) for _ in range(3)]
            await app.wait_until(lambda: cell(app, "workers", name, W["active"]) == "3", WAIT)
            gate.set()
            assert await asyncio.gather(*calls) == [{"ok": True}] * 3
            await app.wait_until(lambda: cell(app, "workers", name, W["active"]) == "0", WAIT)
            # Our engine sends metrics on worker and function rows: both rates fill in.
            await app.wait_until(
                lambda: cell(app, "workers", name, W["rate"]) not in ("", "0"), WAIT)
            await app.wait_until(
                lambda: cell(app, "functions", "calc::slow", F["rate"]) not in ("", "0"), WAIT)
            await app.wait_until(
                lambda: cell(app, "functions", "calc::slow", F["p50"]) != "", WAIT)

            await worker.aclose()
            await app.wait_until(lambda: row(app, "workers", name) is None, WAIT)
            assert row(app, "functions", "calc::slow") is None
            log = "\n".join(app.log_lines())
            assert f"+ worker {name} (python, namespace default) from 127.0.0.1" in log
            assert "+ function calc::slow [default] by " + name in log
            assert log.index("- function calc::slow") < log.index(f"- worker {name}")

            await pilot.press("q")
        assert app.return_code == 0


async def test_pids_of_many_workers_cost_a_few_redraws_not_one_each(engine: Engine) -> None:
    """Each worker's pid comes from its own ``engine::workers::info`` answer, and each answer
    redrew every table: with 1,000 workers, 1,000 redraws of 1,000 rows (quadratic; the pids
    took minutes to show and top took a core meanwhile). Answers now share one redraw."""
    count = 40
    workers = [await iii_rx.connect(engine.url, name=unique_name("many"))
               for _ in range(count)]
    try:
        async with iii_rx.connect(engine.url, name=unique_name("viewer")) as viewer:
            app = TopApp(ClientSource(viewer, TopologyStream(viewer, poll_interval=None)),
                         tick=None)
            renders = 0
            render = app._render_tables

            def counted(now: float | None = None) -> None:
                nonlocal renders
                renders += 1
                render(now)

            app._render_tables = counted  # type: ignore[method-assign]
            async with app.run_test(size=SIZE):
                await app.wait_until(lambda: all(
                    cell(app, "workers", w.name, W["pid"]) == str(os.getpid())
                    for w in workers), WAIT)
            assert renders <= 10, renders
    finally:
        await asyncio.gather(*(w.aclose() for w in workers))


async def test_engine_restart_shows_the_connection_state(engine: Engine) -> None:
    port = engine.port
    reconnect = iii_rx.ReconnectConfig(initial_delay_ms=50, max_delay_ms=200)
    async with iii_rx.connect(engine.url, name=unique_name("viewer"),
                              reconnect=reconnect) as viewer:
        app = TopApp(ClientSource(viewer, TopologyStream(viewer, poll_interval=0.2)))
        async with app.run_test(size=SIZE):
            await app.wait_until(lambda: app.snapshot is not None, WAIT)
            await engine.stop()
            await app.wait_until(lambda: app.state is ConnectionState.RECONNECTING, WAIT)
            status = str(app.query_one("#status").render())
            assert "reconnecting" in status and "last known state" in status
            async with Engine(port=port, namespace_grace_ms=300):
                await app.wait_until(lambda: app.state is ConnectionState.CONNECTED, WAIT)
                assert "connection reconnecting" in "\n".join(app.log_lines())


def _scene(at: float, calls: int | None, *, errors: int = 0) -> Topology:
    """Two workers in two namespaces; metrics in the rows when ``calls`` is given."""
    metrics: dict[str, Any] = {} if calls is None else {
        "invocations": calls, "errors": errors, "p50_ms": 1.5, "p99_ms": 12.25}
    return Topology.of(
        workers=[
            WorkerInfo.from_row({"id": "w1", "name": "orders", "namespace": "default",
                                 "runtime": "python", "function_count": 1, "pid": 4242,
                                 "ip_address": "127.0.0.1", **metrics}),
            WorkerInfo.from_row({"id": "w2", "name": "billing", "namespace": "shop",
                                 "runtime": "node", "function_count": 1}),
            WorkerInfo.from_row({"id": "iii-state", "name": "iii-state", "runtime": "engine",
                                 "function_count": 1}),
        ],  # type: ignore[list-item]
        functions=[
            FunctionInfo(function_id="orders::place", worker_name="orders",
                         extra=WorkerInfo.from_row({"id": "x", **metrics}).extra),  # type: ignore[union-attr]
            FunctionInfo(function_id="billing::charge", namespace="shop", worker_name="billing"),
            FunctionInfo(function_id="state::get", worker_name="iii-state"),
        ],
        triggers=[RegisteredTrigger(id="t1", trigger_type="http", function_id="orders::place",
                                    worker_name="orders", config_summary='{"api_path":"o"}')],
        taken_at=at,
    )


async def test_metric_columns_are_rates_when_the_engine_counts_and_blank_otherwise() -> None:
    app = TopApp(url="ws://test", tick=None)
    async with app.run_test(size=SIZE):
        app.show(_scene(1000.0, 100, errors=2), now=1000.0)
        assert cell(app, "workers", "orders", W["rate"]) == ""  # one sample: no rate yet
        app.show(_scene(1001.0, 150, errors=3), now=1001.0)
        orders = row(app, "workers", "orders")
        assert orders is not None
        assert (orders[W["rate"]], orders[W["errors"]], orders[W["pid"]]) == ("50.0", "3", "4242")
        place = row(app, "functions", "orders::place")
        assert place is not None
        assert (place[F["rate"]], place[F["p50"]], place[F["p99"]], place[F["errors"]],
                place[F["triggers"]]) == ("50.0", "1.50", "12.2", "3", "1")
        app.refresh_rates(now=1010.0)  # no call for longer than the window: the rate falls to 0
        assert cell(app, "workers", "orders", W["rate"]) == "0"
        with_metrics = app.table_cells("workers")

    plain = TopApp(url="ws://test", tick=None)
    async with plain.run_test(size=SIZE):
        plain.show(_scene(1000.0, None), now=1000.0)
        plain.show(_scene(1001.0, None), now=1001.0)
        rows = plain.table_cells("workers")
        for metric in ("rate", "errors"):
            assert [r[W[metric]] for r in rows] == ["", "", ""]
        for metric in ("rate", "p50", "p99", "errors"):
            assert [r[F[metric]] for r in plain.table_cells("functions")] == ["", "", ""]
        # Everything but the metric cells is the same as with metrics.
        strip = [i for c, i in W.items() if c not in ("rate", "errors")]
        assert [[r[i] for i in strip] for r in rows] == [[r[i] for i in strip]
                                                         for r in with_metrics]


async def test_keys_filter_by_namespace_sort_and_quit() -> None:
    app = TopApp(url="ws://test", tick=None, clock=lambda: 1001.0)
    async with app.run_test(size=SIZE) as pilot:
        app.show(_scene(1000.0, 10), now=1000.0)
        # The engine's own workers come last; e hides them and what they own.
        assert [r[0] for r in app.table_cells("workers")] == ["billing", "orders", "iii-state"]
        await pilot.press("e")
        assert [r[0] for r in app.table_cells("workers")] == ["billing", "orders"]
        assert [r[0] for r in app.table_cells("functions")] == ["billing::charge",
                                                                "orders::place"]
        assert "engine rows hidden" in str(app.query_one("#status").render())
        await pilot.press("n")
        assert app.namespace == "default"
        assert [r[0] for r in app.table_cells("workers")] == ["orders"]
        assert [r[0] for r in app.table_cells("functions")] == ["orders::place"]
        await pilot.press("n")
        assert [r[0] for r in app.table_cells("workers")] == ["billing"]
        assert app.table_cells("triggers") == []
        await pilot.press("n")
        assert app.namespace is None and len(app.table_cells("workers")) == 2
        await pilot.press("s")  # by calls: the busy one first
        app.show(_scene(1001.0, 60), now=1001.0)
        assert app.sort == "calls"
        assert [r[0] for r in app.table_cells("workers")] == ["orders", "billing"]
        await pilot.press("r")
        assert [r[0] for r in app.table_cells("workers")] == ["billing", "orders"]
        assert "sort: calls (reversed)" in str(app.query_one("#status").render())
        await pilot.press("q")
    assert app.return_code == 0


async def test_the_screenshot_is_an_svg_of_what_is_shown() -> None:
    app = TopApp(url="ws://127.0.0.1:49134", tick=None)
    async with app.run_test(size=SIZE) as pilot:
        app.show_state(ConnectionState.CONNECTED)
        app.show(_scene(1000.0, 10), now=1000.0)
        await pilot.pause()  # let the screen repaint before exporting it
        svg = app.export_screenshot(title="iii-rx top")
    assert svg.lstrip().startswith("<svg")
    text = html.unescape("".join(re.findall(r">([^<]*)</text>", svg)))
    for shown in ("● connected  ws://127.0.0.1:49134", "orders::place", "billing::charge",
                  "4242", "CALLS/S", '{"api_path":"o"}', "q Quit"):
        assert shown in text.replace("\xa0", " ")


async def test_the_last_known_state_note_shows_on_an_80_column_terminal() -> None:
    """The note came at the end of the status line, cut off below ~133 columns."""
    app = TopApp(url="ws://127.0.0.1:49134", tick=None)
    async with app.run_test(size=(80, 30)) as pilot:
        app.show_state(ConnectionState.CONNECTED)
        app.show(_scene(1000.0, 10), now=1000.0)
        app.show_state(ConnectionState.RECONNECTING)
        await pilot.pause()
        svg = app.export_screenshot()
    text = html.unescape("".join(re.findall(r">([^<]*)</text>", svg))).replace("\xa0", " ")
    assert "● reconnecting (last known state)  ws://127.0.0.1:49134" in text


async def test_cells_update_in_place_and_widths_follow_the_widest_cell(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Rates change every second in every row: each narrowed cell given ``update_width=True``
    made textual re-measure its whole column (a sixth of a core with 224 functions). Only
    the cells that set a column's new width are measured now, and widths stay right."""
    measured: list[int] = []
    original = DataTable._update_column_widths

    def spy(table: DataTable[Any], cells: set[Any]) -> None:
        measured.append(len(cells))
        original(table, cells)

    monkeypatch.setattr(DataTable, "_update_column_widths", spy)
    count = len(FUNCTION_COLUMNS)

    def rows(rate: Callable[[int], str]) -> list[tuple[str, tuple[str, ...], bool]]:
        return [(f"f{i}", (f"fn::{i}", "default", "w", "0", rate(i), "", "", "0"), False)
                for i in range(100)]

    def widths(app: TopApp) -> list[int]:
        table = app.query_one("#functions", DataTable)
        return [c.content_width for c in table.ordered_columns]

    app = TopApp(url="ws://test", tick=None)
    async with app.run_test(size=SIZE) as pilot:
        app._fill("functions", rows(lambda i: f"{i}.5"))
        await pilot.pause()
        wide = widths(app)
        app._fill("functions", rows(lambda i: f"{i + 1}.5"))  # 100 cells, same widths
        app._fill("functions", rows(lambda i: f"{i + 2}.5"))
        await pilot.pause()
        assert widths(app) == wide
        assert sum(measured) <= count, measured
        app._fill("functions", rows(lambda i: "1234567.5" if i == 7 else "0"))  # wider
        await pilot.pause()
        assert widths(app)[4] == len("1234567.5")
        app._fill("functions", rows(lambda i: "0"))  # narrower: back to the header's width
        await pilot.pause()
        assert widths(app)[4] == len(FUNCTION_COLUMNS[4].title)
        assert app.table_cells("functions")[7][4] == "0"


async def test_ctrl_c_quits_with_the_interrupted_status() -> None:
    """As every other command: Ctrl-C quits (textual's own Ctrl-C only asked to press
    ctrl+q) and the status is 130."""
    app = TopApp(url="ws://test", tick=None)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+c")
    assert app.return_code == 130
