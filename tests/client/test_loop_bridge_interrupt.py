"""``LoopBridge.run_blocking`` interrupted (Ctrl-C, a notebook's interrupt button): the coroutine
it waits for is cancelled on the loop, not left running behind the ``KeyboardInterrupt``."""

from __future__ import annotations

import asyncio
import signal
import threading

import pytest

from iii_rx.aio import LoopBridge, LoopThread


def test_an_interrupted_blocking_wait_cancels_its_coroutine() -> None:
    started, cancelled = threading.Event(), threading.Event()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    def interrupt_when_started(main: int) -> None:
        if started.wait(10):
            signal.pthread_kill(main, signal.SIGINT)

    assert threading.current_thread() is threading.main_thread()  # where SIGINT lands
    thread = LoopThread("bridge-interrupt")
    try:
        interrupter = threading.Thread(target=interrupt_when_started,
                                       args=(threading.main_thread().ident,))
        interrupter.start()
        with pytest.raises(KeyboardInterrupt):
            thread.bridge.run_blocking(forever(), "the test's wait", timeout=10)
        interrupter.join()
        assert cancelled.wait(10), "the coroutine kept running after the interrupt"
    finally:
        thread.stop()


def test_a_closed_loop_is_reported_even_after_a_drain_that_never_ran() -> None:
    """A hand-over scheduled after the loop's last turn left the bridge believing a drain
    was coming: later hand-overs queued silently instead of raising (a ``Single.result()``
    then waited for ever instead of failing)."""
    loop = asyncio.new_event_loop()
    bridge = LoopBridge(loop, None)
    bridge.run_sync_soon(print, "scheduled, never run")
    loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        bridge.run_sync_soon(print, "late")
