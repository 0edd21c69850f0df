"""``iii_rx.engine.run.serve``: the ``iii-rx engine`` command's coroutine, run by a program."""

from __future__ import annotations

import asyncio
import contextlib
import io
import threading

import uvloop

from iii_rx.engine.run import serve


class _Listening(io.StringIO):
    """Stdout that says when the command's "listening on" line was printed."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = asyncio.Event()

    def write(self, text: str) -> int:
        if "listening on" in text:
            self.seen.set()
        return super().write(text)


def test_serve_runs_on_uvloop_off_the_main_thread() -> None:
    """No signal handler can be installed there (stop it by cancelling); uvloop says so with a
    ``ValueError``, not asyncio's ``RuntimeError``, and the command crashed with it."""
    outcome: list[BaseException | str] = []

    async def run() -> None:
        stdout = _Listening()
        with contextlib.redirect_stdout(stdout):
            task = asyncio.ensure_future(serve("127.0.0.1", 0, 0, namespace_grace_ms=0))
            seen = asyncio.ensure_future(stdout.seen.wait())
            await asyncio.wait([task, seen], timeout=10, return_when=asyncio.FIRST_COMPLETED)
            seen.cancel()
            if task.done():
                outcome.append(task.exception() or "ended")
                return
            outcome.append("listening" if stdout.seen.is_set() else "silent")
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def thread() -> None:
        loop = uvloop.new_event_loop()
        try:
            loop.run_until_complete(run())
        finally:
            loop.close()

    runner = threading.Thread(target=thread)
    runner.start()
    runner.join(20)
    assert not runner.is_alive()
    assert outcome == ["listening"]
