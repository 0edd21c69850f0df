"""Metrics count what happened: calls and invocations per function, errors, durations, the
connection's state changes and reconnects, channel bytes (real sockets, embedded engine)."""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData

import iii_rx
from iii_rx import ConnectionState, ReconnectConfig
from iii_rx.engine import Engine
from iii_rx.telemetry import metrics as metrics_module

ON = iii_rx.OtelConfig(enabled=True)
_unique = itertools.count(1)


def unique_name(prefix: str) -> str:
    """A worker name of its own (``conftest`` is not importable by name when other test
    directories are collected in the same run)."""
    return f"{prefix}-{os.getpid()}-{next(_unique)}"


@pytest.fixture
def reader(otel_globals: Any) -> InMemoryMetricReader:
    """This test's metrics, in memory; the global meter provider is restored afterwards."""
    reader = InMemoryMetricReader()
    otel_globals.meter(MeterProvider(metric_readers=[reader]))
    return reader


def points(source: InMemoryMetricReader | MetricsData | None, name: str) -> list[Any]:
    """The data points of the metric ``name`` (read now, or in data read before)."""
    data = source.get_metrics_data() if isinstance(source, InMemoryMetricReader) else source
    found: list[Any] = []
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    found.extend(metric.data.data_points)
    return found


def total(source: InMemoryMetricReader | MetricsData | None, name: str,
          **attributes: Any) -> float:
    """The sum of ``name`` over the points whose attributes include ``attributes`` (a
    histogram's count)."""
    wanted = {key.replace("_", "."): value for key, value in attributes.items()}
    return sum(getattr(p, "value", None) if hasattr(p, "value") else p.count
               for p in points(source, name)
               if wanted.items() <= dict(p.attributes).items())


async def test_calls_and_invocations_are_counted_per_function(
        engine: Engine, exporter: Any, reader: InMemoryMetricReader) -> None:
    url = str(engine.url)
    async with iii_rx.connect(url, name=unique_name("caller"), otel=ON) as caller, \
            iii_rx.connect(url, name=unique_name("worker"), otel=ON) as worker:
        def fail(data: Any) -> Any:
            raise ValueError("no")

        worker.register_function("m::ok", lambda data: data)
        worker.register_function("m::fail", fail)
        await caller.wait_for_function("m::ok", timeout=10)
        await caller.wait_for_function("m::fail", timeout=10)
        for i in range(3):
            assert await caller.trigger("m::ok", i) == i
        for _ in range(2):
            with pytest.raises(iii_rx.IIIInvocationError):
                await caller.trigger("m::fail", 0)

    fid = "iii.function.id"
    data = reader.get_metrics_data()  # once: SDK 1.20 reports a histogram at its first read only
    assert total(data, "iii.client.calls", **{fid: "m::ok"}) == 3
    assert total(data, "iii.client.calls", **{fid: "m::fail"}) == 2
    assert total(data, "iii.client.call.errors", **{fid: "m::ok"}) == 0
    assert total(data, "iii.client.call.errors", **{fid: "m::fail"}) == 2
    assert total(data, "iii.client.call.errors", **{fid: "m::fail",
                                                    "iii.error.code": "invocation_failed"}) == 2
    assert total(data, "iii.client.call.duration", **{fid: "m::ok"}) == 3
    assert total(data, "iii.client.call.duration", **{fid: "m::fail"}) == 2
    assert total(data, "iii.server.invocations", **{fid: "m::ok"}) == 3
    assert total(data, "iii.server.invocations", **{fid: "m::fail"}) == 2
    assert total(data, "iii.server.invocation.errors", **{fid: "m::fail"}) == 2
    assert total(data, "iii.server.invocation.errors", **{fid: "m::ok"}) == 0
    assert total(data, "iii.server.invocation.duration", **{fid: "m::ok"}) == 3
    assert total(data, "iii.server.invocation.duration", **{fid: "m::fail"}) == 2
    durations = [p for p in points(data, "iii.client.call.duration")
                 if p.attributes[fid] == "m::ok"]
    assert durations and all(p.sum > 0 for p in durations)


