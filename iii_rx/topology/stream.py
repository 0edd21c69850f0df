"""The live topology of an engine as two shared, lazy streams, and ``wait_for_function``.

:class:`TopologyStream` turns the engine's discovery functions into
``snapshots`` (immutable :class:`~iii_rx.topology.models.Topology`, the latest replayed to each
new subscriber) and ``changes`` (the typed events of :func:`~iii_rx.topology.diff.diff`
between consecutive snapshots). Why it is built the way it is:

* **Lazy and shared.** The first subscriber of either stream starts one *session*: a private
  function (``iii_rx::topology::<hex>``, ``metadata.internal`` so listings hide it) bound to
  ``engine::workers-available`` and ``engine::functions-available``, a subscription to the
  client's ``state`` and one refresh. The last unsubscribe ends it, so nothing is registered
  or polled while nobody listens, and any number of subscribers cost one set of calls.
* **Events say "look again", the lists say what is.** Worker events carry only an id and the
  Rust engine announces function changes up to 5 s late, so every event (and every
  reconnection) only schedules a refresh of the four lists; a short settle delay coalesces a
  burst into one refresh, and a refresh requested while one runs is done once after it.
  Registered triggers change without any event, hence the modest ``poll_interval``.
* **A reconnect is a diff, not a flood.** The snapshot from before the outage stays the
  baseline; the refresh after ``connected`` emits only what differs.
* **Only the client's public API** is used, through the narrow :class:`TopologyHost`
  protocol, so this module does not depend on how the client is built.

Everything is emitted on the client's loop; a subscriber that raises is logged and detached.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import replace
from typing import Any, Generic, Literal, Protocol, TypeVar

from reactivex import Observable, abc
from reactivex.disposable import Disposable

from iii_rx.aio import deadlock_error
from iii_rx.errors import IIIConnectionError, IIIError, IIITimeoutError
from iii_rx.registrations import STANDBY_PREFIX
from iii_rx.state import ConnectionState
from iii_rx.streams import HotStream, Overflow, Stream, StreamIterator
from iii_rx.topology.diff import diff
from iii_rx.topology.events import TopologyChange
from iii_rx.topology.models import FunctionInfo, RowCache, Topology
from iii_rx.topology.waiting import check_function_id, wait_on_loop

__all__ = ["DISCOVERY_FUNCTIONS", "PRIVATE_PREFIX", "TopologyHost", "TopologyStream",
           "TopologyView"]

log = logging.getLogger("iii_rx.topology")

T = TypeVar("T")
Kind = Literal["snapshots", "changes"]

WORKERS_AVAILABLE = "engine::workers-available"
FUNCTIONS_AVAILABLE = "engine::functions-available"
DISCOVERY_FUNCTIONS = ("engine::workers::list", "engine::functions::list",
                       "engine::triggers::list", "engine::registered-triggers::list")
"""The four calls of one refresh, in the order of :meth:`Topology.from_answers`."""
_WITH_METRICS = frozenset({"engine::workers::list", "engine::functions::list"})
"""The calls asked for ``include_metrics`` (an engine that keeps no metrics ignores the key)."""
PRIVATE_PREFIX = "iii_rx::topology::"
"""Functions (and their bindings) of topology streams; left out of every snapshot."""
_HIDDEN = (PRIVATE_PREFIX, STANDBY_PREFIX)
"""The client's own machinery: topology streams, and the watch of a standby function."""
_RETRY_MAX_S = 5.0


class Unregisterable(Protocol):
    def unregister(self) -> None: ...


