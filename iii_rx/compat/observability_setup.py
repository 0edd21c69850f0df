"""``init_otel`` / ``flush_otel`` / ``shutdown_otel`` of ``iii_helpers.observability``.

``init_otel(config)`` does what ``connect(otel=config)`` does for a client, without a
client: it installs iii_rx's tracer provider (unless the process has one), and when no
exporter is configured sends spans, OpenTelemetry logs and metrics to the engine's ``/otel``
socket (``config.engine_ws_url``, else ``III_URL``, else ``ws://localhost:49134``) from a
loop of its own, or from ``loop`` when given (:mod:`iii_rx.telemetry.export`). Later calls
are no-ops until ``shutdown_otel``.

``shutdown_otel`` flushes and closes that socket; called on the socket's own loop it cannot
wait, so the close runs as a task this module holds until it ends, and
``shutdown_otel_async`` awaits it. OpenTelemetry lets a process set its
providers once, so they stay installed (and keep feeding clients that trace); only the
engine link goes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any

from iii_rx.telemetry.config import OtelConfig, resolve_otel

__all__ = ["attach_event_loop", "flush_otel", "get_logger", "init_otel", "shutdown_otel",
           "shutdown_otel_async"]

log = logging.getLogger("iii_rx.compat")

DEFAULT_URL = "ws://localhost:49134"
_lock = threading.Lock()
_state: dict[str, Any] = {}
"""``link`` (the EngineLink, when exporting), ``thread`` (the LoopThread we started)."""
_closing: set[asyncio.Task[None]] = set()
"""Closes started on the link's own loop, held until they end (:func:`shutdown_otel_async`
awaits them)."""


def _is_initialized() -> bool:
    return bool(_state)


def init_otel(config: OtelConfig | None = None,
              loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Set up OpenTelemetry for this process (see the module docstring); no-op when the
    config (or ``OTEL_ENABLED``) says off, or when already set up."""
    resolved = resolve_otel(config if config is not None else OtelConfig())
    if resolved is None:
        return
    from iii_rx.telemetry import export
    from iii_rx.telemetry.ids import propagate_otel
    from iii_rx.telemetry.tracing import tracer_provider

    with _lock:
        if _state:
            return
        propagate_otel()
        provider = tracer_provider(resolved)
        export.install(provider, resolved)
        _state["provider"] = provider
        if resolved.logs_enabled is not False:
            from iii_rx.telemetry import logs

            logs.enable()
        if not export._INSTALLED:
            return  # the user's exporters are in charge
        if loop is None:
            from iii_rx.aio import LoopThread

            thread = LoopThread(name="iii-rx-otel")
            _state["thread"] = thread
            loop = thread.loop
        url = export.otel_url(resolved.engine_ws_url or os.environ.get("III_URL")
                              or DEFAULT_URL)
        link = export.EngineLink(url, resolved.engine_ws_headers, loop)
        link.start()
        _state["link"] = link


def attach_event_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Accepted for compatibility: :func:`init_otel` starts its socket at once."""


async def flush_otel() -> None:
    """Push what the span, log and metric processors hold now (without shutting down)."""
    from opentelemetry import trace

    from iii_rx.telemetry import export

    provider = trace.get_tracer_provider()
    flush = getattr(provider, "force_flush", None)
    if flush is not None:
        await asyncio.to_thread(flush)
    await asyncio.to_thread(export.flush)


def shutdown_otel() -> None:
    """Flush and close the engine link :func:`init_otel` opened (blocking, bounded)."""
    from iii_rx.telemetry import export

    with _lock:
        state = dict(_state)
        _state.clear()
    if not state:
        return
    export.flush()
    link, thread = state.get("link"), state.get("thread")
    if link is not None:
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is link.loop:
            task = running.create_task(link.aclose())  # cannot wait on our own loop
            _closing.add(task)
            task.add_done_callback(_closed)
        elif not link.loop.is_closed():
            future = asyncio.run_coroutine_threadsafe(link.aclose(), link.loop)
            try:
                future.result(timeout=5)
            except Exception:  # the loop stopped meanwhile
                pass
    if thread is not None:
        thread.stop()


def _closed(task: asyncio.Task[None]) -> None:
    _closing.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.warning("closing the telemetry socket failed", exc_info=task.exception())


async def shutdown_otel_async() -> None:
    """:func:`shutdown_otel` from async code, awaiting the socket's close (also one an
    earlier :func:`shutdown_otel` started on this loop)."""
    await asyncio.to_thread(shutdown_otel)
    running = asyncio.get_running_loop()
    pending = [t for t in _closing if t.get_loop() is running]
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)


def get_logger() -> Any:
    """The OpenTelemetry logger records go to once :func:`init_otel` ran, else ``None``."""
    if not _state:
        return None
    from opentelemetry import _logs

    return _logs.get_logger("iii_rx.compat")