async def test_closed_clients_series_are_kept_for_the_newest_only(
        engine: Engine, exporter: Any, reader: InMemoryMetricReader,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Kept for ever, every collection would carry the series of every client that ever
    closed: a process opening a client per job would export (and the engine keep) more and
    more. The last CLOSED_KEPT closed names stay, so every reader still gets their counts."""
    monkeypatch.setattr(metrics_module, "CLOSED_KEPT", 1)
    url = str(engine.url)
    names = [unique_name("short") for _ in range(2)]

    def of(name: str) -> list[Any]:
        data = reader.get_metrics_data()
        return [p.value for metric in ("iii.client.calls", "iii.server.invocations")
                for p in points(data, metric) if p.attributes["iii.worker.name"] == name
                and p.attributes["iii.function.id"].startswith("m::short")]

    async with iii_rx.connect(url, name=unique_name("keeper"), otel=ON) as keeper:
        for name in names:
            async with iii_rx.connect(url, name=name, otel=ON) as short:
                short.register_function(f"m::{name}", lambda data: data)
                await keeper.wait_for_function(f"m::{name}", timeout=10)
                assert await keeper.trigger(f"m::{name}", 1) == 1
                assert await short.trigger(f"m::{name}", 2) == 2
            # Closed: still read, by every reader (one call made, two invocations answered).
            assert sorted(of(name)) == [1, 2]
            assert sorted(of(name)) == [1, 2]
        assert of(names[0]) == []  # one newer name closed after it
        assert of(keeper.name) == [1, 1]  # the open client's stay


async def test_a_closed_client_leaves_no_span_processor_behind(exporter: Any,
                                                               engine: Engine) -> None:
    """The SDK cannot take a processor back: one per client would keep every closed client's
    stream and event loop alive, and every span would walk them all."""
    from opentelemetry import trace

    from iii_rx.telemetry.span_feed import SpanFeeds

    provider = trace.get_tracer_provider()
    before = len(provider._active_span_processor._span_processors)  # type: ignore[attr-defined]
    for _ in range(3):
        async with iii_rx.connect(str(engine.url), name=unique_name("feed"), otel=ON):
            pass
    after = len(provider._active_span_processor._span_processors)  # type: ignore[attr-defined]
    assert after <= before + 1
    assert SpanFeeds._of[provider].feeds == ()


async def test_metrics_off_records_nothing(engine: Engine, exporter: Any,
                                           reader: InMemoryMetricReader) -> None:
    config = iii_rx.OtelConfig(enabled=True, metrics_enabled=False)
    async with iii_rx.connect(str(engine.url), name=unique_name("quiet"), otel=config) as iii:
        iii.register_function("m::quiet", lambda data: data)
        await iii.wait_for_function("m::quiet", timeout=10)
        assert await iii.trigger("m::quiet", 1) == 1
    assert points(reader, "iii.client.calls") == []
    assert points(reader, "iii.client.call.duration") == []
    assert points(reader, "iii.server.invocations") == []


async def test_state_changes_and_reconnects(exporter: Any,
                                            reader: InMemoryMetricReader) -> None:
    first = Engine(port=0, namespace_grace_ms=300)
    await first.start()
    port = first.port
    second: Engine | None = None
    reached: dict[ConnectionState, asyncio.Event] = {s: asyncio.Event() for s in ConnectionState}
    try:
        async with iii_rx.connect(first.url, name=unique_name("rc"), otel=ON,
                                  reconnect=ReconnectConfig(initial_delay_ms=20,
                                                            max_delay_ms=200)) as iii:
            iii.state.subscribe(lambda state: reached[state].set())
            await first.stop()
            await asyncio.wait_for(reached[ConnectionState.RECONNECTING].wait(), 10)
            reached[ConnectionState.CONNECTED].clear()
            second = Engine(port=port, namespace_grace_ms=300)
            await second.start()
            await asyncio.wait_for(reached[ConnectionState.CONNECTED].wait(), 10)
            assert total(reader, "iii.connection.reconnects") == 1
    finally:
        await first.stop()
        if second is not None:
            await second.stop()
    state = "iii.connection.state"
    assert total(reader, "iii.connection.state_changes", **{state: "connected"}) == 2
    assert total(reader, "iii.connection.state_changes", **{state: "reconnecting"}) >= 1
    assert total(reader, "iii.connection.state_changes", **{state: "disconnected"}) == 1
    assert total(reader, "iii.connection.reconnects") == 1


async def test_channel_bytes_are_counted(engine: Engine, exporter: Any,
                                         reader: InMemoryMetricReader) -> None:
    async with iii_rx.connect(str(engine.url), name=unique_name("ch"), otel=ON) as iii:
        channel = await iii.create_channel_async()
        payload = b"x" * 100_000  # two frames

        async def write() -> None:
            async with channel.writer as writer:
                await writer.write(payload)
                await writer.send_message("héllo")  # 6 bytes of UTF-8

        got, _ = await asyncio.gather(channel.reader.read_all(), write())
        assert got == payload
        await channel.reader.close()
    assert total(reader, "iii.channel.bytes_written") == 100_006
    assert total(reader, "iii.channel.bytes_read") == 100_006


async def test_sampled_out_calls_are_counted_without_durations(
        engine: Engine, reader: InMemoryMetricReader, otel_globals: Any) -> None:
    """A sampler that keeps nothing: every call and invocation is still counted, no duration
    is recorded (the histogram follows the sampler)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    otel_globals.tracer(TracerProvider(sampler=ALWAYS_OFF))
    async with iii_rx.connect(str(engine.url), name=unique_name("s"), otel=ON) as iii:
        iii.register_function("m::sampled", lambda data: data)
        await iii.wait_for_function("m::sampled", timeout=10)
        for i in range(4):
            assert await iii.trigger("m::sampled", i) == i
    fid = {"iii.function.id": "m::sampled"}
    assert total(reader, "iii.client.calls", **fid) == 4
    assert total(reader, "iii.server.invocations", **fid) == 4
    assert total(reader, "iii.client.call.duration", **fid) == 0
    assert total(reader, "iii.server.invocation.duration", **fid) == 0


def test_clients_on_several_loops_lose_no_count(race: Any) -> None:
    """The clients of a process share one Metrics, each counting on its own loop's thread:
    with threads switching as often as they can, every call is still counted."""
    from iii_rx.telemetry.metrics import Metrics

    counted = Metrics(MeterProvider())
    per_thread = 50_000

    def count() -> None:
        for _ in range(per_thread):
            counted.call_done(("f", "w"), {}, 0.0, "TIMEOUT", False)

    race(count, 4)
    assert counted.calls[("f", "w")] == 4 * per_thread
    assert counted.call_errors[("f", "w", "TIMEOUT")] == 4 * per_thread


class Recorder:
    """A histogram of the metrics API that keeps what it is given (``context``: whether its
    ``record`` takes one, as from SDK 1.26 on)."""

    def __init__(self) -> None:
        self.recorded: list[tuple[float, Any]] = []

    def record(self, amount: float, attributes: Any = None, context: Any = None) -> None:
        self.recorded.append((amount, context))


class OldRecorder(Recorder):
    def record(self, amount: float, attributes: Any = None) -> None:  # type: ignore[override]
        self.recorded.append((amount, None))


def test_durations_reach_the_histograms_in_runs_and_on_flush() -> None:
    from iii_rx.telemetry.metrics import Durations

    durations, first, second = Durations(), Recorder(), Recorder()
    run = Durations.RUN
    for i in range(run - 1):
        durations.add(first if i % 2 else second, float(i), {})
    assert first.recorded == [] and second.recorded == []  # kept until a run is full
    durations.add(first, float(run - 1), {})
    assert [a for a, _ in second.recorded] == [float(i) for i in range(0, run, 2)]
    assert [a for a, _ in first.recorded] == [float(i) for i in range(1, run, 2)]
    durations.add(first, -1.0, {})
    durations.flush()
    assert first.recorded[-1] == (-1.0, None)
    durations.flush()  # nothing kept: nothing more
    assert len(first.recorded) + len(second.recorded) == run + 1


def test_a_duration_keeps_its_context_where_record_takes_one() -> None:
    from opentelemetry.context import Context

    from iii_rx.telemetry.metrics import Durations

    durations, new, old = Durations(), Recorder(), OldRecorder()
    context = Context({"k": "v"})
    durations.add(new, 1.0, {}, context)
    durations.add(old, 2.0, {}, context)
    durations.add(new, 3.0, {})
    durations.flush()
    assert new.recorded == [(1.0, context), (3.0, None)]
    assert old.recorded == [(2.0, None)]


def test_durations_from_several_threads_all_reach_a_collection() -> None:
    """Pool threads and loops record at once: every duration is in the next collection,
    whatever run it was handed over in."""
    import threading

    from iii_rx.telemetry.metrics import Metrics

    reader = InMemoryMetricReader()
    counted = Metrics(MeterProvider(metric_readers=[reader]))
    per_thread = 1_000  # not a multiple of the run: some are still kept at the collection

    def record() -> None:
        for _ in range(per_thread):
            counted.invocation_done(("f", "w"), {"iii.function.id": "f"}, 0.0, None, True)

    threads = [threading.Thread(target=record) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    data = reader.get_metrics_data()
    assert total(data, "iii.server.invocation.duration", iii_function_id="f") == 3 * per_thread
    assert total(data, "iii.server.invocations", iii_function_id="f") == 3 * per_thread


def test_an_invocation_duration_is_recorded_in_its_handler_context() -> None:
    """The SDK links a duration to the span it was recorded in (an exemplar, SDK 1.26 on):
    handed over later, it still is."""
    from opentelemetry import trace
    from opentelemetry.sdk import metrics as sdk_metrics
    from opentelemetry.sdk.trace import TracerProvider

    from iii_rx.telemetry.metrics import Metrics

    reader = InMemoryMetricReader()
    always_on = getattr(sdk_metrics, "AlwaysOnExemplarFilter", None)
    provider = (MeterProvider(metric_readers=[reader]) if always_on is None
                else MeterProvider(metric_readers=[reader], exemplar_filter=always_on()))
    counted = Metrics(provider)
    span = TracerProvider().get_tracer("t").start_span("execute f")
    handler_context = trace.set_span_in_context(span)
    counted.invocation_done(("f", "w"), {"iii.function.id": "f"}, 0.0, None, True,
                            handler_context)
    span.end()
    (point,) = points(reader, "iii.server.invocation.duration")
    assert point.count == 1
    if always_on is not None:  # an SDK with exemplars: the span is the duration's
        (exemplar,) = point.exemplars
        assert exemplar.span_id == span.get_span_context().span_id
