"""Export over the engine's ``/otel`` socket, and the embedded engine's intake of it.

Over real sockets: an iii_rx client with ``otel=`` on and no exporter of its own, and an
official ``iii-sdk`` worker (in a subprocess: its OpenTelemetry setup is process-global) both
export to our engine, whose ``engine::traces::*``, ``engine::logs::list`` and
``engine::metrics::list`` then return what they sent.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import textwrap
import threading
import time
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import _logs, metrics, trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from websockets.asyncio.client import connect as ws_connect

import iii_rx
from iii_rx.engine import Engine
from iii_rx.telemetry import export
from iii_rx.telemetry import logs as otel_logs
from iii_rx.telemetry.export_otlp import SPANS, spans_json
from iii_rx.telemetry.histograms import OwnHistograms
from iii_rx.telemetry.metrics import _SECONDS


def unique_name() -> str:
    return f"export-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"


async def test_a_client_exports_spans_logs_and_metrics_to_its_engine(
        engine: Engine, fresh_otel: None) -> None:
    config = iii_rx.OtelConfig(enabled=True, service_name="rx-export",
                               metrics_export_interval_ms=100_000)
    async with iii_rx.connect(engine.url, name=unique_name(), otel=config) as iii:
        async def double(x: int) -> int:
            iii_rx.get_context().logger.info("doubling", {"x": x})
            iii_rx.get_context().logger.warn("doubled")
            return x * 2

        iii.register_function("export::double", double)
        assert await iii.trigger("export::double", 21) == 42
        metrics.get_meter("test").create_counter("export.test.count").add(3)
        (link,) = export.links()
        assert link.url == engine.url + "/otel"
        installed = export._INSTALLED["metrics"]  # the meter provider iii_rx installed
        assert isinstance(getattr(installed, "iii_rx_histograms", None), OwnHistograms)
    # Closing the client flushed the processors and drained its socket.
    assert link.sent >= 3 and link.pending() == 0 and link.dropped == 0
    await engine.otel.wait_for(lambda: len(engine.otel.spans) >= 2 and bool(engine.otel.metrics))

    listed = await engine.call("engine::traces::list", {"search_all_spans": True,
                                                        "service_name": "rx-export"})
    by_name = {s["name"]: s for s in listed["spans"]}
    client, server = by_name["invoke export::double"], by_name["execute export::double"]
    assert client["kind"] == 3 and server["kind"] == 2  # OTLP CLIENT, SERVER
    assert server["parent_span_id"] == client["span_id"]
    assert server["trace_id"] == client["trace_id"]
    assert ["iii.function.id", "export::double"] in server["attributes"]
    assert listed["total"] == 2 and listed["storage"]["completeness"] == "complete"

    roots = (await engine.call("engine::traces::list", {}))["spans"]
    assert [r["span_id"] for r in roots if r["service_name"] == "rx-export"] == [
        client["span_id"]]
    tree = await engine.call("engine::traces::tree", {"trace_id": client["trace_id"]})
    (root,) = tree["roots"]
    assert root["span_id"] == client["span_id"]
    assert [c["span_id"] for c in root["children"]] == [server["span_id"]]

    logs = (await engine.call("engine::logs::list", {"trace_id": server["trace_id"]}))["logs"]
    entry, warning = sorted(logs, key=lambda log: log["severity_number"])
    # OpenTelemetry's name, as the official SDKs send it: a query for WARN finds every SDK's.
    assert warning["body"] == "doubled" and warning["severity_text"] == "WARN"
    assert entry["body"] == "doubling" and entry["span_id"] == server["span_id"]
    assert entry["service_name"] == "rx-export" and entry["severity_text"] == "INFO"
    # A map, as the official SDK sends it, where the SDK keeps maps in log attributes.
    assert entry["attributes"]["log.data"] == ({"x": 21} if otel_logs._RICH else '{"x": 21}')
    assert entry["timestamp_unix_nano"] > 0  # a 1970 record would be swept by age at once

    sdk = (await engine.call("engine::metrics::list", {}))["sdk_metrics"]
    (counter,) = [m for m in sdk if m["name"] == "export.test.count"]
    assert counter["metric_type"] == "counter"
    assert counter["data_points"][0]["value"] == 3
    # The durations, from histograms iii_rx keeps itself on the provider it installed.
    for name in ("iii.server.invocation.duration", "iii.client.call.duration"):
        (duration,) = [m for m in sdk if m["name"] == name]
        (point,) = duration["data_points"]
        assert duration["metric_type"] == "histogram" and duration["unit"] == "s"
        assert duration["instrumentation_scope_name"] == "iii_rx"
        assert point["count"] == sum(point["bucket_counts"]) == 1
        assert point["explicit_bounds"] == list(_SECONDS)
        assert 0 < point["min"] == point["max"] == point["sum"] < 10
        assert ["iii.function.id", "export::double"] in point["attributes"]


OFFICIAL_WORKER = textwrap.dedent("""
    import os, sys, time
    try:
        from iii import InitOptions, register_worker
        from iii_helpers.observability import Logger, OtelConfig
        iii = register_worker(sys.argv[1], InitOptions(
            worker_name="official-export", enable_metrics_reporting=False,
            otel=OtelConfig(enabled=True, service_name="official-export")))
        def hello(data):
            Logger(service_name="official-export").info("hello from the official SDK")
            return {"ok": True}
        iii.register_function("official::hello", hello)
        for _ in range(100):
            try:
                print(iii.trigger({"function_id": "official::hello", "payload": {}}))
                break
            except Exception:
                time.sleep(0.1)
        sys.stdout.flush()
        input()  # the test says when the engine has what it sent
    finally:
        os._exit(0)
