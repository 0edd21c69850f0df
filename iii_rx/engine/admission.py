"""Registrations of a connection whose listener has registration hooks, applied off its reader.

A registration hook is a function call that may take up to the guard's hook timeout. Awaited
in the connection's reader it would leave that connection's results, calls and pings unread,
and a hook served by the same connection could never answer: the registration would wait
out the timeout and be denied. Such a connection's registrations (and unregistrations) go
into one :class:`Admission` queue instead, applied one at a time in arrival order by one task
while the reader goes on.

Connections without hooks never get one: the dispatcher picks per connection
(:func:`needs_admission`) and applies their registrations in the reader, as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from iii_rx.engine.connection import WorkerConnection
from iii_rx.engine.logsafe import printable
from iii_rx.protocol import Frame

if TYPE_CHECKING:
    from iii_rx.engine.rbac import SessionGuard

__all__ = ["Admission", "Apply", "needs_admission"]

log = logging.getLogger("iii_rx.engine")

Apply = Callable[[WorkerConnection, Frame], Awaitable[None]]
"""``await apply(conn, frame)``: admit and apply one registration (the dispatcher's)."""


def needs_admission(guard: SessionGuard | None) -> bool:
    """Whether a connection under ``guard`` needs an admission queue: a registration hook."""
    rbac = guard.rbac if guard is not None else None
    return rbac is not None and (
        rbac.on_function_registration_function_id is not None
        or rbac.on_trigger_registration_function_id is not None
        or rbac.on_trigger_type_registration_function_id is not None)


class Admission:
    """The ordered registrations of one connection, applied by one task started on demand.

    :meth:`close` drops what still waits and cancels the task; :meth:`wait_closed` awaits it.
    """

    __slots__ = ("_apply", "_closed", "_conn", "_frames", "_task")

    def __init__(self, conn: WorkerConnection, apply: Apply) -> None:
        self._conn = conn
        self._apply = apply
        self._frames: deque[Frame] = deque()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def __len__(self) -> int:
        """Registrations waiting (the one being admitted not counted)."""
        return len(self._frames)

    def put(self, frame: Frame, cap: int = 0) -> bool:
        """Queue ``frame`` behind the connection's earlier registrations; ``False`` when
        ``cap`` (0 = none) registrations already wait, and ``frame`` is refused."""
        if self._closed:
            return True  # the connection is going: dropped, not refused
        if len(self._frames) >= cap > 0:
            return False
        self._frames.append(frame)
        self._start()
        return True

    def take(self, frames: deque[Frame]) -> None:
        """Queue all of ``frames`` (the namespace buffer), emptying it."""
        if not self._closed:
            self._frames.extend(frames)
            self._start()
        frames.clear()

    def _start(self) -> None:
        task = self._task
        if task is None or task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"admission {self._conn.id}")

    async def _run(self) -> None:
        frames, conn = self._frames, self._conn
        while frames and not conn.closed and not conn.rejected:
            frame = frames.popleft()
            try:
                await self._apply(conn, frame)
            except Exception:
                log.exception("failed to admit a %s frame of worker %s", printable(frame.type),
                              printable(conn.label))
        frames.clear()

    def close(self) -> None:
        """Drop the registrations still waiting and cancel the one being admitted."""
        self._closed = True
        self._frames.clear()
        if self._task is not None:
            self._task.cancel()

    async def wait_closed(self) -> None:
        """Close, then wait for the task to end (it never raises here)."""
        self.close()
        task = self._task
        if task is not None:
            await asyncio.wait((task,))
