"""Worker gauges of the official SDK (``register_worker_gauges`` / ``stop_worker_gauges``).

Observable OpenTelemetry gauges of this process, read when the meter's reader collects,
each with the attributes ``worker.id`` (and ``worker.name``):

========================================  =====  ==============================================
``iii.worker.cpu.percent``                ``%``  CPU time over wall time since the last read
``iii.worker.cpu.user_micros``            ``us`` user CPU time
``iii.worker.cpu.system_micros``          ``us`` system CPU time
``iii.worker.memory.rss``                 bytes  resident set size
``iii.worker.memory.vms``                 bytes  virtual memory size
``iii.worker.memory.heap_used``           bytes  ``tracemalloc``'s traced memory (0 unless on)
``iii.worker.memory.heap_total``          bytes  0 (Python has no such figure)
``iii.worker.memory.external``            bytes  0 (a Node.js figure)
``iii.worker.uptime_seconds``             ``s``  since the gauges were registered
========================================  =====  ==============================================

Figures come from ``psutil`` when it is installed, else from ``os.times`` and
``/proc/self/status`` (``resource``'s peak RSS elsewhere). One reading serves all nine gauges
of a collection (cached for half a second). OpenTelemetry cannot remove an instrument:
after ``stop_worker_gauges`` the gauges report nothing.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["register_worker_gauges", "stop_worker_gauges"]

_GAUGES: tuple[tuple[str, str, str, str], ...] = (
    ("iii.worker.cpu.percent", "cpu_percent", "%", "Worker CPU usage percentage"),
    ("iii.worker.memory.rss", "memory_rss", "bytes", "Worker resident set size in bytes"),
    ("iii.worker.memory.vms", "memory_vms", "bytes", "Worker virtual memory in bytes"),
    ("iii.worker.uptime_seconds", "uptime_seconds", "s", "Worker uptime in seconds"),
    ("iii.worker.memory.heap_used", "memory_heap_used", "bytes",
     "Worker heap memory used in bytes"),
    ("iii.worker.memory.heap_total", "memory_heap_total", "bytes",
     "Worker total heap memory in bytes"),
    ("iii.worker.memory.external", "memory_external", "bytes",
     "Worker external memory in bytes"),
    ("iii.worker.cpu.user_micros", "cpu_user_micros", "us",
     "Worker CPU user time in microseconds"),
    ("iii.worker.cpu.system_micros", "cpu_system_micros", "us",
     "Worker CPU system time in microseconds"),
)


def _memory() -> tuple[int, int]:
    """``(rss, vms)`` in bytes."""
    try:
        import psutil  # type: ignore[import-untyped,import-not-found,unused-ignore]

        info = psutil.Process().memory_info()
        return int(info.rss), int(info.vms)
    except ImportError:
        pass
    if sys.platform.startswith("linux"):
        try:
            fields = {}
            with open("/proc/self/status") as status:
                for line in status:
                    key, _, value = line.partition(":")
                    if key in ("VmRSS", "VmSize"):
                        fields[key] = int(value.split()[0]) * 1024
            return fields.get("VmRSS", 0), fields.get("VmSize", 0)
        except (OSError, ValueError, IndexError):
            pass
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return (peak if sys.platform == "darwin" else peak * 1024), 0
    except (ImportError, OSError):
        return 0, 0


class _Sampler:
    """Readings of this process, one per collection."""

    TTL = 0.5

    def __init__(self) -> None:
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._last = (self.started, self._cpu())
        self._cached: tuple[float, dict[str, float]] | None = None

    @staticmethod
    def _cpu() -> tuple[float, float]:
        t = os.times()
        return t.user + t.children_user, t.system + t.children_system

    def read(self) -> dict[str, float]:
        with self._lock:
            now = time.monotonic()
            if self._cached is not None and now - self._cached[0] < self.TTL:
                return self._cached[1]
            user, system = self._cpu()
            then, (user0, system0) = self._last
            elapsed = now - then
            percent = (min(100.0, ((user - user0) + (system - system0)) / elapsed * 100)
                       if elapsed > 0 else 0.0)
            self._last = (now, (user, system))
            rss, vms = _memory()
            heap = 0
            import tracemalloc

            if tracemalloc.is_tracing():
                heap = tracemalloc.get_traced_memory()[0]
            values = {"cpu_percent": percent, "memory_rss": rss, "memory_vms": vms,
                      "uptime_seconds": now - self.started, "memory_heap_used": heap,
                      "memory_heap_total": 0, "memory_external": 0,
                      "cpu_user_micros": int(user * 1_000_000),
                      "cpu_system_micros": int(system * 1_000_000)}
            self._cached = (now, values)
            return values


_lock = threading.Lock()
_active: dict[str, Any] = {}
"""``sampler`` and ``attributes`` while registered."""


def _callback(field: str) -> Callable[[Any], Iterable[Any]]:
    """Report the registration active now, not the one that made the callback: a meter keeps
    the first callbacks of an instrument name, so a registration after a stop reuses them."""
    def observe(options: Any) -> Iterable[Any]:
        from opentelemetry.metrics import Observation

        with _lock:
            sampler, attributes = _active.get("sampler"), _active.get("attributes")
        if sampler is None:  # stopped
            return []
        return [Observation(sampler.read()[field], attributes)]

    return observe


def register_worker_gauges(meter: Any, worker_id: str, worker_name: str | None = None) -> None:
    """Register the nine worker gauges with ``meter`` (an OpenTelemetry ``Meter``); a second
    call before :func:`stop_worker_gauges` does nothing."""
    with _lock:
        if _active:
            return
        attributes = {"worker.id": worker_id}
        if worker_name:
            attributes["worker.name"] = worker_name
        sampler = _Sampler()
        _active.update(sampler=sampler, attributes=attributes)
        for name, field, unit, description in _GAUGES:
            meter.create_observable_gauge(name, callbacks=[_callback(field)], unit=unit,
                                          description=description)


def stop_worker_gauges() -> None:
    """Stop reporting the worker gauges (they report nothing from now on)."""
    with _lock:
        _active.clear()
