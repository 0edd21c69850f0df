"""The sqlite files when the disk fills (the engine process's file size limit, set and lifted
with ``prlimit``): a refused write is an error naming the file, in the caller's answer and the
engine's log, and a queue delivers its waiting messages once the file can be written again
(no restart)."""

from __future__ import annotations

import os
import queue
import re
import resource
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from builtins_helpers import WAIT, call, unique, wait_until
from iii import InitOptions, TriggerAction, register_worker

from iii_rx.engine.workers.queues_store import NAMED_PREFIX

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class LoggedEngine:
    """``python -m iii_rx.engine FLAGS...`` with its log on a pipe, read line by line (a
    log file could not be written either while the disk is full)."""

    def __init__(self, *flags: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "iii_rx.engine", "--host", "127.0.0.1", "--port", "0",
             "--rest-port", "0", "--log-level", "WARNING", *flags],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "OTEL_ENABLED": "false"})
        assert self.proc.stdout is not None and self.proc.stderr is not None
        line = self.proc.stdout.readline()
        match = re.search(r"listening on (ws://\S+)", line)
        assert match, f"engine did not start: {line!r}"
        self.url = match.group(1)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, args=(self.proc.stderr,), daemon=True).start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.put(line)

    def wait_for_line(self, text: str) -> str:
        while True:
            line = self.lines.get(timeout=WAIT)
            if text in line:
                return line

    def disk_full(self, full: bool) -> None:
        """No write past the first byte of any file (as a full disk) / no limit again."""
        soft = 1 if full else resource.RLIM_INFINITY
        resource.prlimit(self.proc.pid, resource.RLIMIT_FSIZE, (soft, resource.RLIM_INFINITY))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.communicate(timeout=WAIT)


def serving(engine: LoggedEngine, function_id: str, handler: Callable[[Any], Any]) -> Any:
    """An official-SDK worker serving ``function_id`` with ``handler``, once the engine lists
    it (shut down if it does not)."""
    iii = register_worker(engine.url, InitOptions(
        worker_name=unique("files"), otel={"enabled": False}, enable_metrics_reporting=False))
    try:
        iii.register_function(function_id, handler)
        wait_until(lambda: any(f["function_id"] == function_id for f in call(
            iii, "engine::functions::list", {})["functions"]), "the function to register")
    except BaseException:
        iii.shutdown()
        raise
    return iii


def test_a_named_queue_delivers_again_once_its_file_can_be_written(tmp_path: Path) -> None:
    """The failed write of a take ended the queue's delivery loop: the messages waiting then,
    and any enqueued after the disk had room again, were delivered only after a restart."""
    engine = LoggedEngine("--queue-file", str(tmp_path / "q.db"))
    function_id, name = unique("files::job"), unique("jobs")
    gate = threading.Event()
    arrived: queue.Queue[int] = queue.Queue()

    def job(data: Any) -> dict[str, Any]:
        arrived.put(data["n"])
        gate.wait(WAIT)
        return {}

    iii = serving(engine, function_id, job)
    try:
        for n in range(30):
            iii.trigger({"function_id": function_id, "payload": {"n": n},
                         "action": TriggerAction.Enqueue(queue=name)})
        first = {arrived.get(timeout=WAIT) for _ in range(10)}  # the default 10 slots
        engine.disk_full(True)
        gate.set()  # the ten answer: their acks, then the next take, fail
        engine.wait_for_line(NAMED_PREFIX + name)
        engine.disk_full(False)
        rest = {arrived.get(timeout=WAIT) for _ in range(20)}
        assert first | rest == set(range(30))
        # A refused ack is one line of the store's, not a delivery task crashing with a
        # traceback (the message stays in flight in the file, delivered again at a restart).
        logged = []
        while not engine.lines.empty():
            logged.append(engine.lines.get())
        assert not [line for line in logged if "crashed" in line or "Traceback" in line], logged
    finally:
        gate.set()
        iii.shutdown()
        engine.stop()


def test_a_retry_due_while_the_disk_is_full_runs_once_it_has_room(tmp_path: Path) -> None:
    """A failed delivery waits out its backoff, then goes back on the queue: that write
    failing (a full disk) left the message in flight until a restart."""
    function_id, name = unique("files::flaky"), unique("jobs")
    config = tmp_path / "iii-config.yaml"
    config.write_text("workers:\n  - name: iii-queue\n    config:\n      queue_configs:\n"
                      f"        {name}: {{backoff_ms: 3000}}\n")
    engine = LoggedEngine("--queue-file", str(tmp_path / "q.db"), "--config", str(config))
    attempts: queue.Queue[int] = queue.Queue()
    gate = threading.Event()

    def flaky(data: Any) -> dict[str, Any]:
        attempts.put(data["n"])
        if attempts.qsize() == 1 and not gate.is_set():
            gate.set()
            raise RuntimeError("first attempt fails")
        return {}

    iii = serving(engine, function_id, flaky)
    try:
        iii.trigger({"function_id": function_id, "payload": {"n": 1},
                     "action": TriggerAction.Enqueue(queue=name)})
        assert attempts.get(timeout=WAIT) == 1
        engine.disk_full(True)  # within the 3 s backoff
        engine.wait_for_line("retry")
        engine.disk_full(False)
        assert attempts.get(timeout=WAIT) == 1
    finally:
        iii.shutdown()
        engine.stop()


def test_a_state_write_the_full_disk_refuses_names_the_file(tmp_path: Path) -> None:
    """The caller's error was sqlite's alone ("disk I/O error") and the engine logged
    nothing: the operator had no line saying which file could not be written."""
    path = tmp_path / "state.db"
    engine = LoggedEngine("--state-file", str(path))
    iii = register_worker(engine.url, InitOptions(
        worker_name=unique("files"), otel={"enabled": False}, enable_metrics_reporting=False))
    try:
        call(iii, "state::set", {"scope": "s", "key": "before", "value": 1})
        engine.disk_full(True)
        with pytest.raises(Exception, match=f"invocation_failed: {path}: cannot write it"):
            call(iii, "state::set", {"scope": "s", "key": "during", "value": 2})
        assert "ERROR" in engine.wait_for_line(str(path))
        engine.disk_full(False)
        call(iii, "state::set", {"scope": "s", "key": "after", "value": 3})
        assert call(iii, "state::list", {"scope": "s"}) == [1, 3]
    finally:
        iii.shutdown()
        engine.stop()
