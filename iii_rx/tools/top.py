"""``iii-rx top``: a live terminal dashboard of an engine, built on textual.

It shows the connection state, the workers, the functions and the registered triggers of one
engine, and a scrolling log of the topology changes. Everything comes from one
:class:`~iii_rx.tools.source.TopSource`: snapshots (the topology stream refreshes within tens
of milliseconds of an engine event, and re-reads the lists every ``--poll`` seconds, so a
change shows within a second), connection states, and one ``engine::workers::info`` call per
new worker for its pid. Metric columns are computed from counters in the rows when the engine
sends them (:mod:`iii_rx.tools.metrics`) and blank otherwise; a one-second tick re-reads the
rates so that they fall back to zero when the calls stop.

textual because it runs headlessly under a test pilot (``App.run_test``) and exports SVG
screenshots, so the dashboard is tested like the rest of the package.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import signal
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar, Generic, TypeVar

from rich.cells import cell_len
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.timer import Timer
from textual.widgets import DataTable, Footer, RichLog, Static

from iii_rx.errors import IIIError
from iii_rx.state import ConnectionState, ReconnectConfig
from iii_rx.tools.common import EXIT_INTERRUPTED, EXIT_USAGE, one_line, open_client, run
from iii_rx.tools.metrics import RateTracker
from iii_rx.tools.rows import (
    FUNCTION_COLUMNS,
    SORTS,
    TRIGGER_COLUMNS,
    WORKER_COLUMNS,
    Column,
    Rows,
    RowsMemo,
    Sort,
    build_rows,
    without_workers,
)
from iii_rx.tools.source import ClientSource, TopSource
from iii_rx.topology import Topology, TopologyStream, WorkerInfo, diff
from iii_rx.topology.events import (
    FunctionAdded,
    FunctionRemoved,
    TopologyChange,
    TriggerAdded,
    TriggerRemoved,
    TriggerTypeAdded,
    TriggerTypeRemoved,
    WorkerConnected,
    WorkerDisconnected,
    WorkerUpdated,
)

__all__ = ["TopApp", "describe", "top"]

_STATE_STYLES = {
    ConnectionState.CONNECTED: "bold green",
    ConnectionState.CONNECTING: "bold yellow",
    ConnectionState.RECONNECTING: "bold yellow",
}
_LOG_LINES = 1000
_PID_REDRAW_S = 0.1
"""Pid answers arriving within this long share one redraw (one per answer is quadratic)."""


class TopApp(App[None]):
    """The dashboard. ``show(snapshot)`` and ``show_state(state)`` are what the source feeds;
    tests call them directly to drive exact scenes."""

    TITLE = "iii-rx top"
    CSS = """
    Screen { layout: vertical; }
    #status { height: 1; padding: 0 1; background: $panel; }
    DataTable { border: round $primary 50%; }
    DataTable:focus { border: round $accent; }
    #workers { height: auto; max-height: 35%; }
    #functions { height: 1fr; min-height: 6; }
    #triggers { height: auto; max-height: 20%; }
    RichLog { border: round $secondary 50%; height: 9; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "interrupt", "Quit", show=False, priority=True),
        Binding("n", "next_namespace", "Namespace"),
        Binding("s", "next_sort", "Sort"),
        Binding("r", "reverse", "Reverse"),
        Binding("e", "toggle_engine", "Engine rows"),
    ]

    def action_interrupt(self) -> None:
        """Ctrl-C quits, as it stops every other command (exit status 130)."""
        self.exit(return_code=EXIT_INTERRUPTED)

    def __init__(self, source: TopSource | None = None, *, url: str | None = None,
                 namespace: str | None = None, hide_engine: bool = False,
                 rate_window: float = 5.0,
                 tick: float | None = 1.0, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.source = source
        self.url = url or (source.url if source is not None else "")
        self.namespace = namespace
        """The namespace filter (``None``: every namespace)."""
        self.sort: Sort = "name"
        self.reverse = False
        self.hide_engine = hide_engine
        """Whether the engine's in-process workers, their functions and bindings are hidden."""
        self.state: ConnectionState = ConnectionState.CONNECTING
        self.snapshot: Topology | None = None
        self.rows: Rows | None = None
        self._rendered = asyncio.Event()
        self._tick = tick
        self._clock = clock
        """What "now" is for rates (tests pass a fixed one)."""
        self._worker_rates = RateTracker(rate_window)
        self._function_rates = RateTracker(rate_window)
        self._pids: dict[str, int] = {}
        self._pid_asked: set[str] = set()
        self._pid_redraw: Timer | None = None
        """The timer of the redraw that shows the pids answered since the last one."""
        self._shown: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
        self._shown_widths: dict[str, list[int]] = {}
        """Per table: its widest cell per column, as shown."""
        self._memo = RowsMemo()
        """Rows, metrics and tables of the last build: a refresh redoes the changed rows."""
        self._shown_tables: dict[str, tuple[Any, ...]] = {}
        """Per table: the rows it shows (the memo's tuple; the same one: nothing to redraw)."""
        self._cells = _Derived[tuple[str, ...]]()
        """Per table and row key: the cells of the row object shown."""
        self._cell_widths = _Derived[tuple[int, ...]]()
        """Per table and row key: the widths of the cells shown."""
        self.cells_made = 0
        """Rows whose cells were computed (tests: a refresh of unchanged rows makes none)."""

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield Static(id="status")
        for table_id, title, columns in (("workers", "Workers", WORKER_COLUMNS),
                                         ("functions", "Functions", FUNCTION_COLUMNS),
                                         ("triggers", "Triggers", TRIGGER_COLUMNS)):
            # No cursor: nothing is selected in a dashboard; arrows and the wheel scroll.
            table: DataTable[Any] = DataTable(id=table_id, cursor_type="none",
                                              zebra_stripes=True)
            table.border_title = title
            for column in columns:
                table.add_column(_header(column), key=column.key)
            yield table
        log = RichLog(id="log", max_lines=_LOG_LINES, wrap=False, markup=False)
        log.border_title = "Changes"
        yield log
        yield Footer()

    def on_mount(self) -> None:
        self._render_status()
        if self.source is not None:
            self.run_worker(self._follow_snapshots(), name="snapshots", exclusive=False)
            self.run_worker(self._follow_states(), name="states", exclusive=False)
        if self._tick is not None:
            self.set_interval(self._tick, self.refresh_rates)

    async def _follow_snapshots(self) -> None:
        assert self.source is not None
        try:
            async for snapshot in self.source.snapshots():
                self.show(snapshot)
        except IIIError as exc:  # the stream failed: say so, keep the last state on screen
            self._log_line(Text(f"the topology stream failed: {one_line(exc)}", style="red"))
        else:
            self._log_line(Text("the client closed", style="red"))

    async def _follow_states(self) -> None:
        assert self.source is not None
        async for state in self.source.states():
            self.show_state(state)

    # ------------------------------------------------------------------ feeding

    def show_state(self, state: ConnectionState) -> None:
        """Show a connection state (and log a change of it)."""
        if not self.is_running:  # shutting down: the widgets are going away
            return
        if (state is not self.state and self.snapshot is not None
                and self.state is not ConnectionState.CONNECTING):
            self._log_line(Text(f"connection {state.value}", style=_STATE_STYLES.get(state, "red")))
        self.state = state
        self._render_status()

    def show(self, snapshot: Topology, now: float | None = None) -> None:
        """Show a new snapshot: log its changes, look up new pids, redraw the tables."""
        if not self.is_running:
            return
        hidden = self.source.own_worker_ids if self.source is not None else frozenset()
        snapshot = without_workers(snapshot, hidden)
        previous, self.snapshot = self.snapshot, snapshot
        if previous is None:
            self._log_line(Text(f"watching {self.url}: {len(snapshot.workers)} workers, "
                           f"{len(snapshot.functions)} functions, "
                           f"{len(snapshot.triggers)} triggers", style="cyan"))
        else:
            for event in diff(previous, snapshot):
                self._log_line(describe(event))
        for worker in snapshot.workers:
            self._ask_pid(worker)
        self._render_tables(now)

    def refresh_rates(self, now: float | None = None) -> None:
        """Redraw with rates read at ``now`` (the one-second tick)."""
        if self.snapshot is not None and self.is_running:
            self._render_tables(now)

    def _ask_pid(self, worker: WorkerInfo) -> None:
        if (self.source is None or worker.builtin or worker.id in self._pid_asked
                or "pid" in worker.extra):
            return
        self._pid_asked.add(worker.id)
        self.run_worker(self._lookup_pid(worker), group="pids", exclusive=False)

    async def _lookup_pid(self, worker: WorkerInfo) -> None:
        assert self.source is not None
        try:
            pid = await self.source.pid(worker)
        except Exception:  # an engine without workers::info, a worker that left: no pid
            return
        if pid is not None:
            self._pids[worker.id] = pid
            if self._pid_redraw is None:
                self._pid_redraw = self.set_timer(_PID_REDRAW_S, self._show_pids)

    def _show_pids(self) -> None:
        self._pid_redraw = None
        self.refresh_rates()

    # ------------------------------------------------------------------ actions

    def action_next_namespace(self) -> None:
        """Cycle the filter: every namespace, then each namespace in turn."""
        names: list[str | None] = [None, *(self.rows.namespaces if self.rows else ())]
        index = names.index(self.namespace) if self.namespace in names else 0
        self.namespace = names[(index + 1) % len(names)]
        self.refresh_rates()
        self._render_status()

    def action_next_sort(self) -> None:
        self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
        self.refresh_rates()
        self._render_status()

    def action_toggle_engine(self) -> None:
        self.hide_engine = not self.hide_engine
        self.refresh_rates()
        self._render_status()

    def action_reverse(self) -> None:
        self.reverse = not self.reverse
        self.refresh_rates()
        self._render_status()

    # ------------------------------------------------------------------ drawing

    def _render_status(self) -> None:
        status = Text()
        status.append("● ", style=_STATE_STYLES.get(self.state, "bold red"))
        status.append(self.state.value, style=_STATE_STYLES.get(self.state, "bold red"))
        if self.state is not ConnectionState.CONNECTED and self.snapshot is not None:
            # Next to the state: at the end of the line a narrow terminal cut it off.
            status.append(" (last known state)", style="yellow")
        status.append(f"  {self.url}")
        if self.rows is not None:
            status.append(f"  workers {len(self.rows.workers)}  functions "
                          f"{len(self.rows.functions)}  triggers {len(self.rows.triggers)}")
        status.append(f"  namespace: {self.namespace or 'all'}  sort: {self.sort}"
                      f"{' (reversed)' if self.reverse else ''}"
                      f"{'  engine rows hidden' if self.hide_engine else ''}", style="dim")
        self.query_one("#status", Static).update(status)

    def _render_tables(self, now: float | None = None) -> None:
        assert self.snapshot is not None
        rows = build_rows(self.snapshot, namespace=self.namespace, sort=self.sort,
                          reverse=self.reverse, hide_engine=self.hide_engine, pids=self._pids,
                          worker_rates=self._worker_rates, function_rates=self._function_rates,
                          now=self._clock() if now is None else now, memo=self._memo)
        self.rows = rows
        for table_id, table_rows in (("workers", rows.workers), ("functions", rows.functions),
                                     ("triggers", rows.triggers)):
            if self._shown_tables.get(table_id) is not table_rows:
                self._fill(table_id, self._row_cells(table_id, table_rows))
                self._shown_tables[table_id] = table_rows
        self._render_status()
        rendered, self._rendered = self._rendered, asyncio.Event()
        rendered.set()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Return once ``predicate()`` holds, re-checking after each render (tests, the
        screenshot script); ``TimeoutError`` after ``timeout`` seconds."""

        async def wait() -> None:
            while not predicate():
                await self._rendered.wait()

        await asyncio.wait_for(wait(), timeout)

    def _row_cells(self, table_id: str, rows: Sequence[Any]
                   ) -> list[tuple[str, tuple[str, ...], bool]]:
        """``(key, cells, dim)`` of each row; a row object shown before keeps its cells (the
        same tuple, which :meth:`_fill` then passes over)."""
        def cells_of(row: Any) -> tuple[str, ...]:
            self.cells_made += 1
            return row.cells()  # type: ignore[no-any-return]

        cells = self._cells.of(table_id, [(row.key, row) for row in rows], cells_of)
        return [(row.key, row_cells, table_id == "workers" and row.worker.builtin)
                for row, row_cells in zip(rows, cells, strict=True)]

    def _fill(self, table_id: str, rows: Sequence[tuple[str, tuple[str, ...], bool]]) -> None:
        """Update the cells that changed when the rows are the same and in the same order,
        else rebuild the table (rows come, go or move).

        A column's width is recomputed only when its widest cell changes, and then from one
        cell: textual re-measures the whole column for each narrowed cell given
        ``update_width=True``, which with hundreds of rates changing every second cost a
        sixth of a core."""
        table: DataTable[Any] = self.query_one(f"#{table_id}", DataTable)
        table.border_title = f"{table_id.capitalize()} ({len(rows)})"
        shown = self._shown.get(table_id, [])
        wanted = [(key, cells) for key, cells, _ in rows]
        dim = {key for key, _, builtin in rows if builtin}
        columns = [c.key for c in _COLUMNS[table_id]]
        old_widths = self._shown_widths.get(table_id, [0] * len(columns))
        new_widths = self._shown_widths[table_id] = _widths(
            self._widths_of(table_id, wanted), len(columns))
        if [k for k, _ in shown] == [k for k, _ in wanted]:
            resize = {i for i in range(len(columns)) if old_widths[i] != new_widths[i]}
            for (key, old), (_, new) in zip(shown, wanted, strict=True):
                if old is new:
                    continue
                for i, (column, before, after) in enumerate(zip(columns, old, new,
                                                                 strict=True)):
                    if before != after:
                        # The cell that makes the new width known: the new widest (wider),
                        # or one that was the widest (narrower: textual re-measures all).
                        width_from_here = i in resize and (
                            cell_len(after) == new_widths[i] if new_widths[i] > old_widths[i]
                            else cell_len(before) == old_widths[i])
                        if width_from_here:
                            resize.discard(i)
                        table.update_cell(key, column, _cell(after, key in dim),
                                          update_width=width_from_here)
        else:
            table.clear()
            for shape in table.columns.values():  # textual only ever widens them on add_row
                shape.content_width = shape.label.cell_len
            for key, cells in wanted:
                table.add_row(*(_cell(c, key in dim) for c in cells), key=key)
        self._shown[table_id] = wanted

    def _widths_of(self, table_id: str, rows: Sequence[tuple[str, tuple[str, ...]]]
                   ) -> list[tuple[int, ...]]:
        """Each row's cell widths, measured again only for cells that are not the tuple
        measured last time."""
        return self._cell_widths.of(table_id, rows,
                                    lambda cells: tuple(cell_len(c) for c in cells))

    def _log_line(self, line: Text) -> None:
        if not self.is_running:
            return
        stamp = Text(time.strftime("%H:%M:%S "), style="dim")
        self.query_one("#log", RichLog).write(stamp + line)

    def table_cells(self, table_id: str) -> list[tuple[str, ...]]:
        """What a table shows, row by row, as plain text (for tests and screenshots)."""
        table: DataTable[Any] = self.query_one(f"#{table_id}", DataTable)
        return [tuple(str(cell) for cell in table.get_row_at(i))
                for i in range(table.row_count)]

    def log_lines(self) -> list[str]:
        """The change log as plain text, oldest first."""
        return [strip.text for strip in self.query_one("#log", RichLog).lines]


_COLUMNS: dict[str, Sequence[Column]] = {
    "workers": WORKER_COLUMNS, "functions": FUNCTION_COLUMNS, "triggers": TRIGGER_COLUMNS}


T = TypeVar("T")


class _Derived(Generic[T]):
    """Values derived from the rows of each table, by row key: one is derived again only when
    its row brings another object than the one it was derived from (rows that left are
    forgotten at the next derivation)."""

    def __init__(self) -> None:
        self._by_table: dict[str, dict[str, tuple[Any, T]]] = {}

    def of(self, table_id: str, rows: Iterable[tuple[str, Any]],
           derive: Callable[[Any], T]) -> list[T]:
        """The value of each ``(key, source)`` of ``rows``, in order."""
        known = self._by_table.get(table_id, {})
        now: dict[str, tuple[Any, T]] = {}
        values = []
        for key, source in rows:
            old = known.get(key)
            value = old[1] if old is not None and old[0] is source else derive(source)
            now[key] = (source, value)
            values.append(value)
        self._by_table[table_id] = now
        return values


def _widths(rows: Sequence[tuple[int, ...]], count: int) -> list[int]:
    """The widest cell of each of ``count`` columns (in terminal cells), from each row's
    cell widths."""
    if not rows:
        return [0] * count
    return [max(column) for column in zip(*rows, strict=True)]


def _header(column: Column) -> Text:
    return Text(column.title, style="bold")


def _cell(value: str, dim: bool) -> Text:
    """The engine's own workers in grey: present, but rarely the point."""
    return Text(value, style="grey58" if dim else "")


def describe(event: TopologyChange) -> Text:
    """One log line for a change: ``+`` added, ``-`` removed, ``~`` updated."""
    match event:
        case WorkerConnected(worker=w):
            where = f" from {w.ip_address}" if w.ip_address else ""
            return Text(f"+ worker {w.name or w.id} ({w.runtime or '?'}, namespace "
                        f"{w.namespace}){where}", style="green")
        case WorkerDisconnected(worker=w):
            return Text(f"- worker {w.name or w.id}", style="red")
        case WorkerUpdated(worker=w, changed=changed):
            return Text(f"~ worker {w.name or w.id}: {', '.join(changed)}", style="yellow")
        case FunctionAdded(function=f):
            return Text(f"+ function {f.function_id} [{f.namespace}] by {f.worker_name or '?'}",
                        style="green")
        case FunctionRemoved(function=f):
            return Text(f"- function {f.function_id} [{f.namespace}]", style="red")
        case TriggerAdded(trigger=t):
            return Text(f"+ trigger {t.trigger_type} -> {t.function_id} "
                        f"{t.config_summary or ''}".rstrip(), style="green")
        case TriggerRemoved(trigger=t):
            return Text(f"- trigger {t.trigger_type} -> {t.function_id}", style="red")
        case TriggerTypeAdded(trigger_type=t):
            return Text(f"+ trigger type {t.id} by {t.worker_name or '?'}", style="green")
        case TriggerTypeRemoved(trigger_type=t):
            return Text(f"- trigger type {t.id}", style="red")
    return Text(repr(event))  # pragma: no cover - the union is exhaustive


# ------------------------------------------------------------------------------ command

_FOREVER = ReconnectConfig(initial_delay_ms=200, max_delay_ms=2000, max_retries=-1)


def top(args: argparse.Namespace) -> int:
    """``iii-rx top``: run the dashboard until ``q`` (or Ctrl-C)."""
    if not draws_on_terminal():
        print("iii-rx: top needs a terminal to draw on (stderr is not one); in scripts use "
              "'iii-rx ls' or 'iii-rx watch'", file=sys.stderr)
        return EXIT_USAGE
    return run(_top(args), verbose=args.verbose)


def draws_on_terminal() -> bool:
    """Whether textual has a terminal to draw on: it draws on the process's stderr (so
    ``iii-rx top > file`` still works). Without one (cron, CI, nohup) it would write escape
    codes to a file for ever."""
    stream = sys.__stderr__
    return stream is not None and stream.isatty()


async def _top(args: argparse.Namespace) -> int:
    async with open_client(args, "top", reconnect=_FOREVER) as iii:
        stream = TopologyStream(iii, poll_interval=args.poll, include_internal=args.internal)
        app = TopApp(ClientSource(iii, stream), namespace=args.namespace,
                     hide_engine=args.hide_engine)
        loop = asyncio.get_running_loop()
        for signum, code in ((signal.SIGINT, EXIT_INTERRUPTED), (signal.SIGTERM, 128 + 15)):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not a main thread
                # A signal ends the app itself, so that it gives the terminal back.
                loop.add_signal_handler(signum, functools.partial(app.exit, return_code=code))
        await app.run_async()
    return app.return_code or 0
