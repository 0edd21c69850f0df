"""What the engine knows: functions, worker connections, worker-name leases, builtin workers.

Functions are keyed ``(namespace, function_id)`` (docs/protocol.md §2.5). A function has one of
three kinds of target, which is the seam for everything that is not a worker socket:

* **worker-routed** — ``handler is None``: the engine forwards ``invokefunction`` to ``owner``;
* **in-process** — ``handler`` is an async callable ``handler(data, ctx) -> result`` run by the
  engine itself (the ``engine::*`` builtins, and the REST API's own helpers later). A handler
  fails a call by raising :class:`iii_rx.errors.IIIInvocationError` (its ``code`` and
  ``message`` become the error body); any other exception becomes ``invocation_failed``.
  ``inline=True`` marks quick handlers that run in the caller's reader, in frame order
  (``engine::workers::register`` must, see docs/protocol.md §12.2 item 9a); the others run as tasks;
* **HTTP-invoked** — an in-process handler with an ``owner`` connection: the handler the
  HTTP-function hook returned for a ``registerfunction`` with ``invocation`` (see
  :mod:`iii_rx.engine.dispatch`). It dies with its owner like a worker-routed function.

The registry is plain data with synchronous methods: everything runs on the engine's loop, so a
frame's effect is complete when its handler returns. Listeners of the function key set (the
``engine::functions-available`` provider) are told after each change.

**Worker names** (docs/guarantees.md, "Authority and authentication"). With
``unique_worker_names`` a ``(namespace, name)`` lease belongs to one live connection, first come
first served, and to that connection's successors: a worker that reconnects and proves, with
the reattach token the engine gave its previous connection, that it *is* that worker
(:meth:`Registry.reattaching`) gets its name back even if another connection took the name
in the meantime (:meth:`Registry.inherits`; the dispatcher then evicts the squatter). A
departed holder is remembered for ``RECLAIM_S`` seconds (at most ``MAX_DEPARTED`` of them).
Who may connect at all is the engine token's business, not the lease's.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from iii_rx.engine.auth import same_secret
from iii_rx.engine.logsafe import RateLimitedLog, printable

if TYPE_CHECKING:
    from iii_rx.engine.connection import WorkerConnection

__all__ = [
    "BuiltinWorker",
    "CallContext",
    "FunctionEntry",
    "InProcessHandler",
    "Registry",
]

log = logging.getLogger("iii_rx.engine")

RECLAIM_S = 120.0
"""How long a departed lease holder's successor may reclaim its name (SDK backoff tops at
~39 s between attempts)."""

MAX_DEPARTED = 4096
"""Departed lease holders remembered at most (the oldest are forgotten first)."""


@dataclass(slots=True)
class CallContext:
    """Who called an in-process function, and with what sidecar fields."""

    function_id: str
    namespace: str
    caller: WorkerConnection | None
    """The calling worker connection, ``None`` for engine-originated calls."""
    invocation_id: str | None = None
    metadata: Any = None
    traceparent: str | None = None
    baggage: str | None = None


InProcessHandler = Callable[[Any, CallContext], Awaitable[Any]]
"""``await handler(data, ctx)`` returns the result or raises ``IIIInvocationError``."""


@dataclass(eq=False, slots=True)
class FunctionEntry:
    """One registered function and where its calls go."""

    function_id: str
    namespace: str
    owner: WorkerConnection | None = None
    handler: InProcessHandler | None = None
    inline: bool = False
    builtin_worker: str | None = None
    description: str | None = None
    request_format: Any = None
    response_format: Any = None
    metadata: Any = None
    local_id: str | None = None
    """The id the owning worker registered, when the engine stored it under another one (an
    RBAC session's ``function_registration_prefix``); calls toward the worker carry it."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.function_id)

    @property
    def internal(self) -> bool:
        """Hidden from default listings: ``metadata.internal == true``."""
        return isinstance(self.metadata, dict) and self.metadata.get("internal") is True


@dataclass(eq=False)
class BuiltinWorker:
    """An in-process worker (``runtime: "engine"``) listed by ``engine::workers::list``."""

    name: str
    description: str | None = None
    connected_at_ms: int = field(default_factory=lambda: int(time.time() * 1000))


class Registry:
    """Functions, connected workers and name leases of one engine."""

    def __init__(self, *, peer_log: RateLimitedLog | None = None) -> None:
        self._peer_log = peer_log if peer_log is not None else RateLimitedLog(log)
        """The engine's budget of lines a peer can cause (a registry built alone: its own)."""
        self.functions: dict[tuple[str, str], FunctionEntry] = {}
        self.workers: dict[str, WorkerConnection] = {}
        self.leases: dict[tuple[str, str], WorkerConnection] = {}
        self.builtin_workers: dict[str, BuiltinWorker] = {}
        self.refusals: dict[tuple[str, str], tuple[WorkerConnection, str]] = {}
        self.departed: OrderedDict[str, tuple[str, tuple[str, str], float]] = OrderedDict()
        """Lease holders that left: worker id -> (reattach token, lease, when)."""
        self._heirs: dict[WorkerConnection, tuple[str, str]] = {}
        self._namespaces: dict[str, set[str]] = {}
        self._function_listeners: list[Callable[[], None]] = []

    # ------------------------------------------------------------------ functions

    def add_function(self, entry: FunctionEntry) -> None:
        """Store ``entry``, replacing any entry with the same key (callers check ownership)."""
        key = entry.key
        old = self.functions.get(key)
        if old is not None and old.owner is not None and old.owner is not entry.owner:
            old.owner.functions.discard(key)
        new_key = old is None
        self.functions[key] = entry
        if entry.owner is not None:
            entry.owner.functions.add(key)
        if new_key:
            self._namespaces.setdefault(entry.function_id, set()).add(entry.namespace)
            self._functions_changed()

    def remove_function(self, key: tuple[str, str]) -> FunctionEntry | None:
        """Drop the function under ``key``; returns it, or ``None`` if there was none."""
        entry = self.functions.pop(key, None)
        if entry is None:
            return None
        if entry.owner is not None:
            entry.owner.functions.discard(key)
        spaces = self._namespaces.get(entry.function_id)
        if spaces is not None:
            spaces.discard(entry.namespace)
            if not spaces:
                del self._namespaces[entry.function_id]
        self._functions_changed()
        return entry

    def namespaces_of(self, function_id: str) -> list[str]:
        """The namespaces where ``function_id`` is registered, sorted."""
        return sorted(self._namespaces.get(function_id, ()))

    def refuse(self, conn: WorkerConnection, key: tuple[str, str], reason: str) -> None:
        """Remember why ``conn``'s registration of ``key`` was refused (until it leaves)."""
        self.refusals[key] = (conn, reason)
        conn.refused.add(key)

    def clear_refusal(self, key: tuple[str, str]) -> None:
        held = self.refusals.pop(key, None)
        if held is not None:
            held[0].refused.discard(key)

    def refusal_reason(self, key: tuple[str, str]) -> str | None:
        held = self.refusals.get(key)
        return held[1] if held is not None else None

    def on_functions_changed(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after every change of the set of function keys."""
        self._function_listeners.append(listener)

    def _functions_changed(self) -> None:
        for listener in self._function_listeners:
            listener()

    def worker_name_of(self, entry: FunctionEntry) -> str:
        """Owner's worker name, builtin worker name, else the first ``::`` segment.

        As docs/protocol.md §8.2 lists functions.
        """
        if entry.builtin_worker is not None:
            return entry.builtin_worker
        if entry.owner is not None and entry.owner.name is not None:
            return entry.owner.name
        return entry.function_id.split("::", 1)[0]

    # ------------------------------------------------------------------ workers

    def add_worker(self, conn: WorkerConnection) -> None:
        self.workers[conn.id] = conn

    def remove_worker(self, conn: WorkerConnection) -> None:
        if self.workers.get(conn.id) is conn:
            del self.workers[conn.id]
        self._heirs.pop(conn, None)
        if conn.lease is not None and self.leases.get(conn.lease) is conn:
            self._remember_departure(conn.id, conn.reattach_token, conn.lease)
        self.release_lease(conn)

    def _remember_departure(self, worker_id: str, token: str, lease: tuple[str, str]) -> None:
        now = time.monotonic()
        departed = self.departed
        departed[worker_id] = (token, lease, now)
        departed.move_to_end(worker_id)
        while departed:
            oldest = next(iter(departed.values()))
            if len(departed) <= MAX_DEPARTED and now - oldest[2] < RECLAIM_S:
                break
            departed.popitem(last=False)

    def reattaching(self, conn: WorkerConnection, previous_id: str,
                    token: str | None) -> WorkerConnection | None:
        """docs/protocol.md §2.6: ``conn`` claims to succeed ``previous_id`` with ``token``.

        The token is compared in constant time. Returns the previous connection when it is
        still live and the token is right (the caller retires it); ``None`` otherwise. With the
        right token ``conn`` also inherits the previous connection's name lease, live or
        recently departed (:meth:`inherits`).
        """
        old = self.workers.get(previous_id)
        if old is conn or previous_id == conn.id:
            return None
        if old is not None and not old.closed:
            if not same_secret(token, old.reattach_token):
                self._peer_log.log(logging.INFO, "reattach", "ignored reattach of %s by %s: "
                                   "wrong token", printable(previous_id), conn.id)
                return None
            if old.lease is not None:
                self._heirs[conn] = old.lease
            return old
        departed = self.departed.get(previous_id)
        if departed is not None and same_secret(token, departed[0]) \
                and time.monotonic() - departed[2] < RECLAIM_S:
            del self.departed[previous_id]
            self._heirs[conn] = departed[1]
        return None

    def inherits(self, conn: WorkerConnection, namespace: str, name: str) -> bool:
        """Whether ``conn`` proved to be the worker that held ``(namespace, name)`` before its
        current holder (a reattach with the right token), so the holder must give it up."""
        return self._heirs.get(conn) == (namespace, name)

    def claim_lease(self, conn: WorkerConnection, namespace: str,
                    name: str) -> WorkerConnection | None:
        """Take the ``(namespace, name)`` lease for ``conn``; returns the live holder if taken."""
        holder = self.leases.get((namespace, name))
        if holder is not None and holder is not conn and not holder.closed:
            return holder
        self.release_lease(conn)
        self.leases[(namespace, name)] = conn
        conn.lease = (namespace, name)
        return None

    def release_lease(self, conn: WorkerConnection) -> None:
        if conn.lease is not None and self.leases.get(conn.lease) is conn:
            del self.leases[conn.lease]
        conn.lease = None

    def add_builtin_worker(self, name: str, description: str | None = None) -> BuiltinWorker:
        """Declare an in-process worker (idempotent); functions name it in ``builtin_worker``."""
        worker = self.builtin_workers.get(name)
        if worker is None:
            worker = self.builtin_workers[name] = BuiltinWorker(name, description)
        return worker

    def is_empty(self) -> bool:
        """No worker, lease or worker-owned function left (the leak check of the tests)."""
        return (
            not self.workers
            and not self.leases
            and not self.refusals
            and not self._heirs
            and all(entry.owner is None for entry in self.functions.values())
        )
