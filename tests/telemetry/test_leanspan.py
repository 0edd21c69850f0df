"""LeanSpan against the SDK's own spans: the same operations on a span started by the SDK
tracer and on one started by :class:`LeanTracer` (same provider, same processors) must export
the same ``ReadableSpan``, field by field, on every opentelemetry-sdk version iii_rx supports
(where the SDK itself changed, the test follows the installed one).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace import sampling as smp
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

from iii_rx.aio import LoopBridge
from iii_rx.telemetry.config import OtelConfig
from iii_rx.telemetry.leanspan import LeanSpan, LeanTracer, lean_tracer
from iii_rx.telemetry.span_store import EMPTY
from iii_rx.telemetry.tracing import Tracing

RANDOM: int = getattr(TraceFlags, "RANDOM_TRACE_ID", 0)
"""The W3C "random trace id" flag where the installed API has it (else 0: no such bit)."""
SDK_ADDS_LINKS = hasattr(SdkSpan, "add_link")
"""Whether the installed SDK's spans take links after their start (1.2x on)."""
PARENT_TRACE = 0x0AF7651916CD43DD8448EB211C80319C
PARENT_SPAN = 0xB7AD6B7169203331
Op = Callable[[trace.Span], None]


class Pipe:
    """One SDK provider with an in-memory exporter; spans from its SDK tracer and its lean
    tracer side by side."""

    def __init__(self, sampler: smp.Sampler | None = None,
                 limits: SpanLimits | None = None,
                 processors: Sequence[SpanProcessor] = ()) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(
            sampler=sampler, span_limits=limits,
            resource=Resource.create({"service.name": "leanspan-test"}))
        for processor in processors:
            self.provider.add_span_processor(processor)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("leanspan.test", "1.2.3",
                                               schema_url="https://example.test/schema")
        lean = lean_tracer(self.tracer)
        assert isinstance(lean, LeanTracer)
        self.lean = lean

    def sdk_start(self, name: str = "op", context: Context | None = None,
                  kind: SpanKind = SpanKind.CLIENT,
                  attributes: Mapping[str, Any] | None = None) -> trace.Span:
        return self.tracer.start_span(name, context, kind=kind, attributes=attributes)

    def lean_start(self, name: str = "op", context: Context | None = None,
                   kind: SpanKind = SpanKind.CLIENT,
                   attributes: Mapping[str, Any] | None = None) -> trace.Span:
        ctx = context if context is not None else Context()
        parent = trace.get_current_span(ctx).get_span_context()
        return self.lean.start(name, parent if parent.is_valid else None, ctx, kind,
                               attributes if attributes is not None else {})

    def both(self, op: Op | None = None, name: str = "op", context: Context | None = None,
             kind: SpanKind = SpanKind.CLIENT, attributes: Mapping[str, Any] | None = None,
             end: bool = True) -> tuple[ReadableSpan, ReadableSpan]:
        """The exported SDK span and the exported lean span after ``op`` on each."""
        spans = []
        for start in (self.sdk_start, self.lean_start):
            self.exporter.clear()
            span = start(name, context, kind, attributes)
            if op is not None:
                op(span)
            if end:
                span.end()
            (exported,) = self.exporter.get_finished_spans()
            spans.append(exported)
        self.exporter.clear()
        return spans[0], spans[1]

    def close(self) -> None:
        self.provider.shutdown()


@pytest.fixture
def pipe() -> Iterator[Pipe]:
    made = Pipe()
    yield made
    made.close()


def remote(sampled: bool = True, state: TraceState | None = None,
           random: bool = False) -> Context:
    """A context whose current span is a remote parent (as a ``traceparent`` makes one)."""
    flags = (TraceFlags.SAMPLED if sampled else 0) | (RANDOM if random else 0)
    parent = SpanContext(PARENT_TRACE, PARENT_SPAN, is_remote=True,
                         trace_flags=TraceFlags(flags), trace_state=state)
    return trace.set_span_in_context(NonRecordingSpan(parent), Context())


def events_of(span: ReadableSpan) -> list[tuple[str, dict[str, Any], int]]:
    return [(e.name, dict(e.attributes or {}), getattr(e, "dropped_attributes", 0))
            for e in span.events]


def links_of(span: ReadableSpan) -> list[tuple[SpanContext, dict[str, Any]]]:
    return [(link.context, dict(link.attributes or {})) for link in span.links]


def json_view(span: ReadableSpan) -> dict[str, Any]:
    """``span.to_json()`` (what the console exporter prints), ids and times left out (or the
    error it raised: the SDK's own cannot write ``bytes`` values)."""
    try:
        view = json.loads(span.to_json())
    except TypeError as exc:
        return {"error": str(exc)}
    for key in ("context", "parent_id", "start_time", "end_time"):
        view.pop(key, None)
    for event in view.get("events", ()):
        event.pop("timestamp", None)
    for link in view.get("links", ()):
        link.pop("context", None)
    return dict(view)


def assert_same(sdk: ReadableSpan, lean: ReadableSpan, timed_events: bool = False) -> None:
    """``lean`` exports what ``sdk`` exports (ids and times aside), field by field."""
    assert isinstance(lean, ReadableSpan)
    assert json_view(lean) == json_view(sdk)
    assert lean.name == sdk.name
    assert lean.kind == sdk.kind
    assert lean.parent == sdk.parent
    assert lean.context is not None and sdk.context is not None
    if sdk.parent is not None:
        assert sdk.context.trace_id == sdk.parent.trace_id
        assert lean.context.trace_id == sdk.parent.trace_id
    assert lean.context.is_valid
    assert lean.context.is_remote is sdk.context.is_remote is False
    assert lean.context.trace_flags == sdk.context.trace_flags
    assert lean.context.trace_flags.sampled == sdk.context.trace_flags.sampled
    assert lean.context.trace_flags & RANDOM == sdk.context.trace_flags & RANDOM
    assert lean.context.trace_state == sdk.context.trace_state
    assert dict(lean.attributes or {}) == dict(sdk.attributes or {})
    assert list(lean.attributes or {}) == list(sdk.attributes or {})  # the same order too
    assert lean.dropped_attributes == sdk.dropped_attributes
    assert events_of(lean) == events_of(sdk)
    if timed_events:
        assert [e.timestamp for e in lean.events] == [e.timestamp for e in sdk.events]
    assert lean.dropped_events == sdk.dropped_events
    assert links_of(lean) == links_of(sdk)
    assert lean.dropped_links == sdk.dropped_links
    assert lean.status.status_code == sdk.status.status_code
    assert lean.status.description == sdk.status.description
    assert lean.resource is sdk.resource
    scope, sdk_scope = lean.instrumentation_scope, sdk.instrumentation_scope
    assert scope is not None and sdk_scope is not None
    assert (scope.name, scope.version, scope.schema_url) == (
        sdk_scope.name, sdk_scope.version, sdk_scope.schema_url)
    for span in (sdk, lean):
        assert span.start_time is not None and span.end_time is not None
        assert span.start_time <= span.end_time
        for event in span.events:
            assert event.timestamp is not None


