"""Replacing some values inside a payload of dicts, lists and tuples, copying only what changes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["map_leaves"]


def map_leaves(value: Any, leaf: Callable[[Any], Any], *, tuples_to_lists: bool = False) -> Any:
    """``value`` with ``leaf(x)`` put in place of every ``x`` that is not a dict, list or tuple.

    Containers are walked at any depth and rebuilt only where a leaf changed (``leaf(x) is not
    x``), so a payload with nothing to replace is returned as it is, uncopied. Tuples stay
    tuples, unless ``tuples_to_lists`` (JSON has no tuples), which turns every tuple into a
    list.
    """
    if isinstance(value, dict):
        changed: dict[Any, Any] | None = None
        for key, item in value.items():
            new = map_leaves(item, leaf, tuples_to_lists=tuples_to_lists)
            if new is not item:
                if changed is None:
                    changed = dict(value)
                changed[key] = new
        return value if changed is None else changed
    if isinstance(value, (list, tuple)):
        items = [map_leaves(item, leaf, tuples_to_lists=tuples_to_lists) for item in value]
        if isinstance(value, tuple) and tuples_to_lists:
            return items
        if all(new is old for new, old in zip(items, value, strict=True)):
            return value
        return items if isinstance(value, list) else tuple(items)
    return leaf(value)
