"""What the benchmark coordinators share: child processes, ports, CPU time, median [range].

Every benchmark runs engine, workers and callers as processes of their own (so that one
role's CPU is measured apart from the others'),
speaks to them in JSON lines, reads the CPU time each spent during a figure from ``/proc``, and
prints figures as the median of interleaved rounds with their range. That machinery lives here
once; the peers themselves are in ``rawpeers.py`` (and in each benchmark's own subcommands).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RAWPEERS = str(HERE / "rawpeers.py")
RUST_BINARY = Path(os.environ.get("III_BIN", Path.home() / ".cache/iii-engine/iii"))
RUST_LAUNCHER = Path(os.environ.get("III_REAL_ENGINE", HERE / "rust_engine.py"))
"""What starts the Rust engine (``--port P --rest-port R``): ``rust_engine.py`` unless
``III_REAL_ENGINE`` names another launcher."""
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
"""Ticks per second of the CPU times in ``/proc/<pid>/stat``."""


def rust_available() -> bool:
    """Whether the real Rust engine is built and its launcher is present."""
    return RUST_BINARY.exists() and RUST_LAUNCHER.exists()


class Peer:
    """A child process whose stdout carries JSON lines; stderr goes to a log file.

    ``stop()`` closes stdin (peers with a control channel end on that), gives the process
    ``stop_grace`` seconds to finish on its own (an SDK worker shutting down cleanly), then
    terminates it.
    """

    def __init__(self, name: str, argv: list[str], log_dir: str, *,
                 stop_grace: float = 0.0) -> None:
        self.name = name
        self.stop_grace = stop_grace
        self.log_path = os.path.join(log_dir, f"{name}.log")
        self._log: IO[bytes] = open(self.log_path, "wb")  # closed in stop()
        env = {**os.environ, "OTEL_ENABLED": "false", "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._log, text=True, env=env, cwd=ROOT)
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def read_json(self, timeout: float) -> dict[str, Any]:
        """The next JSON object the process prints (other lines are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"{self.name}: no answer within {timeout:.0f} s") from None
            if line is None:
                raise RuntimeError(f"{self.name} exited ({self.proc.wait()}): {self.log_tail()}")
            if line.startswith("{"):
                return dict(json.loads(line))

    def send(self, command: dict[str, Any]) -> None:
        """Write one JSON command line to the process."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def cpu_seconds(self) -> float | None:
        """CPU time the process used so far (see :func:`cpu_seconds`)."""
        return cpu_seconds(self.proc.pid)

    def log_tail(self, lines: int = 8) -> str:
        with open(self.log_path, errors="replace") as f:
            return " | ".join(f.read().strip().splitlines()[-lines:])

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=self.stop_grace)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def cpu_seconds(pid: int) -> float | None:
    """CPU time of every thread of ``pid`` so far, or ``None`` where ``/proc`` lacks it.

    Read from each thread's nanosecond ``schedstat`` rather than the 10 ms ticks of ``stat``:
    a one-second figure at a fraction of a core is only a few dozen ticks.
    """
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    total = 0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as stat:
                total += int(stat.read().split()[0])
        except FileNotFoundError:  # a thread that just ended
            continue
        except (OSError, ValueError, IndexError):
            return None
    return total / 1e9


def per_call_us(before: float | None, after: float | None, calls: int) -> float:
    """Microseconds of CPU per call between two :func:`cpu_seconds` readings (NaN unknown)."""
    if before is None or after is None or calls <= 0:
        return float("nan")
    return (after - before) / calls * 1e6


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago (for a child process to bind)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(peer: Peer, port: int, timeout: float = 30.0) -> None:
    """Poll until ``peer`` accepts connections on ``port`` (no event exists across processes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if peer.proc.poll() is not None:
            raise RuntimeError(f"{peer.name} exited ({peer.proc.returncode}): {peer.log_tail()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{peer.name} did not listen on port {port}: {peer.log_tail()}")


def rawpeer_argv(role: str, url: str, function: str, *extra: str) -> list[str]:
    """The command line of a ``rawpeers.py`` role in control mode (commands on stdin)."""
    return [sys.executable, RAWPEERS, role, "--url", url, "--function", function, "--control",
            *extra]


def engine_argv(kind: str, port: int, rest_port: int | None = None) -> list[str]:
    """The command line of an engine: ``iii_rx``, the bare ``relay`` or the ``rust`` engine.

    ``rest_port`` is the REST API port (a free one is picked for Rust, ``0`` for iii_rx).
    """
    if kind == "iii_rx":
        return [sys.executable, "-m", "iii_rx.engine", "--host", "127.0.0.1", "--port",
                str(port), "--rest-port", str(rest_port or 0), "--log-level", "WARNING"]
    if kind == "relay":
        return [sys.executable, RAWPEERS, "relay", "--port", str(port)]
    rest = str(rest_port or free_port())
    return [sys.executable, str(RUST_LAUNCHER), "--port", str(port), "--rest-port", rest]


def start_engine(kind: str, log_dir: str, stack: contextlib.ExitStack, *,
                 rest_port: int | None = None, name: str | None = None) -> tuple[Peer, int]:
    """Start an engine (stopped with ``stack``) and wait until it listens; its peer and port."""
    port = free_port()
    engine = Peer(name or f"engine-{kind}", engine_argv(kind, port, rest_port), log_dir)
    stack.callback(engine.stop)
    wait_for_port(engine, port)
    return engine, port


def start_peer(name: str, argv: list[str], log_dir: str, stack: contextlib.ExitStack, *,
               timeout: float = 90.0, stop_grace: float = 0.0) -> Peer:
    """Start a peer (stopped with ``stack``) and wait for its first JSON line (``ready``)."""
    peer = Peer(name, argv, log_dir, stop_grace=stop_grace)
    stack.callback(peer.stop)
    peer.read_json(timeout=timeout)
    return peer


def spread(values: list[float], fmt: str) -> str:
    """Median [min-max] of the rounds (``-`` without any)."""
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return format(med, fmt)
    return f"{med:{fmt}} [{min(values):{fmt}}-{max(values):{fmt}}]"


def median(values: list[float]) -> float:
    """The median, NaN without values (a figure that was never measured)."""
    return statistics.median(values) if values else float("nan")