# ---------------------------------------------------------------------------- sampling


def test_default_sampler_root_span(pipe: Pipe) -> None:
    sdk, lean = pipe.both(attributes={"a": "b"})
    assert_same(sdk, lean)
    assert lean.parent is None
    assert lean.context is not None and lean.context.trace_flags.sampled
    assert lean.context.trace_id != sdk.context.trace_id  # a fresh trace each


@pytest.mark.parametrize("random", [False, True])
def test_default_sampler_sampled_remote_parent(pipe: Pipe, random: bool) -> None:
    ctx = remote(True, TraceState([("vendor", "v1")]), random=random)
    sdk, lean = pipe.both(context=ctx, kind=SpanKind.SERVER)
    assert_same(sdk, lean)
    assert lean.parent is not None and lean.parent.span_id == PARENT_SPAN
    assert lean.context is not None and lean.context.trace_id == PARENT_TRACE
    assert lean.context.trace_state == TraceState([("vendor", "v1")])
    assert bool(lean.context.trace_flags & RANDOM) == (random and bool(RANDOM))


def test_unsampled_remote_parent_gives_a_non_recording_span(pipe: Pipe) -> None:
    ctx = remote(False, TraceState([("k", "v")]))
    sdk = pipe.sdk_start(context=ctx)
    lean = pipe.lean_start(context=ctx)
    for span in (sdk, lean):
        assert isinstance(span, NonRecordingSpan)
        assert not span.is_recording()
        sc = span.get_span_context()
        assert sc.trace_id == PARENT_TRACE
        assert sc.is_valid and sc.span_id != PARENT_SPAN
        assert not sc.trace_flags.sampled
        span.set_attribute("ignored", 1)
        span.end()
    assert lean.get_span_context().trace_flags == sdk.get_span_context().trace_flags
    assert lean.get_span_context().trace_state == sdk.get_span_context().trace_state
    assert lean.get_span_context().span_id != sdk.get_span_context().span_id
    assert pipe.exporter.get_finished_spans() == ()


def fresh_span_ids(pipe: Pipe, ctx: Context) -> set[int]:
    return {pipe.lean_start(context=ctx).get_span_context().span_id for _ in range(3)}


def test_non_recording_spans_get_fresh_span_ids(pipe: Pipe) -> None:
    assert len(fresh_span_ids(pipe, remote(False))) == 3


SAMPLERS: dict[str, Callable[[], smp.Sampler]] = {
    "always_on": lambda: smp.ALWAYS_ON,
    "always_off": lambda: smp.ALWAYS_OFF,
    "parent_based_on": lambda: smp.DEFAULT_ON,
    "parent_based_off": lambda: smp.DEFAULT_OFF,
    "ratio_0": lambda: smp.TraceIdRatioBased(0.0),
    "ratio_1": lambda: smp.TraceIdRatioBased(1.0),
    "parent_based_ratio_1": lambda: smp.ParentBased(smp.TraceIdRatioBased(1.0)),
    "parent_based_ratio_0": lambda: smp.ParentBased(smp.TraceIdRatioBased(0.0)),
    "parent_based_always_on_remote_unsampled": lambda: smp.ParentBased(
        smp.ALWAYS_ON, remote_parent_not_sampled=smp.ALWAYS_ON),
}


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
@pytest.mark.parametrize("parent", ["root", "sampled", "unsampled"])
def test_samplers_decide_as_for_the_sdk(sampler: str, parent: str) -> None:
    made = Pipe(sampler=SAMPLERS[sampler]())
    try:
        ctx = None if parent == "root" else remote(parent == "sampled",
                                                   TraceState([("s", "1")]))
        sdk = made.sdk_start(context=ctx, attributes={"k": "v"})
        lean = made.lean_start(context=ctx, attributes={"k": "v"})
        assert lean.is_recording() == sdk.is_recording()
        assert isinstance(lean, LeanSpan) == sdk.is_recording()
        sdk_sc, lean_sc = sdk.get_span_context(), lean.get_span_context()
        assert lean_sc.trace_flags == sdk_sc.trace_flags
        assert lean_sc.trace_state == sdk_sc.trace_state
        assert lean_sc.is_valid
        if ctx is not None:
            assert lean_sc.trace_id == sdk_sc.trace_id == PARENT_TRACE
        sdk.end()
        exported_sdk = made.exporter.get_finished_spans()
        made.exporter.clear()
        lean.end()
        exported_lean = made.exporter.get_finished_spans()
        assert len(exported_lean) == len(exported_sdk)
        if exported_sdk:
            assert_same(exported_sdk[0], exported_lean[0])
    finally:
        made.close()


class Tagging(smp.Sampler):
    """Samples everything, adds attributes and a trace state entry (the generic path)."""

    def __init__(self, decision: smp.Decision = smp.Decision.RECORD_AND_SAMPLE) -> None:
        self.decision = decision
        self.seen: list[tuple[int, str, SpanKind, dict[str, Any]]] = []

    def should_sample(self, parent_context: Context | None, trace_id: int, name: str,
                      kind: SpanKind | None = None, attributes: Any = None,
                      links: Any = None, trace_state: Any = None) -> smp.SamplingResult:
        assert kind is not None
        self.seen.append((trace_id, name, kind, dict(attributes or {})))
        parent = trace.get_current_span(parent_context).get_span_context()
        state = parent.trace_state if parent.is_valid else TraceState()
        return smp.SamplingResult(self.decision, {**(attributes or {}), "sampler.tag": "t"},
                                  state.add("tagged", "yes"))

    def get_description(self) -> str:
        return "Tagging"


@pytest.mark.parametrize("parent", ["root", "sampled"])
def test_a_sampler_adding_attributes_and_trace_state(parent: str) -> None:
    sampler = Tagging()
    made = Pipe(sampler=sampler)
    try:
        ctx = None if parent == "root" else remote(True)
        shared = {"k": "v"}
        sdk, lean = made.both(context=ctx, attributes=shared, name="tagged")
        assert_same(sdk, lean)
        assert dict(lean.attributes or {}) == {"k": "v", "sampler.tag": "t"}
        assert lean.context is not None and lean.context.trace_state.get("tagged") == "yes"
        assert shared == {"k": "v"}
        # the sampler saw the same arguments from both tracers
        (sdk_id, *sdk_rest), (lean_id, *lean_rest) = sampler.seen
        assert sdk_rest == lean_rest == ["tagged", SpanKind.CLIENT, {"k": "v"}]
        if ctx is not None:
            assert sdk_id == lean_id == PARENT_TRACE
    finally:
        made.close()


