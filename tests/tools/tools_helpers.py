"""Helpers of the ``iii-rx`` tool tests (imported by name: tests/ has no packages)."""

from __future__ import annotations

import itertools
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

_names = itertools.count(1)

ENGINE_TIMERS: dict[str, Any] = {"namespace_grace_ms": 300, "functions_available_poll_ms": 50}
WAIT = 15.0
"""Seconds: a generous bound for a busy machine, never a synchronisation."""
ENV = {**os.environ, "OTEL_ENABLED": "false", "PYTHONUNBUFFERED": "1"}
for _name in ("III_URL", "III_WORKER_NAME", "III_NAMESPACE", "III_TOKEN"):
    ENV.pop(_name, None)


def unique_name(prefix: str) -> str:
    """A worker name no other worker of this run uses (the engine leases names)."""
    return f"{prefix}-{os.getpid()}-{next(_names)}"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "iii_rx.cli", *args]


@dataclass
class Done:
    args: tuple[str, ...]
    pid: int
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def run_all(*commands: list[str] | tuple[list[str], dict[str, str]],
            timeout: float = 60.0) -> list[Done]:
    """Run commands as concurrent subprocesses (each costs an interpreter start); a command
    may come with its own environment as ``(command, env)``."""
    started = []
    for item in commands:
        command, env = item if isinstance(item, tuple) else (item, ENV)
        started.append((command, time.monotonic(), subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            text=True, env=env)))
    done: list[Done] = []
    for command, start, proc in started:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        done.append(Done(tuple(command[3:]), proc.pid, proc.returncode, out, err,
                         time.monotonic() - start))
    return done


class Lines:
    """A subprocess whose stdout is read line by line on a thread, with bounded waits."""

    def __init__(self, command: list[str]) -> None:
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, text=True, env=ENV)
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def next(self, timeout: float = WAIT) -> str:
        """The next line; fails if the process ends or says nothing for ``timeout`` s."""
        line = self._lines.get(timeout=timeout)
        if line is None:
            raise AssertionError(f"the process ended: {self.stderr()}")
        return line

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return "(running)"
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
