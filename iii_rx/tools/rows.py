"""The rows ``iii-rx top`` and ``iii-rx ls`` show, built from one topology snapshot (pure).

Both commands show the same columns in the same order, with metric cells blank when the
engine sends no metrics, so a table looks the same against the Rust engine and ours. Keeping
this apart from the textual app lets it be tested, and reused by ``ls``, without a terminal.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from iii_rx.tools.metrics import Metrics, RateTracker, fmt_count, fmt_ms, fmt_rate, metrics_of
from iii_rx.topology import FunctionInfo, RegisteredTrigger, Topology, WorkerInfo

__all__ = [
    "FUNCTION_COLUMNS",
    "FUNCTION_TOTAL_COLUMNS",
    "SORTS",
    "TRIGGER_COLUMNS",
    "WORKER_COLUMNS",
    "WORKER_TOTAL_COLUMNS",
    "Column",
    "FunctionRow",
    "RowsMemo",
    "Sort",
    "TriggerRow",
    "WorkerRow",
    "build_rows",
    "format_table",
    "without_workers",
]

Sort = Literal["name", "calls", "errors", "namespace"]
SORTS: tuple[Sort, ...] = ("name", "calls", "errors", "namespace")
"""The orders ``top`` cycles through with ``s``: by name, busiest first, failing first, by
namespace."""


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    numeric: bool = False


WORKER_COLUMNS = (
    Column("name", "WORKER"), Column("namespace", "NAMESPACE"), Column("runtime", "RUNTIME"),
    Column("pid", "PID", True), Column("functions", "FUNCS", True),
    Column("active", "ACTIVE", True), Column("rate", "CALLS/S", True),
    Column("errors", "ERRORS", True), Column("address", "ADDRESS"),
)
FUNCTION_COLUMNS = (
    Column("function", "FUNCTION"), Column("namespace", "NAMESPACE"), Column("owner", "OWNER"),
    Column("triggers", "TRIGGERS", True), Column("rate", "CALLS/S", True),
    Column("p50", "P50 MS", True), Column("p99", "P99 MS", True),
    Column("errors", "ERRORS", True),
)
WORKER_TOTAL_COLUMNS = tuple(Column("calls", "CALLS", True) if c.key == "rate" else c
                             for c in WORKER_COLUMNS)
"""``ls``: one snapshot has counters but no rate."""
FUNCTION_TOTAL_COLUMNS = tuple(Column("calls", "CALLS", True) if c.key == "rate" else c
                               for c in FUNCTION_COLUMNS)
TRIGGER_COLUMNS = (
    Column("type", "TRIGGER TYPE"), Column("function", "FUNCTION"), Column("owner", "OWNER"),
    Column("config", "CONFIG"),
)


@dataclass(frozen=True)
class WorkerRow:
    key: str
    worker: WorkerInfo
    pid: int | None
    functions: int
    metrics: Metrics
    rate: float | None

    def cells(self, totals: bool = False) -> tuple[str, ...]:
        """The cells under :data:`WORKER_COLUMNS` (``totals``: under
        :data:`WORKER_TOTAL_COLUMNS`, the invocation counter instead of its rate)."""
        w = self.worker
        calls = fmt_count(self.metrics.invocations) if totals else fmt_rate(self.rate)
        return (w.name or w.id, w.namespace, w.runtime or "", fmt_count(self.pid),
                str(self.functions), str(w.active_invocations), calls,
                fmt_count(self.metrics.errors), w.ip_address or "")


@dataclass(frozen=True)
class FunctionRow:
    key: str
    function: FunctionInfo
    triggers: int
    metrics: Metrics
    rate: float | None

    def cells(self, totals: bool = False) -> tuple[str, ...]:
        f, m = self.function, self.metrics
        calls = fmt_count(m.invocations) if totals else fmt_rate(self.rate)
        return (f.function_id, f.namespace, f.worker_name or "", str(self.triggers),
                calls, fmt_ms(m.p50_ms), fmt_ms(m.p99_ms), fmt_count(m.errors))


@dataclass(frozen=True)
class TriggerRow:
    key: str
    trigger: RegisteredTrigger

    def cells(self) -> tuple[str, ...]:
        t = self.trigger
        return (t.trigger_type, t.function_id, t.worker_name or "", t.config_summary or "")


@dataclass(frozen=True)
class Rows:
    workers: tuple[WorkerRow, ...]
    functions: tuple[FunctionRow, ...]
    triggers: tuple[TriggerRow, ...]
    namespaces: tuple[str, ...]
    """Every namespace of the snapshot, for the filter (before filtering)."""


class RowsMemo:
    """What a caller of :func:`build_rows` that rebuilds often (``top``: every second, every
    snapshot) keeps between builds, so that a build costs in proportion to the rows that
    changed: the metrics read from each row's ``extra`` (equal extras, equal metrics), the rows
    built last time (the same object again while its inputs are equal, so the caller can
    skip it), the last table of each kind (the same tuple while every row and the order are),
    and the snapshot the rate trackers last saw. ``metrics_read`` and ``rows_built`` count the
    work done (tests)."""

    def __init__(self) -> None:
        self._metrics: dict[Hashable, tuple[Mapping[str, Any], Metrics]] = {}
        self._next_metrics: dict[Hashable, tuple[Mapping[str, Any], Metrics]] = {}
        self._rows: dict[tuple[str, Any], tuple[tuple[Any, ...], Any]] = {}
        self._next_rows: dict[tuple[str, Any], tuple[tuple[Any, ...], Any]] = {}
        self._tables: dict[str, tuple[tuple[Any, ...], tuple[Any, ...], tuple[Any, ...]]] = {}
        self._prepared: tuple[Topology, Collection[str], _Prepared] | None = None
        self.observed: Topology | None = None
        self.metrics_read = 0
        self.rows_built = 0

    def prepared(self, snapshot: Topology, hide_workers: Collection[str]) -> _Prepared:
        """What the build reads from ``snapshot`` alone: read once per snapshot."""
        last = self._prepared
        if last is not None and last[0] is snapshot and last[1] == hide_workers:
            return last[2]
        prepared = _prepare(snapshot, hide_workers, self._metrics_of)
        self._metrics, self._next_metrics = self._next_metrics, {}
        self._prepared = (snapshot, hide_workers, prepared)
        return prepared

    def _metrics_of(self, key: Hashable, extra: Mapping[str, Any]) -> Metrics:
        """The metrics of the row ``key``: read again only when its ``extra`` changed (a dict
        comparison, much cheaper than reading it or hashing it)."""
        old = self._metrics.get(key)
        if old is not None and (old[0] is extra or old[0] == extra):
            found = old[1]
        else:
            found = metrics_of(extra)
            self.metrics_read += 1
        self._next_metrics[key] = (extra, found)
        return found

    def row(self, kind: str, key: Any, make: Callable[..., Any], *inputs: Any) -> Any:
        """``make(*inputs)``, or the row made last time from equal inputs."""
        slot = (kind, key)
        old = self._rows.get(slot)
        if old is not None and old[0] == inputs:
            row = old[1]
        else:
            row = make(*inputs)
            self.rows_built += 1
        self._next_rows[slot] = (inputs, row)
        return row

    def table(self, kind: str, view: tuple[Any, ...], rows: list[Any],
              order: Callable[[], tuple[Any, ...]]) -> tuple[Any, ...]:
        """The sorted table: last time's tuple when the view (filter, sort) and every row
        object are the same, else ``order()``."""
        old = self._tables.get(kind)
        if (old is not None and old[0] == view and len(old[1]) == len(rows)
                and all(map(operator.is_, old[1], rows))):
            return old[2]
        table = order()
        self._tables[kind] = (view, tuple(rows), table)
        return table

    def built(self) -> None:
        """One build is over: forget the rows it did not use (rows that left)."""
        self._rows, self._next_rows = self._next_rows, {}


_Read = Callable[[Hashable, Mapping[str, Any]], Metrics]
"""How a build reads a row's metrics: from its key (a memo's) and its ``extra``."""


def _read(key: Hashable, extra: Mapping[str, Any]) -> Metrics:
    return metrics_of(extra)


def _key(parts: Sequence[str]) -> str:
    return "\x1f".join(parts)


def _worker_metrics(worker: WorkerInfo,
                    by_owner: Mapping[tuple[str | None, str], list[Metrics]],
                    read: _Read) -> Metrics:
    """The worker row's own metrics, else the sum of its functions' (an engine may count per
    function only). ``by_owner``: the functions' metrics that are present, by
    ``(worker_name, namespace)``, gathered once per build (a scan per worker is quadratic)."""
    own = read(("w", worker.id), worker.extra)
    if own.present:
        return own
    parts = by_owner.get((worker.name, worker.namespace))
    if not parts:
        return own

    def total(values: list[int | None]) -> int | None:
        known = [v for v in values if v is not None]
        return sum(known) if known else None

    return Metrics(invocations=total([m.invocations for m in parts]),
                   errors=total([m.errors for m in parts]),
                   in_flight=total([m.in_flight for m in parts]))


def _pid(worker: WorkerInfo, pids: Mapping[str, int]) -> int | None:
    value = worker.extra.get("pid")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return pids.get(worker.id)


def _sorted(rows: list[Any], sort: Sort, name: Callable[[Any], tuple[Any, ...]],
            namespace: Callable[[Any], str], reverse: bool) -> tuple[Any, ...]:
    def rank(row: Any) -> tuple[Any, ...]:
        if sort == "calls":
            return (-(row.rate or 0.0), *name(row))
        if sort == "errors":
            return (-(row.metrics.errors or 0), *name(row))
        if sort == "namespace":
            return (namespace(row), *name(row))
        return name(row)

    return tuple(sorted(rows, key=rank, reverse=reverse))


class _Prepared(NamedTuple):
    """What a build reads from a snapshot whatever the view and the time."""

    workers: list[tuple[WorkerInfo, Metrics]]
    """The workers not hidden, with their metrics."""
    functions: list[tuple[FunctionInfo, Metrics, str]]
    """Every function, its metrics and its row key."""
    triggers_by_function: dict[str, int]
    namespaces: tuple[str, ...]
    engine: frozenset[str | None]
    """The names of the engine's in-process workers."""


