"""One trace across workers: CLIENT and SERVER spans, parents, attributes, errors, logs."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import iii_rx
from iii_rx.engine import Engine

_unique = itertools.count(1)


def unique_name(prefix: str = "otel-test") -> str:
    """A worker name of its own (the conftest's helper, not importable as ``conftest`` when
    other test directories are collected in the same run)."""
    return f"{prefix}-{os.getpid()}-{next(_unique)}"

ON = iii_rx.OtelConfig(enabled=True)


async def wait_for(engine: Engine, client: iii_rx.Client, *function_ids: str) -> None:
    for function_id in function_ids:
        await client.wait_for_function(function_id, timeout=10)


def by_name(spans: tuple[ReadableSpan, ...], *prefixes: str) -> dict[str, ReadableSpan]:
    """The spans of the functions named ``prefix::...`` (not the engine's discovery calls the
    clients make meanwhile), by name; each name once."""
    mine = [span for span in spans if span.name.split(" ", 1)[1].startswith(prefixes)]
    named = {span.name: span for span in mine}
    assert len(named) == len(mine), [s.name for s in mine]
    return named


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def assert_chain(named: dict[str, ReadableSpan], *names: str) -> None:
    """Each span of ``names`` is the parent of the next; all in one trace."""
    trace_ids = {named[n].context.trace_id for n in names}
    assert len(trace_ids) == 1, {n: f"{named[n].context.trace_id:032x}" for n in names}
    for parent, child in itertools.pairwise(names):
        assert parent_of(named[child]) == named[parent].context.span_id, (parent, child)


async def test_three_rx_workers_make_one_trace(engine: Engine,
                                               exporter: InMemorySpanExporter) -> None:
    url = str(engine.url)
    async with iii_rx.connect(url, name=unique_name("a"), otel=ON) as a, \
            iii_rx.connect(url, name=unique_name("b"), otel=ON) as b, \
            iii_rx.connect(url, name=unique_name("c"), otel=ON) as c:
        seen: dict[str, Any] = {}

        def leaf(data: Any) -> Any:  # sync: runs on a pool thread
            ctx = iii_rx.get_context()
            seen["c"] = (ctx.trace_id, ctx.span_id, threading.current_thread().name)
            seen["c traceparent"] = ctx.traceparent  # the frame's, as our engine passes it on
            return data + 1

        async def mid(data: Any) -> Any:
            ctx = iii_rx.get_context()
            seen["b"] = (ctx.trace_id, ctx.span_id)
            seen["b traceparent"] = ctx.traceparent
            return await b.trigger("c::leaf", data * 10)

        c.register_function("c::leaf", leaf)
        b.register_function("b::mid", mid)
        await wait_for(engine, a, "c::leaf", "b::mid")
        exporter.clear()
        assert await a.trigger("b::mid", 4) == 41

    named = by_name(exporter.get_finished_spans(), "b::", "c::")
    assert set(named) == {"invoke b::mid", "execute b::mid", "invoke c::leaf",
                          "execute c::leaf"}
    assert_chain(named, "invoke b::mid", "execute b::mid", "invoke c::leaf", "execute c::leaf")
    assert named["invoke b::mid"].parent is None  # a root: nothing was active at the call
    # A call made in a handler has a local parent; a frame's traceparent names a remote one.
    assert not named["invoke c::leaf"].parent.is_remote  # type: ignore[union-attr]
    assert named["execute c::leaf"].parent.is_remote  # type: ignore[union-attr]
    assert named["invoke b::mid"].kind is SpanKind.CLIENT
    assert named["execute c::leaf"].kind is SpanKind.SERVER
    leaf_span = named["execute c::leaf"]
    assert leaf_span.attributes is not None
    assert leaf_span.attributes["iii.function.id"] == "c::leaf"
    assert leaf_span.attributes["iii.invocation.id"]
    assert [e.name for e in leaf_span.events] == ["iii.invocation.input",
                                                  "iii.invocation.output"]
    assert leaf_span.events[0].attributes == {"iii.payload.json": "40",
                                              "iii.payload.truncated": False}
    assert leaf_span.status.status_code is StatusCode.OK
    # get_context() inside the handlers shows the handler's own span, also on a pool thread.
    trace_id = f"{leaf_span.context.trace_id:032x}"
    assert seen["b"] == (trace_id, f"{named['execute b::mid'].context.span_id:016x}")
    assert seen["c"][:2] == (trace_id, f"{leaf_span.context.span_id:016x}")
    assert seen["c"][2].startswith("iii-rx-handler")
    # The frames carry the sampled flag only (the SDK's spans may also have the random-trace-id
    # bit, from 1.42 on, which the Rust engine refuses).
    assert seen["b traceparent"] == (f"00-{trace_id}-"
                                     f"{named['invoke b::mid'].context.span_id:016x}-01")
    assert seen["c traceparent"] == (f"00-{trace_id}-"
                                     f"{named['invoke c::leaf'].context.span_id:016x}-01")


async def test_calls_under_local_spans_have_local_parents(engine: Engine,
                                                         exporter: InMemorySpanExporter) -> None:
    """A CLIENT span's parent is remote only when it came from another process: under a span
    of the caller's own, or in a sync handler's thread, it is local (as a child span the
    OpenTelemetry SDK starts there)."""
    from opentelemetry import trace

    async with iii_rx.connect(str(engine.url), name=unique_name("local"), otel=ON) as iii:
        iii.register_function("local::leaf", lambda data: data)

        def middle(data: Any) -> Any:  # sync: its call is made on a pool thread
            return iii.trigger("local::leaf", data).result(timeout=10)

        iii.register_function("local::middle", middle)
        await wait_for(engine, iii, "local::leaf", "local::middle")
        exporter.clear()
        with trace.get_tracer("test").start_as_current_span("my request") as mine:
            assert await iii.trigger("local::middle", 3) == 3

    named = by_name(exporter.get_finished_spans(), "local::")
    assert_chain(named, "invoke local::middle", "execute local::middle", "invoke local::leaf")
    first, nested = named["invoke local::middle"], named["invoke local::leaf"]
    assert first.parent is not None and first.parent.span_id == mine.get_span_context().span_id
    assert not first.parent.is_remote
    assert nested.parent is not None and not nested.parent.is_remote
    assert named["execute local::middle"].parent.is_remote  # type: ignore[union-attr]


@pytest.mark.parametrize("order", ["rx-official-rx", "official-rx-official"])
async def test_mixed_chain_is_one_trace(engine: Engine, exporter: InMemorySpanExporter,
                                        official: Callable[..., Awaitable[Any]],
                                        order: str) -> None:
    """A -> B -> C with the official SDK in the middle, or at both ends."""
    url = str(engine.url)
    async with iii_rx.connect(url, name=unique_name("rx"), otel=ON) as rx:
        if order == "rx-official-rx":
            sdk = await official(url)

            def leaf(data: Any) -> Any:
                return data + 1

            def mid(data: Any) -> Any:  # the official SDK runs it on a thread of its own
                return sdk.trigger({"function_id": "rx::leaf", "payload": data * 10})

            rx.register_function("rx::leaf", leaf)
            sdk.register_function("sdk::mid", mid)
            await wait_for(engine, rx, "rx::leaf", "sdk::mid")
            exporter.clear()
            assert await rx.trigger("sdk::mid", 4) == 41
            named = by_name(exporter.get_finished_spans(), "sdk::", "rx::")
            # The official SDK makes no span of its own for a call: its ``execute`` span is
            # the parent of the next hop.
            assert set(named) == {"invoke sdk::mid", "execute sdk::mid", "execute rx::leaf"}
            assert_chain(named, "invoke sdk::mid", "execute sdk::mid", "execute rx::leaf")
            assert named["execute sdk::mid"].kind is SpanKind.INTERNAL  # the official SDK's
        else:
            first = await official(url)
            last = await official(url)
            last.register_function("sdk::leaf", lambda data: data + 1)

            async def mid(data: Any) -> Any:
                return await rx.trigger("sdk::leaf", data * 10)

            rx.register_function("rx::mid", mid)
            await wait_for(engine, rx, "rx::mid", "sdk::leaf")
            exporter.clear()
            result = await asyncio.to_thread(
                first.trigger, {"function_id": "rx::mid", "payload": 4})
            assert result == 41
            named = by_name(exporter.get_finished_spans(), "sdk::", "rx::")
            assert set(named) == {"execute rx::mid", "invoke sdk::leaf", "execute sdk::leaf"}
            # The official caller sends no span of its own: with nothing active the first
            # hop starts the trace at rx's SERVER span.
            assert named["execute rx::mid"].parent is None
            assert_chain(named, "execute rx::mid", "invoke sdk::leaf", "execute sdk::leaf")


async def test_errors_set_the_span_status(engine: Engine,
                                          exporter: InMemorySpanExporter) -> None:
    url = str(engine.url)
    async with iii_rx.connect(url, name=unique_name("e"), otel=ON) as rx:
        def boom(data: Any) -> Any:
            raise ValueError(f"bad {data}")

        rx.register_function("err::boom", boom)
        await wait_for(engine, rx, "err::boom")
        exporter.clear()
        with pytest.raises(iii_rx.IIIInvocationError):
            await rx.trigger("err::boom", 1)
        with pytest.raises(iii_rx.IIIInvocationError):
            await rx.trigger("err::missing", 1, timeout_ms=2000)
    named = {s.name: s for s in exporter.get_finished_spans()}
    server, client = named["execute err::boom"], named["invoke err::boom"]
    assert server.status.status_code is StatusCode.ERROR
    assert server.status.description == "bad 1"
    assert [e.name for e in server.events][-1] == "exception"
    assert server.attributes is not None
    assert server.attributes["iii.error.code"] == "invocation_failed"  # as its metric counts
    assert client.status.status_code is StatusCode.ERROR
    assert client.attributes is not None
    assert client.attributes["iii.error.code"] == "invocation_failed"
    missing = named["invoke err::missing"]
    assert missing.status.status_code is StatusCode.ERROR


async def test_a_handler_cut_short_by_close_ends_its_span_as_abandoned(
        engine: Engine, exporter: InMemorySpanExporter) -> None:
    """Closing the worker while its handler runs ends the SERVER span as failed with
    ``abandoned``, as ``iii.server.invocation.errors`` counts it (it said OK)."""
    started = asyncio.Event()
    async with iii_rx.connect(str(engine.url), name=unique_name("caller")) as caller:
        worker = await iii_rx.connect(str(engine.url), name=unique_name("w"), otel=ON)

        async def forever(data: Any) -> Any:
            started.set()
            await asyncio.Event().wait()

        worker.register_function("cut::forever", forever)
        await caller.wait_for_function("cut::forever", timeout=10)
        call = asyncio.ensure_future(caller.trigger("cut::forever", 1))
        await started.wait()
        await worker.close()
        with pytest.raises(iii_rx.IIIInvocationError):
            await call
    (server,) = [s for s in exporter.get_finished_spans() if s.name == "execute cut::forever"]
    assert server.status.status_code is StatusCode.ERROR
    assert server.attributes is not None and server.attributes["iii.error.code"] == "abandoned"


async def test_logs_in_a_handler_carry_the_span_ids(engine: Engine,
                                                    exporter: InMemorySpanExporter,
                                                    caplog: pytest.LogCaptureFixture,
                                                    otel_globals: Any) -> None:
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs import export as logs_export
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

    in_memory = (getattr(logs_export, "InMemoryLogRecordExporter", None)
                 or logs_export.InMemoryLogExporter)  # its name before SDK 1.3x
    logs = in_memory()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    otel_globals.logger(provider)
    url = str(engine.url)
    caplog.set_level(logging.INFO, logger="iii_rx.logger")
    async with iii_rx.connect(url, name=unique_name("l"), otel=ON) as rx:
        def noisy(data: Any) -> Any:
            iii_rx.get_context().logger.info("working", {"n": data})
            return data

        rx.register_function("log::noisy", noisy)
        await wait_for(engine, rx, "log::noisy")
        await rx.trigger("log::noisy", 3)
    span = {s.name: s for s in exporter.get_finished_spans()}["execute log::noisy"]
    records = [r for r in caplog.records if r.getMessage() == "working"]
    assert len(records) == 1
    assert records[0].trace_id == f"{span.context.trace_id:032x}"  # type: ignore[attr-defined]
    assert records[0].span_id == f"{span.context.span_id:016x}"  # type: ignore[attr-defined]
    otel = [r for r in logs.get_finished_logs() if r.log_record.body == "working"]
    assert len(otel) == 1
    assert otel[0].log_record.trace_id == span.context.trace_id
    assert otel[0].log_record.span_id == span.context.span_id


async def test_off_by_default_makes_no_spans(engine: Engine,
                                             exporter: InMemorySpanExporter) -> None:
    """Without ``otel=``: no spans, and a call from outside a handler sends no traceparent."""
    url = str(engine.url)
    async with iii_rx.connect(url, name=unique_name("off")) as rx:
        rx.register_function("off::tp", lambda _: iii_rx.get_context().traceparent)
        await wait_for(engine, rx, "off::tp")
        assert await rx.trigger("off::tp") is None
        assert rx._calls.trace_call is None and rx._worker.telemetry is None
    assert exporter.get_finished_spans() == ()


async def test_spans_of_a_client_that_does_not_trace_say_how_to_trace(engine: Engine) -> None:
    async with iii_rx.connect(str(engine.url), name=unique_name("s")) as rx:
        with pytest.raises(AttributeError, match=r"otel=True") as raised:
            rx.spans  # noqa: B018
        assert raised.value.name == "spans"
        assert not hasattr(rx, "spans")


async def test_spans_stream_shows_this_workers_finished_spans(
        engine: Engine, exporter: InMemorySpanExporter) -> None:
    url = str(engine.url)
    async with iii_rx.connect(url, name=unique_name("s"), otel=ON) as rx:
        rx.register_function("s::echo", lambda data: data)
        await wait_for(engine, rx, "s::echo")
        got: list[ReadableSpan] = []
        both = asyncio.get_running_loop().create_future()

        def on_span(span: ReadableSpan) -> None:
            got.append(span)
            if len(got) == 2 and not both.done():
                both.set_result(None)

        subscription = rx.spans.subscribe(on_span)
        await rx.trigger("s::echo", 1)
        await asyncio.wait_for(both, 10)
        subscription.dispose()
        assert sorted(s.name for s in got) == ["execute s::echo", "invoke s::echo"]
