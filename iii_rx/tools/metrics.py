"""Metric columns read from topology rows, and call rates from successive counters (pure).

The protocol's rows (docs/protocol.md §8) carry no metrics (the Rust engine sends none); an engine
that counts invocations puts them in the row, where :class:`~iii_rx.topology.WorkerInfo` and
:class:`~iii_rx.topology.FunctionInfo` keep them in ``extra``. This module reads them
leniently, at the top level of the row or under a ``metrics`` object, so the dashboard and
``iii-rx ls`` show them when present and leave the cells blank otherwise: the columns never
change with the engine. The names it understands are listed in ``docs/cli.md``.

A rate is not something a counter snapshot says: :class:`RateTracker` keeps a few
``(time, count)`` samples per row and reports the increase over a sliding window, so a rate
decays to zero once the counter stops moving, even though an unchanged topology emits no new
snapshot.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Metrics", "RateTracker", "fmt_count", "fmt_ms", "fmt_rate", "metrics_of"]

_COUNT_NAMES = ("invocations", "invocation_count", "invocations_total", "calls", "call_count")
_ERROR_NAMES = ("errors", "error_count", "errors_total", "failures")
_FLIGHT_NAMES = ("in_flight", "inflight")
_P50_NAMES = ("p50_ms", "latency_p50_ms", "p50")
_P99_NAMES = ("p99_ms", "latency_p99_ms", "p99")
_LATENCY_OBJECTS = ("latency_ms", "latency")


@dataclass(frozen=True)
class Metrics:
    """What a row says about its load; ``None`` where the engine says nothing."""

    invocations: int | None = None
    errors: int | None = None
    in_flight: int | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None

    @property
    def present(self) -> bool:
        """Whether the engine sent any metric for this row."""
        return any(v is not None for v in (self.invocations, self.errors, self.in_flight,
                                           self.p50_ms, self.p99_ms))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if value == value and value >= 0 else None  # NaN and negatives: none


def _first(sources: Iterable[Mapping[str, Any]], names: tuple[str, ...]) -> float | None:
    for source in sources:
        for name in names:
            found = _number(source.get(name))
            if found is not None:
                return found
    return None


def metrics_of(extra: Mapping[str, Any]) -> Metrics:
    """The metrics in a row's ``extra`` (top level, or under ``metrics``), else blanks."""
    sources: list[Mapping[str, Any]] = []
    nested = extra.get("metrics")
    if isinstance(nested, Mapping):
        sources.append(nested)
    sources.append(extra)
    latency = [obj for source in sources for name in _LATENCY_OBJECTS
               if isinstance(obj := source.get(name), Mapping)]
    count = _first(sources, _COUNT_NAMES)
    errors = _first(sources, _ERROR_NAMES)
    in_flight = _first(sources, _FLIGHT_NAMES)
    return Metrics(
        invocations=int(count) if count is not None else None,
        errors=int(errors) if errors is not None else None,
        in_flight=int(in_flight) if in_flight is not None else None,
        p50_ms=_first([*sources, *latency], _P50_NAMES),
        p99_ms=_first([*sources, *latency], _P99_NAMES),
    )


class RateTracker:
    """Per-row rates of a monotonic counter over a sliding ``window`` of seconds.

    ``observe(key, time, count)`` records a sample (call it for each snapshot that has the
    counter); ``rate(key, now)`` is the increase per second over the last ``window`` seconds,
    taking the latest count as still current at ``now``. A counter that goes down (the
    engine restarted) starts afresh; a key not seen in a snapshot is dropped with ``retain``.
    """

    def __init__(self, window: float = 5.0) -> None:
        if window <= 0:
            raise ValueError("window must be positive")
        self.window = window
        self._samples: dict[Hashable, deque[tuple[float, int]]] = {}

    def observe(self, key: Hashable, at: float, count: int) -> None:
        samples = self._samples.setdefault(key, deque())
        if samples and (count < samples[-1][1] or at < samples[-1][0]):
            samples.clear()
        if samples and samples[-1][1] == count:
            return  # unchanged: the first time it had this count is what the window needs
        samples.append((at, count))

    def retain(self, keys: Iterable[Hashable]) -> None:
        """Forget every key but ``keys`` (rows that left)."""
        keep = set(keys)
        for key in [k for k in self._samples if k not in keep]:
            del self._samples[key]

    def rate(self, key: Hashable, now: float) -> float | None:
        """Calls per second over the window ending at ``now``; ``None`` before two samples
        (no rate can be told from one count)."""
        samples = self._samples.get(key)
        if not samples:
            return None
        start = now - self.window
        while len(samples) > 1 and samples[1][0] <= start:
            samples.popleft()  # the sample at or before the window's start is its baseline
        base_at, base = samples[0]
        latest = samples[-1][1]
        if len(samples) == 1:
            return 0.0 if now - base_at >= self.window else None
        span = max(now, samples[-1][0]) - max(base_at, start)
        return (latest - base) / span if span > 0 else None


def fmt_rate(value: float | None) -> str:
    """A rate for a cell: blank when unknown."""
    if value is None:
        return ""
    if value == 0:
        return "0"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def fmt_count(value: int | None) -> str:
    return "" if value is None else str(value)


def fmt_ms(value: float | None) -> str:
    """A latency for a cell, in milliseconds: blank when unknown."""
    if value is None:
        return ""
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 1000 else f"{value:.0f}"
