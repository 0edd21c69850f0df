"""Metrics of one client: calls, invocations, connection state, channel bytes.

:class:`Metrics` exists only when ``connect(otel=...)`` enabled OpenTelemetry and
``OtelConfig.metrics_enabled`` is not ``False``; the hooks that feed it are the tracing ones
(:mod:`iii_rx.telemetry.tracing`), so metrics add no ``if`` of their own to the hot path.

Instruments (meter ``iii_rx``; the attributes ``iii.function.id`` and ``iii.worker.name`` on
the per-function ones):

* ``iii.client.calls`` / ``iii.client.call.errors`` (``iii.error.code`` too: a failure, a
  timeout and a cancelled call each count) / ``iii.client.call.duration`` (histogram, s): the
  calls this client made;
* ``iii.server.invocations`` / ``iii.server.invocation.errors`` /
  ``iii.server.invocation.duration``: the invocations its handlers answered;
* ``iii.connection.state_changes`` (``iii.connection.state``: the new state) and
  ``iii.connection.reconnects`` (a connection regained after a loss);
* ``iii.channel.bytes_read`` / ``iii.channel.bytes_written`` (By): what this process's
  channel ends moved.

Counts cost a ``dict`` update per call (observable counters read them when the provider
collects); a duration is recorded for the calls whose span the sampler kept (all of them
unless a sampler says otherwise), so sampling makes both spans and metrics cheap. Durations
reach the SDK's histograms in runs (:class:`Durations`): the SDK's ``record`` walks a long
path, which costs a busy worker three times what it costs in a tight loop.

They go to the process's ``MeterProvider``. When none is configured, ``OTEL_METRICS_EXPORTER``
(``console``, or ``otlp`` when installed) makes iii_rx install one exporting there; otherwise
the engine export (:mod:`~iii_rx.telemetry.export`) installs one sending to the engine, and
on that one the duration histograms are iii_rx's own
(:mod:`~iii_rx.telemetry.histograms`), a fraction of the SDK's cost per value.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from opentelemetry import context as otel_context
from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.metrics._internal import _ProxyMeterProvider

from iii_rx.state import ConnectionState
from iii_rx.telemetry.config import OtelConfig
from iii_rx.telemetry.histograms import (
    SCOPE,
    Key,
    OwnHistogram,
    OwnHistograms,
    function_attributes,
)

__all__ = ["Metrics", "install_meter_provider"]

log = logging.getLogger("iii_rx.telemetry")

_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75,
            1.0, 2.5, 5.0, 7.5, 10.0, 30.0, 60.0)
"""Histogram buckets for call durations (seconds; local round trips take about a ms)."""


def install_meter_provider(config: OtelConfig, resource: Any = None) -> None:
    """When no meter provider is set and ``OTEL_METRICS_EXPORTER`` names one (``console``,
    ``otlp`` if installed), install an SDK provider exporting there."""
    if not isinstance(metrics.get_meter_provider(), _ProxyMeterProvider):
        return
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader

    kind = os.environ.get("OTEL_METRICS_EXPORTER", "").strip().lower()
    exporter: MetricExporter
    if kind == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        exporter = ConsoleMetricExporter()
    elif kind == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # type: ignore[import-not-found]
                OTLPMetricExporter,
            )
        except ImportError:
            log.warning("OTEL_METRICS_EXPORTER=otlp needs opentelemetry-exporter-otlp-proto-http")
            return
        exporter = OTLPMetricExporter()
    else:
        return
    reader = PeriodicExportingMetricReader(
        exporter, export_interval_millis=max(1, config.metrics_export_interval_ms))
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]) if resource is None
                               else MeterProvider(resource=resource, metric_readers=[reader]))


class Tally:
    """A monotonic total read at collection time (``add`` is a locked ``+=``, no SDK call:
    channel ends of several loops may add)."""

    __slots__ = ("_lock", "value")

    def __init__(self) -> None:
        self.value = 0
        self._lock = threading.Lock()

    def add(self, amount: int) -> None:
        with self._lock:
            self.value += amount


class Durations:
    """Durations on their way to the SDK's histograms, handed over in runs.

    An SDK histogram's ``record`` cleans and hashes the attributes, takes locks and finds the
    bucket: a long path of Python that a busy worker runs with its code and data cold (the
    event loop and the handlers ran in between), where it costs about three times what it
    costs in a tight loop (measured: handing durations over in runs took a third off what
    metrics cost a busy worker, ~10 µs of CPU per traced invocation).
    So :meth:`add` keeps a duration and every :data:`RUN` th hands the run over; the
    observable counters' callbacks call :meth:`flush` first, and the SDK runs every callback
    before it reads a histogram, so a collection sees every duration recorded before it.
    With a context (``record(..., context=)``, SDK 1.2x on) each keeps the one it was taken
    in, for exemplars; their time is the hand-over's.
    """

    RUN = 128

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[tuple[metrics.Histogram, float, dict[str, Any],
                                  otel_context.Context | None]] = []
        self._contexts: dict[int, bool] = {}
        """Whether each histogram's ``record`` takes a ``context`` (by id)."""

    def add(self, histogram: metrics.Histogram, seconds: float, attributes: dict[str, Any],
            context: otel_context.Context | None = None) -> None:
        """Record ``seconds`` (any thread); ``context``: the one to record it in."""
        with self._lock:
            pending = self._pending
            pending.append((histogram, seconds, attributes, context))
            if len(pending) < self.RUN:
                return
            self._pending = []
        self._record(pending)

    def flush(self) -> None:
        """Hand every kept duration to its histogram now."""
        with self._lock:
            pending, self._pending = self._pending, []
        self._record(pending)

    def _record(self, run: list[tuple[metrics.Histogram, float, dict[str, Any],
                                      otel_context.Context | None]]) -> None:
        for histogram, seconds, attributes, context in run:
            if context is not None and self._takes_context(histogram):
                histogram.record(seconds, attributes, context=context)
            else:
                histogram.record(seconds, attributes)

    def _takes_context(self, histogram: metrics.Histogram) -> bool:
        found = self._contexts.get(id(histogram))
        if found is None:
            try:
                found = "context" in inspect.signature(histogram.record).parameters
            except (TypeError, ValueError):
                found = False
            self._contexts[id(histogram)] = found
        return found