def _prepare(snapshot: Topology, hide_workers: Collection[str],
             read: _Read) -> _Prepared:
    triggers_by_function: dict[str, int] = {}
    for t in snapshot.triggers:
        triggers_by_function[t.function_id] = triggers_by_function.get(t.function_id, 0) + 1
    namespaces = sorted({w.namespace for w in snapshot.workers if w.id not in hide_workers}
                        | {f.namespace for f in snapshot.functions}
                        | {t.namespace for t in snapshot.triggers if t.namespace})
    functions = [(f, read(("f", f.key), f.extra), _key(f.key)) for f in snapshot.functions]
    by_owner: dict[tuple[str | None, str], list[Metrics]] = {}
    for f, metrics, _ in functions:
        if metrics.present:
            by_owner.setdefault((f.worker_name, f.namespace), []).append(metrics)
    workers = [(w, _worker_metrics(w, by_owner, read)) for w in snapshot.workers
               if w.id not in hide_workers]
    return _Prepared(workers, functions, triggers_by_function, tuple(namespaces),
                     frozenset(w.name for w in snapshot.workers if w.builtin))


def build_rows(
    snapshot: Topology,
    *,
    namespace: str | None = None,
    sort: Sort = "name",
    reverse: bool = False,
    hide_workers: frozenset[str] = frozenset(),
    hide_engine: bool = False,
    pids: Mapping[str, int] | None = None,
    worker_rates: RateTracker | None = None,
    function_rates: RateTracker | None = None,
    now: float | None = None,
    memo: RowsMemo | None = None,
) -> Rows:
    """The three tables of ``snapshot``, filtered to ``namespace`` (``None``: all) and sorted.

    ``hide_workers`` are worker ids left out (the tool's own connection); ``hide_engine``
    leaves out the engine's in-process workers and what they own; ``pids`` fills the
    pid column for engines whose list omits it. With rate trackers, each metric counter is
    recorded at ``snapshot.taken_at`` and the rate read at ``now``. ``memo`` (a caller's
    :class:`RowsMemo`) spares the work on rows that did not change since its last build.
    """
    now = snapshot.taken_at if now is None else now
    pids = pids or {}
    if memo is None:
        prepared = _prepare(snapshot, hide_workers, _read)
        observe = True
    else:
        prepared = memo.prepared(snapshot, hide_workers)
        # The trackers have seen this snapshot's counters: only the rates move with ``now``.
        observe = memo.observed is not snapshot
    engine = prepared.engine if hide_engine else frozenset()

    workers: list[WorkerRow] = []
    for w, metrics in prepared.workers:
        rate = _rate(worker_rates, w.key, metrics, snapshot.taken_at, now, observe)
        if (namespace is None or w.namespace == namespace) and not (hide_engine and w.builtin):
            made = (w.id, w, _pid(w, pids), w.function_count, metrics, rate)
            workers.append(WorkerRow(*made) if memo is None
                           else memo.row("w", w.id, WorkerRow, *made))
    functions: list[FunctionRow] = []
    by_function = prepared.triggers_by_function
    for f, metrics, key in prepared.functions:
        rate = _rate(function_rates, f.key, metrics, snapshot.taken_at, now, observe)
        if (namespace is None or f.namespace == namespace) and f.worker_name not in engine:
            inputs = (key, f, by_function.get(f.function_id, 0), metrics, rate)
            functions.append(FunctionRow(*inputs) if memo is None
                             else memo.row("f", key, FunctionRow, *inputs))
    triggers = [TriggerRow(t.id, t) if memo is None else memo.row("t", t.id, TriggerRow, t.id, t)
                for t in snapshot.triggers
                if (namespace is None or (t.namespace or "default") == namespace)
                and t.worker_name not in engine]
    if observe:
        if worker_rates is not None:
            worker_rates.retain(w.key for w in snapshot.workers)
        if function_rates is not None:
            function_rates.retain(f.key for f in snapshot.functions)

    def table(kind: str, rows: list[Any], order: Callable[[], tuple[Any, ...]]) -> tuple[Any, ...]:
        return order() if memo is None else memo.table(kind, (sort, reverse), rows, order)

    result = Rows(
        # The engine's own workers after the others: they are many, and rarely the point.
        workers=table("w", workers, lambda: _sorted(
            workers, sort, lambda r: (r.worker.builtin, r.worker.name or r.key,
                                      r.worker.namespace, r.key),
            lambda r: r.worker.namespace, reverse)),
        functions=table("f", functions, lambda: _sorted(
            functions, sort, lambda r: (r.function.function_id, r.function.namespace),
            lambda r: r.function.namespace, reverse)),
        triggers=table("t", triggers, lambda: tuple(sorted(triggers, key=lambda r: (
            (r.trigger.namespace or "default", r.trigger.trigger_type, r.trigger.function_id)
            if sort == "namespace" else (r.trigger.trigger_type, r.trigger.function_id),
            r.key), reverse=reverse and sort == "name"))),
        namespaces=prepared.namespaces,
    )
    if memo is not None:
        memo.observed = snapshot
        memo.built()
    return result


def _rate(tracker: RateTracker | None, key: Any, metrics: Metrics, at: float,
          now: float, observe: bool = True) -> float | None:
    if tracker is None or metrics.invocations is None:
        return None
    if observe:
        tracker.observe(key, at, metrics.invocations)
    return tracker.rate(key, now)


def format_table(columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> str:
    """Rows as aligned plain text under a header (numbers right-aligned), for ``ls``."""
    widths = [max([len(c.title), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]

    def line(cells: Sequence[str]) -> str:
        out = [cell.rjust(w) if c.numeric else cell.ljust(w)
               for c, w, cell in zip(columns, widths, cells, strict=False)]
        return "  ".join(out).rstrip()

    return "\n".join([line([c.title for c in columns]), *(line(r) for r in rows)])


def without_workers(snapshot: Topology, workers: Collection[str | None]) -> Topology:
    """``snapshot`` less the workers with these ids (a tool's own connections), so that a
    tool neither lists nor reports itself."""
    if not any(w.id in workers for w in snapshot.workers):
        return snapshot
    return Topology.of((w for w in snapshot.workers if w.id not in workers), snapshot.functions,
                       snapshot.trigger_types, snapshot.triggers, revision=snapshot.revision,
                       taken_at=snapshot.taken_at)
