"""iii_rx's own duration histograms (the meter provider it installs for the engine): the same
points as the SDK's explicit-bucket histogram, written in the ``iii_rx`` scope of an export."""

from __future__ import annotations

import json
import time
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource

from iii_rx.telemetry.export_otlp import metrics_json
from iii_rx.telemetry.histograms import OwnHistogram, OwnHistograms
from iii_rx.telemetry.metrics import _SECONDS, Metrics

KEY = ("m::f", "w")
ATTRIBUTES = {"iii.function.id": "m::f", "iii.worker.name": "w"}
ON_BOUNDS = st.sampled_from(_SECONDS)
values = st.lists(st.one_of(ON_BOUNDS, st.floats(0, 100), st.floats(0, 0.01)), min_size=1,
                  max_size=60)
UNFIT = st.sampled_from([float("nan"), float("inf"), float("-inf"), -0.5])
"""What a histogram drops (the SDK drops it too)."""


def sdk_point(recorded: list[float]) -> Any:
    """The SDK's histogram point for ``recorded`` (explicit buckets :data:`_SECONDS`)."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], views=[View(
        instrument_name="d", aggregation=ExplicitBucketHistogramAggregation(_SECONDS))])
    histogram = provider.get_meter("iii_rx").create_histogram("d", unit="s")
    for value in recorded:
        if value >= 0:  # the SDK drops a negative value (with a warning)
            histogram.record(value, ATTRIBUTES)
    data = reader.get_metrics_data()
    assert data is not None
    (point,) = data.resource_metrics[0].scope_metrics[0].metrics[0].data.data_points
    return point


@settings(max_examples=60, deadline=None)
@given(values, st.lists(UNFIT, max_size=3))
def test_the_points_are_the_sdks(recorded: list[float], unfit: list[float]) -> None:
    own = OwnHistogram("d", "durations", _SECONDS)
    for value in [*unfit, *recorded]:
        own.add(KEY, value)
    now = time.time_ns()
    metric = own.metric(now)
    assert metric is not None
    (point,) = metric.data.data_points
    expected = sdk_point(recorded)
    assert dict(point.attributes) == dict(expected.attributes)
    assert point.count == expected.count
    assert list(point.bucket_counts) == list(expected.bucket_counts)
    assert list(point.explicit_bounds) == list(expected.explicit_bounds)
    assert (point.min, point.max) == (expected.min, expected.max)
    assert abs(point.sum - expected.sum) <= 1e-9 * max(1.0, abs(expected.sum))
    assert point.time_unix_nano == now and point.start_time_unix_nano <= now
    assert metric.data.aggregation_temporality.name == "CUMULATIVE"
    assert (metric.name, metric.unit) == ("d", "s")


def test_nothing_recorded_is_no_metric() -> None:
    histograms = OwnHistograms()
    histograms.get("d", "durations", _SECONDS).add(KEY, -1.0)  # dropped, as by the SDK
    assert histograms.metrics() == []
    assert histograms.get("d", "other", (1.0,)) is histograms.get("d", "x", (2.0,))


def test_points_are_cumulative_and_per_function() -> None:
    own = OwnHistogram("d", "durations", (1.0,))
    own.add(("a", "w"), 0.5)
    first = own.metric(1)
    own.add(("a", "w"), 2.0)
    own.add(("b", "w"), 1.0)
    second = own.metric(2)
    assert first is not None and second is not None
    (point,) = first.data.data_points
    assert point.count == 1 and list(point.bucket_counts) == [1, 0]
    by_function = {p.attributes["iii.function.id"]: p for p in second.data.data_points}
    assert by_function["a"].count == 2 and list(by_function["a"].bucket_counts) == [1, 1]
    assert by_function["a"].start_time_unix_nano == point.start_time_unix_nano
    assert list(by_function["b"].bucket_counts) == [1, 0]  # on the bound: that bucket


def test_threads_lose_no_value(race: Any) -> None:
    """Threads adding to the same new keys at once: each key's first value makes its point,
    and none is made twice (a point made twice loses the values of the one replaced)."""
    own = OwnHistogram("d", "durations", _SECONDS)
    keys = [(f"f{i}", "w") for i in range(500)]

    def add() -> None:
        for i, key in enumerate(keys):
            own.add(key, i / len(keys))

    race(add, 4)  # threads switch inside add (without its lock, values go)
    metric = own.metric(1)
    assert metric is not None
    points = metric.data.data_points
    assert len(points) == len(keys)
    assert [p.count for p in points] == [4] * len(keys)
    assert all(sum(p.bucket_counts) == p.count for p in points)


def test_past_the_limit_new_keys_share_the_overflow_point(monkeypatch: Any) -> None:
    from iii_rx.telemetry import histograms

    monkeypatch.setattr(histograms, "LIMIT", 2)
    own = OwnHistogram("d", "durations", (1.0,))
    for function in ("a", "b", "c", "d", "a"):
        own.add((function, "w"), 0.5)
    metric = own.metric(1)
    assert metric is not None
    counts = {tuple(sorted(p.attributes.items())): p.count for p in metric.data.data_points}
    assert counts == {
        (("iii.function.id", "a"), ("iii.worker.name", "w")): 2,
        (("iii.function.id", "b"), ("iii.worker.name", "w")): 1,
        (("otel.metric.overflow", True),): 2,
    }


def test_metrics_on_a_provider_with_own_histograms_record_there() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    histograms = OwnHistograms()
    provider.iii_rx_histograms = histograms  # type: ignore[attr-defined]
    counted = Metrics(provider)
    counted.invocation_done(KEY, ATTRIBUTES, 0.0, None, True)
    counted.invocation_done(KEY, ATTRIBUTES, 0.0, "boom", True)
    counted.invocation_done(KEY, ATTRIBUTES, 0.0, None, False)  # sampled out: counted only
    counted.call_done(KEY, ATTRIBUTES, 0.0, None, True)
    counted.durations.flush()
    by_name = {m.name: m for m in histograms.metrics()}
    assert by_name["iii.server.invocation.duration"].data.data_points[0].count == 2
    assert by_name["iii.client.call.duration"].data.data_points[0].count == 1
    data = reader.get_metrics_data()
    assert data is not None
    names = {m.name for rm in data.resource_metrics for sm in rm.scope_metrics
             for m in sm.metrics}
    assert "iii.server.invocations" in names
    assert not any(name.endswith(".duration") for name in names)  # not in the SDK's


def encoded(data: MetricsData, own: list[Any], resource: Any = None) -> dict[str, Any]:
    return json.loads(metrics_json(data, own, resource))  # type: ignore[no-any-return]


def test_the_export_writes_them_in_the_iii_rx_scope() -> None:
    own = OwnHistogram("iii.server.invocation.duration", "run times", (1.0,))
    own.add(KEY, 0.25)
    metric = own.metric(7)
    assert metric is not None
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader],
                             resource=Resource.create({"service.name": "svc"}))
    provider.get_meter("iii_rx").create_counter("iii.c").add(1)
    provider.get_meter("other").create_counter("o.c").add(1)
    data = reader.get_metrics_data()
    assert data is not None

    (resource,) = encoded(data, [metric])["resourceMetrics"]
    scopes = {s["scope"]["name"]: [m["name"] for m in s["metrics"]]
              for s in resource["scopeMetrics"]}
    assert scopes == {"iii_rx": ["iii.c", "iii.server.invocation.duration"], "other": ["o.c"]}
    (histogram,) = [m for s in resource["scopeMetrics"] for m in s["metrics"]
                    if m["name"] == "iii.server.invocation.duration"]
    (point,) = histogram["histogram"]["dataPoints"]
    assert histogram["histogram"]["aggregationTemporality"] == 2  # cumulative
    assert (point["count"], point["bucketCounts"], point["explicitBounds"]) == (
        "1", ["1", "0"], [1.0])
    assert (point["sum"], point["min"], point["max"], point["timeUnixNano"]) == (
        0.25, 0.25, 0.25, "7")

    # Without an iii_rx scope in the collection, one is added.
    other = MeterProvider(metric_readers=[reader2 := InMemoryMetricReader()])
    other.get_meter("other").create_counter("o.c").add(1)
    (resource,) = encoded(reader2.get_metrics_data() or MetricsData([]), [metric])[
        "resourceMetrics"]
    assert [s["scope"]["name"] for s in resource["scopeMetrics"]] == ["other", "iii_rx"]

    # Nothing collected by the SDK: the given resource carries them.
    (resource,) = encoded(MetricsData([]), [metric],
                          Resource.create({"service.name": "alone"}))["resourceMetrics"]
    assert {"key": "service.name", "value": {"stringValue": "alone"}} in resource[
        "resource"]["attributes"]
    assert [s["scope"]["name"] for s in resource["scopeMetrics"]] == ["iii_rx"]


def test_a_forgotten_workers_points_are_dropped() -> None:
    histogram = OwnHistogram("d", "durations", (0.1, 1.0))
    histogram.add(("f", "gone"), 0.5)
    histogram.add(("f", "open"), 0.5)
    histogram.forget("gone")
    metric = histogram.metric(1)
    assert metric is not None
    assert [p.attributes["iii.worker.name"] for p in metric.data.data_points] == ["open"]
