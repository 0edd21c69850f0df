"""``iii_helpers.observability`` through compat: every official name is there and works.

The scenarios are written as an official-SDK user writes them (``register_worker``,
``InitOptions``, the helpers), with only the import lines changed.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import iii_helpers.observability as official
import pytest
from compat_helpers import wait_for_function
from opentelemetry import _logs, metrics, trace
from opentelemetry import context as otel_context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from iii_rx import compat
from iii_rx.compat import (
    BaggageSpanProcessor,
    InitOptions,
    OtelConfig,
    current_span_id,
    current_span_is_recording,
    current_trace_id,
    execute_traced_request,
    extract_baggage,
    extract_context,
    extract_traceparent,
    flush_otel,
    get_all_baggage,
    get_baggage_entry,
    init_otel,
    inject_baggage,
    inject_traceparent,
    record_span_event,
    redact,
    redact_and_truncate,
    register_worker,
    register_worker_gauges,
    remove_baggage_entry,
    resolve_max_bytes_from_env,
    set_baggage_entry,
    set_current_span_attribute,
    set_current_span_error,
    shutdown_otel,
    stop_worker_gauges,
    with_span,
)
from iii_rx.compat import observability as mirror
from iii_rx.engine import Engine
from iii_rx.telemetry import export

EXTRA_OFFICIAL = ("extract_context", "get_baggage_entry", "set_baggage_entry",
                  "remove_baggage_entry", "get_all_baggage", "shutdown_otel_async",
                  "attach_event_loop", "get_logger")
"""Public names of ``iii_helpers.observability.telemetry`` outside its package ``__all__``."""


@pytest.fixture
def spans(otel_globals: Any) -> InMemorySpanExporter:
    """The process's tracer provider is a fresh in-memory one for this test."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(BaggageSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel_globals.tracer(provider)
    return exporter


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    handle = Engine.start_in_thread(namespace_grace_ms=200)
    try:
        yield handle
    finally:
        handle.stop()


# ---------------------------------------------------------------------- surface


def test_every_official_name_is_in_compat_and_its_mirror() -> None:
    names = set(official.__all__) | set(EXTRA_OFFICIAL) | {"register_worker_gauges",
                                                          "stop_worker_gauges"}
    assert len(official.__all__) == 23
    for name in names:
        assert getattr(mirror, name) is getattr(compat, name, getattr(mirror, name)), name
    wanted = [*official.__all__, *EXTRA_OFFICIAL, "register_worker_gauges", "stop_worker_gauges"]
    missing = sorted(n for n in wanted if not hasattr(compat, n))
    assert not missing, missing
    assert sorted(set(mirror.__all__) ^ names) == []


# ---------------------------------------------------------------------- spans


async def test_with_span_sets_the_status_and_nests(spans: InMemorySpanExporter) -> None:
    async def work(span: Any) -> int:
        set_current_span_attribute("order.id", "o-1")
        record_span_event("charged", {"amount": 3})
        assert current_span_is_recording()
        assert current_trace_id() == f"{span.get_span_context().trace_id:032x}"
        assert current_span_id() == f"{span.get_span_context().span_id:016x}"

        async def inner(child: Any) -> str | None:
            return inject_traceparent()

        return await with_span("inner", inner, kind=SpanKind.CLIENT)  # type: ignore[return-value]

    traceparent = await with_span("outer", work)

    async def fail(span: Any) -> None:
        set_current_span_error("declined")
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await with_span("failing", fail, traceparent=traceparent)
    finished = {s.name: s for s in spans.get_finished_spans()}
    outer, inner, failing = finished["outer"], finished["inner"], finished["failing"]
    assert outer.status.status_code is StatusCode.OK
    assert outer.attributes["order.id"] == "o-1"
    assert [e.name for e in outer.events] == ["charged"]
    assert inner.parent is not None and inner.parent.span_id == outer.context.span_id
    assert inner.kind is SpanKind.CLIENT
    assert traceparent is not None
    assert traceparent[:52] == f"00-{inner.context.trace_id:032x}-{inner.context.span_id:016x}"
    # A span continued from a traceparent is that span's child, in its trace.
    assert failing.parent is not None and failing.parent.span_id == inner.context.span_id
    assert failing.status.status_code is StatusCode.ERROR
    assert failing.status.description == "ValueError: boom"  # as the official helper's
    assert [e.name for e in failing.events] == ["exception"]


def test_without_a_span_the_helpers_do_nothing() -> None:
    assert current_trace_id() is None and current_span_id() is None
    assert not current_span_is_recording()
    set_current_span_attribute("k", "v")
    record_span_event("nothing")
    assert inject_traceparent() is None and inject_baggage() is None


