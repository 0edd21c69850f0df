"""The thread pool of sync handlers: threads on demand, reuse, order, and a clean shutdown."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

import iii_rx
from iii_rx import IIIInvocationError
from iii_rx._pool import HandlerPool
from iii_rx.engine import Engine


def test_threads_start_on_demand_and_are_reused() -> None:
    pool = HandlerPool(4, "iii-rx-handler")
    done = threading.Event()
    pool.submit(done.set)
    assert done.wait(5)
    assert pool.threads == 1
    for _ in range(20):  # one at a time: the idle thread takes each
        step = threading.Event()
        pool.submit(step.set)
        assert step.wait(5)
    assert pool.threads == 1
    ended = threading.Event()
    for thread in pool.shutdown(ended.set):
        thread.join(5)
    assert ended.is_set()


def test_busy_threads_make_new_ones_up_to_the_limit_then_tasks_queue_in_order() -> None:
    pool = HandlerPool(3, "iii-rx-handler")
    gate = threading.Event()
    started = threading.Semaphore(0)
    order: list[int] = []

    def block() -> None:
        started.release()
        gate.wait(5)

    for _ in range(3):
        pool.submit(block)
    for _ in range(3):
        assert started.acquire(timeout=5)  # three running at once: none waited
    assert pool.threads == 3
    finished = threading.Semaphore(0)
    for n in range(5):
        pool.submit(lambda n=n: (order.append(n), finished.release()))
    assert pool.threads == 3
    gate.set()
    for _ in range(5):
        assert finished.acquire(timeout=5)
    assert order == [0, 1, 2, 3, 4]
    for thread in pool.shutdown(lambda: None):
        thread.join(5)


def test_each_task_runs_in_a_copy_of_the_context_it_was_submitted_from() -> None:
    """A reused thread keeps nothing a task set in a context variable (as ``to_thread``)."""
    user: contextvars.ContextVar[str] = contextvars.ContextVar("user", default="anonymous")
    pool = HandlerPool(1, "iii-rx-handler")
    seen: list[str] = []

    def handle(name: str, done: threading.Event) -> None:
        seen.append(user.get())
        user.set(name)
        done.set()

    for name in ("alice", "bob"):
        done = threading.Event()
        pool.submit(handle, name, done)
        assert done.wait(5)
    token = user.set("submitter")
    try:
        done = threading.Event()
        pool.submit(handle, "carol", done)
        assert done.wait(5)
    finally:
        user.reset(token)
    assert pool.threads == 1  # one thread ran all three
    assert seen == ["anonymous", "anonymous", "submitter"]
    assert user.get() == "anonymous"
    ended = threading.Event()
    for thread in pool.shutdown(ended.set):
        thread.join(5)


def test_shutdown_drops_queued_tasks_and_waits_for_running_ones() -> None:
    pool = HandlerPool(1, "iii-rx-handler")
    gate, running = threading.Event(), threading.Event()
    ran: list[str] = []
    pool.submit(lambda: (running.set(), gate.wait(5), ran.append("first")))
    pool.submit(lambda: ran.append("queued"))
    assert running.wait(5)
    ended = threading.Event()
    threads = pool.shutdown(ended.set)
    assert not ended.is_set()
    with pytest.raises(RuntimeError):
        pool.submit(lambda: None)
    gate.set()
    assert ended.wait(5)
    for thread in threads:
        thread.join(5)
        assert not thread.is_alive()
    assert ran == ["first"]


def test_shutdown_of_an_unused_pool_ends_at_once() -> None:
    ended: list[bool] = []
    assert HandlerPool(2, "iii-rx-handler").shutdown(lambda: ended.append(True)) == []
    assert ended == [True]


def test_a_raising_task_does_not_kill_its_thread() -> None:
    pool = HandlerPool(1, "iii-rx-handler")
    pool.submit(lambda: 1 / 0)
    done = threading.Event()
    pool.submit(done.set)
    assert done.wait(5)
    assert pool.threads == 1
    for thread in pool.shutdown(lambda: None):
        thread.join(5)


async def test_call_gives_the_outcome_on_the_loop() -> None:
    pool = HandlerPool(2, "iii-rx-handler")
    loop = asyncio.get_running_loop()
    assert await pool.call(loop, lambda a, b: a + b, 2, 3) == 5
    with pytest.raises(ZeroDivisionError):
        await pool.call(loop, lambda: 1 / 0)
    for thread in pool.shutdown(lambda: None):
        thread.join(5)


class _NoNewThreads:
    """``threading.Thread.start`` refuses the pool's threads while on, as the OS does at its
    thread limit (and Python 3.12.0-3.12.2 once the main thread has ended)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, prefix: str = "iii-rx-handler") -> None:
        self.on = True
        start = threading.Thread.start

        def refusing(thread: threading.Thread) -> None:
            if self.on and thread.name.startswith(prefix):
                raise RuntimeError("can't start new thread")
            start(thread)

        monkeypatch.setattr(threading.Thread, "start", refusing)


def test_a_thread_that_cannot_start_leaves_no_task_and_no_thread_behind(
        monkeypatch: pytest.MonkeyPatch) -> None:
    refuse = _NoNewThreads(monkeypatch)
    pool = HandlerPool(1, "iii-rx-handler")
    ran: list[str] = []
    with pytest.raises(RuntimeError, match="can't start new thread"):
        pool.submit(ran.append, "refused")
    refuse.on = False
    done = threading.Event()
    pool.submit(lambda: (ran.append("next"), done.set()))  # the one thread slot is still free
    assert done.wait(5)
    ended = threading.Event()
    for thread in pool.shutdown(ended.set):
        thread.join(5)
    assert ended.wait(5)  # no thread counted that never ran
    assert ran == ["next"]  # the refused task never runs


async def test_a_call_whose_handler_gets_no_thread_fails_at_once(
        monkeypatch: pytest.MonkeyPatch, engine: Engine, name: str) -> None:
    async with iii_rx.connect(engine.url, name=name) as worker, \
            iii_rx.connect(engine.url, name=f"{name}-caller") as caller:
        worker.register_function("pool::double", lambda n: n * 2, max_concurrency=1)
        await caller.wait_for_function("pool::double", timeout=5)
        refuse = _NoNewThreads(monkeypatch)
        with pytest.raises(IIIInvocationError, match="can't start new thread") as info:
            await caller.trigger("pool::double", 1, timeout_ms=5000)
        assert info.value.code == "invocation_failed"
        refuse.on = False
        assert await caller.trigger("pool::double", 2, timeout_ms=5000) == 4  # slot released
