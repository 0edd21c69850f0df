"""iii_rx's own call and invocation spans, fed to an SDK tracer's pipeline at a fraction of
its per-span cost.

opentelemetry-sdk spends about 40 µs of CPU starting and ending one span (validated, locked
attribute maps, a lock per span, the sampler's generic path): as much as a whole untraced call
through iii_rx. A client traces every call and every invocation, so that cost would dominate.
:class:`LeanTracer` starts the same spans with the SDK tracer's own sampler, id generator,
resource and span processors (the SDK ``Tracer``'s public attributes; its span limits and
whether a configurator disabled it are read from its private ``_span_limits`` and
``_is_enabled``, where they exist), but keeps a span in a few plain fields (:class:`LeanSpan`, a
full OpenTelemetry API ``Span``: attributes, events, status, exceptions, links, renaming)
that is also the SDK's ``ReadableSpan``, handed to the processors as it is when it ends (no
copy: nothing writes to an ended span). Processors whose ``on_start`` does nothing (the SDK's
batch and simple processors, ``iii.spans``' feed) are not called at a span's start, and the
parent context, which only a processor's ``on_start`` or a sampler of one's own reads, is then
not even built. The SDK's standard samplers (always on or off, trace id ratio, parent-based
over one of those) are decided by the same rule without their generic path; any other sampler
is asked through its own ``should_sample``. Exporters, ``iii.spans``
subscribers and in-memory test exporters see the same ``ReadableSpan`` as from the SDK's own
spans; a handler that reads ``trace.get_current_span()`` gets the :class:`LeanSpan` and may
add to it.

What the lean path leaves out: the SDK's internal self-metrics
(``OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED``), a tracer configurator that disables the
tracer after the client started, and the experimental ``_on_ending`` processor hook. The
tracer's span limits apply, and whatever a span cannot keep as it is (a value to clean or
cut, a limit reached) goes through the SDK's own bounded containers, so it is kept, cleaned,
evicted and counted as dropped exactly as the installed SDK does. A tracer that is not the
SDK's own (another implementation, a no-op, a subclass of the SDK's, a disabled one) gets
ordinary ``start_span`` calls instead.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from copy import deepcopy
from time import time_ns as _now
from types import MappingProxyType
from typing import Any

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import (
    Event,
    ReadableSpan,
    SpanLimits,
    SpanProcessor,
    SynchronousMultiSpanProcessor,
    sampling,
)
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Link,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)
from opentelemetry.util import types

from iii_rx.telemetry.exception_event import exception_attributes
from iii_rx.telemetry.sampler_rules import TRACE_ID_LIMIT, Rule, rule_of
from iii_rx.telemetry.span_store import (
    EMPTY,
    FEW,
    BuiltEvent,
    Frozen,
    PlainList,
    room,
    sdk_event,
)

__all__ = ["TRACE_FLAGS", "LeanSpan", "LeanTracer", "lean_tracer", "span_context",
           "with_parent"]

log = logging.getLogger("iii_rx.telemetry")

_SAMPLED = TraceFlags.SAMPLED
_RANDOM: int = getattr(TraceFlags, "RANDOM_TRACE_ID", 0)
"""The W3C level-2 "random trace id" flag (set by SDKs from 1.39; absent from older APIs)."""
_UNSET = Status(StatusCode.UNSET)
_PLAIN = frozenset((bool, str, bytes, int, float))
"""Attribute value types every SDK version keeps unchanged (when no length limit applies)."""
_QUIET_ON_START = frozenset((SpanProcessor.on_start, BatchSpanProcessor.on_start,
                             SimpleSpanProcessor.on_start))
"""``on_start`` methods that do nothing (a processor with one of these is not called)."""
TRACE_FLAGS = tuple(TraceFlags(bits) for bits in range(256))
"""``TraceFlags`` by their value (built once)."""
_NO_STATE = TraceState()
_new_tuple = tuple.__new__


def span_context(trace_id: int, span_id: int, remote: bool, flags: TraceFlags,
                 state: TraceState | None = None) -> SpanContext:
    """``SpanContext(trace_id, span_id, remote, flags, state)`` for ids known to fit (a
    third of the constructor's cost: a span context is a tuple, built here directly when
    this API's layout is the one checked below, else by the constructor)."""
    return _new_tuple(SpanContext, (trace_id, span_id, remote, flags,
                                    _NO_STATE if state is None else state,
                                    trace_id != 0 and span_id != 0))


def _layout_checked() -> bool:
    made = SpanContext(0xA, 0xB, True, TRACE_FLAGS[1], TraceState([("k", "v")]))
    fast = span_context(0xA, 0xB, True, TRACE_FLAGS[1], made.trace_state)
    return (fast == made and fast.is_valid and (fast.trace_id, fast.span_id, fast.is_remote,
                                                fast.trace_flags, fast.trace_state)
            == (0xA, 0xB, True, TRACE_FLAGS[1], made.trace_state)
            and not span_context(0, 0xB, False, TRACE_FLAGS[0]).is_valid
            and SpanContext(1, 1, False).trace_state == _NO_STATE)


_LAYOUT_OK = _layout_checked()
if not _LAYOUT_OK:  # another API version: its own constructor (and no lean tracer)
    def span_context(trace_id: int, span_id: int, remote: bool, flags: TraceFlags,
                     state: TraceState | None = None) -> SpanContext:
        return SpanContext(trace_id, span_id, remote, flags, state)


def _counts_plain() -> bool:
    """Whether this SDK's ``ReadableSpan`` takes plain attribute maps (1.22 on)."""
    try:
        return ReadableSpan("probe", resource=Resource.get_empty(),
                            attributes={"k": 1}).dropped_attributes == 0
    except AttributeError:
        return False


_COUNTS_PLAIN = _counts_plain()


def _counts_drops_of_empty() -> bool:
    """Whether this SDK's ``ReadableSpan`` reports what a container that kept nothing dropped
    (1.22 on; before, it reports 0 for an empty one, as when a limit is 0)."""
    events: BoundedList[Any] = BoundedList(0)
    events.append(None)
    try:
        return bool(ReadableSpan("probe", resource=Resource.get_empty(),
                                 events=events).dropped_events)
    except (AttributeError, TypeError):  # another SDK: the current versions' rule
        return True


_COUNTS_DROPS_OF_EMPTY = _counts_drops_of_empty()


def lean_tracer(tracer: trace.Tracer) -> LeanTracer | None:
    """The lean tracer over ``tracer`` when it is the SDK's own tracer (not a subclass, which
    may start spans its own way), no tracer configurator turned it off and the API's span
    contexts have the layout this module builds; else ``None``."""
    if type(tracer) is not SdkTracer or not _LAYOUT_OK:
        return None
    enabled = getattr(tracer, "_is_enabled", None)  # SDK 1.3x on: a configurator's verdict
    if callable(enabled) and not enabled():
        return None
    return LeanTracer(tracer)


class LeanTracer:
    """Starts :class:`LeanSpan` s on an SDK tracer's pipeline (see the module docstring)."""

    __slots__ = ("_processors", "_quiet", "_rule", "_sampler", "event_room", "limits", "plain",
                 "room", "scope", "tracer")

    def __init__(self, tracer: SdkTracer) -> None:
        self.tracer = tracer
        info = tracer.instrumentation_info
        self.scope = InstrumentationScope(info.name, info.version, info.schema_url)
        # The provider's limits (its own, or the environment's), as the SDK tracer uses them.
        limits = getattr(tracer, "_span_limits", None)
        self.limits: SpanLimits = limits if isinstance(limits, SpanLimits) else SpanLimits()
        self.room = (_limit(self.limits.max_span_attributes)
                     if self.limits.max_span_attribute_length is None else -1)
        """How many start attributes a span keeps as given (-1: none, values may be cut)."""
        self.plain = self.limits.max_attribute_length is None
        """Whether event and link attribute values are never cut."""
        self.event_room = _limit(self.limits.max_event_attributes) if self.plain else -1
        """How many valid attributes an event keeps as given (-1: none, values may be cut)."""
        self._processors: object = None
        self._quiet = False
        self._sampler: object = None
        self._rule: Rule | None = None

    def needs_context(self) -> bool:
        """Whether :meth:`start` reads its ``context``: a sampler of the user's, or a span
        processor that does something at a span's start. When not, a caller may pass
        ``None`` (and save building it)."""
        if self._rule_for(self.tracer.sampler) is None:
            return True
        return not self._quiet_start()

    def _rule_for(self, sampler: object) -> Rule | None:
        """The rule of ``sampler`` (:func:`~iii_rx.telemetry.sampler_rules.rule_of`), worked
        out again only when the sampler changes."""
        if sampler is not self._sampler:
            self._rule = rule_of(sampler)
            self._sampler = sampler
        return self._rule

    def _quiet_start(self) -> bool:
        """Whether no span processor does anything in ``on_start`` (checked again whenever the
        provider's processors change)."""
        multi = self.tracer.span_processor
        processors = getattr(multi, "_span_processors", None)
        if processors is not self._processors:
            self._processors = processors
            self._quiet = (type(multi) is SynchronousMultiSpanProcessor
                           and isinstance(processors, tuple)
                           and all(type(p).on_start in _QUIET_ON_START for p in processors))
        return self._quiet

    def bounded(self, attributes: types.Attributes) -> BoundedAttributes:
        """A span's attributes in the SDK's own map (same cleaning, limits, eviction)."""
        limits = self.limits
        return BoundedAttributes(limits.max_span_attributes, attributes, immutable=False,
                                 max_value_len=limits.max_span_attribute_length)

    def frozen(self, attributes: types.Attributes, maxlen: int | None) -> Mapping[str, Any]:
        """The attributes of an event or a link, as the SDK would keep them (read-only)."""
        if not attributes:
            return EMPTY
        if self.plain and len(attributes) <= _limit(maxlen):
            for key, value in attributes.items():
                if type(value) not in _PLAIN or type(key) is not str or not key:
                    break
            else:
                return Frozen(attributes)
        return BoundedAttributes(maxlen, attributes, immutable=True,
                                 max_value_len=self.limits.max_attribute_length)

    def start(self, name: str, parent: SpanContext | None, context: Context | None,
              kind: SpanKind, attributes: Mapping[str, Any]) -> trace.Span:
        """A started span: a :class:`LeanSpan` if the sampler records it, else a
        ``NonRecordingSpan`` with fresh ids. ``parent`` is the span context current in
        ``context`` (``None`` when there is none; ``context`` may be ``None`` when
        :meth:`needs_context` says so), ``attributes`` are valid attribute values, shared,
        never changed."""
        tracer = self.tracer
        sampler = tracer.sampler
        ids = tracer.id_generator
        trace_state: TraceState | None
        if parent is not None:  # a tuple (the layout lean_tracer checked)
            trace_id, _, _, parent_flags, trace_state, valid = parent
            if not valid:
                parent = None
        if parent is None:
            trace_id = ids.generate_trace_id()
            random = _RANDOM and getattr(ids, "is_trace_id_random", _no)()
            parent_flags = TRACE_FLAGS[_SAMPLED]
            trace_state = None
        else:
            random = parent_flags & _RANDOM
        rule = self._rule_for(sampler)
        if rule is not None:
            # A standard sampler, decided without its generic path (same answer).
            follows_parent, bound = rule
            if follows_parent and parent is not None:
                sampled = bool(parent_flags & _SAMPLED)
            else:
                sampled = bound is None or (trace_id & TRACE_ID_LIMIT) < bound
            recording = sampled
            start_attributes: Mapping[str, Any] | None = attributes
            unbounded = len(attributes) > self.room
        else:
            if context is None:
                context = with_parent(Context(), parent)
            result = sampler.should_sample(context, trace_id, name, kind, attributes, ())
            sampled = result.decision is sampling.Decision.RECORD_AND_SAMPLE
            recording = sampled or result.decision is sampling.Decision.RECORD_ONLY
            trace_state = result.trace_state
            start_attributes = result.attributes
            unbounded = True  # a sampler's attributes: cleaned and bounded as by the SDK
        flags = TRACE_FLAGS[(_SAMPLED if sampled else 0) | (_RANDOM if random else 0)]
        own = span_context(trace_id, ids.generate_span_id(), False, flags, trace_state)
        if not recording:
            return trace.NonRecordingSpan(own)
        if unbounded:
            start_attributes = self.bounded(start_attributes)
        if not start_attributes:  # shared, unless a bounded map keeps a count of the dropped
            dropped: int = getattr(start_attributes, "dropped", 0)
            if start_attributes is None or not dropped:
                start_attributes = EMPTY
        span = LeanSpan(self, name, own, parent, kind, start_attributes)
        if not self._quiet_start():
            if context is None:
                context = with_parent(Context(), parent)
            tracer.span_processor.on_start(span, parent_context=context)  # type: ignore[arg-type]
        return span


def _no() -> bool:
    return False


def with_parent(context: Context, parent: SpanContext | None) -> Context:
    """``context`` with ``parent`` (a span context) as its current span."""
    if parent is None:
        return context
    return trace.set_span_in_context(trace.NonRecordingSpan(parent), context)


class LeanSpan(trace.Span, ReadableSpan):
    """A recording span, handed to the processors as the ``ReadableSpan`` it also is.

    Its fields are the ones ``ReadableSpan`` reads (what a span never changed keeps the class
    defaults). As in the SDK, a lock orders the writers and the end: a handler's pool thread
    (or a thread it started) may write while the loop ends the span, and nothing changes
    what a processor was handed.

    A span keeps few objects of its own: it lives from its start to the processor's next
    export, long enough for the garbage collector to promote it and walk it in every
    collection in between (in a busy worker that walking cost more than a tenth of a
    span's CPU). So an event added by :meth:`add_known_event` or :meth:`finish` is kept as
    a ``(name, attributes, time)`` tuple and made the SDK's ``Event`` when read. (The lock
    stays the span's own: the SDK logs under it, and a logging handler that waits for
    another thread must not block the spans that thread ends.)
    """

    _kept_events: tuple[Any, ...] | PlainList | BoundedList[Any] = ()
    """Events (SDK ``Event`` s or known-event tuples): a tuple while few and under the limit,
    then a list while under it, the SDK's ``BoundedList`` (evicting) once it is reached."""
    _links: PlainList | BoundedList[Link] | tuple[()] = ()
    _status = _UNSET
    _end_time: int | None = None
    _context: SpanContext
    _start_time: int

    def __init__(self, lean: LeanTracer, name: str, context: SpanContext,
                 parent: SpanContext | None, kind: SpanKind,
                 attributes: Mapping[str, Any]) -> None:
        self._lean = lean
        self._name = name
        self._context = context
        self._parent = parent
        self._kind = kind
        self._attributes: Mapping[str, Any] = attributes
        self._own = isinstance(attributes, BoundedAttributes)
        """Whether ``_attributes`` is this span's own map (else shared: copied on write)."""
        self._lock = threading.Lock()
        # What ReadableSpan's own methods (``to_json``) read.
        self._resource = lean.tracer.resource
        self._instrumentation_info = lean.tracer.instrumentation_info
        self._instrumentation_scope = lean.scope
        self._start_time = _now()

    # ------------------------------------------------------------ the API Span

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._end_time is None

    def set_attributes(self, attributes: Mapping[str, types.AttributeValue]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def set_attribute(self, key: str, value: types.AttributeValue) -> None:
        with self._lock:
            if not self._writable("set_attribute"):
                return
            attributes = self._attributes
            if not self._own:  # the SDK's map validates, cuts, evicts and counts
                attributes = self._attributes = self._lean.bounded(attributes)
                self._own = True
            attributes[key] = value  # type: ignore[index]

    def add_event(self, name: str, attributes: types.Attributes = None,
                  timestamp: int | None = None) -> None:
        lean = self._lean
        event = Event(name, lean.frozen(attributes, lean.limits.max_event_attributes),
                      timestamp if timestamp is not None else _now())
        with self._lock:
            if self._writable("add_event"):
                self._append_event(event)

    def add_known_event(self, name: str, attributes: dict[str, Any]) -> None:
        """``add_event`` for attributes known valid (text, numbers, booleans; a fresh dict
        this span keeps, which nobody changes afterwards: it is copied only when read): kept
        as they are unless a limit applies."""
        event = self._known_event(name, attributes)
        with self._lock:
            if self._writable("add_event"):
                self._append_event(event)

    def finish(self, status: Status, name: str | None = None,
               attributes: dict[str, Any] | None = None) -> None:
        """``add_known_event(name, attributes)`` (when ``name`` is given), ``set_status`` and
        ``end`` in one step: how an answer ends a span."""
        event = self._known_event(name, attributes) if name is not None else None
        with self._lock:
            if not self._writable("end"):
                return
            if event is not None:
                self._append_event(event)
            self._set_status_locked(status)
            self._end_locked(_now())
        self._lean.tracer.span_processor.on_end(self)

    def _known_event(self, name: str, attributes: dict[str, Any] | None) -> Any:
        """The event to keep: a ``(name, attributes, time)`` tuple when the attributes are
        kept as they are, else an SDK ``Event`` with what the limits leave of them."""
        lean = self._lean
        if not attributes or len(attributes) <= lean.event_room:
            return (name, attributes, _now())
        return BuiltEvent(name, lean.frozen(attributes, lean.limits.max_event_attributes), _now())

    def _append_event(self, event: Any) -> None:
        """Keep ``event`` (under the lock, the span open)."""
        kept = self._kept_events
        maxlen = self._lean.limits.max_events
        if type(kept) is tuple and len(kept) < FEW and (maxlen is None or len(kept) < maxlen):
            self._kept_events = (*kept, event)
        else:
            kept = self._kept_events = room(kept, maxlen)
            kept.append(event)

    @property
    def _events(self) -> PlainList | BoundedList[Event]:  # type: ignore[override]
        """The events as SDK ``Event`` s (where ``ReadableSpan.to_json`` reads them)."""
        kept = self._kept_events
        events = [sdk_event(event) for event in kept]
        if type(kept) is not BoundedList:
            return PlainList(events)
        bounded = BoundedList.from_seq(self._lean.limits.max_events, events)
        bounded.dropped = kept.dropped
        return bounded

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        # The SDK keeps a link to an invalid context if it has attributes or a trace state.
        if not context or not (context.is_valid or attributes or context.trace_state):
            return
        lean = self._lean
        link = Link(context, lean.frozen(attributes, lean.limits.max_link_attributes))
        with self._lock:
            if self._writable("add_link"):
                links = self._links = room(self._links, lean.limits.max_links)
                links.append(link)

    def update_name(self, name: str) -> None:
        with self._lock:
            if self._writable("update_name"):
                self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if not isinstance(status, Status):
            status = Status(status, description)
        with self._lock:
            if self._writable("set_status"):
                self._set_status_locked(status)

    def _set_status_locked(self, status: Status) -> None:
        """The SDK's rules: OK is final, UNSET is ignored (under the lock, the span open)."""
        if (self._status.status_code is not StatusCode.OK
                and status.status_code is not StatusCode.UNSET):
            self._status = status

    def record_exception(self, exception: BaseException,
                         attributes: types.Attributes = None, timestamp: int | None = None,
                         escaped: bool = False) -> None:
        recorded = exception_attributes(exception, escaped)
        if attributes:
            recorded.update(attributes)
        self.add_event("exception", recorded, timestamp)

    def end(self, end_time: int | None = None) -> None:
        with self._lock:
            if self._end_time is not None:
                log.warning("span %r ended twice", self._name)
                return
            self._end_locked(end_time if end_time is not None else _now())
        # Past this point no writer gets in (each checks the end under the lock).
        self._lean.tracer.span_processor.on_end(self)

    def _end_locked(self, end_time: int) -> None:
        self._end_time = end_time
        if not _COUNTS_PLAIN:
            attributes = self._attributes
            if not (self._own or not attributes):
                self._attributes = Frozen(attributes)  # shared: with .dropped for SDK 1.20

    def __exit__(self, exc_type: type[BaseException] | None, exc_val: BaseException | None,
                 exc_tb: Any) -> None:
        """``with span:`` records an escaping exception and sets ``ERROR``, then ends the
        span, as the SDK's spans do."""
        if exc_val is not None and self.is_recording():
            self.record_exception(exc_val, escaped=True)
            self.set_status(Status(StatusCode.ERROR,
                                   f"{type(exc_val).__name__}: {exc_val}"))
        self.end()

    def _writable(self, what: str) -> bool:
        """Whether the span is still open (called under the lock); warns if not."""
        if self._end_time is None:
            return True
        log.warning("%s on the ended span %r: ignored", what, self._name)
        return False

    # ------------------------------------------------------------ ReadableSpan's view

    @property
    def name(self) -> str:
        return self._name

    @property
    def context(self) -> SpanContext:
        return self._context

    @property
    def parent(self) -> SpanContext | None:
        return self._parent

    @property
    def kind(self) -> SpanKind:
        return self._kind

    @property
    def attributes(self) -> Mapping[str, Any]:
        return MappingProxyType(self._attributes)

    @property
    def events(self) -> Sequence[Event]:
        return tuple([sdk_event(event) for event in self._kept_events])  # not via _events' list

    @property
    def links(self) -> Sequence[Link]:
        return tuple(self._links or ())

    @property
    def status(self) -> Status:
        return self._status

    @property
    def start_time(self) -> int:
        return self._start_time

    @property
    def end_time(self) -> int | None:
        return self._end_time

    @property
    def resource(self) -> Any:
        return self._lean.tracer.resource

    @property
    def instrumentation_scope(self) -> InstrumentationScope:
        return self._lean.scope

    @property
    def instrumentation_info(self) -> Any:
        return self._lean.tracer.instrumentation_info

    @property
    def dropped_attributes(self) -> int:
        return _dropped(self._attributes) if self._own else 0

    @property
    def dropped_events(self) -> int:
        return _dropped(self._kept_events)

    @property
    def dropped_links(self) -> int:
        return _dropped(self._links)

    def __deepcopy__(self, memo: dict[int, Any]) -> ReadableSpan:
        """A deep copy is the SDK's plain ``ReadableSpan`` of these fields, deep-copied (as
        of what the SDK hands its processors): neither the lock nor the tracer is copied."""
        readable = ReadableSpan(
            name=self._name, context=self._context, parent=self._parent,
            resource=self.resource, attributes=self._attributes, events=self._events,
            links=self._links, kind=self._kind, status=self._status,
            start_time=self._start_time, end_time=self._end_time,
            instrumentation_info=self.instrumentation_info,
            instrumentation_scope=self.instrumentation_scope)
        return deepcopy(readable, memo)

    def __repr__(self) -> str:
        return (f"LeanSpan(name={self._name!r}, trace_id=0x{self._context.trace_id:032x}, "
                f"span_id=0x{self._context.span_id:016x})")


def _dropped(kept: Any) -> int:
    """What ``kept`` (attributes, events or links) dropped, as this SDK version reports it."""
    return getattr(kept, "dropped", 0) if kept or _COUNTS_DROPS_OF_EMPTY else 0


def _limit(value: int | None) -> float:
    return float("inf") if value is None else value