""")


async def test_the_engine_keeps_what_an_official_worker_exports(engine: Engine) -> None:
    import iii  # noqa: F401  (the worker below runs the official SDK: the floors run has none)

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", OFFICIAL_WORKER, engine.url, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, env={**os.environ, "OTEL_ENABLED": "true"})
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert json.loads(line.decode().replace("'", '"').replace("True", "true")) == {
            "ok": True}

        def arrived() -> bool:
            return (any(s["service_name"] == "official-export" for s in engine.otel.spans)
                    and any(e["service_name"] == "official-export"
                            for e in engine.workers.logs.entries))

        await engine.otel.wait_for(arrived, 30)
    finally:
        if proc.returncode is None:
            assert proc.stdin is not None
            proc.stdin.write(b"\n")
            await proc.wait()
    spans = (await engine.call("engine::traces::list", {
        "search_all_spans": True, "service_name": "official-export"}))["spans"]
    (span,) = [s for s in spans if s["name"] == "execute official::hello"]
    assert span["status"] == "ok"
    logs = (await engine.call("engine::logs::list", {"trace_id": span["trace_id"]}))["logs"]
    assert [e["body"] for e in logs] == ["hello from the official SDK"]
    assert logs[0]["span_id"] == span["span_id"]


async def test_a_users_exporter_keeps_the_spans(engine: Engine,
                                                exporter: InMemorySpanExporter) -> None:
    """With a provider of the user's own, spans go to it and not to the engine."""
    async with iii_rx.connect(engine.url, name=unique_name(), otel=True) as iii:
        iii.register_function("export::own", lambda x: x)
        await iii.trigger("export::own", 1)
    assert {s.name for s in exporter.get_finished_spans()} >= {"invoke export::own",
                                                               "execute export::own"}
    assert not [s for s in engine.otel.spans if s["name"].endswith("export::own")]


