"""Export over the engine's ``/otel`` socket: spans, logs and metrics with no collector.

When a client enables OpenTelemetry and the process has no exporter of its own (iii_rx
installed the tracer provider and ``OTEL_TRACES_EXPORTER`` is unset; no logger or meter
provider is set), :func:`attach` makes the engine the collector, as the official SDKs do:

* an :class:`EngineLink` per client: a second websocket to ``engine_ws_url`` (else the
  client's URL) with ``/otel`` appended, the client's handshake headers (unless
  ``engine_ws_headers`` is set), its own task on the client's loop, reconnecting with backoff;
* one set of process-wide exporters (:class:`EngineSpanExporter`, :class:`EngineLogExporter`,
  :class:`EngineMetricExporter`) behind a ``BatchSpanProcessor``, a ``BatchLogRecordProcessor``
  and a ``PeriodicExportingMetricReader``; each export serialises its batch
  (:mod:`~iii_rx.telemetry.export_otlp`) and hands one tagged frame to the oldest open link.

Nothing blocks the hot path: spans and records are batched by the SDK's processors on their
own threads, and a link queues at most :attr:`EngineLink.max_frames` frames, dropping the
oldest (counted in :attr:`EngineLink.dropped`) while the engine is unreachable. Closing the
client flushes the processors, sends what is queued (bounded by a grace period) and closes
the socket. A provider or exporter the user configured is left alone and keeps working.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData

from iii_rx.telemetry.config import OtelConfig
from iii_rx.telemetry.export_otlp import LOGS, METRICS, SPANS, logs_json, metrics_json, spans_json
from iii_rx.telemetry.histograms import OwnHistograms

__all__ = [
    "EngineLink",
    "EngineLogExporter",
    "EngineMetricExporter",
    "EngineSpanExporter",
    "attach",
    "flush",
    "install",
    "links",
    "otel_url",
]

log = logging.getLogger("iii_rx.telemetry")

_LINKS: list[EngineLink] = []
"""Open links, oldest first; the exporters send to the first."""
_LINKS_LOCK = threading.Lock()


def otel_url(url: str) -> str:
    """``url`` (a worker URL) with its path ending in ``/otel``; query and fragment kept."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    if not path.endswith("/otel"):
        path += "/otel"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def _send(tag: bytes, payload: bytes) -> bool:
    with _LINKS_LOCK:
        link = _LINKS[0] if _LINKS else None
    if link is None:
        return False
    link.send(tag + payload)
    return True


