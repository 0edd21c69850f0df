"""``diff(old, new)``: the typed changes that turn one snapshot into the next (pure).

Kept apart from the stream so that it can be tested, and reused (``iii-rx watch``, a
dashboard replaying its own history), without an engine.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

from iii_rx.topology.events import (
    FunctionAdded,
    FunctionRemoved,
    TopologyChange,
    TriggerAdded,
    TriggerRemoved,
    TriggerTypeAdded,
    TriggerTypeRemoved,
    WorkerConnected,
    WorkerDisconnected,
    WorkerUpdated,
)
from iii_rx.topology.models import Topology

__all__ = ["diff"]

R = TypeVar("R")


def _split(
    old: Sequence[R],
    new: Sequence[R],
    key: Callable[[R], Hashable],
    same: Callable[[R, R], bool],
) -> tuple[list[R], list[R], list[tuple[R, R]]]:
    """(removed, added, kept as (old, new)) in the snapshots' canonical order; a row whose
    key stayed but which is not ``same`` counts as removed and added."""
    old_keys = [key(r) for r in old]
    new_keys = [key(r) for r in new]
    before = dict(zip(old_keys, old, strict=True))
    after = dict(zip(new_keys, new, strict=True))
    # Each pair is compared once, and a row that is the same object needs no comparing: a
    # stream gives unchanged rows as last time's objects (``top`` diffs thousands a second).
    verdicts: dict[Hashable, bool] = {}
    for k, r in before.items():
        if k in after:
            other = after[k]
            verdicts[k] = r is other or same(r, other)
    removed = [r for k, r in zip(old_keys, old, strict=True)
               if k not in verdicts or not (verdicts[k] if before[k] is r
                                            else same(r, after[k]))]
    added: list[R] = []
    kept: list[tuple[R, R]] = []
    for k, r in zip(new_keys, new, strict=True):
        if k not in verdicts:
            added.append(r)
        elif verdicts[k] if after[k] is r else same(before[k], r):
            kept.append((before[k], r))
        else:
            added.append(r)
    return removed, added, kept


def _equal(a: Any, b: Any) -> bool:
    return bool(a == b)


def diff(old: Topology | None, new: Topology) -> list[TopologyChange]:
    """The events from ``old`` to ``new``, in applying order (see :mod:`.events`).

    ``old=None`` describes ``new`` from nothing: every row as an addition.
    """
    old = old if old is not None else Topology()
    w_gone, w_new, w_kept = _split(old.workers, new.workers, lambda w: w.key, lambda a, b: True)
    f_gone, f_new, _ = _split(old.functions, new.functions, lambda f: f.key,
                              lambda a, b: a.same_function(b))
    y_gone, y_new, _ = _split(old.trigger_types, new.trigger_types, lambda t: t.key, _equal)
    t_gone, t_new, _ = _split(old.triggers, new.triggers, lambda t: t.key,
                              lambda a, b: a.same_binding(b))
    events: list[TopologyChange] = []
    events.extend(TriggerRemoved(t) for t in t_gone)
    events.extend(FunctionRemoved(f) for f in f_gone)
    events.extend(TriggerTypeRemoved(t) for t in y_gone)
    events.extend(WorkerDisconnected(w) for w in w_gone)
    for before, after in w_kept:
        if before is after:
            continue
        changed = after.changed_fields(before)
        if changed:
            events.append(WorkerUpdated(after, before, changed))
    events.extend(WorkerConnected(w) for w in w_new)
    events.extend(TriggerTypeAdded(t) for t in y_new)
    events.extend(FunctionAdded(f) for f in f_new)
    events.extend(TriggerAdded(t) for t in t_new)
    return events