def test_trace_context_and_baggage_round_trip(spans: InMemorySpanExporter) -> None:
    traceparent = "00-" + "a1" * 16 + "-" + "b2" * 8 + "-01"
    token = otel_context.attach(extract_traceparent(traceparent))
    try:
        assert current_trace_id() == "a1" * 16 and current_span_id() == "b2" * 8
        assert inject_traceparent() == traceparent
    finally:
        otel_context.detach(token)
    token = otel_context.attach(extract_baggage("tenant=acme,plan=pro"))
    try:
        assert get_all_baggage() == {"tenant": "acme", "plan": "pro"}
        inner = otel_context.attach(set_baggage_entry("region", "eu"))
        try:
            assert get_baggage_entry("region") == "eu"
            with trace.get_tracer("t").start_as_current_span("tagged"):
                pass
        finally:
            otel_context.detach(inner)
        removed = otel_context.attach(remove_baggage_entry("plan"))
        try:
            assert get_all_baggage() == {"tenant": "acme"}
        finally:
            otel_context.detach(removed)
    finally:
        otel_context.detach(token)
    both = extract_context(traceparent, "k=v")
    assert trace.get_current_span(both).get_span_context().trace_id == int("a1" * 16, 16)
    (tagged,) = spans.get_finished_spans()  # BaggageSpanProcessor copied the baggage
    assert dict(tagged.attributes or {}) == {"tenant": "acme", "plan": "pro", "region": "eu"}


def test_a_handler_passes_its_trace_on_with_opentelemetry_off(engine: Any) -> None:
    """No OpenTelemetry: the helpers read the invocation iii_rx keeps (trace and span ids)."""
    iii = register_worker(engine.url, InitOptions(worker_name=f"obs-{uuid.uuid4().hex[:6]}"))
    try:
        def handler(data: Any) -> dict[str, Any]:
            return {"tp": inject_traceparent(), "trace": current_trace_id(),
                    "span": current_span_id(), "baggage": inject_baggage()}

        iii.register_function("obs::ids", handler)
        wait_for_function(iii, "obs::ids")
        seen = iii.trigger({"function_id": "obs::ids", "payload": {}})
    finally:
        iii.shutdown()
    assert len(seen["trace"]) == 32 and len(seen["span"]) == 16
    assert seen["tp"] == f"00-{seen['trace']}-{seen['span']}-01"


# ---------------------------------------------------------------------- HTTP


async def test_execute_traced_request_makes_a_client_span(spans: InMemorySpanExporter) -> None:
    received: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\n"
                     b"content-length: 4\r\nconnection: close\r\n\r\nnope")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient() as client:
            request = client.build_request("GET", f"http://127.0.0.1:{port}/orders?id=7")
            response = await execute_traced_request(client, request)
    finally:
        server.close()
        await server.wait_closed()
    assert response.status_code == 404
    (span,) = spans.get_finished_spans()
    assert span.name == "GET /orders" and span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.ERROR
    attrs = dict(span.attributes or {})
    assert attrs["http.response.status_code"] == 404 and attrs["url.query"] == "id=7"
    assert attrs["server.port"] == port and attrs["error.type"] == "404"
    head = received[0].decode().lower()
    assert f"traceparent: 00-{span.context.trace_id:032x}-{span.context.span_id:016x}" in head


# ---------------------------------------------------------------------- payloads


def test_payload_helpers(monkeypatch: pytest.MonkeyPatch) -> None:
    value = {"user": "ann", "password": "p", "nested": ({"api_key": "k", "ok": 1},)}
    assert redact(value) == official.redact(value)
    assert redact(value)["nested"][0]["api_key"] == "[REDACTED]"
    big = {"text": "é" * 100}
    for cap in (None, 0, 10, 30, 64):
        assert redact_and_truncate(big, cap) == official.redact_and_truncate(big, cap), cap
    for raw in ("", "unlimited", "-5", "abc", "128"):
        monkeypatch.setenv("III_TRACE_PAYLOAD_MAX_BYTES", raw)
        assert resolve_max_bytes_from_env() == official.resolve_max_bytes_from_env(), raw


# ---------------------------------------------------------------------- gauges


def test_worker_gauges_report_this_process_until_stopped() -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("gauges-test")
    register_worker_gauges(meter, "worker-1", worker_name="billing")
    try:
        sum(range(200_000))  # some CPU time to report
        data = reader.get_metrics_data()
        assert data is not None
        seen = {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics
                for m in sm.metrics}
        assert set(seen) == {
            "iii.worker.cpu.percent", "iii.worker.cpu.user_micros",
            "iii.worker.cpu.system_micros", "iii.worker.memory.rss", "iii.worker.memory.vms",
            "iii.worker.memory.heap_used", "iii.worker.memory.heap_total",
            "iii.worker.memory.external", "iii.worker.uptime_seconds"}
        (rss,) = seen["iii.worker.memory.rss"].data.data_points
        assert rss.value > 1_000_000
        assert dict(rss.attributes or {}) == {"worker.id": "worker-1", "worker.name": "billing"}
        (user,) = seen["iii.worker.cpu.user_micros"].data.data_points
        assert user.value > 0
    finally:
        stop_worker_gauges()
    after = reader.get_metrics_data()
    points = [p for rm in (after.resource_metrics if after else []) for sm in rm.scope_metrics
              for m in sm.metrics for p in m.data.data_points]
    assert points == []