CLOSED_KEPT = 32
"""Worker names whose clients all closed whose series are still reported (the oldest go)."""


def _failed(key: tuple[str, str, str]) -> dict[str, Any]:
    return {"iii.function.id": key[0], "iii.worker.name": key[1], "iii.error.code": key[2]}


Duration = metrics.Histogram | OwnHistogram
"""A duration histogram: the SDK's, or one of ``own`` (see :func:`_histogram`)."""


def _histogram(meter: metrics.Meter, own: OwnHistograms | None, name: str,
               description: str) -> Duration:
    """A duration histogram (s) with :data:`_SECONDS` as its buckets: one of ``own`` when the
    provider has them, else the SDK's with :data:`_SECONDS` advised (an SDK older than 1.23
    takes no advice and keeps its default buckets)."""
    if own is not None:
        return own.get(name, description, _SECONDS)
    try:
        return meter.create_histogram(name, unit="s", description=description,
                                      explicit_bucket_boundaries_advisory=_SECONDS)
    except TypeError:
        return meter.create_histogram(name, unit="s", description=description)


def _tally(tally: Tally) -> Any:
    def callback(options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(tally.value)]
    return callback


class Metrics:
    """The instruments of this process on one meter provider (see the module docstring).

    Counts are plain ``dict``/``int`` updates on the hot path, read by observable counters
    when the provider collects; only the duration histograms call the SDK per call, and only
    for sampled calls. One per provider (:meth:`of`): OpenTelemetry keeps the first callback
    of an instrument name, so the clients of a process share it.
    """

    _of: ClassVar[weakref.WeakKeyDictionary[Any, Metrics]] = weakref.WeakKeyDictionary()

    @classmethod
    def of(cls, provider: metrics.MeterProvider) -> Metrics:
        """The instance of ``provider`` (made on first use)."""
        found = cls._of.get(provider)
        if found is None:
            found = cls._of[provider] = cls(provider)
        return found

    def __init__(self, provider: metrics.MeterProvider) -> None:
        meter = provider.get_meter(SCOPE)
        self._lock = threading.Lock()  # pool threads and several clients' loops count here
        self.calls: dict[Key, int] = {}
        self.call_errors: dict[tuple[str, str, str], int] = {}
        self.invocations: dict[Key, int] = {}
        self.invocation_errors: dict[tuple[str, str, str], int] = {}
        self.bytes_read = Tally()
        self.bytes_written = Tally()
        self.durations = Durations()
        self._open: dict[str, int] = {}  # clients open per worker name
        self._closed: dict[str, None] = {}  # names with no client open, oldest first
        # A provider iii_rx installed for the engine has histograms of its own (see
        # iii_rx.telemetry.histograms); any other gets the SDK's.
        own = getattr(provider, "iii_rx_histograms", None)
        meter.create_observable_counter(
            "iii.client.calls", [self._observe(self.calls, function_attributes)], unit="{call}",
            description="Calls this client made")
        meter.create_observable_counter(
            "iii.client.call.errors", [self._observe(self.call_errors, _failed)],
            unit="{call}",
            description="Calls that failed, timed out or were cancelled")
        self.call_duration = _histogram(
            meter, own, "iii.client.call.duration", "Round trips of sampled calls")
        meter.create_observable_counter(
            "iii.server.invocations", [self._observe(self.invocations, function_attributes)],
            unit="{invocation}", description="Invocations this worker answered")
        meter.create_observable_counter(
            "iii.server.invocation.errors", [self._observe(self.invocation_errors, _failed)],
            unit="{invocation}", description="Invocations whose handler failed")
        self.invocation_duration = _histogram(
            meter, own, "iii.server.invocation.duration", "Run times of sampled invocations")
        meter.create_observable_counter(
            "iii.channel.bytes_read", [_tally(self.bytes_read)], unit="By",
            description="Bytes read from channels")
        meter.create_observable_counter(
            "iii.channel.bytes_written", [_tally(self.bytes_written)], unit="By",
            description="Bytes written to channels")
        self.state_changes = meter.create_counter(
            "iii.connection.state_changes", unit="{change}",
            description="Connection state changes (attribute: the new state)")
        self.reconnects = meter.create_counter(
            "iii.connection.reconnects", unit="{reconnect}",
            description="Connections regained after a loss")

    def join(self, worker_name: str) -> None:
        """A client named ``worker_name`` counts here from now on."""
        with self._lock:
            self._open[worker_name] = self._open.get(worker_name, 0) + 1
            self._closed.pop(worker_name, None)

    def leave(self, worker_name: str) -> None:
        """A client named ``worker_name`` closed. Its series stay reported (every reader gets
        its last counts) until :data:`CLOSED_KEPT` names closed after it; then they are
        forgotten. Kept for ever, every later export would carry them: a process that opens
        a client per job would send (and make the engine keep) one more series per instrument
        with each."""
        with self._lock:
            left = self._open.get(worker_name, 0) - 1
            if left > 0:
                self._open[worker_name] = left
                return
            self._open.pop(worker_name, None)
            self._closed[worker_name] = None
            if len(self._closed) <= CLOSED_KEPT:
                return
            oldest = next(iter(self._closed))
            del self._closed[oldest]
            tables: tuple[dict[Any, int], ...] = (self.calls, self.invocations,
                                                  self.call_errors, self.invocation_errors)
            for counts in tables:
                for key in [key for key in counts if key[1] == oldest]:
                    del counts[key]
        for duration in (self.call_duration, self.invocation_duration):
            if isinstance(duration, OwnHistogram):
                duration.forget(oldest)

    def _observe(self, counts: dict[Any, int],
                 attributes: Callable[[Any], dict[str, Any]]) -> Any:
        """The callback of an observable counter reading ``counts``."""
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            self.durations.flush()  # before the SDK reads the histograms (see Durations)
            with self._lock:  # the collecting thread reads while loops and threads count
                found = list(counts.items())
            return [Observation(n, attributes(key)) for key, n in found]
        return callback

    def call_done(self, key: Key, attributes: dict[str, Any], started: float,
                  code: str | None, sampled: bool) -> None:
        """A call settled (``code`` is its error code, ``None`` if it succeeded); on the
        client's loop, which is not the other clients' (the lock keeps their counts)."""
        self._done(self.calls, self.call_errors, self.call_duration, key, attributes, started,
                   code, sampled, None)

    def invocation_done(self, key: Key, attributes: dict[str, Any], started: float,
                        code: str | None, sampled: bool,
                        context: otel_context.Context | None = None) -> None:
        """An invocation was answered (or abandoned: ``code`` ``"abandoned"``); ``context``
        is its handler's (for exemplars)."""
        self._done(self.invocations, self.invocation_errors, self.invocation_duration, key,
                   attributes, started, code, sampled, context)

    def _done(self, counts: dict[Key, int], errors: dict[tuple[str, str, str], int],
              duration: Duration, key: Key, attributes: dict[str, Any],
              started: float, code: str | None, sampled: bool,
              context: otel_context.Context | None) -> None:
        with self._lock:
            counts[key] = counts.get(key, 0) + 1
            if code is not None:
                failed = (*key, code)
                errors[failed] = errors.get(failed, 0) + 1
        if sampled:
            seconds = time.perf_counter() - started
            if isinstance(duration, OwnHistogram):
                duration.add(key, seconds)
            else:
                self.durations.add(duration, seconds, attributes, context)

    def watch(self, state: Any) -> Any:
        """Count the changes of a client's connection ``state`` stream; returns the
        subscription."""
        lost = [False]

        def on_state(value: ConnectionState) -> None:
            self.state_changes.add(1, {"iii.connection.state": value.value})
            if value is ConnectionState.RECONNECTING:
                lost[0] = True
            elif value is ConnectionState.CONNECTED and lost[0]:
                lost[0] = False
                self.reconnects.add(1)

        return state.subscribe(on_state)