class Recorder(SpanProcessor):
    """Keeps what the pipeline hands a processor."""

    def __init__(self, on_start: Callable[[Any, Context | None], None] | None = None) -> None:
        self.started: list[tuple[Any, Context | None]] = []
        self.ended: list[ReadableSpan] = []
        self._hook = on_start

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        self.started.append((span, parent_context))
        if self._hook is not None:
            self._hook(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self.ended.append(span)


def test_record_only_records_but_the_simple_processor_does_not_export() -> None:
    recorder = Recorder()
    made = Pipe(sampler=Tagging(smp.Decision.RECORD_ONLY), processors=[recorder])
    try:
        sdk = made.sdk_start()
        lean = made.lean_start()
        assert sdk.is_recording() and lean.is_recording()
        assert isinstance(lean, LeanSpan)
        assert not lean.get_span_context().trace_flags.sampled
        assert lean.get_span_context().trace_flags == sdk.get_span_context().trace_flags
        sdk.end()
        lean.end()
        assert made.exporter.get_finished_spans() == ()  # as for the SDK's span
        assert len(recorder.started) == len(recorder.ended) == 2
        assert_same(recorder.ended[0], recorder.ended[1])
    finally:
        made.close()


# ---------------------------------------------------------------------------- status


STATUS_SEQUENCES: dict[str, list[tuple[Any, ...]]] = {
    "ok": [(StatusCode.OK,)],
    "ok_is_final": [(StatusCode.OK,), (StatusCode.ERROR, "late")],
    "ok_status_is_final": [(Status(StatusCode.OK),), (Status(StatusCode.ERROR, "late"),)],
    "error_then_ok": [(StatusCode.ERROR, "first"), (StatusCode.OK,)],
    "error_code_with_description": [(StatusCode.ERROR, "boom")],
    "error_status": [(Status(StatusCode.ERROR, "bad"),)],
    "status_ignores_extra_description": [(Status(StatusCode.ERROR, "kept"), "ignored")],
    "unset_code_is_ignored": [(StatusCode.ERROR, "stays"), (StatusCode.UNSET,)],
    "unset_status_is_ignored": [(StatusCode.ERROR, "stays"), (Status(StatusCode.UNSET),)],
    "error_twice": [(StatusCode.ERROR, "a"), (StatusCode.ERROR, "b")],
    "ok_drops_description": [(Status(StatusCode.OK, "no description for OK"),)],
}


@pytest.mark.parametrize("sequence", sorted(STATUS_SEQUENCES))
def test_status_rules(pipe: Pipe, sequence: str) -> None:
    def op(span: trace.Span) -> None:
        for args in STATUS_SEQUENCES[sequence]:
            span.set_status(*args)

    sdk, lean = pipe.both(op)
    assert_same(sdk, lean)


# ---------------------------------------------------------------------------- attributes


def test_valid_attribute_values(pipe: Pipe) -> None:
    values: dict[str, Any] = {
        "s": "text", "b": True, "i": 7, "f": 1.5, "y": b"bytes",
        "ls": ["a", "b"], "li": [1, 2], "lf": (1.0, 2.5), "lb": [True, False],
        "empty": [], "with_none": ["a", None],
    }

    def op(span: trace.Span) -> None:
        for key, value in values.items():
            span.set_attribute(key, value)
        span.set_attributes({"many.a": 1, "many.b": "2"})
        span.set_attribute("s", "overwritten")  # an existing key takes the new value

    sdk, lean = pipe.both(op, attributes={"start": "x"})
    assert_same(sdk, lean)
    attributes = dict(lean.attributes or {})
    assert attributes["ls"] == ("a", "b")  # sequences are kept as tuples
    assert attributes["s"] == "overwritten"


def test_invalid_attributes_follow_the_sdk(pipe: Pipe,
                                           caplog: pytest.LogCaptureFixture) -> None:
    def op(span: trace.Span) -> None:
        span.set_attribute("obj", object())  # type: ignore[arg-type]
        span.set_attribute("mixed", [1, "a"])
        span.set_attribute("dict", {"x": 1})  # type: ignore[arg-type]
        span.set_attribute("", "empty key")
        span.set_attribute(3, "not a str key")  # type: ignore[arg-type]
        span.set_attribute("fine", "yes")

    with caplog.at_level(logging.WARNING):
        sdk, lean = pipe.both(op)
    assert_same(sdk, lean)
    assert dict(lean.attributes or {})["fine"] == "yes"
    assert "" not in (lean.attributes or {})
    assert any(r.levelno == logging.WARNING for r in caplog.records)


def test_shared_start_attributes_are_never_changed(pipe: Pipe) -> None:
    shared = {"iii.function.id": "f", "iii.worker.name": "w"}
    first = pipe.lean_start(attributes=shared)
    second = pipe.lean_start(attributes=shared)
    first.set_attribute("extra", 1)
    first.set_attribute("iii.function.id", "changed")
    first.set_attributes({"more": "x"})
    first.end()
    second.end()
    assert shared == {"iii.function.id": "f", "iii.worker.name": "w"}
    by_id = {s.context.span_id: s for s in pipe.exporter.get_finished_spans()
             if s.context is not None}
    one = by_id[first.get_span_context().span_id]
    two = by_id[second.get_span_context().span_id]
    assert dict(one.attributes or {}) == {"iii.function.id": "changed",
                                          "iii.worker.name": "w", "extra": 1, "more": "x"}
    assert dict(two.attributes or {}) == shared


LIMITS_ENV = {
    "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "3",
    "OTEL_SPAN_EVENT_COUNT_LIMIT": "2",
    "OTEL_SPAN_LINK_COUNT_LIMIT": "1",
    "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT": "2",
    "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT": "1",
    "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT": "4",
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "5",
}


def limited(span: trace.Span) -> None:
    for n in range(5):
        span.set_attribute(f"a{n}", n)
    span.set_attribute("a3", "overwritten, and longer than the limit")
    span.set_attribute("long", "abcdefghij")
    for n in range(4):
        span.add_event(f"e{n}", {"x": n, "y": "0123456789", "z": [1, 2]}, timestamp=1000 + n)
    if SDK_ADDS_LINKS:
        span.add_link(SpanContext(PARENT_TRACE, 1, False), {"l1": "1234567", "l2": 2})
        span.add_link(SpanContext(PARENT_TRACE, 2, False))


@pytest.mark.parametrize("start_attributes", [0, 2, 5])
def test_span_limits_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                          start_attributes: int) -> None:
    for name, value in LIMITS_ENV.items():
        monkeypatch.setenv(name, value)
    made = Pipe()
    try:
        start = {f"s{n}": "start-value" for n in range(start_attributes)}
        sdk, lean = made.both(limited, attributes=start)
        assert_same(sdk, lean, timed_events=True)
        assert len(lean.attributes or {}) == 3
        assert lean.dropped_attributes > 0
        assert [e.name for e in lean.events] == ["e2", "e3"]  # the newest are kept
        assert lean.dropped_events == 2
    finally:
        made.close()


