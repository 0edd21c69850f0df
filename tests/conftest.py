"""Fixtures every test directory may use."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


class OtelGlobals:
    """The process's OpenTelemetry tracer, meter and logger providers, set for one test and
    put back after it.

    OpenTelemetry lets a process set each global provider once, so this saves and resets its
    private globals: the only way to give each test providers of its own.
    """

    def __init__(self) -> None:
        from opentelemetry import trace
        from opentelemetry._logs import _internal as logs
        from opentelemetry.metrics import _internal as metrics

        self._modules = ((trace, "_TRACER_PROVIDER"), (metrics, "_METER_PROVIDER"),
                         (logs, "_LOGGER_PROVIDER"))
        self._saved = [(getattr(module, name), getattr(module, f"{name}_SET_ONCE"))
                       for module, name in self._modules]
        self._installed: list[Any] = []

    def _reset(self, index: int) -> None:
        from opentelemetry.util._once import Once

        module, name = self._modules[index]
        setattr(module, name, None)
        setattr(module, f"{name}_SET_ONCE", Once())

    def clear(self) -> None:
        """No provider set, as in a new process."""
        for index in range(len(self._modules)):
            self._reset(index)

    def tracer(self, provider: Any) -> None:
        """Make ``provider`` the tracer provider (shut down after the test)."""
        from opentelemetry import trace

        self._reset(0)
        trace.set_tracer_provider(provider)
        self._installed.append(provider)

    def meter(self, provider: Any) -> None:
        """Make ``provider`` the meter provider (shut down after the test)."""
        from opentelemetry import metrics

        self._reset(1)
        metrics.set_meter_provider(provider)
        self._installed.append(provider)

    def logger(self, provider: Any) -> None:
        """Make ``provider`` the logger provider (shut down after the test)."""
        from opentelemetry import _logs

        self._reset(2)
        _logs.set_logger_provider(provider)
        self._installed.append(provider)

    def restore(self) -> None:
        for provider in self._installed:
            provider.shutdown()
        for (module, name), (provider, once) in zip(self._modules, self._saved, strict=True):
            setattr(module, name, provider)
            setattr(module, f"{name}_SET_ONCE", once)


@pytest.fixture
def otel_globals() -> Iterator[OtelGlobals]:
    """Set the process's OpenTelemetry providers for this test (see :class:`OtelGlobals`)."""
    globals_ = OtelGlobals()
    try:
        yield globals_
    finally:
        globals_.restore()


@pytest.fixture
def fresh_otel(otel_globals: OtelGlobals) -> Iterator[None]:
    """No tracer, logger or meter provider set (as in a new process), nothing routed to the
    engine, ``Logger`` records not sent to OpenTelemetry; all restored afterwards."""
    from iii_rx.telemetry import export, ids

    installed, logs_on = dict(export._INSTALLED), ids.OTEL_LOGS[0]
    otel_globals.clear()
    export._INSTALLED.clear()
    try:
        yield
    finally:
        for provider in export._INSTALLED.values():
            provider.shutdown()
        export._INSTALLED.clear()
        export._INSTALLED.update(installed)
        ids.OTEL_LOGS[0] = logs_on


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Shut down the compat workers a failed test left open: each keeps the process alive
    until its ``shutdown()`` (as the official SDK's), which would hold pytest at exit."""
    import gc

    try:
        from iii_rx.compat.client import III
    except Exception:  # iii_rx does not import: the collection errors tell why; don't hide them
        return

    for worker in [obj for obj in gc.get_objects() if type(obj) is III]:  # no proxies
        # One whose __init__ raised has no client (gc finds it through a kept traceback).
        client = getattr(worker, "_client", None)
        if client is not None and not client.closed:
            worker.shutdown()
