"""How a lean span (:mod:`iii_rx.telemetry.leanspan`) keeps its attributes, events and links
until they are read: containers that give the SDK's readers what its own spans give them
(read-only maps, ``.dropped`` counts, ``Event`` s), built from as few objects as can be.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.sdk.trace import Event
from opentelemetry.sdk.util import BoundedList

__all__ = ["EMPTY", "FEW", "BuiltEvent", "Frozen", "PlainList", "room", "sdk_event"]


class PlainList(list):  # type: ignore[type-arg]
    """A span's events or links under the limit: nothing dropped (ReadableSpans of older SDKs
    read ``.dropped`` off any non-empty container)."""

    __slots__ = ()
    dropped = 0


class Frozen(dict):  # type: ignore[type-arg]
    """Attributes handed on as they are (an event's, a link's, or on SDK 1.20 a span's shared
    start attributes): read-only, nothing dropped (OTLP encoders before 1.27 and SDK 1.20's
    ``ReadableSpan`` read ``.dropped``, as the SDK's ``BoundedAttributes`` has it; a ``dict`` so
    that every SDK's ``to_json`` writes it)."""

    __slots__ = ()
    dropped = 0

    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("the attributes of a span handed on are read-only")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = (
        _read_only)

    def __reduce__(self) -> tuple[type[Frozen], tuple[dict[str, Any]]]:
        """Copied and pickled as built: from a plain ``dict`` of its items."""
        return (Frozen, (dict(self),))


EMPTY: Mapping[str, Any] = Frozen({})


class BuiltEvent(Event):
    """An SDK ``Event`` whose attributes are already what the SDK would keep (built without
    the generic path)."""

    def __init__(self, name: str, attributes: Mapping[str, Any], timestamp: int) -> None:
        self._name = name
        self._attributes = attributes
        self._timestamp = timestamp


FEW = 8
"""How many events a span keeps in a tuple (grown by copying) before it takes a list."""


def sdk_event(event: Any) -> Event:
    """A kept event as the SDK's ``Event``: a known event's ``(name, attributes, time)`` is
    built into one."""
    if type(event) is not tuple:
        return event  # type: ignore[no-any-return]
    name, attributes, timestamp = event
    return BuiltEvent(name, Frozen(attributes) if attributes else EMPTY, timestamp)


def room(items: Any, maxlen: int | None) -> Any:
    """``items`` (events or links; a tuple while none or few) ready for one more: the SDK's
    evicting ``BoundedList`` once the limit is reached (it drops the oldest and counts it)."""
    if type(items) is tuple:
        if maxlen is None or len(items) < maxlen:
            return PlainList(items)
        return BoundedList.from_seq(maxlen, items)
    if maxlen is not None and type(items) is PlainList and len(items) >= maxlen:
        return BoundedList.from_seq(maxlen, items)
    return items