@pytest.mark.parametrize("variable", ["OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
                                      "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT"])
def test_one_value_length_limit(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, "3")
    made = Pipe()
    try:
        def op(span: trace.Span) -> None:
            span.add_event("e", {"long": "abcdef"})
            span.set_attribute("later", "uvwxyz")

        sdk, lean = made.both(op, attributes={"start": "abcdef"})
        assert_same(sdk, lean)
        assert dict(lean.attributes or {})["start"] == "abc"
    finally:
        made.close()


def test_span_limits_given_to_the_provider() -> None:
    made = Pipe(limits=SpanLimits(max_span_attributes=2, max_events=1,
                                  max_span_attribute_length=3))
    try:
        sdk, lean = made.both(limited, attributes={"s": "start"})
        assert_same(sdk, lean, timed_events=True)
        assert len(lean.attributes or {}) == 2
    finally:
        made.close()


def test_start_attributes_over_the_default_limit(pipe: Pipe) -> None:
    start = {f"k{n}": n for n in range(200)}
    sdk, lean = pipe.both(attributes=start)
    assert_same(sdk, lean)
    assert len(lean.attributes or {}) == 128
    assert len(start) == 200


# ---------------------------------------------------------------------------- events, links


def test_events_with_and_without_timestamp(pipe: Pipe) -> None:
    def op(span: trace.Span) -> None:
        span.add_event("plain")
        span.add_event("timed", {"k": "v", "n": 1}, timestamp=1234)
        span.add_event("empty attributes", {})
        span.add_event("listed", {"l": ["a", "b"]})

    sdk, lean = pipe.both(op)
    assert_same(sdk, lean)
    plain, timed, _, listed = lean.events
    assert lean.start_time is not None and lean.end_time is not None
    assert lean.start_time <= plain.timestamp <= lean.end_time
    assert timed.timestamp == 1234
    assert dict(listed.attributes or {}) == {"l": ("a", "b")}


def test_event_attributes_are_copied(pipe: Pipe) -> None:
    given = {"k": "v"}
    span = pipe.lean_start()
    span.add_event("e", given)
    given["k"] = "changed"
    span.end()
    (exported,) = pipe.exporter.get_finished_spans()
    assert dict(exported.events[0].attributes or {}) == {"k": "v"}


class Boom(Exception):
    """An exception of this module (its type names the module)."""


def raised(error: BaseException) -> BaseException:
    try:
        raise error
    except BaseException as caught:
        return caught


@pytest.mark.parametrize("escaped", [False, True])
def test_record_exception_as_the_sdk(pipe: Pipe, escaped: bool) -> None:
    def op(span: trace.Span) -> None:
        try:  # recorded while handled: older SDKs format the handled exception
            raise ValueError("bad value")
        except ValueError as error:
            span.record_exception(error, escaped=escaped)
            span.record_exception(error, {"extra": "x", "exception.message": "override"},
                                  timestamp=99)

    sdk, lean = pipe.both(op)
    assert_same(sdk, lean)
    first, second = lean.events
    attributes = dict(first.attributes or {})
    assert first.name == "exception"
    assert attributes["exception.type"] == "ValueError"
    assert attributes["exception.message"] == "bad value"
    assert attributes["exception.escaped"] == str(escaped)
    assert 'raise ValueError("bad value")' in str(attributes["exception.stacktrace"])
    assert "ValueError: bad value" in str(attributes["exception.stacktrace"])
    assert second.timestamp == 99
    assert dict(second.attributes or {})["exception.message"] == "override"


def test_record_exception_type_names_its_module(pipe: Pipe) -> None:
    error = raised(Boom("custom"))
    sdk, lean = pipe.both(lambda span: span.record_exception(error))
    qualified = f"{__name__}.Boom"
    lean_type = dict(lean.events[0].attributes or {})["exception.type"]
    sdk_type = dict(sdk.events[0].attributes or {})["exception.type"]
    # opentelemetry-sdk names the module from 1.2x on, older ones give the bare class name:
    # the lean span writes what the installed SDK writes
    assert lean_type == sdk_type
    assert sdk_type in (qualified, "Boom")
    # the stack trace is the exception's own, also outside the block that handled it
    stacktrace = str(dict(lean.events[0].attributes or {})["exception.stacktrace"])
    assert "raise error" in stacktrace and "Boom: custom" in stacktrace
    if sdk_type == qualified:
        assert_same(sdk, lean)


def test_record_exception_names_a_local_class_as_the_sdk(pipe: Pipe) -> None:
    class Local(Exception):
        pass

    error = raised(Local("local"))
    sdk, lean = pipe.both(lambda span: span.record_exception(error))
    lean_type = dict(lean.events[0].attributes or {})["exception.type"]
    assert lean_type == dict(sdk.events[0].attributes or {})["exception.type"]
    assert lean_type.endswith("Local")


def test_add_link(pipe: Pipe) -> None:
    valid = SpanContext(PARENT_TRACE, 5, is_remote=True,
                        trace_flags=TraceFlags(TraceFlags.SAMPLED))
    invalid = SpanContext(0, 0, is_remote=False)
    stated = SpanContext(0, 0, is_remote=False, trace_state=TraceState([("k", "v")]))

    def op(span: trace.Span) -> None:
        span.add_link(valid, {"why": "follows", "list": [1, 2]})
        span.add_link(valid)
        span.add_link(invalid)
        span.add_link(invalid, {"kept": "an invalid context with attributes"})
        span.add_link(stated)

    if SDK_ADDS_LINKS:
        sdk, lean = pipe.both(op)
        assert_same(sdk, lean)
    else:  # an SDK without Span.add_link: the rules of the newer SDKs
        span = pipe.lean_start()
        op(span)
        span.end()
        (lean,) = pipe.exporter.get_finished_spans()
    assert links_of(lean) == [(valid, {"why": "follows", "list": (1, 2)}), (valid, {}),
                              (invalid, {"kept": "an invalid context with attributes"}),
                              (stated, {})]