def test_worker_gauges_registered_again_after_a_stop_report_again() -> None:
    """OpenTelemetry keeps an instrument's first callbacks: a second registration on the same
    meter (a worker that restarted its gauges) must still be reported, with its own id."""
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("gauges-again")
    register_worker_gauges(meter, "worker-1")
    stop_worker_gauges()
    register_worker_gauges(meter, "worker-2", worker_name="again")
    try:
        data = reader.get_metrics_data()
        assert data is not None
        (rss,) = [p for rm in data.resource_metrics for sm in rm.scope_metrics
                  for m in sm.metrics if m.name == "iii.worker.memory.rss"
                  for p in m.data.data_points]
        assert dict(rss.attributes or {}) == {"worker.id": "worker-2", "worker.name": "again"}
    finally:
        stop_worker_gauges()


# ---------------------------------------------------------------------- init_otel


def test_init_otel_exports_to_the_engine(engine: Any, fresh_otel: None) -> None:
    threads_before = set(threading.enumerate())
    init_otel(OtelConfig(enabled=True, service_name="compat-init", engine_ws_url=engine.url,
                         metrics_export_interval_ms=100_000))
    init_otel(OtelConfig(enabled=True, service_name="ignored"))  # a second call: no-op
    try:
        async def traced() -> None:
            async def work(span: Any) -> None:
                compat.Logger(service_name="compat-init").info("inside", {"n": 1})

            await with_span("compat-work", work)
            metrics.get_meter("compat").create_counter("compat.count").add(2)
            await flush_otel()

        asyncio.run(traced())

        async def arrived() -> None:
            otel = engine.engine.otel
            await otel.wait_for(lambda: any(s["name"] == "compat-work" for s in otel.spans)
                                and any(m["name"] == "compat.count" for m in otel.metrics))

        asyncio.run_coroutine_threadsafe(arrived(), engine.loop).result(30)
    finally:
        shutdown_otel()
    (span,) = [s for s in engine.call("engine::traces::list", {"name": "compat-work"})["spans"]]
    assert span["service_name"] == "compat-init"
    logs = engine.call("engine::logs::list", {"trace_id": span["trace_id"]})["logs"]
    assert [(e["body"], e["span_id"]) for e in logs] == [("inside", span["span_id"])]
    assert logs[0]["attributes"]["service.name"] == "compat-init"
    assert not export.links()
    deadline = time.monotonic() + 5
    while any(t.name == "iii-rx-otel" for t in set(threading.enumerate()) - threads_before):
        assert time.monotonic() < deadline, "the telemetry loop thread did not stop"
        time.sleep(0.01)


def test_shutdown_otel_on_the_link_s_own_loop_is_awaited_by_shutdown_otel_async(
        engine: Any, fresh_otel: None) -> None:
    async def main() -> None:
        init_otel(OtelConfig(enabled=True, service_name="compat-own-loop",
                             engine_ws_url=engine.url, metrics_export_interval_ms=100_000),
                  loop=asyncio.get_running_loop())
        (link,) = export.links()
        await asyncio.wait_for(link.connected.wait(), 30)
        sending = link._task
        shutdown_otel()          # on the link's own loop: it cannot wait for the close
        await mirror.shutdown_otel_async()
        assert sending is not None and sending.done()   # the socket is closed, not closing

    asyncio.run(main())


def test_init_otel_off_does_nothing(fresh_otel: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_ENABLED", "false")
    init_otel()
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert not export.links() and type(_logs.get_logger_provider()).__name__ != "LoggerProvider"
    assert os.environ["OTEL_ENABLED"] == "false"


def test_a_worker_with_otel_on_exports_like_the_official_sdk(engine: Any,
                                                             fresh_otel: None) -> None:
    """The official script, imports changed: spans and logs reach the engine's ``/otel``."""
    iii = register_worker(engine.url, InitOptions(
        worker_name=f"obs-otel-{uuid.uuid4().hex[:6]}",
        otel=OtelConfig(enabled=True, service_name="compat-otel")))
    try:
        async def checkout(data: Any) -> dict[str, Any]:
            async def charge(span: Any) -> str:
                span.set_attribute("amount", data["amount"])
                compat.Logger(service_name="compat-otel").info("charged", data)
                return "ok"

            return {"status": await with_span("charge", charge)}

        iii.register_function("shop::checkout", checkout)
        wait_for_function(iii, "shop::checkout")
        assert iii.trigger({"function_id": "shop::checkout", "payload": {"amount": 5}}) == {
            "status": "ok"}
    finally:
        iii.shutdown()  # flushes and closes the telemetry socket

    async def arrived() -> None:
        otel = engine.engine.otel
        await otel.wait_for(lambda: {"charge", "execute shop::checkout"} <= {
            s["name"] for s in otel.spans})

    asyncio.run_coroutine_threadsafe(arrived(), engine.loop).result(30)
    spans = {s["name"]: s for s in engine.call("engine::traces::list", {
        "search_all_spans": True, "service_name": "compat-otel"})["spans"]}
    charge, execute = spans["charge"], spans["execute shop::checkout"]
    assert charge["parent_span_id"] == execute["span_id"]
    assert ["amount", "5"] in charge["attributes"]
    logs = engine.call("engine::logs::list", {"span_id": charge["span_id"]})["logs"]
    assert [e["body"] for e in logs] == ["charged"]
