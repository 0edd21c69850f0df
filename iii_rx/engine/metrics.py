"""Call metrics of the embedded engine: per function and per worker, cheap on the hot path.

Each function (``(namespace, function_id)``) and each worker (a socket's worker id, or an
in-process worker's name) has a :class:`CallStats`: ``invocations`` (calls routed to it, void
calls included), ``errors`` (answers carrying an error: the handler's, ``invocation_stopped``
when it left, an expired call, an engine-originated call that timed out), ``in_flight`` (calls
waiting for their answer; void calls to a worker never wait) and a fixed histogram of the
latency of answered calls, from which ``p50_ms`` / ``p99_ms`` are read (the upper bound of the
bucket holding that quantile; ``None`` before the first answer).

The router calls :meth:`CallStats.begin` when it routes a call and :meth:`CallStats.end` when
the answer comes back: a few integer operations and one ``bisect`` over :data:`BOUNDS_MS`.
Calls to a worker carry their two stats in a :class:`MeteredPending`.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from iii_rx.engine.config import DEFAULT_NAMESPACE
from iii_rx.engine.connection import Pending
from iii_rx.engine.registry import FunctionEntry, Registry

__all__ = ["BOUNDS_MS", "CallStats", "EngineMetrics", "MeteredPending"]

BOUNDS_MS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0,
             1000.0, 2500.0, 5000.0, 10000.0, 30000.0, 60000.0)
"""Upper bounds (ms) of the latency buckets; one more bucket holds anything slower."""

_BOUNDS_S = tuple(b / 1000 for b in BOUNDS_MS)
_monotonic = time.monotonic
_PRUNE_SLACK = 256


class CallStats:
    """Counters of one function or one worker."""

    __slots__ = ("buckets", "errors", "in_flight", "invocations")

    def __init__(self) -> None:
        self.invocations = 0
        self.errors = 0
        self.in_flight = 0
        self.buckets = [0] * (len(BOUNDS_MS) + 1)

    def begin(self) -> None:
        """A call that waits for its answer was routed."""
        self.invocations += 1
        self.in_flight += 1

    def end(self, started: float, failed: bool) -> None:
        """Its answer came back (``started``: ``time.monotonic()`` at :meth:`begin`)."""
        self.in_flight -= 1
        if failed:
            self.errors += 1
        self.buckets[bisect_left(_BOUNDS_S, time.monotonic() - started)] += 1

    def quantile_ms(self, q: float) -> float | None:
        """The upper bound (ms) of the bucket holding quantile ``q``; ``None`` if no answer."""
        total = sum(self.buckets)
        if total == 0:
            return None
        rank = q * total
        seen = 0
        for i, count in enumerate(self.buckets):
            seen += count
            if seen >= rank and count:
                return BOUNDS_MS[min(i, len(BOUNDS_MS) - 1)]
        return BOUNDS_MS[-1]

    def as_dict(self) -> dict[str, Any]:
        return {"invocations": self.invocations, "errors": self.errors,
                "in_flight": self.in_flight, "p50_ms": self.quantile_ms(0.5),
                "p99_ms": self.quantile_ms(0.99)}


_ZERO = CallStats()


@dataclass(eq=False, slots=True)
class MeteredPending(Pending):
    """A call to a worker with the stats of its function and of its handler."""

    function_stats: CallStats
    worker_stats: CallStats

    def end(self, failed: bool) -> None:
        """The answer came back: both stats at once (one clock read, one bucket search)."""
        bucket = bisect_left(_BOUNDS_S, _monotonic() - self.created)
        fn, worker = self.function_stats, self.worker_stats
        fn.in_flight -= 1
        worker.in_flight -= 1
        fn.buckets[bucket] += 1
        worker.buckets[bucket] += 1
        if failed:
            fn.errors += 1
            worker.errors += 1

    def drop(self) -> None:
        """Its caller left before the answer: no longer in flight, no latency."""
        self.function_stats.in_flight -= 1
        self.worker_stats.in_flight -= 1


class EngineMetrics:
    """The stats of every function and worker; rows of ``engine::metrics::list``."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.functions: dict[tuple[str, str], CallStats] = {}
        self.workers: dict[str, CallStats] = {}
        self.sdk_metrics: Callable[[dict[str, Any]], list[dict[str, Any]]] | None = None
        """What workers exported on ``/otel`` (the engine's intake sets it)."""

    def stats_of(self, entry: FunctionEntry) -> tuple[CallStats, CallStats]:
        """(function stats, worker stats) of a call to ``entry``, created on first use."""
        fn = self.functions.get((entry.namespace, entry.function_id))
        if fn is None:
            fn = self.functions[(entry.namespace, entry.function_id)] = CallStats()
            self._prune()
        owner = entry.owner
        worker_key = owner.id if owner is not None else (entry.builtin_worker or "")
        worker = self.workers.get(worker_key)
        if worker is None:
            worker = self.workers[worker_key] = CallStats()
            self._prune()
        return fn, worker

    def _prune(self) -> None:
        """Forget functions and workers that are gone once they outnumber the live ones."""
        reg = self.registry
        if len(self.functions) > 2 * len(reg.functions) + _PRUNE_SLACK:
            self.functions = {k: v for k, v in self.functions.items()
                              if k in reg.functions or v.in_flight}
        live = len(reg.workers) + len(reg.builtin_workers)
        if len(self.workers) > 2 * live + _PRUNE_SLACK:
            self.workers = {k: v for k, v in self.workers.items()
                            if k in reg.workers or k in reg.builtin_workers or v.in_flight}

    def worker(self, worker_key: str) -> dict[str, Any]:
        """The metrics of a worker (zeros and ``None`` latencies before its first call)."""
        return self.workers.get(worker_key, _ZERO).as_dict()

    def function(self, namespace: str, function_id: str) -> dict[str, Any]:
        return self.functions.get((namespace, function_id), _ZERO).as_dict()

    def metrics_list(self, data: dict[str, Any]) -> dict[str, Any]:
        """``engine::metrics::list``: every registered function and live worker."""
        reg = self.registry
        functions = [
            {"function_id": e.function_id, "namespace": e.namespace,
             "worker_name": reg.worker_name_of(e), **self.function(e.namespace, e.function_id)}
            for e in sorted(reg.functions.values(), key=lambda e: (e.function_id, e.namespace))]
        workers = [
            {"id": c.id, "name": c.name, "namespace": c.effective_namespace,
             **self.worker(c.id)}
            for c in reg.workers.values() if not c.closed]
        workers += [{"id": name, "name": name, "namespace": DEFAULT_NAMESPACE,
                     **self.worker(name)}
                    for name in reg.builtin_workers]
        workers.sort(key=lambda r: (r["name"] or r["id"], r["id"]))
        sdk = self.sdk_metrics(data) if self.sdk_metrics is not None else []
        return {"functions": functions, "workers": workers, "sdk_metrics": sdk}