class TopologyHost(Protocol):
    """What a topology stream uses of the client (all public API)."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    @property
    def namespace(self) -> str | None: ...

    @property
    def state(self) -> Observable[ConnectionState]:
        """Replaying stream of connection states; completes when the client closes."""

    def register_function(self, function_id: str, handler: Callable[..., Any], *,
                          description: str | None = ..., metadata: Any = ...) -> Unregisterable:
        ...

    def register_trigger(self, trigger: Mapping[str, Any], /) -> Unregisterable: ...

    def trigger(self, function_id: str, payload: Any = ..., *,
                timeout_ms: int | None = ...) -> Awaitable[Any]: ...


class TopologyView(Stream[T], Generic[T]):
    """One of the two streams: an observable, and an async iterator over a bounded buffer."""

    def __init__(self, owner: TopologyStream, kind: Kind, maxsize: int,
                 overflow: Overflow) -> None:
        super().__init__()
        self._owner = owner
        self._kind: Kind = kind
        self._maxsize = maxsize
        self._overflow: Overflow = overflow

    def _subscribe_core(
        self,
        observer: abc.ObserverBase[T],
        scheduler: abc.SchedulerBase | None = None,
    ) -> abc.DisposableBase:
        return self._owner._subscribe(self._kind, observer)

    def iterate(self, maxsize: int | None = None,
                overflow: Overflow | None = None) -> StreamIterator[T]:
        """An async iterator, subscribed now (use ``async with`` to unsubscribe on exit).

        Defaults: snapshots keep only the latest (a slow consumer skips to the newest);
        changes keep 1024 and then fail with :class:`~iii_rx.errors.StreamOverflowError`
        (re-read ``snapshots`` to resync).
        """
        return StreamIterator(self, maxsize or self._maxsize, overflow or self._overflow)

    def __aiter__(self) -> StreamIterator[T]:
        return self.iterate()


class _Subscription:
    """One subscriber of a view: counted while attached, guarded, disposable from anywhere."""

    __slots__ = ("counted", "disposed", "inner", "kind", "observer", "owner")

    def __init__(self, owner: TopologyStream, kind: Kind, observer: abc.ObserverBase[Any]) -> None:
        self.owner = owner
        self.kind = kind
        self.observer = observer
        self.disposed = False
        self.counted = False
        self.inner: abc.DisposableBase | None = None

    def on_next(self, value: Any) -> None:
        if self.disposed:
            return
        try:
            self.observer.on_next(value)
        except Exception:
            log.exception("subscriber of the topology %s raised; it is detached", self.kind)
            self.dispose()

    def on_error(self, error: Exception) -> None:
        self._end(lambda: self.observer.on_error(error))

    def on_completed(self) -> None:
        self._end(self.observer.on_completed)

    def _end(self, signal: Callable[[], None]) -> None:
        if self.disposed:
            return
        self.dispose()
        try:
            signal()
        except Exception:
            log.exception("subscriber of the topology %s raised at its end", self.kind)

    def dispose(self) -> None:
        if self.disposed:
            return
        self.disposed = True
        self.owner._on_loop(self._detach)

    def _detach(self) -> None:
        inner, self.inner = self.inner, None
        if inner is not None:
            inner.dispose()
        if self.counted:
            self.counted = False
            self.owner._release()


class _Session:
    """Everything that exists only while someone subscribes (see the module docstring)."""

    def __init__(self, owner: TopologyStream) -> None:
        self.owner = owner
        self.client = owner._client
        self.loop = owner.loop
        self.snapshots: HotStream[Topology] = HotStream(self.loop, "iii.topology", replay=True)
        self.changes: HotStream[TopologyChange] = HotStream(self.loop, "iii.topology_changes")
        self.function_id = f"{PRIVATE_PREFIX}{uuid.uuid4().hex[:16]}"
        self.handles: list[Unregisterable] = []
        self.state_subscription: abc.DisposableBase | None = None
        self.connected = False
        self.stopped = False
        self.dirty = False
        self.failures = 0
        self.timer: asyncio.TimerHandle | None = None
        self.refreshing: asyncio.Task[None] | None = None
        self.last: Topology | None = None
        self.epoch = 0
        """Counts the connections seen; a snapshot is confirmed if taken in the current one."""
        self.last_epoch = -1

    def start(self) -> None:
        """Register the private function and bindings, then follow the connection state
        (its replayed ``connected`` starts the first refresh)."""
        self.handles.append(self.client.register_function(
            self.function_id, self._on_event, description="iii_rx topology stream",
            metadata={"internal": True}))
        for trigger_type in (WORKERS_AVAILABLE, FUNCTIONS_AVAILABLE):
            self.handles.append(self.client.register_trigger(
                {"type": trigger_type, "function_id": self.function_id, "config": {}}))
        self.state_subscription = self.client.state.subscribe(
            on_next=self._on_state, on_error=self._on_client_end,
            on_completed=lambda: self._on_client_end(None))

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self._cancel_timer()
        if self.refreshing is not None:
            self.refreshing.cancel()
        subscription, self.state_subscription = self.state_subscription, None
        if subscription is not None:
            subscription.dispose()
        handles, self.handles = self.handles, []
        for handle in reversed(handles):
            try:
                handle.unregister()
            except Exception:
                log.exception("unregistering a topology binding failed")

    # ------------------------------------------------------------------ signals (loop)

    async def _on_event(self, data: Any) -> None:
        """The private function: any discovery event means "look again"."""
        log.debug("topology event %r", data.get("event") if isinstance(data, dict) else data)
        self.request(self.owner.settle)

    def _on_state(self, state: ConnectionState) -> None:
        was, self.connected = self.connected, state is ConnectionState.CONNECTED
        if self.connected and not was:
            self.epoch += 1
            self.request(0.0)  # first connection, or back after an outage: the diff follows
        elif not self.connected:
            self._cancel_timer()

    def _on_client_end(self, error: Exception | None) -> None:
        """The client closed: end both streams (their subscribers release the session)."""
        self.owner._closed = True
        self.stop()
        if error is not None:
            self.snapshots.on_error(error)
            self.changes.on_error(error)
        else:
            self.snapshots.on_completed()
            self.changes.on_completed()

    # ------------------------------------------------------------------ refresh (loop)

    def request(self, delay: float) -> None:
        """Refresh after ``delay`` seconds, coalescing with any refresh already planned."""
        if self.stopped:
            return
        if not self.connected or self.refreshing is not None:
            self.dirty = True  # done on (re)connection, or once the running refresh ends
            return
        if self.timer is not None:
            if self.timer.when() <= self.loop.time() + delay:
                return
            self.timer.cancel()
        self.timer = self.loop.call_later(delay, self._begin)

    def _cancel_timer(self) -> None:
        timer, self.timer = self.timer, None
        if timer is not None:
            timer.cancel()

    def _begin(self) -> None:
        self.timer = None
        if self.stopped or not self.connected:
            return
        self.dirty = False
        self.refreshing = self.loop.create_task(self._refresh(), name="iii.topology refresh")

    async def _refresh(self) -> None:
        snapshot: Topology | None = None
        epoch = self.epoch
        try:
            snapshot = await self.owner.fetch()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.failures += 1
            # Cut by an outage or by the user's own close() (its state still says connected
            # while it fails the calls in flight): nothing to warn about. ``closed`` is the
            # client's; a host without it (TopologyHost does not ask for it) counts as open.
            quiet = not self.connected or getattr(self.client, "closed", False) is True
            log.log(logging.DEBUG if quiet else logging.WARNING,
                    "topology refresh failed (%s attempt): %s", self.failures, exc)
        finally:
            self.refreshing = None
        if self.stopped:
            return
        if snapshot is None:
            if self.connected:
                self.request(min(0.25 * 2 ** (self.failures - 1), _RETRY_MAX_S))
            return
        self.failures = 0
        self._publish(snapshot, epoch)
        if self.stopped:  # the last subscriber left while we emitted
            return
        if self.dirty:
            self.request(self.owner.settle)
        elif self.owner.poll_interval is not None:
            self.request(self.owner.poll_interval)

    def _publish(self, snapshot: Topology, epoch: int) -> None:
        """Emit ``snapshot`` and its changes if it differs, or if it is the first one to
        confirm the view after a reconnection (then with no changes)."""
        previous = self.last
        if previous is not None and previous == snapshot and self.last_epoch == epoch:
            return
        self.owner._revision += 1
        snapshot = replace(snapshot, revision=self.owner._revision)
        self.last, self.last_epoch = snapshot, epoch
        self.snapshots.on_next(snapshot)
        if previous is not None:
            for event in diff(previous, snapshot):
                if self.stopped:
                    return
                self.changes.on_next(event)


class TopologyStream:
    """The topology of the engine ``client`` is connected to, as shared lazy streams.

    ``TopologyStream(client)`` registers nothing; subscribing to :attr:`snapshots` or
    :attr:`changes` (or waiting with :meth:`wait_for_function`) does. ``poll_interval``
    (seconds, ``None`` = never) refreshes while subscribed and idle, to catch what no event
    announces (registered triggers; the Rust engine's late function events); ``settle``
    coalesces a burst of events; ``include_internal`` lists ``engine::*`` and internal rows
    too; ``call_timeout_ms`` bounds each discovery call (default: the client's).
    """

    def __init__(
        self,
        client: TopologyHost,
        *,
        poll_interval: float | None = 5.0,
        settle: float = 0.02,
        include_internal: bool = False,
        call_timeout_ms: int | None = None,
    ) -> None:
        if poll_interval is not None and poll_interval <= 0:
            raise ValueError("poll_interval must be positive (or None)")
        self._client = client
        self.loop = client.loop
        self.poll_interval = poll_interval
        self.settle = max(0.0, settle)
        self.include_internal = include_internal
        self.call_timeout_ms = call_timeout_ms
        self._session: _Session | None = None
        self._subscribers = 0
        self._revision = 0
        self._closed = False
        self._parsed = RowCache()  # unchanged rows of each poll: last poll's objects
        self.snapshots: TopologyView[Topology] = TopologyView(self, "snapshots", 1,
                                                              "drop_oldest")
        """Immutable snapshots; the latest is replayed to each new subscriber."""
        self.changes: TopologyView[TopologyChange] = TopologyView(self, "changes", 1024, "error")
        """The events between consecutive snapshots, in order (none for the first one)."""

    @property
    def current(self) -> Topology | None:
        """The latest snapshot while someone subscribes, else ``None``."""
        session = self._session
        return session.last if session is not None else None

    def confirmed(self, snapshot: Topology) -> bool:
        """Whether ``snapshot`` is the latest and was taken on the current connection: what
        the engine says now, not a view from before an outage (or engine restart)."""
        session = self._session
        return (session is not None and session.connected and session.last is snapshot
                and session.last_epoch == session.epoch)

    @property
    def active(self) -> bool:
        """Whether a session runs (someone subscribes): the engine is being watched."""
        return self._session is not None

    @property
    def private_function_id(self) -> str | None:
        """The id of this stream's private function while active (diagnostics, tests)."""
        session = self._session
        return session.function_id if session is not None else None

    # ------------------------------------------------------------------ subscriptions

    def _on_loop(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the client's loop: now when already there, else soon."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            fn()
            return
        try:
            self.loop.call_soon_threadsafe(fn)
        except RuntimeError:  # the loop has closed, and the client with it (a sync client's
            self._closed = True  # loop ends after its close): a late subscriber completes
            fn()

    def _subscribe(self, kind: Kind, observer: abc.ObserverBase[Any]) -> abc.DisposableBase:
        sub = _Subscription(self, kind, observer)
        self._on_loop(lambda: self._attach(sub))
        return Disposable(sub.dispose)

    def _attach(self, sub: _Subscription) -> None:
        if sub.disposed:
            return
        if self._closed:
            sub.on_completed()
            return
        session = self._session
        if session is None:
            session = _Session(self)
            try:
                session.start()
            except IIIConnectionError:
                session.stop()
                self._closed = True
                sub.on_completed()
                return
            except Exception as exc:
                session.stop()
                sub.on_error(exc)
                return
            self._session = session
        self._subscribers += 1
        sub.counted = True
        stream: HotStream[Any] = session.snapshots if sub.kind == "snapshots" else session.changes
        inner = stream.subscribe(on_next=sub.on_next, on_error=sub.on_error,
                                 on_completed=sub.on_completed)
        if sub.disposed:  # it raised on the replayed snapshot and is already released
            inner.dispose()
        else:
            sub.inner = inner

    def _release(self) -> None:
        self._subscribers -= 1
        if self._subscribers == 0 and self._session is not None:
            session, self._session = self._session, None
            session.stop()

    # ------------------------------------------------------------------ engine calls

    async def fetch(self) -> Topology:
        """One snapshot from the four discovery calls (on the client's loop), without the
        topology streams' private functions and bindings."""
        payload: dict[str, Any] = {"include_internal": True} if self.include_internal else {}
        taken_at = time.time()
        # Worker and function rows carry the engine's call metrics when it keeps them (ours,
        # on request; engines without them ignore the key), in ``extra["metrics"]``.
        async def ask(function_id: str) -> Any:
            # The call is made in its task: cancelled before the tasks start, this makes
            # none (a trigger made and never awaited would be reported as forgotten).
            return await self._client.trigger(
                function_id, {**payload, "include_metrics": True}
                if function_id in _WITH_METRICS else payload,
                timeout_ms=self.call_timeout_ms)

        answers = await asyncio.gather(*(ask(f) for f in DISCOVERY_FUNCTIONS))
        snapshot = Topology.from_answers(*answers, taken_at=taken_at, cache=self._parsed)
        return Topology.of(
            snapshot.workers,
            (f for f in snapshot.functions if not f.function_id.startswith(_HIDDEN)),
            snapshot.trigger_types,
            (t for t in snapshot.triggers if not t.function_id.startswith(_HIDDEN)),
            taken_at=taken_at,
        )

    async def lookup(self, function_id: str, namespace: str) -> FunctionInfo | None:
        """The row of ``function_id`` in ``namespace`` from one targeted
        ``engine::functions::list`` call (internal functions included: they are callable)."""
        answer = await self._client.trigger(
            "engine::functions::list", {"prefix": function_id, "include_internal": True},
            timeout_ms=self.call_timeout_ms)
        rows = answer.get("functions") if isinstance(answer, Mapping) else None
        return next((row for row in FunctionInfo.parse_all(rows, "function")
                     if row.function_id == function_id and row.namespace == namespace), None)

    # ------------------------------------------------------------------ wait_for_function

    def _namespace(self, namespace: str | None) -> str:
        return namespace or self._client.namespace or "default"

    async def wait_for_function(self, function_id: str, timeout: float = 30.0, *,
                                namespace: str | None = None) -> FunctionInfo:
        """Return the row of ``function_id`` once the engine lists it in ``namespace`` (the
        client's by default), i.e. once calling it cannot give ``function_not_found``.

        Awaitable from any loop. Raises :class:`~iii_rx.errors.IIITimeoutError` after
        ``timeout`` seconds and :class:`~iii_rx.errors.IIIConnectionError` if the client closes.
        """
        check_function_id(function_id, "wait_for_function")
        coro = wait_on_loop(self, function_id, self._namespace(namespace), timeout)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            return await coro
        return await asyncio.wrap_future(self._submit(coro))

    def _submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        try:
            return asyncio.run_coroutine_threadsafe(coro, self.loop)
        except RuntimeError:  # the client's loop is gone: so is the client
            coro.close()
            raise IIIConnectionError("the client is closed") from None

    def wait_for_function_sync(self, function_id: str, timeout: float = 30.0, *,
                               namespace: str | None = None) -> FunctionInfo:
        """Blocking :meth:`wait_for_function` (any thread but the client's loop thread, where
        it raises :class:`~iii_rx.errors.LoopDeadlockError`)."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        check_function_id(function_id, "wait_for_function_sync")
        if running is self.loop:
            raise deadlock_error("wait_for_function_sync()")
        future = self._submit(
            wait_on_loop(self, function_id, self._namespace(namespace), timeout))
        try:
            return future.result(timeout + 5.0)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise IIITimeoutError("TIMEOUT", f"function {function_id!r} did not appear within "
                                  f"{timeout}s", function_id=function_id) from None
        except concurrent.futures.CancelledError:
            raise IIIError(f"waiting for {function_id!r} was cancelled") from None
