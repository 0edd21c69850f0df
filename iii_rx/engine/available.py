"""The built-in discovery trigger types of docs/protocol.md §6.6, as in-process trigger providers.

* ``engine::workers-available`` fires ``{"event", "worker_id"}`` on every worker connect,
  ``engine::workers::register`` and disconnect, at once.
* ``engine::functions-available`` fires ``{"event": "functions_changed", "functions": [...]}``
  (every function, builtins included) when the set of ``(namespace, function_id)`` keys changed.
  The Rust engine polls for such changes every ``functions_available_poll_ms`` (5 s), so it
  announces a change up to that late. Ours is event-driven: a change is announced after a short
  settle delay (one worker's burst of registrations makes one notification), so a change after
  a quiet spell goes out within about 100 ms. Notifications are at least ``_SPACING_S`` (100 ms)
  apart, and further apart when they are large: what they push to all bindings together is
  held to ``_BUDGET_BYTES_PER_S`` (1 MB/s) after a burst of ``_BURST_BYTES`` (4 MB; a token
  bucket), so a churning registry with many functions and watchers is coalesced instead of
  pushing the whole list to every watcher ten times a second, while a worker's restart (a
  leave and a join) still goes out as two prompt notifications. The spacing never exceeds the
  poll period: no change is announced later than the Rust engine would. A binding made later
  gets no initial snapshot, only later changes, as in the Rust engine.

Both fire each binding in the binding's namespace with its metadata, through
:meth:`iii_rx.engine.router.Router.fire`. They ignore ``config``. A binding of a worker on an
RBAC listener gets in ``functions`` only what its session may call (as
``engine::functions::list`` answers it): the list is not a way around that.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from iii_rx.engine.connection import WorkerConnection
from iii_rx.engine.registry import Registry
from iii_rx.engine.router import Router
from iii_rx.engine.triggers import Binding
from iii_rx.engine.wire import dumps

__all__ = ["FUNCTIONS_AVAILABLE", "WORKERS_AVAILABLE", "FunctionsAvailable", "WorkersAvailable"]

log = logging.getLogger("iii_rx.engine")

WORKERS_AVAILABLE = "engine::workers-available"
FUNCTIONS_AVAILABLE = "engine::functions-available"
_SETTLE_S = 0.02
_SPACING_S = 0.1
"""Least time between two ``functions-available`` notifications: a bound on flooding."""
_BUDGET_BYTES_PER_S = 1_000_000
"""What ``functions-available`` may push to all its bindings together per second, about."""
_BURST_BYTES = 4_000_000
"""What it may push at once beyond that after a quiet spell: a worker's restart (a leave, then
a join) on a large registry goes out as two prompt notifications."""


class _BindingSet:
    """The bindings an in-process provider fires; the :class:`TriggerProvider` half."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.bindings: dict[str, Binding] = {}

    def bind(self, binding: Binding) -> None:
        self.bindings[binding.id] = binding

    def unbind(self, binding: Binding) -> None:
        self.bindings.pop(binding.id, None)

    def _fire_all(self, payload_for: Callable[[Binding], Any]) -> None:
        """Fire every binding with the payload made for it."""
        for binding in list(self.bindings.values()):
            self.router.fire(binding.function_id, payload_for(binding),
                             namespace=binding.namespace, metadata=binding.metadata)


class WorkersAvailable(_BindingSet):
    """Provider of ``engine::workers-available``."""

    def notify(self, event: str, worker_id: str) -> None:
        """Fire every binding with ``{"event": event, "worker_id": worker_id}``."""
        if self.bindings:
            self._fire_all(lambda _binding: {"event": event, "worker_id": worker_id})


class FunctionsAvailable(_BindingSet):
    """Provider of ``engine::functions-available``."""

    def __init__(self, router: Router, registry: Registry,
                 summaries: Callable[[], list[dict[str, Any]]], interval_ms: int) -> None:
        super().__init__(router)
        self.registry = registry
        self.summaries = summaries
        """Every function's summary, the payload's ``functions`` (from the discovery part)."""
        self.interval = min(_SPACING_S, interval_ms / 1000)
        self.latest = max(self.interval, interval_ms / 1000)
        """The most the spacing grows to: the Rust engine's poll period."""
        self._spacing = self.interval
        """Least time from the last notification to the next: grows once the budget is spent."""
        self._budget = float(_BURST_BYTES)
        """Bytes that may go out now (a token bucket: refilled at the rate, up to the burst)."""
        self._last: frozenset[tuple[str, str]] = frozenset()
        self.visible_to: Callable[[WorkerConnection | None],
                                  Callable[[Any], bool] | None] = lambda owner: None
        """What a binding's owner may see of a summary (``None``: everything); the engine
        sets it to the dispatcher's, which knows the sessions."""
        self._last_fire = float("-inf")
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        registry.on_functions_changed(self._changed)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._last = frozenset(self.registry.functions)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._loop = None

    def bind(self, binding: Binding) -> None:
        if not self.bindings:
            # Changes made while nobody listened are not news to a first binding.
            self._last = frozenset(self.registry.functions)
        super().bind(binding)

    def _changed(self) -> None:
        loop = self._loop
        if loop is None or self._timer is not None or not self.bindings:
            return
        delay = max(_SETTLE_S, self._last_fire + self._spacing - loop.time())
        self._timer = loop.call_later(delay, self._check)

    def _check(self) -> None:
        self._timer = None
        if self._loop is None:
            return
        keys = frozenset(self.registry.functions)
        if keys == self._last:
            return
        self._last = keys
        now = self._loop.time()
        refill = (now - self._last_fire) * _BUDGET_BYTES_PER_S
        self._budget = min(float(_BURST_BYTES), self._budget + refill)
        self._last_fire = now
        if self.bindings:
            log.debug("functions changed: %d functions", len(keys))
            summaries = self.summaries()
            # The full list's size for every binding (a filtered one gets less): one more
            # encode per notification buys the bound on all the others.
            pushed = len(dumps(summaries)) * len(self.bindings)
            self._budget -= pushed
            owed = -self._budget / _BUDGET_BYTES_PER_S  # until the budget is back above 0
            self._spacing = min(self.latest, max(self.interval, owed))

            def payload_for(binding: Binding) -> dict[str, Any]:
                visible = self.visible_to(binding.owner)
                shown = summaries if visible is None else [s for s in summaries if visible(s)]
                return {"event": "functions_changed", "functions": shown}

            self._fire_all(payload_for)
