"""Duration histograms kept by iii_rx, for the meter provider it installs for the engine.

The SDK's ``Histogram.record`` checks and hashes the attributes, builds a measurement and finds
the bucket: about 70,000 instructions per value on SDK 1.45, as much as the whole span of a
traced invocation. When iii_rx installs the meter provider that exports to the engine (nobody
else reads it), the duration histograms are :class:`OwnHistogram` s instead: a bucket index and
four sums under a lock per value. The engine exporter writes them beside what the SDK collected,
as the SDK writes an explicit-bucket histogram: cumulative points, the value on a bound counted
in the bucket that bound closes, count, sum, min and max; negative and non-finite values
dropped; at most :data:`LIMIT` attribute sets, then one overflow point.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Sequence
from time import time_ns
from typing import Any

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    Metric,
)

__all__ = ["SCOPE", "Key", "OwnHistogram", "OwnHistograms", "function_attributes"]

SCOPE = "iii_rx"
"""The meter of iii_rx's instruments (:class:`~iii_rx.telemetry.metrics.Metrics`), so the
scope its own histograms are exported in."""

Key = tuple[str, str]
"""``(function id, worker name)``: what a per-function instrument counts by."""
LIMIT = 2000
"""Attribute sets a histogram keeps apart (the SDK's default cardinality limit)."""
OVERFLOW: Key = ("", "")
"""The key of the point counting the values of keys past :data:`LIMIT` (exported with the
SDK's overflow attribute, ``otel.metric.overflow``)."""
_INF = float("inf")


def function_attributes(key: Key) -> dict[str, Any]:
    """The attributes of ``key``'s point."""
    return {"iii.function.id": key[0], "iii.worker.name": key[1]}


class _Point:
    """The running totals of one attribute set."""

    __slots__ = ("buckets", "count", "high", "low", "start", "total")

    def __init__(self, buckets: int) -> None:
        self.start = time_ns()
        self.count = 0
        self.total = 0.0
        self.low = _INF
        self.high = -_INF
        self.buckets = [0] * buckets


class OwnHistogram:
    """A cumulative explicit-bucket histogram per ``(function id, worker name)``."""

    __slots__ = ("_lock", "_points", "bounds", "description", "name", "unit")

    def __init__(self, name: str, description: str, bounds: Sequence[float],
                 unit: str = "s") -> None:
        self.name = name
        self.description = description
        self.unit = unit
        self.bounds = tuple(bounds)
        self._lock = threading.Lock()  # pool threads and several clients' loops add here
        self._points: dict[Key, _Point] = {}

    def add(self, key: Key, value: float) -> None:
        """Count ``value`` for ``key`` (any thread). A negative or non-finite value is dropped,
        as the SDK drops it (a duration never is one); past :data:`LIMIT` keys, a new key
        counts in the overflow point, as the SDK's cardinality limit does."""
        if not 0 <= value < _INF:  # NaN too
            return
        index = bisect_left(self.bounds, value)
        with self._lock:
            point = self._points.get(key)
            if point is None:
                if len(self._points) >= LIMIT:
                    key = OVERFLOW
                    point = self._points.get(key)
                if point is None:
                    point = self._points[key] = _Point(len(self.bounds) + 1)
            point.count += 1
            point.total += value
            if value < point.low:
                point.low = value
            if value > point.high:
                point.high = value
            point.buckets[index] += 1

    def forget(self, worker_name: str) -> None:
        """Drop the points of ``worker_name`` (see :meth:`Metrics.leave
        <iii_rx.telemetry.metrics.Metrics.leave>`)."""
        with self._lock:
            for key in [key for key in self._points if key[1] == worker_name]:
                del self._points[key]

    def metric(self, now: int) -> Metric | None:
        """The histogram as the SDK's collection gives it at ``now`` (ns), ``None`` before its
        first value."""
        with self._lock:
            points = [HistogramDataPoint(
                attributes=({"otel.metric.overflow": True} if key is OVERFLOW else
                            function_attributes(key)),
                start_time_unix_nano=point.start, time_unix_nano=now, count=point.count,
                sum=point.total, bucket_counts=list(point.buckets),
                explicit_bounds=list(self.bounds), min=point.low, max=point.high)
                for key, point in self._points.items()]
        if not points:
            return None
        return Metric(name=self.name, description=self.description, unit=self.unit,
                      data=Histogram(data_points=points,
                                     aggregation_temporality=AggregationTemporality.CUMULATIVE))


class OwnHistograms:
    """The :class:`OwnHistogram` s of one meter provider (one per name)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_name: dict[str, OwnHistogram] = {}

    def get(self, name: str, description: str, bounds: Sequence[float]) -> OwnHistogram:
        """The histogram called ``name`` (made on first use)."""
        with self._lock:
            found = self._by_name.get(name)
            if found is None:
                found = self._by_name[name] = OwnHistogram(name, description, bounds)
            return found

    def metrics(self, now: int | None = None) -> list[Any]:
        """Every histogram with a value, as SDK ``Metric`` s at ``now`` (ns; default: now)."""
        at = time_ns() if now is None else now
        with self._lock:
            histograms = list(self._by_name.values())
        return [m for m in (h.metric(at) for h in histograms) if m is not None]