async def test_a_bad_frame_is_dropped_and_the_socket_stays(engine: Engine) -> None:
    span = {"traceId": "ab" * 16, "spanId": "cd" * 8, "name": "raw", "kind": 1,
            "startTimeUnixNano": "1000000", "endTimeUnixNano": "3000000",
            "status": {"code": 2, "message": "boom"},
            "attributes": [{"key": "n", "value": {"intValue": "7"}}]}
    good = SPANS + json.dumps({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name",
                                     "value": {"stringValue": "raw-svc"}}]},
        "scopeSpans": [{"scope": {"name": "s"}, "spans": [span]}]}]}).encode()
    async with ws_connect(engine.url + "/otel") as ws:
        for bad in (b"OTLP{not json", b"XXXX{}", "text", b"OTLP[]",
                    SPANS + b'{"resourceSpans": [{"scopeSpans": [{"spans": [{}]}]}]}'):
            await ws.send(bad)
        await ws.send(good)
        await engine.otel.wait_for(lambda: bool(engine.otel.spans))
    assert engine.otel.rejected == 5
    (stored,) = engine.otel.spans
    assert stored["status"] == "error" and stored["status_description"] == "boom"
    assert stored["attributes"] == [["n", "7"]] and stored["service_name"] == "raw-svc"
    listed = await engine.call("engine::traces::list", {"status": "error",
                                                        "min_duration_ms": 1.5})
    assert [s["span_id"] for s in listed["spans"]] == ["cd" * 8]
    assert (await engine.call("engine::traces::list", {"max_duration_ms": 1}))["total"] == 0
    assert await engine.call("engine::traces::clear", {}) == {"success": True}
    assert (await engine.call("engine::traces::list", {}))["total"] == 0


async def test_bad_queries_are_refused(engine: Engine) -> None:
    for query in ({"limit": -1}, {"attributes": [["only-key"]]}, {"search_all_spans": "yes"}):
        with pytest.raises(iii_rx.IIIInvocationError):
            await engine.call("engine::traces::list", query)
    with pytest.raises(iii_rx.IIIInvocationError):
        await engine.call("engine::traces::tree", {})


async def test_the_spans_of_handlers_cut_short_by_close_are_exported(
        engine: Engine, fresh_otel: None) -> None:
    """The export closes after the handlers: the span a close ends (``abandoned``) and the
    span of a sync handler that finishes during the close both reach the engine (they ended
    after the socket had closed)."""
    started = threading.Barrier(3)
    config = iii_rx.OtelConfig(enabled=True, service_name="rx-cut", metrics_enabled=False)
    async with iii_rx.connect(engine.url, name=unique_name()) as caller:
        worker = await iii_rx.connect(engine.url, name=unique_name(), otel=config)

        async def forever(data: Any) -> Any:
            await asyncio.to_thread(started.wait)
            await asyncio.Event().wait()

        def briefly(data: Any) -> Any:
            started.wait()
            time.sleep(0.2)  # still running when the close begins
            return data

        worker.register_function("cut::forever", forever)
        worker.register_function("cut::briefly", briefly)
        for function_id in ("cut::forever", "cut::briefly"):
            await caller.wait_for_function(function_id, timeout=10)
        calls = [asyncio.ensure_future(caller.trigger(f, 1))
                 for f in ("cut::forever", "cut::briefly")]
        await asyncio.to_thread(started.wait)
        await worker.close()
        await asyncio.gather(*calls, return_exceptions=True)

    wanted = {"execute cut::forever", "execute cut::briefly"}
    await engine.otel.wait_for(lambda: wanted <= {s["name"] for s in engine.otel.spans}, 5)


async def test_close_drains_a_link_still_opening(engine: Engine) -> None:
    """Frames queued before the socket has opened are sent by the close (up to its grace):
    ``init_otel`` then ``shutdown_otel`` at once used to lose them."""
    link = export.EngineLink(engine.url + "/otel", None, asyncio.get_running_loop())
    link.start()
    link.send(SPANS + spans_json([]))
    assert not link.connected.is_set()
    await link.aclose()
    assert link.sent == 1 and link.pending() == 0


