"""``Client.spans``: there only when ``connect(otel=...)`` turned tracing on.

Reading it on a client that does not trace says how to turn tracing on, instead of Python's
bare "'Client' object has no attribute 'spans'" (the attribute is declared, so type checkers
accept ``iii.spans`` either way).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, overload

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

    from iii_rx.streams import HotStream

__all__ = ["SpansSlot"]


class SpansSlot:
    """A data descriptor holding a client's live span stream (set by the tracing setup)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> SpansSlot: ...

    @overload
    def __get__(self, obj: object, owner: type | None = None) -> HotStream[ReadableSpan]: ...

    def __get__(self, obj: object | None, owner: type | None = None) -> Any:
        if obj is None:
            return self
        try:
            return vars(obj)[self._name]
        except KeyError:
            raise AttributeError(
                f"{self._name} exists only on a client that traces: connect(..., otel=True) "
                "or otel=OtelConfig(...) (docs/telemetry.md)", name=self._name,
                obj=obj) from None

    def __set__(self, obj: object, value: HotStream[ReadableSpan]) -> None:
        vars(obj)[self._name] = value
