"""The thread pool of sync handlers: threads on demand, reuse, order, and a clean shutdown."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from iii_rx._pool import HandlerPool


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
