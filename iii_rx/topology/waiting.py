"""``wait_for_function``: return as soon as the engine lists a function, whoever registers it.

Two sources race, and the first to see the function wins:

* the shared snapshot stream, which reacts to the engine's discovery events within one
  refresh (tens of milliseconds on our engine), counting only snapshots taken on the current
  connection: after an engine restart the last snapshot still lists functions that are gone;
* a targeted ``engine::functions::list`` lookup, polled with a backoff from 50 ms to 1 s,
  because events can be late (the Rust engine announces function changes every 5 s, ours
  throttles bursts) and an engine restart brings a storm of changes.

"Listed in the client's namespace" is the test because it is what makes a call succeed: a
function a worker sent before its ``engine::workers::register`` is not routable yet, and the
engine does not list it either.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from reactivex import Observable

from iii_rx.errors import IIIConnectionError, IIIError, IIITimeoutError
from iii_rx.topology.models import FunctionInfo, Topology

__all__ = ["WaitSource", "check_function_id", "wait_on_loop"]

log = logging.getLogger("iii_rx.topology")

FIRST_POLL_S = 0.05
MAX_POLL_S = 1.0


class WaitSource(Protocol):
    """What waiting needs of a topology stream."""

    @property
    def snapshots(self) -> Observable[Topology]: ...

    def confirmed(self, snapshot: Topology) -> bool: ...

    async def lookup(self, function_id: str, namespace: str) -> FunctionInfo | None: ...


def check_function_id(function_id: object, what: str) -> None:
    """Refuse an id no function can have at the call, rather than wait out the timeout."""
    if not isinstance(function_id, str):
        raise TypeError(f"{what}(function_id): function_id must be a str, got "
                        f"{type(function_id).__name__} {function_id!r}")


async def wait_on_loop(source: WaitSource, function_id: str, namespace: str,
                       timeout: float) -> FunctionInfo:
    """Wait (on the client's loop) until ``function_id`` is listed in ``namespace``."""
    loop = asyncio.get_running_loop()
    found: asyncio.Future[FunctionInfo] = loop.create_future()

    def settle(row: FunctionInfo | None, error: Exception | None = None) -> None:
        if found.done():
            return
        if error is not None:
            found.set_exception(error)
        elif row is not None:
            found.set_result(row)

    def on_snapshot(snapshot: Topology) -> None:
        if source.confirmed(snapshot):  # never a view from before an outage
            settle(snapshot.function(function_id, namespace))

    def on_end(error: Exception | None = None) -> None:
        settle(None, IIIConnectionError(
            f"the client closed while waiting for function {function_id!r}"
            + (f": {error}" if error is not None else "")))

    subscription = source.snapshots.subscribe(on_next=on_snapshot, on_error=on_end,
                                              on_completed=on_end)
    poller = loop.create_task(_poll(source, function_id, namespace, found),
                              name=f"iii.wait_for_function {function_id}")
    try:
        return await asyncio.wait_for(found, timeout)
    except asyncio.TimeoutError:
        raise IIITimeoutError(
            "TIMEOUT", f"function {function_id!r} was not registered in namespace "
            f"{namespace!r} within {timeout}s", function_id=function_id) from None
    finally:
        subscription.dispose()
        poller.cancel()


async def _poll(source: WaitSource, function_id: str, namespace: str,
                found: asyncio.Future[FunctionInfo]) -> None:
    delay = FIRST_POLL_S
    while not found.done():
        try:
            row = await source.lookup(function_id, namespace)
        except IIIError as exc:  # lost connection, engine busy: the next round or an event
            log.debug("lookup of %r failed: %s", function_id, exc)
            row = None
        if row is not None:
            if not found.done():
                found.set_result(row)
            return
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_POLL_S)