async def test_an_unreachable_engine_drops_the_oldest_frames_and_close_returns() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    link = export.EngineLink(f"ws://127.0.0.1:{port}/otel", None,
                             asyncio.get_running_loop(), max_frames=2)
    link.start()
    try:
        for n in range(5):
            link.send(b"OTLP" + str(n).encode())
        assert link.pending() == 2 and link.dropped == 3
    finally:
        await link.aclose()
    assert link not in export.links()


def test_otel_url_appends_the_path() -> None:
    assert export.otel_url("ws://127.0.0.1:1") == "ws://127.0.0.1:1/otel"
    assert export.otel_url("ws://127.0.0.1:1/") == "ws://127.0.0.1:1/otel"
    assert export.otel_url("ws://127.0.0.1:1/otel?x=1") == "ws://127.0.0.1:1/otel?x=1"


def test_logger_provider_of_the_user_is_kept(fresh_otel: None) -> None:
    from opentelemetry.sdk._logs import LoggerProvider

    mine = LoggerProvider()
    _logs.set_logger_provider(mine)
    export.install(trace.get_tracer_provider(), iii_rx.OtelConfig(enabled=True,
                                                                  metrics_enabled=False))
    assert _logs.get_logger_provider() is mine and "logs" not in export._INSTALLED


def test_span_json_is_valid_otlp_for_awkward_values() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    from iii_rx.engine.workers.otel_decode import decode_frame

    provider = TracerProvider()
    with provider.get_tracer("t").start_as_current_span("outer"):
        span = provider.get_tracer("t").start_span('quote " é \u2028', attributes={
            "s": 'a"b\\c\n', "b": True, "i": 2**62, "f": 1.5, "nan": float("nan"),
            "list": ["x", "y"]})
        span.add_event("ev", {"k": "v"})
        span.end()
    _, (decoded,) = decode_frame(SPANS + spans_json([span]))
    assert decoded["name"] == 'quote " é \u2028'
    assert dict(decoded["attributes"]) == {"s": 'a"b\\c\n', "b": "true", "i": str(2**62),
                                           "f": "1.5", "nan": "nan", "list": '["x","y"]'}
    assert decoded["events"][0]["attributes"] == [["k", "v"]]
    assert decoded["parent_span_id"] is not None and decoded["kind"] == 1


async def test_the_telemetry_socket_sends_the_clients_token(fresh_otel: None) -> None:
    async with Engine(token="s3cret", namespace_grace_ms=200) as engine:
        async with iii_rx.connect(engine.url, name=unique_name(), token="s3cret",
                                  otel=iii_rx.OtelConfig(enabled=True,
                                                         service_name="rx-token")) as iii:
            iii.register_function("export::tok", lambda x: x)
            await iii.trigger("export::tok", 1)
            (link,) = export.links()
            await asyncio.wait_for(link.connected.wait(), 10)
        await engine.otel.wait_for(lambda: any(s["service_name"] == "rx-token"
                                               for s in engine.otel.spans))


async def test_a_refused_telemetry_socket_is_logged_as_a_warning() -> None:
    """A wrong token (or URL) loses every span: the first failure says so at WARNING, the
    retries after it stay at DEBUG."""
    import logging

    refused = asyncio.Event()
    loop = asyncio.get_running_loop()

    class Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING and "401" in record.getMessage():
                loop.call_soon_threadsafe(refused.set)

    handler = Seen()
    logging.getLogger("iii_rx.telemetry").addHandler(handler)
    try:
        async with Engine(token="s3cret") as engine:
            link = export.EngineLink(export.otel_url(engine.url),
                                     {"Authorization": "Bearer wrong"}, loop)
            link.start()
            try:
                await asyncio.wait_for(refused.wait(), 10)
            finally:
                await link.aclose()
    finally:
        logging.getLogger("iii_rx.telemetry").removeHandler(handler)


_SCALARS = (st.text() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
            | st.floats(allow_nan=True, allow_infinity=True) | st.binary(max_size=8))