class EngineLink:
    """One client's telemetry socket: a bounded queue of frames and the task sending them."""

    max_frames = 1000
    """Frames queued at most; past it the oldest is dropped."""

    def __init__(self, url: str, headers: Mapping[str, str] | None,
                 loop: asyncio.AbstractEventLoop, *, max_frames: int | None = None) -> None:
        self.url = url
        self.headers = dict(headers or {})
        self.loop = loop
        if max_frames is not None:
            self.max_frames = max_frames
        self._queue: deque[bytes] = deque()
        self._lock = threading.Lock()
        self._ready = asyncio.Event()
        self._drained = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._failing = False
        """Whether the last attempt to open the socket failed (a close then waits for none)."""
        self.sent = 0
        """Frames written to the socket."""
        self.dropped = 0
        """Frames dropped because the queue was full."""
        self.connected = asyncio.Event()
        """Set while the socket is open (tests and tools wait on it)."""

    def start(self) -> None:
        """Take the exporters' frames from now on and start sending them on :attr:`loop`
        (called from any thread)."""
        with _LINKS_LOCK:
            _LINKS.append(self)
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            self._spawn()
        else:
            self.loop.call_soon_threadsafe(self._spawn)

    def _spawn(self) -> None:
        if self._task is None and not self._closed:
            self._task = self.loop.create_task(self._run(), name="iii-rx-otel-link")

    def send(self, frame: bytes) -> None:
        """Queue one frame; any thread, never blocks."""
        with self._lock:
            if len(self._queue) >= self.max_frames:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(frame)
        try:
            self.loop.call_soon_threadsafe(self._ready.set)
        except RuntimeError:  # the loop is closed
            pass

    def _take(self) -> bytes | None:
        with self._lock:
            return self._queue.popleft() if self._queue else None

    async def _run(self) -> None:
        from websockets.asyncio.client import connect

        delay = 0.5
        while True:
            try:
                async with connect(self.url, additional_headers=self.headers or None,
                                   compression=None, open_timeout=10) as ws:
                    self.connected.set()
                    self._failing = False
                    delay = 0.5
                    while True:
                        frame = self._take()
                        if frame is None:
                            self._drained.set()
                            self._ready.clear()
                            await self._ready.wait()
                            continue
                        try:
                            await ws.send(frame)
                        except BaseException:
                            with self._lock:
                                self._queue.appendleft(frame)
                            raise
                        self.sent += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # unreachable, refused, dropped: retry
                self.connected.clear()
                self._failing = True
                # The first failure in a row is a WARNING (a wrong token or URL loses every
                # span, and would otherwise go unseen); its retries stay at DEBUG.
                level = logging.DEBUG if delay > 0.5 else logging.WARNING
                log.log(level, "telemetry socket %s: %s; retrying in %.1fs", self.url, exc,
                        delay)
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, 30.0)

    def pending(self) -> int:
        """Frames queued, not yet sent."""
        return len(self._queue)

    async def aclose(self, grace: float = 2.0) -> None:
        """Stop taking frames, send what is queued (at most ``grace`` seconds), close."""
        with _LINKS_LOCK:
            if self in _LINKS:
                _LINKS.remove(self)
        self._closed = True
        task, self._task = self._task, None
        if task is None:
            return
        if self._queue and not self._failing:  # open or still opening: give it the grace
            self._drained.clear()
            try:
                await asyncio.wait_for(self._drained.wait(), grace)
            except asyncio.TimeoutError:
                log.debug("telemetry socket %s: %d frame(s) unsent at close", self.url,
                          len(self._queue))
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass


class EngineSpanExporter:
    """A span exporter sending each batch as one ``OTLP`` frame."""

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        if not spans:
            return SpanExportResult.SUCCESS
        ok = _send(SPANS, spans_json(spans))
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class EngineLogExporter:
    """A log record exporter sending each batch as one ``LOGS`` frame."""

    def export(self, batch: Sequence[Any]) -> Any:
        from opentelemetry.sdk._logs import export

        result = getattr(export, "LogRecordExportResult", None) or export.LogExportResult
        if not batch:
            return result.SUCCESS
        return result.SUCCESS if _send(LOGS, logs_json(batch)) else result.FAILURE

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class EngineMetricExporter(MetricExporter):
    """A push metric exporter sending each collection as one ``MTRC`` frame, with the
    provider's own duration histograms (``histograms``, of ``resource``) in the ``iii_rx``
    scope."""

    def __init__(self, histograms: OwnHistograms | None = None, resource: Any = None) -> None:
        super().__init__()
        self.histograms = histograms
        self.resource = resource

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000,
               **kwargs: Any) -> MetricExportResult:
        own = self.histograms.metrics() if self.histograms is not None else []
        if not own and not any(sm.metrics for rm in metrics_data.resource_metrics
                               for sm in rm.scope_metrics):
            return MetricExportResult.SUCCESS
        ok = _send(METRICS, metrics_json(metrics_data, own, self.resource))
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


def links() -> list[EngineLink]:
    """The open links, oldest (the one exporting) first."""
    with _LINKS_LOCK:
        return list(_LINKS)


# ---------------------------------------------------------------------- installation

_INSTALLED: dict[str, Any] = {}
"""What :func:`install` set up in this process: ``spans`` (the provider it exports),
``logs`` (the logger provider), ``metrics`` (the meter provider)."""
_INSTALL_LOCK = threading.Lock()


def _interval(config_value: int | None, default: int) -> int:
    return config_value if config_value is not None and config_value >= 0 else default


