"""Metrics of one client: calls, invocations, connection state, channel bytes.

:class:`Metrics` exists only when ``connect(otel=...)`` enabled OpenTelemetry and
``OtelConfig.metrics_enabled`` is not ``False``; the hooks that feed it are the tracing ones
(:mod:`iii_rx.telemetry.tracing`), so metrics add no ``if`` of their own to the hot path.

Instruments (meter ``iii_rx``; the attributes ``iii.function.id`` and ``iii.worker.name`` on
the per-function ones):

* ``iii.client.call.duration`` (histogram, s) and ``iii.client.call.errors``: the calls this
  client made, their count being the histogram's (as OpenTelemetry's HTTP metrics count
  requests: one instrument to record per call, not two); a failure, a timeout and a cancelled
  call each count as an error, ``iii.error.code`` says which;
* ``iii.server.invocation.duration`` (histogram, s) and ``iii.server.invocation.errors``: the
  invocations its handlers answered;
* ``iii.connection.state_changes`` (``iii.connection.state``: the new state) and
  ``iii.connection.reconnects`` (a connection regained after a loss);
* ``iii.channel.bytes_read`` / ``iii.channel.bytes_written`` (By, ``iii.channel.direction``
  is implied by the name): what this process's channel ends moved.

They go to the process's ``MeterProvider``. When none is configured, ``OTEL_METRICS_EXPORTER``
(``console``, or ``otlp`` when installed) makes iii_rx install one exporting there; otherwise
the engine export (:mod:`~iii_rx.telemetry.export`) installs one sending to the engine.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics._internal import _ProxyMeterProvider

from iii_rx.state import ConnectionState
from iii_rx.telemetry.config import OtelConfig

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


class Metrics:
    """The instruments of one client (see the module docstring)."""

    def __init__(self, provider: metrics.MeterProvider) -> None:
        meter = provider.get_meter("iii_rx")
        self.call_duration = meter.create_histogram(
            "iii.client.call.duration", unit="s",
            description="Calls this client made (their count) and their round trips",
            explicit_bucket_boundaries_advisory=_SECONDS)
        self.call_errors = meter.create_counter(
            "iii.client.call.errors", unit="{call}", description="Calls that failed")
        self.invocation_duration = meter.create_histogram(
            "iii.server.invocation.duration", unit="s",
            description="Invocations this worker answered (their count) and their run times",
            explicit_bucket_boundaries_advisory=_SECONDS)
        self.invocation_errors = meter.create_counter(
            "iii.server.invocation.errors", unit="{invocation}",
            description="Invocations whose handler failed")
        self.state_changes = meter.create_counter(
            "iii.connection.state_changes", unit="{change}",
            description="Connection state changes (attribute: the new state)")
        self.reconnects = meter.create_counter(
            "iii.connection.reconnects", unit="{reconnect}",
            description="Connections regained after a loss")
        self.bytes_read = meter.create_counter(
            "iii.channel.bytes_read", unit="By", description="Bytes read from channels")
        self.bytes_written = meter.create_counter(
            "iii.channel.bytes_written", unit="By", description="Bytes written to channels")
        self._lost = False

    def call_done(self, attributes: dict[str, Any], started: float,
                  code: str | None) -> None:
        """A call settled (``code`` is its error code, ``None`` if it succeeded)."""
        self.call_duration.record(time.perf_counter() - started, attributes)
        if code is not None:
            self.call_errors.add(1, {**attributes, "iii.error.code": code})

    def invocation_done(self, attributes: dict[str, Any], started: float,
                        code: str | None) -> None:
        """An invocation was answered (or abandoned: ``code`` ``"abandoned"``)."""
        self.invocation_duration.record(time.perf_counter() - started, attributes)
        if code is not None:
            self.invocation_errors.add(1, {**attributes, "iii.error.code": code})

    def on_state(self, state: ConnectionState) -> None:
        """The connection moved to ``state`` (the client's ``state`` stream)."""
        self.state_changes.add(1, {"iii.connection.state": state.value})
        if state is ConnectionState.RECONNECTING:
            self._lost = True
        elif state is ConnectionState.CONNECTED and self._lost:
            self._lost = False
            self.reconnects.add(1)