def test_update_name(pipe: Pipe) -> None:
    sdk, lean = pipe.both(lambda span: span.update_name("renamed"))
    assert_same(sdk, lean)
    assert lean.name == "renamed"


# ---------------------------------------------------------------------------- ending


def after_end(span: trace.Span) -> None:
    span.end()
    span.set_attribute("late", 1)
    span.set_attributes({"later": 2})
    span.add_event("late")
    span.record_exception(ValueError("late"))
    span.set_status(StatusCode.ERROR, "late")
    span.update_name("late")
    if SDK_ADDS_LINKS:
        span.add_link(SpanContext(PARENT_TRACE, 7, False))


def test_calls_after_end_are_ignored_with_a_warning(pipe: Pipe,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        sdk, lean = pipe.both(after_end, attributes={"k": "v"}, end=False)
    assert_same(sdk, lean)
    assert lean.name == "op" and dict(lean.attributes or {}) == {"k": "v"}
    assert lean.events == () and lean.status.status_code is StatusCode.UNSET
    ours = [r.getMessage() for r in caplog.records if r.name == "iii_rx.telemetry"]
    for what in ("set_attribute", "add_event", "set_status", "update_name"):
        assert any(what in message and "ended" in message for message in ours), (what, ours)


def test_after_end_the_span_is_not_recording(pipe: Pipe) -> None:
    span = pipe.lean_start()
    assert span.is_recording()
    span.end()
    assert not span.is_recording()
    assert span.get_span_context().is_valid


def test_double_end_warns_and_exports_once(pipe: Pipe,
                                           caplog: pytest.LogCaptureFixture) -> None:
    span = pipe.lean_start(name="twice")
    span.end(end_time=span.start_time + 10)  # type: ignore[attr-defined]
    with caplog.at_level(logging.WARNING, logger="iii_rx.telemetry"):
        span.end()
    (exported,) = pipe.exporter.get_finished_spans()
    assert exported.end_time == exported.start_time + 10  # type: ignore[operator]
    assert any("twice" in r.getMessage() for r in caplog.records
               if r.name == "iii_rx.telemetry")


def test_end_time_is_honoured(pipe: Pipe) -> None:
    def op(span: trace.Span) -> None:
        span.end(end_time=span.start_time + 5_000)  # type: ignore[attr-defined]

    sdk, lean = pipe.both(op, end=False)
    assert_same(sdk, lean)
    assert lean.end_time == lean.start_time + 5_000  # type: ignore[operator]


def test_use_span_records_an_escaping_exception(pipe: Pipe) -> None:
    def op(span: trace.Span) -> None:
        with pytest.raises(KeyError):
            with trace.use_span(span, end_on_exit=True):
                raise KeyError("missing")

    sdk, lean = pipe.both(op, end=False)
    assert_same(sdk, lean)
    assert lean.status.status_code is StatusCode.ERROR
    assert [e.name for e in lean.events] == ["exception"]


# ---------------------------------------------------------------------------- processors


def test_on_start_gets_the_lean_span_and_the_parent_context() -> None:
    seen: list[tuple[str, Any, Any, Any, dict[str, Any]]] = []

    def hook(span: Any, parent_context: Context | None) -> None:
        seen.append((span.name, span.kind, span.parent, span.context, dict(span.attributes)))
        span.set_attribute("from.on_start", "yes")

    recorder = Recorder(hook)
    made = Pipe(processors=[recorder])
    try:
        ctx = remote(True)
        sdk, lean = made.both(context=ctx, kind=SpanKind.SERVER, attributes={"k": "v"})
        assert_same(sdk, lean)
        assert dict(lean.attributes or {}) == {"k": "v", "from.on_start": "yes"}
        (sdk_started, sdk_ctx), (lean_started, lean_ctx) = recorder.started
        assert isinstance(lean_started, LeanSpan)
        assert lean_ctx is ctx and sdk_ctx is ctx
        assert lean_started.get_span_context() == lean.context
        (_, _, sdk_parent, _, sdk_attrs), (name, kind, parent, context, attrs) = seen
        assert (name, kind, parent, attrs) == ("op", SpanKind.SERVER, sdk_parent, sdk_attrs)
        assert context == lean.context
        assert isinstance(sdk_started, ReadableSpan)
    finally:
        made.close()


def test_on_start_reads_like_a_readable_span() -> None:
    recorder = Recorder()
    made = Pipe(processors=[recorder])
    try:
        span = made.lean_start(name="viewed", attributes={"k": "v"})
        (started, _), = recorder.started
        assert started is span
        for accessor in ("name", "context", "parent", "kind", "status", "start_time",
                         "end_time", "resource", "instrumentation_scope", "events", "links"):
            assert hasattr(started, accessor), accessor
        assert started.name == "viewed"
        assert started.end_time is None
        assert started.resource is made.tracer.resource
        with pytest.raises(TypeError):
            started.attributes["k"] = "x"
        assert "viewed" in repr(started)
        span.end()
    finally:
        made.close()


def test_on_end_gets_a_read_only_readable_span() -> None:
    recorder = Recorder()
    made = Pipe(processors=[recorder])
    try:
        span = made.lean_start(attributes={"shared": "v"})
        span.add_event("e", {"a": 1})
        span.end()
        owned = made.lean_start()
        owned.set_attribute("own", 1)
        owned.end()
        for ended in recorder.ended:
            assert isinstance(ended, ReadableSpan)
            assert ended.end_time is not None
            if isinstance(ended, LeanSpan):  # handed as it is: an ended span takes no writes
                before = (dict(ended.attributes), ended.events, ended.status, ended.name)
                ended.set_attribute("late", 1)
                ended.add_event("late")
                ended.set_status(Status(StatusCode.ERROR, "late"))
                ended.update_name("late")
                assert (dict(ended.attributes), ended.events, ended.status, ended.name) == before
            with pytest.raises(TypeError):
                ended.attributes["x"] = 1  # type: ignore[index]
            assert isinstance(ended.events, tuple)
        event_attributes: Any = recorder.ended[0].events[0].attributes
        changes: list[Callable[[Any], Any]] = [
            lambda m: m.__setitem__("b", 2), lambda m: m.__delitem__("a"),
            lambda m: m.__ior__({"b": 2}), lambda m: m.update(b=2), lambda m: m.pop("a"),
            lambda m: m.popitem(), lambda m: m.setdefault("b", 2), lambda m: m.clear()]
        for change in changes:
            with pytest.raises(TypeError):
                change(event_attributes)
        assert dict(event_attributes) == {"a": 1}
        assert recorder.ended[0].to_json()  # exporters' own rendering works
    finally:
        made.close()


@pytest.mark.parametrize("setup", ["no limits", "a value length limit", "a sampler's own"])
def test_spans_started_without_attributes_share_the_empty_map(setup: str) -> None:
    """A span that starts with no attribute keeps no attribute map of its own (one object
    less for the collector per span) unless a limit dropped something from it."""

    class Own(smp.Sampler):
        def should_sample(self, *args: Any, **kwargs: Any) -> smp.SamplingResult:
            return smp.SamplingResult(smp.Decision.RECORD_AND_SAMPLE)

        def get_description(self) -> str:
            return "own"

    made = Pipe(sampler=Own() if setup == "a sampler's own" else None,
                limits=(SpanLimits(max_span_attribute_length=64)
                        if setup == "a value length limit" else None))
    try:
        for attributes in (None, {}):
            span = made.lean_start(attributes=attributes)
            assert isinstance(span, LeanSpan)
            assert span.attributes == {} and span._attributes is EMPTY
            span.end()
    finally:
        made.close()


# ---------------------------------------------------------------------------- fallbacks


def test_lean_tracer_only_for_sdk_tracers(pipe: Pipe) -> None:
    assert lean_tracer(trace.NoOpTracer()) is None
    assert lean_tracer(trace.ProxyTracer("x")) is None  # type: ignore[call-arg]
    assert isinstance(lean_tracer(pipe.tracer), LeanTracer)


async def test_tracing_falls_back_to_a_non_sdk_provider() -> None:
    """``Tracing`` over a provider that is not the SDK's starts its spans there."""
    from iii_rx.calls import Call, settle

    tracing = Tracing(OtelConfig(), LoopBridge.current(), "w",
                      provider=trace.NoOpTracerProvider())
    assert tracing._lean is None

    class Invocation:
        function_id = "math.add"
        traceparent = f"00-{PARENT_TRACE:032x}-{PARENT_SPAN:016x}-01"
        baggage = None
        invocation_id = "inv-1"
        trace: Any = None

        def __init__(self) -> None:
            self.data = {"a": 1}

    invocation = Invocation()
    tracing.on_invoke(invocation)
    assert not invocation.trace.span.is_recording()
    invocation.trace.end({"ok": True}, None)

    sent: list[Call] = []
    loop = asyncio.get_running_loop()
    target: asyncio.Future[Any] = loop.create_future()

    def send(call: Call, done: Any) -> Callable[[], None]:
        sent.append(call)
        settle(done, "answer", None)
        return lambda: None

    call = object.__new__(Call)
    for name in Call.__slots__:
        setattr(call, name, None)
    call.function_id = "math.add"
    tracing.on_call(call, target, send)
    assert target.result() == "answer"
    assert sent[0].traceparent is not None
    tracing.close()


# ---------------------------------------------------------------------------- current span


def test_a_lean_span_as_the_current_span(pipe: Pipe) -> None:
    lean = pipe.lean_start(name="outer")
    with trace.use_span(lean, end_on_exit=False):
        assert trace.get_current_span() is lean
        child = pipe.tracer.start_span("sdk child")
        child.end()
        nested = pipe.lean_start(name="lean child", context=otel_context.get_current())
        nested.end()
    ctx = trace.set_span_in_context(lean)
    sibling = pipe.tracer.start_span("sdk sibling", ctx)
    sibling.end()
    lean.end()
    spans = {s.name: s for s in pipe.exporter.get_finished_spans()}
    outer = lean.get_span_context()
    for name in ("sdk child", "lean child", "sdk sibling"):
        parent = spans[name].parent
        assert parent is not None and parent.span_id == outer.span_id, name
        assert spans[name].context is not None
        assert spans[name].context.trace_id == outer.trace_id
    assert spans["outer"].parent is None


# ------------------------------------------------------------------ review follow-ups


def test_event_and_link_attributes_carry_a_drop_count_as_the_sdks_do(pipe: Pipe) -> None:
    """OTLP encoders before 1.27 read ``event.attributes.dropped``: every attribute map a
    lean span exports has it, read-only, and is written by ``to_json``."""
    def op(span: trace.Span) -> None:
        span.add_event("e", {"k": "v"})
        span.add_event("empty")
        span.add_link(SpanContext(PARENT_TRACE, PARENT_SPAN, is_remote=True), {"l": 1})

    sdk, lean = pipe.both(op) if SDK_ADDS_LINKS else pipe.both(
        lambda s: (s.add_event("e", {"k": "v"}), s.add_event("empty")))
    for span in (sdk, lean):
        for item in (*span.events, *span.links):
            assert item.attributes is not None and item.attributes.dropped == 0
    for event in lean.events:
        assert event.attributes is not None
        with pytest.raises(TypeError):
            event.attributes["k"] = "changed"  # type: ignore[index]
    assert '"k": "v"' in lean.to_json()


def test_a_span_ended_from_two_threads_at_once_is_handed_on_once() -> None:
    """The end is claimed under the span's lock: two threads ending a span at the same moment
    (a handler's thread and the loop) hand it on once, and writes after the end change
    nothing that was handed on."""
    import sys
    import threading

    class Count(SpanProcessor):
        def __init__(self) -> None:
            self.ended: list[ReadableSpan] = []

        def on_end(self, span: ReadableSpan) -> None:
            self.ended.append(span)

    count = Count()
    provider = TracerProvider()
    provider.add_span_processor(count)
    lean = lean_tracer(provider.get_tracer("race"))
    assert lean is not None
    quiet = logging.getLogger("iii_rx.telemetry")
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    quiet.disabled = True  # "ended twice" warnings would slow one thread down
    try:
        for _ in range(1500):
            span = lean.start("n", None, Context(), SpanKind.SERVER, {})
            barrier = threading.Barrier(2)

            def end(span: trace.Span = span, barrier: threading.Barrier = barrier) -> None:
                barrier.wait()
                span.end()
                span.add_event("late")

            threads = [threading.Thread(target=end) for _ in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        quiet.disabled = False
        sys.setswitchinterval(interval)
        provider.shutdown()
    assert len(count.ended) == 1500
    assert not any(s.events for s in count.ended)


def test_a_warning_under_one_spans_lock_does_not_hold_up_other_spans(pipe: Pipe) -> None:
    """A write to an ended span warns under that span's lock, and a logging handler may wait
    for another thread (one that forwards records through the event loop): that thread must
    still end its own spans, whatever their ids (a lock shared between spans would stop it)."""
    import threading

    ended = pipe.lean_start("ended")
    ended.end()
    low_bits = ended.get_span_context().span_id & 0xFF
    others = [pipe.lean_start("other") for _ in range(300)]
    while len(others) < 310:  # a few that share the ended span's low bits too
        span = pipe.lean_start("other")
        if span.get_span_context().span_id & 0xFF == low_bits:
            others.append(span)
        else:
            span.end()
    in_handler, others_ended = threading.Event(), threading.Event()

    class WaitsForTheLoop(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            in_handler.set()
            others_ended.wait(10)

    handler = WaitsForTheLoop(logging.WARNING)
    log = logging.getLogger("iii_rx.telemetry")
    log.addHandler(handler)
    try:
        writer = threading.Thread(target=ended.set_attribute, args=("late", 1))
        writer.start()
        assert in_handler.wait(10)

        def end_the_others() -> None:
            for span in others:
                span.end()
            others_ended.set()

        loop_thread = threading.Thread(target=end_the_others, daemon=True)
        loop_thread.start()
        assert others_ended.wait(10), "ending another span waited for the warning's handler"
        writer.join(10)
    finally:
        others_ended.set()
        log.removeHandler(handler)


def test_with_span_records_an_escaping_exception_as_the_sdk_does(pipe: Pipe) -> None:
    def raise_inside(span: trace.Span) -> None:
        with pytest.raises(ValueError), span:
            raise ValueError("boom")

    sdk, lean = pipe.both(raise_inside, end=False)
    assert lean.status.status_code is sdk.status.status_code is StatusCode.ERROR
    assert lean.status.description == sdk.status.description
    assert [e.name for e in lean.events] == [e.name for e in sdk.events] == ["exception"]
    assert lean.events[0].attributes["exception.escaped"] == "True"  # type: ignore[index]


def test_a_lean_span_reports_what_it_dropped_while_open(pipe: Pipe) -> None:
    limited = Pipe(limits=SpanLimits(max_span_attributes=1, max_events=1, max_links=1))
    try:
        span = limited.lean_start("op")
        assert isinstance(span, LeanSpan)
        span.set_attribute("a", 1)
        span.set_attribute("b", 2)
        span.add_event("one")
        span.add_event("two")
        assert (span.dropped_attributes, span.dropped_events) == (1, 1)
        assert span.instrumentation_info is limited.tracer.instrumentation_info
        span.end()
    finally:
        limited.close()


def test_a_subclass_of_the_sdk_tracer_keeps_its_own_start_span(pipe: Pipe) -> None:
    from opentelemetry.sdk.trace import Tracer as SdkTracer

    class Custom(SdkTracer):
        pass

    custom = object.__new__(Custom)
    custom.__dict__.update(pipe.tracer.__dict__)
    assert lean_tracer(custom) is None


# ---------------------------------------------------------------------------- the hot paths


@pytest.mark.parametrize("event", [False, True])
@pytest.mark.parametrize("status", [Status(StatusCode.OK), Status(StatusCode.ERROR, "bad")])
def test_finish_is_add_event_set_status_end(pipe: Pipe, event: bool, status: Status) -> None:
    """``finish`` (an answer's one step) exports what the three calls export on the SDK."""
    attributes = {"iii.payload.json": '{"a":1}', "iii.payload.truncated": False}

    def three(span: trace.Span) -> None:
        if event:
            span.add_event("out", attributes)
        span.set_status(status)

    sdk_span = pipe.sdk_start(attributes={"k": "v"})
    three(sdk_span)
    sdk_span.end()
    lean_span = pipe.lean_start(attributes={"k": "v"})
    assert isinstance(lean_span, LeanSpan)
    lean_span.finish(status, "out" if event else None, dict(attributes) if event else None)
    sdk, lean = pipe.exporter.get_finished_spans()
    assert_same(sdk, lean)


def test_finish_keeps_an_ok_status_and_ends_once(pipe: Pipe,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    span = pipe.lean_start()
    assert isinstance(span, LeanSpan)
    span.set_status(Status(StatusCode.OK))
    span.finish(Status(StatusCode.ERROR, "late"))
    with caplog.at_level(logging.WARNING, logger="iii_rx.telemetry"):
        span.finish(Status(StatusCode.ERROR, "twice"), "e", {"a": 1})
    (exported,) = pipe.exporter.get_finished_spans()
    assert exported.status.status_code is StatusCode.OK  # OK is final, as in the SDK
    assert exported.events == ()
    assert "ended span" in caplog.text


def test_finish_respects_the_event_limit() -> None:
    made = Pipe(limits=SpanLimits(max_events=1))
    try:
        span = made.lean_start()
        assert isinstance(span, LeanSpan)
        span.add_known_event("first", {"n": 1})
        span.finish(Status(StatusCode.OK), "second", {"n": 2})
        (exported,) = made.exporter.get_finished_spans()
        assert [e.name for e in exported.events] == ["second"]
        assert exported.dropped_events == 1
    finally:
        made.close()


def test_a_deep_copy_is_what_the_sdks_span_copies_to() -> None:
    """A processor or exporter may deep-copy the span it is handed (to keep it past
    ``on_end``): a lean span copies to the SDK's plain ``ReadableSpan`` of the same fields,
    what it dropped included, as the SDK's own spans do."""
    import copy

    made = Pipe(limits=SpanLimits(max_span_attributes=2, max_events=2, max_links=1))
    try:
        def ops(span: trace.Span) -> None:
            for n in range(3):
                span.set_attribute(f"a{n}", n)
                span.add_event(f"e{n}", {"n": n})
                if SDK_ADDS_LINKS:
                    span.add_link(SpanContext(PARENT_TRACE, n + 1, False), {"n": n})
            span.set_status(Status(StatusCode.ERROR, "bad"))

        sdk, lean = made.both(ops, attributes={"start": "x"})
        try:
            sdk_copy = copy.deepcopy(sdk)
        except TypeError as exc:  # SDKs before 1.41: their spans hold locks
            with pytest.raises(TypeError, match=str(exc)):
                copy.deepcopy(lean)
            return
        lean_copy = copy.deepcopy(lean)
        assert type(lean_copy) is ReadableSpan
        assert json_view(lean_copy) == json_view(sdk_copy) == json_view(lean)
        for field in ("dropped_attributes", "dropped_events", "dropped_links"):
            assert getattr(lean_copy, field) == getattr(sdk_copy, field) == getattr(lean, field)
        assert (lean_copy.context, lean_copy.parent) == (lean.context, lean.parent)
        assert events_of(lean_copy) == events_of(sdk_copy)
    finally:
        made.close()


def test_limits_of_zero_keep_nothing_and_count_what_they_drop_as_the_sdk() -> None:
    """With room for no attribute, event or link, what each SDK version reports as dropped
    (before 1.22 nothing dropped from an empty container; from 1.22 the count)."""
    made = Pipe(limits=SpanLimits(max_span_attributes=0, max_events=0, max_links=0))
    try:
        def ops(span: trace.Span) -> None:
            span.set_attribute("k", "v")
            span.add_event("e", {"n": 1})
            if isinstance(span, LeanSpan):
                span.add_known_event("known", {"n": 2})
            else:
                span.add_event("known", {"n": 2})
            if SDK_ADDS_LINKS:
                span.add_link(SpanContext(PARENT_TRACE, 2, False))

        sdk, lean = made.both(ops, attributes={"start": "x"})
        assert_same(sdk, lean)
        assert (lean.attributes, lean.events, lean.links) == ({}, (), ())
    finally:
        made.close()


@pytest.mark.parametrize("max_events", [None, 5, 12])
def test_many_known_and_other_events_keep_their_order_and_limit(max_events: int | None) -> None:
    """Known events (kept as tuples while few) and ``add_event`` ones, past the few a tuple
    holds and past the limit: exported in order, evicted and counted as on the SDK."""
    made = Pipe(limits=SpanLimits(max_events=max_events))
    try:
        sdk_span, lean_span = made.sdk_start(), made.lean_start()
        assert isinstance(lean_span, LeanSpan)
        for n in range(14):
            sdk_span.add_event(f"e{n}", {"n": n}, timestamp=n + 1)
            if n % 3:
                lean_span.add_known_event(f"e{n}", {"n": n})
            else:
                lean_span.add_event(f"e{n}", {"n": n}, timestamp=n + 1)
        sdk_span.add_event("last", {"ok": True})
        sdk_span.end()
        lean_span.finish(Status(StatusCode.UNSET), "last", {"ok": True})
        sdk, lean = made.exporter.get_finished_spans()
        assert_same(sdk, lean)
        assert json.loads(lean.to_json())["events"][-1]["name"] == "last"
    finally:
        made.close()


def test_span_context_builds_what_the_constructor_builds() -> None:
    from iii_rx.telemetry.leanspan import span_context

    state = TraceState([("v", "1")])
    for args in ((PARENT_TRACE, PARENT_SPAN, True, TraceFlags(1), state),
                 (PARENT_TRACE, PARENT_SPAN, False, TraceFlags(0), None),
                 (0, PARENT_SPAN, True, TraceFlags(1), None)):
        made, fast = SpanContext(*args), span_context(*args)
        assert fast == made and type(fast) is SpanContext
        assert (fast.trace_id, fast.span_id, fast.is_remote, fast.trace_flags,
                fast.trace_state, fast.is_valid) == (
            made.trace_id, made.span_id, made.is_remote, made.trace_flags,
            made.trace_state, made.is_valid)


@pytest.mark.parametrize(("traceparent", "expected"), [
    ("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
     (PARENT_TRACE, PARENT_SPAN, 1)),
    ("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00-x",  # a later version: parsed
     (PARENT_TRACE, PARENT_SPAN, 0)),
    ("00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01", None),  # W3C: lowercase only
    ("00-00000000000000000000000000000000-b7ad6b7169203331-01", None),
    ("00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", None),
    ("00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333-01", None),
    ("not a traceparent", None),
    (None, None),
])
def test_remote_parent(traceparent: str | None, expected: tuple[int, int, int] | None) -> None:
    from iii_rx.telemetry.tracing import remote_parent

    parent = remote_parent(traceparent)
    if expected is None:
        assert parent is None
        return
    assert parent is not None and parent.is_valid and parent.is_remote
    assert (parent.trace_id, parent.span_id, int(parent.trace_flags)) == expected


def test_a_processor_that_starts_spans_gets_the_parent_context() -> None:
    """Quiet processors are not called at a span's start; one that overrides ``on_start``
    is, with the parent's context built for it (the caller passed none)."""
    recorder = Recorder()
    made = Pipe(processors=[recorder])
    try:
        assert made.lean.needs_context()
        parent = SpanContext(PARENT_TRACE, PARENT_SPAN, is_remote=True,
                             trace_flags=TraceFlags(1))
        made.lean.start("op", parent, None, SpanKind.SERVER, {}).end()
        ((span, context),) = recorder.started
        assert isinstance(span, LeanSpan)
        assert context is not None
        assert trace.get_current_span(context).get_span_context() == parent
    finally:
        made.close()
    quiet = Pipe()
    try:
        assert not quiet.lean.needs_context()
        quiet.provider.add_span_processor(recorder)  # processors changed: checked again
        assert quiet.lean.needs_context()
    finally:
        quiet.close()


class _Ids(RandomIdGenerator):
    """Trace ids from a list (the test knows which ones a ratio sampler keeps)."""

    def __init__(self, trace_ids: list[int]) -> None:
        self.trace_ids = iter(trace_ids)

    def generate_trace_id(self) -> int:
        return next(self.trace_ids)


@pytest.mark.parametrize("make", [
    lambda: smp.TraceIdRatioBased(0.5),
    lambda: smp.ParentBased(smp.TraceIdRatioBased(0.3)),
    lambda: smp.ParentBasedTraceIdRatio(0.7),
    lambda: smp.ParentBased(smp.ALWAYS_OFF),
    lambda: smp.ALWAYS_OFF,
])
@pytest.mark.parametrize("parent_sampled", [None, True, False])
def test_standard_samplers_decide_as_the_sdk(make: Callable[[], smp.Sampler],
                                             parent_sampled: bool | None) -> None:
    """The lean tracer decides the SDK's standard samplers itself: span by span, the same
    decision (and trace state) as the sampler's own ``should_sample``."""
    import random

    sampler = make()
    trace_ids = [random.getrandbits(128) or 1 for _ in range(300)]
    provider = TracerProvider(sampler=sampler, id_generator=_Ids(list(trace_ids)))
    lean = lean_tracer(provider.get_tracer("ratio.test"))
    assert lean is not None
    assert not lean.needs_context()  # decided without the parent's context
    for trace_id in trace_ids:
        parent = None
        if parent_sampled is not None:
            parent = SpanContext(trace_id, PARENT_SPAN, is_remote=True,
                                 trace_flags=TraceFlags(1 if parent_sampled else 0),
                                 trace_state=TraceState([("k", "v")]))
        context = (trace.set_span_in_context(NonRecordingSpan(parent), Context())
                   if parent is not None else Context())
        expected = sampler.should_sample(context, trace_id, "op")
        span = lean.start("op", parent, None, SpanKind.SERVER, {"a": 1})
        assert span.is_recording() == expected.decision.is_sampled(), hex(trace_id)
        assert span.get_span_context().trace_flags.sampled == expected.decision.is_sampled()
        assert span.get_span_context().trace_state == (expected.trace_state or TraceState())
        span.end()
    provider.shutdown()