def install(tracer_provider: Any, config: OtelConfig) -> None:
    """Route this process's telemetry to the engine where the user configured nothing:
    spans of ``tracer_provider`` (when iii_rx installed it with no exporter), OpenTelemetry
    logs (when no logger provider is set, unless ``logs_enabled`` is ``False``) and metrics
    (when no meter provider is set and ``metrics_enabled``). Idempotent."""
    with _INSTALL_LOCK:
        if "spans" not in _INSTALLED and getattr(tracer_provider, "iii_rx_default", False):
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            tracer_provider.add_span_processor(BatchSpanProcessor(
                EngineSpanExporter(),  # type: ignore[arg-type]
                schedule_delay_millis=_interval(config.spans_flush_interval_ms, 100)))
            _INSTALLED["spans"] = tracer_provider
        resource = getattr(tracer_provider, "resource", None)
        if "logs" not in _INSTALLED and config.logs_enabled is not False:
            _install_logs(resource, config)
        if "metrics" not in _INSTALLED and config.metrics_enabled:
            _install_metrics(resource, config)


def _install_logs(resource: Any, config: OtelConfig) -> None:
    from opentelemetry import _logs
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    if type(_logs.get_logger_provider()).__name__ not in ("ProxyLoggerProvider",
                                                           "NoOpLoggerProvider"):
        return  # the user's provider: keep it
    provider = LoggerProvider(resource=resource) if resource is not None else LoggerProvider()
    provider.add_log_record_processor(BatchLogRecordProcessor(
        EngineLogExporter(),  # type: ignore[arg-type]
        schedule_delay_millis=_interval(config.logs_flush_interval_ms, 100),
        max_export_batch_size=max(1, config.logs_batch_size or 512)))
    _logs.set_logger_provider(provider)
    _INSTALLED["logs"] = provider


def _install_metrics(resource: Any, config: OtelConfig) -> None:
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    if type(metrics.get_meter_provider()).__name__ not in ("_ProxyMeterProvider",
                                                           "NoOpMeterProvider"):
        return  # the user's provider: keep it
    if resource is None:
        from opentelemetry.sdk.resources import Resource

        resource = Resource.create()  # the provider's default, named for the exporter too
    # Nobody else reads this provider: the durations go to histograms of iii_rx's own.
    histograms = OwnHistograms()
    reader = PeriodicExportingMetricReader(
        EngineMetricExporter(histograms, resource),
        export_interval_millis=max(1, config.metrics_export_interval_ms))
    options: dict[str, Any] = {"metric_readers": [reader], "resource": resource}
    try:  # the engine's intake keeps no exemplars: sampling them would cost every record
        from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter
    except ImportError:  # SDK before 1.26: no exemplars at all
        pass
    else:
        options["exemplar_filter"] = AlwaysOffExemplarFilter()
    provider = MeterProvider(**options)
    provider.iii_rx_histograms = histograms  # type: ignore[attr-defined]  # for Metrics.of
    metrics.set_meter_provider(provider)
    _INSTALLED["metrics"] = provider


def flush(timeout_millis: int = 2000) -> None:
    """Push what the installed processors hold to the links now (blocking; any thread)."""
    for provider in list(_INSTALLED.values()):
        try:
            provider.force_flush(timeout_millis)
        except Exception:  # a provider shut down by the user
            log.debug("flushing %r failed", provider, exc_info=True)


def attach(client: Any, config: OtelConfig, tracer_provider: Any) -> EngineLink | None:
    """Export to ``client``'s engine when nothing else is configured; the link closes with
    the client (after a flush). ``None`` when the user's own exporters are in charge."""
    install(tracer_provider, config)
    if not _INSTALLED:
        return None
    url = otel_url(config.engine_ws_url or client.url)
    headers = (config.engine_ws_headers if config.engine_ws_headers is not None
               else client.headers)
    link = EngineLink(url, headers, client.bridge.loop)
    link.start()

    async def close() -> None:
        await asyncio.to_thread(flush)
        await link.aclose()

    client._telemetry_stack.push_async_callback(close)
    return link
