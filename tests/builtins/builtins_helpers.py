"""Helpers of the built-in worker tests (imported by name: tests/ has no packages)."""

from __future__ import annotations

import asyncio
import os
import queue
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from iii_rx.engine import EngineThread
from iii_rx.engine.triggers import Binding

T = TypeVar("T")
WAIT = 15.0
"""Seconds: a generous bound for answers and deliveries on a busy machine."""
ENGINE_TIMERS: dict[str, Any] = {
    "namespace_grace_ms": 300,
    "functions_available_poll_ms": 50,
    "provider_ack_timeout_ms": 500,
}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def call(worker: Any, function_id: str, payload: Any = None, **extra: Any) -> Any:
    """``worker.trigger`` in the official SDK's request form (``extra``: its other keys)."""
    return worker.trigger({"function_id": function_id, "payload": payload, **extra})


def collector(worker: Any, prefix: str) -> tuple[str, queue.Queue[Any]]:
    """A function of ``worker`` that puts what it receives on a queue."""
    received: queue.Queue[Any] = queue.Queue()
    function_id = unique(prefix)

    def handler(data: Any) -> dict[str, Any]:
        received.put(data)
        return {}

    worker.register_function(function_id, handler)
    return function_id, received


def on_engine(handle: EngineThread, fn: Callable[[], T]) -> T:
    """Run ``fn`` on the engine's loop (its registries are not thread-safe)."""

    async def run() -> T:
        return fn()

    return asyncio.run_coroutine_threadsafe(run(), handle.loop).result(WAIT)


def wait_until(condition: Callable[[], T | None], what: str, timeout: float = WAIT) -> T:
    """Poll a condition that has no event to wait on (20 ms steps, bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def bindings_of(handle: EngineThread, function_id: str) -> list[Binding]:
    """The engine's bindings (active or parked) that call ``function_id``."""
    return on_engine(handle, lambda: [b for b in handle.engine.triggers.bindings.values()
                                      if b.function_id == function_id])


def wait_bound(handle: EngineThread, function_id: str, count: int = 1) -> list[Binding]:
    """Wait until ``count`` bindings calling ``function_id`` are active (have a provider)."""
    return wait_until(lambda: (found if len(found := [
        b for b in bindings_of(handle, function_id) if not b.parked]) >= count else None),
        f"{count} active binding(s) of {function_id}")


def wait_parked(handle: EngineThread, function_id: str) -> Binding:
    """Wait until a binding calling ``function_id`` exists and is parked (refused)."""
    return wait_until(lambda: next((b for b in bindings_of(handle, function_id) if b.parked),
                                   None), f"a parked binding of {function_id}")


class EngineProcess:
    """``python -m iii_rx.engine FLAGS...`` on ephemeral ports (its log in ``workdir``), for
    the tests that kill an engine."""

    def __init__(self, workdir: Path, *flags: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "engine.log"
        self._stderr = self.log.open("a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "iii_rx.engine", "--host", "127.0.0.1", "--port", "0",
             "--rest-port", "0", "--namespace-grace-ms", "300", "--log-level", "WARNING",
             *flags],
            stdout=subprocess.PIPE, stderr=self._stderr, text=True,
            env={**os.environ, "OTEL_ENABLED": "false"})
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # blocks until the engine listens (or dies)
        match = re.search(r"listening on (ws://\S+)", line)
        assert match, f"engine did not start: {line!r}\n{self.log.read_text()[-2000:]}"
        self.url = match.group(1)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(WAIT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(WAIT)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()
