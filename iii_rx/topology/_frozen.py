"""Deep-frozen JSON values, so that a topology snapshot cannot change under its readers.

Rows carry engine-supplied JSON (function ``metadata``, trigger ``config``). A snapshot is
shared by every subscriber, so one subscriber mutating a dict would corrupt what the others
see and what the next diff compares against. ``freeze`` turns objects into :class:`FrozenDict`
(a ``dict`` that refuses mutation, so ``json.dumps`` and ``==`` still work) and arrays into
tuples; ``thaw`` gives plain, mutable JSON back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

__all__ = ["FrozenDict", "freeze", "freeze_mapping", "thaw"]


class FrozenDict(dict[str, Any]):
    """A read-only ``dict``: reads, ``==``, ``json.dumps`` and pickling work; writes raise."""

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("topology rows are immutable; use thaw() for a mutable copy")

    __setitem__ = _refuse
    __delitem__ = _refuse
    __ior__ = _refuse
    clear = _refuse
    pop = _refuse
    popitem = _refuse
    setdefault = _refuse
    update = _refuse

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset((k, _hashable(v)) for k, v in self.items()))

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenDict, (dict(self),))

    def __repr__(self) -> str:
        return f"FrozenDict({dict.__repr__(self)})"


def _hashable(value: Any) -> Any:
    return value if not isinstance(value, list) else tuple(value)


def freeze(value: Any) -> Any:
    """``value`` with every mapping a :class:`FrozenDict` and every list a tuple."""
    if isinstance(value, FrozenDict):
        return value
    if isinstance(value, Mapping):
        return freeze_mapping(value)
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def freeze_mapping(value: Mapping[str, Any]) -> FrozenDict:
    """:func:`freeze` of a mapping, typed as such."""
    return FrozenDict({str(k): freeze(v) for k, v in value.items()})


def thaw(value: Any) -> Any:
    """Plain JSON again: mappings become ``dict`` and tuples ``list`` (deep copies)."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value