_VALUES = _SCALARS | st.lists(_SCALARS, max_size=3) | st.dictionaries(
    st.text(max_size=5), _SCALARS, max_size=3)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=12), _VALUES, max_size=6))
def test_attribute_text_is_the_otlp_key_values(attributes: dict[str, Any]) -> None:
    """The hand-written text of a span's attributes says what the plain OTLP mapping
    (``key_values``, through ``json``) says, for every kind of attribute value."""
    from iii_rx.telemetry.export_otlp import _text_kvs, key_values

    assert json.loads(_text_kvs(attributes)) == json.loads(json.dumps(key_values(attributes)))
    assert json.loads(_text_kvs(attributes)) == json.loads(_text_kvs(attributes))  # keys kept


@given(st.integers(min_value=0, max_value=2**140))
def test_ids_are_written_as_the_format_spec_writes_them(number: int) -> None:
    from iii_rx.telemetry.ids import hex_id

    assert hex_id(number, 32) == f"{number:032x}"
    assert hex_id(number, 16) == f"{number:016x}"


@given(st.integers(min_value=1, max_value=2**128 - 1),
       st.integers(min_value=1, max_value=2**64 - 1), st.integers(min_value=0, max_value=255))
def test_a_spans_traceparent_is_the_w3c_text(trace_id: int, span_id: int, flags: int) -> None:
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    from iii_rx.telemetry.tracing import traceparent_of

    span = NonRecordingSpan(SpanContext(trace_id, span_id, False, TraceFlags(flags)))
    # Level-1 flags: the sampled bit only (the Rust engine drops a traceparent with others).
    assert traceparent_of(span) == f"00-{trace_id:032x}-{span_id:016x}-{flags & 1:02x}"


@given(st.from_regex(r"\A[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}\Z")
       | st.text(max_size=60))
def test_a_frame_sends_a_traceparent_with_the_sampled_flag_only(value: str) -> None:
    from iii_rx.telemetry.ids import parse_traceparent, wire_traceparent

    sent = wire_traceparent(value)
    parsed = parse_traceparent(value)
    if re.fullmatch("00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}", value):
        assert sent == f"{value[:53]}0{int(value[53:], 16) & 1}"
    elif parsed is None or len(value) != 55 or not value.startswith("00-"):
        assert sent == value  # not a version-00 traceparent: the engine decides
    else:
        assert sent == f"00-{parsed[0]}-{parsed[1]}-0{int(parsed[2], 16) & 1}"
    assert wire_traceparent(None) is None


_TRACEPARENT_PIECES = st.sampled_from(
    ["00", "01", "ff", "FF", "0g", "-", "--", " ", "\t", "\n", "x", "0" * 32, "0" * 16,
     "4bf92f3577b34da6a3ce929d0e0e4736", "4BF92F3577B34DA6A3CE929D0E0E4736",
     "00f067aa0ba902b7", "00F067AA0BA902B7", "-01", "-00", "-extra"])


@given(st.from_regex(r"\A[ \t]?[0-9a-fA-F]{2}-[0-9a-f]{32}-[0-9a-fA-F]{16}-[0-9a-f]{2}"
                     r"(-[a-z]*)?[ \t\n]?\Z")
       | st.lists(_TRACEPARENT_PIECES, max_size=9).map("".join)
       | st.text(max_size=70))
def test_a_traceparent_is_valid_exactly_when_opentelemetry_reads_it(value: str) -> None:
    # An official SDK worker reads the header with OpenTelemetry's W3C propagator; a trace it
    # would break (uppercase, version ff, fields after a version-00 value) breaks here too.
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    from iii_rx.telemetry.ids import parse_traceparent

    theirs = trace.get_current_span(
        TraceContextTextMapPropagator().extract({"traceparent": value})).get_span_context()
    expected = (None if not theirs.is_valid else
                (f"{theirs.trace_id:032x}", f"{theirs.span_id:016x}", f"{theirs.trace_flags:02x}"))
    assert parse_traceparent(value) == expected
