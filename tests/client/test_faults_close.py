"""Issue 12 item 15: a close never waits on the handler that asked for it, and says what it
waits for.

``iii.close()`` from inside a sync handler used to wait 10 s for that very handler; Ctrl-C of a
``connect_sync`` worker with a busy sync handler waited 10 s without a word. Real engine, real
sockets; the Ctrl-C case is a real worker process receiving SIGINT.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest
from client_helpers import unique_name

import iii_rx
from iii_rx import IIIInvocationError
from iii_rx.engine import Engine
from iii_rx.lifecycle import Lifecycle

# Far below the 10 s the close used to wait on itself, far above a close's real duration.
QUICK = 3.0


def test_close_from_inside_a_sync_handler_of_a_sync_client(engine_thread: Any,
                                                           name: str) -> None:
    iii = iii_rx.connect_sync(engine_thread.url, name=name)
    caller = iii_rx.connect_sync(engine_thread.url, name=unique_name("caller"))
    took: list[float] = []
    inside, returned = threading.Event(), threading.Event()

    def stop(data: Any) -> str:
        inside.set()
        start = time.monotonic()
        iii.close()
        took.append(time.monotonic() - start)
        returned.set()
        return "closed"

    try:
        iii.register_function("close::self", stop)
        caller.wait_for_function_sync("close::self", 5)
        with pytest.raises(IIIInvocationError) as info:  # its socket went: no answer
            caller.trigger("close::self", timeout_ms=10_000).result(timeout=10)
        assert info.value.code == "invocation_stopped"
        assert inside.is_set()
        assert returned.wait(QUICK)  # close() returned inside the handler
        assert took[0] < QUICK, took
        assert iii.lifecycle is Lifecycle.CLOSED
    finally:
        caller.close()
        iii.close()


async def test_close_from_inside_a_sync_handler_of_an_async_client(engine: Engine,
                                                                    name: str) -> None:
    waited: list[tuple[bool, float]] = []
    returned = threading.Event()

    async with iii_rx.connect(engine.url, name=unique_name("caller")) as caller:
        iii = await iii_rx.connect(engine.url, name=name)

        def stop(data: Any) -> str:
            start = time.monotonic()
            finished = iii.close().wait(10)  # waits for the close, which must not wait for us
            waited.append((finished, time.monotonic() - start))
            returned.set()
            return "closed"

        iii.register_function("close::self-async", stop)
        await caller.wait_for_function("close::self-async", 5)
        with pytest.raises(IIIInvocationError):
            await caller.trigger("close::self-async", timeout_ms=10_000)
        await asyncio.wait_for(iii.aclose(), QUICK)
        assert iii.lifecycle is Lifecycle.CLOSED
    assert await asyncio.to_thread(returned.wait, QUICK)
    assert waited[0][0] and waited[0][1] < QUICK, waited


async def test_an_async_handler_closing_its_client_runs_to_its_end(engine: Engine,
                                                                     name: str) -> None:
    """``await iii.aclose()`` in an async handler: the close no longer cancels that handler,
    so what follows the await (its cleanup) runs, as after the official SDK's
    ``shutdown_async()``; it used to get ``CancelledError`` there."""
    after = asyncio.Event()
    async with iii_rx.connect(engine.url, name=unique_name("caller")) as caller:
        iii = await iii_rx.connect(engine.url, name=name)

        async def stop(data: Any) -> str:
            await iii.aclose()
            after.set()
            return "closed"

        iii.register_function("close::self-await", stop)
        await caller.wait_for_function("close::self-await", 5)
        with pytest.raises(IIIInvocationError):
            await caller.trigger("close::self-await", timeout_ms=10_000)
        await asyncio.wait_for(after.wait(), QUICK)
        assert iii.lifecycle is Lifecycle.CLOSED


_CTRL_C_WORKER = textwrap.dedent("""
    import sys, threading
    import iii_rx

    def busy(data):
        print("handler running", flush=True)
        sys.stdin.readline()          # busy until the test says so
        return "done"

    with iii_rx.connect_sync(sys.argv[1], name=sys.argv[2]) as iii:
        iii.register_function("ctrlc::busy", busy)
        print("ready", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("interrupted", flush=True)
""")


def _read_until(stream: Any, needle: str, timeout: float) -> list[str]:
    """Lines of ``stream`` up to the first containing ``needle`` (a thread reads them, so a
    silent process fails the test instead of hanging it)."""
    lines: list[str] = []
    found = threading.Event()

    def read() -> None:
        for line in stream:
            lines.append(line)
            if needle in line:
                found.set()
                return

    threading.Thread(target=read, daemon=True).start()
    assert found.wait(timeout), f"no {needle!r} within {timeout}s: {lines}"
    return lines


def test_ctrl_c_with_a_busy_sync_handler_says_what_it_waits_for(engine_thread: Any,
                                                                name: str) -> None:
    env = dict(os.environ, OTEL_ENABLED="false")
    child = subprocess.Popen(
        [sys.executable, "-c", _CTRL_C_WORKER, engine_thread.url, name],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env)
    caller = iii_rx.connect_sync(engine_thread.url, name=unique_name("caller"))
    try:
        assert child.stdout is not None and child.stderr is not None and child.stdin is not None
        _read_until(child.stdout, "ready", 20)
        caller.wait_for_function_sync("ctrlc::busy", 5)
        call = caller.trigger("ctrlc::busy", timeout_ms=20_000).future()
        _read_until(child.stdout, "handler running", 10)
        child.send_signal(signal.SIGINT)
        lines = _read_until(child.stderr, "waiting up to", 5)
        warning = lines[-1]
        assert "'ctrlc::busy'" in warning and "iii-rx-handler_0" in warning, warning
        child.stdin.write("go\n")
        child.stdin.flush()
        child.wait(QUICK)  # the handler ended: the close does not wait out its 10 s
        with pytest.raises(IIIInvocationError):
            call.result(10)  # its worker left before answering
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        caller.close()


async def test_an_async_handler_that_ignores_its_cancellation_is_named_and_left(
        engine: Engine, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """The close waits for it as long as for sync handlers, then says which one and goes on
    (it waited as long as the handler ran, without a word)."""
    from iii_rx import _pool

    monkeypatch.setattr(_pool, "CLOSE_WAIT", 0.3)
    started, released, ended = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def stubborn(data: Any) -> None:
        started.set()
        try:
            while not released.is_set():
                try:
                    await released.wait()
                except asyncio.CancelledError:
                    continue  # swallowed: the handler goes on
        finally:
            ended.set()

    iii = await iii_rx.connect(engine.url, name=unique_name("stubborn"))
    iii.register_function("close::stubborn", stubborn)
    call = asyncio.ensure_future(iii.trigger("close::stubborn", timeout_ms=60_000))
    await asyncio.wait_for(started.wait(), QUICK)
    caplog.set_level("WARNING", logger="iii_rx.worker")
    await asyncio.wait_for(iii.close(), QUICK)
    assert "handler of 'close::stubborn'" in caplog.text
    with pytest.raises(iii_rx.IIIConnectionError):
        await call
    released.set()
    await asyncio.wait_for(ended.wait(), QUICK)
