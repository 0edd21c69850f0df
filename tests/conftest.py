"""Fixtures every test directory may use."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture
def fresh_otel() -> Iterator[None]:
    """No tracer, logger or meter provider set (as in a new process), nothing routed to the
    engine, ``Logger`` records not sent to OpenTelemetry; all restored afterwards.

    OpenTelemetry lets a process set each global provider once, so this resets its private
    globals: the only way to test what a process does on its first ``connect(otel=...)``.
    """
    from opentelemetry import trace
    from opentelemetry._logs import _internal as logs_internal
    from opentelemetry.metrics import _internal as metrics_internal
    from opentelemetry.util._once import Once

    from iii_rx.telemetry import export, ids

    saved = (trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE,
             logs_internal._LOGGER_PROVIDER, logs_internal._LOGGER_PROVIDER_SET_ONCE,
             metrics_internal._METER_PROVIDER, metrics_internal._METER_PROVIDER_SET_ONCE,
             dict(export._INSTALLED), ids.OTEL_LOGS[0])
    trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE = None, Once()
    logs_internal._LOGGER_PROVIDER, logs_internal._LOGGER_PROVIDER_SET_ONCE = None, Once()
    metrics_internal._METER_PROVIDER, metrics_internal._METER_PROVIDER_SET_ONCE = None, Once()
    export._INSTALLED.clear()
    try:
        yield
    finally:
        for provider in export._INSTALLED.values():
            provider.shutdown()
        (trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE,
         logs_internal._LOGGER_PROVIDER, logs_internal._LOGGER_PROVIDER_SET_ONCE,
         metrics_internal._METER_PROVIDER, metrics_internal._METER_PROVIDER_SET_ONCE,
         installed, ids.OTEL_LOGS[0]) = saved
        export._INSTALLED.clear()
        export._INSTALLED.update(installed)
