"""A Node `iii-sdk` 0.22.1 worker and a Python `iii-sdk` 0.25 worker call each other through
the embedded engine (issue 2, "Done when").

The Node worker is `node/worker.mjs`, driven over stdin/stdout with JSON lines. Node is a
requirement of the suite: when it or the installed SDK is missing the tests fail (run
`make node`), they never skip.

`III_RX_INTEROP_ENGINE_URL=ws://127.0.0.1:P` runs the same tests against an engine that is
already running (for instance the Rust engine, to check by hand that both behave alike; the
Rust engine 0.23 drops an `invokefunction` without `data`, docs/protocol.md §11 row 4, so
`test_node_call_without_payload_reaches_python` times out there by design).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
from iii import InitOptions, InvocationError, TriggerAction, register_worker
from interop_helpers import WAIT, wait_until

NODE_DIR = Path(__file__).resolve().parent / "node"
MISSING = object()

PY = "pyside"
NODE = "nodeside"
NODE_FUNCTIONS = {f"{NODE}::{n}" for n in ("echo", "fail", "record", "hang", "forward")}


# --------------------------------------------------------------------------- helpers


class NodeWorker:
    """`node worker.mjs URL NAME PREFIX` as a subprocess, spoken to in JSON lines."""

    def __init__(self, url: str, name: str, prefix: str) -> None:
        node = shutil.which("node")
        if node is None:
            pytest.fail("node is not installed: the Node interop tests need Node.js >= 18")
        if not (NODE_DIR / "node_modules" / "iii-sdk" / "package.json").exists():
            pytest.fail(f"the Node iii-sdk is not installed in {NODE_DIR}: run `make node`")
        self.name = name
        self._log: IO[bytes] = tempfile.TemporaryFile()
        env = {**os.environ, "OTEL_ENABLED": "false"}
        self.proc = subprocess.Popen(
            [node, "worker.mjs", url, name, prefix],
            cwd=NODE_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=env,
        )
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._replies: dict[int, queue.Queue[dict[str, Any]]] = {}
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()
        self.next_event("started")

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if not line.startswith("{"):
                continue
            message = json.loads(line)
            if "id" in message:
                with self._lock:
                    box = self._replies.pop(message["id"], None)
                if box is not None:
                    box.put(message)
            else:
                self.events.put(message)
        self.events.put({"event": "exited"})

    def stderr(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-4000:]

    def next_event(self, kind: str, timeout: float = WAIT) -> dict[str, Any]:
        """The next event of `kind` the worker printed (other events are dropped)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {kind!r} event from {self.name}") from None
            if event["event"] == kind:
                return event
            if event["event"] == "exited":
                raise AssertionError(f"{self.name} exited: {self.stderr()}")

    def call(
        self,
        function_id: str,
        payload: Any = MISSING,
        *,
        void: bool = False,
        timeout: float = WAIT,
    ) -> dict[str, Any]:
        """Have the Node worker `trigger` a function; its reply as a dict."""
        command: dict[str, Any] = {"id": next(self._ids), "op": "call", "function_id": function_id}
        if payload is not MISSING:
            command["payload"] = payload
        if void:
            command["void"] = True
        command["timeout_ms"] = int(timeout * 1000)
        box: queue.Queue[dict[str, Any]] = queue.Queue()
        with self._lock:
            self._replies[command["id"]] = box
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        try:
            return box.get(timeout=timeout + 5)
        except queue.Empty:
            raise AssertionError(f"{self.name} never answered: {self.stderr()}") from None

    def close(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError):  # a killed worker's pipe is gone
                self.proc.stdin.close()
        if self.proc.poll() is None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


@dataclass
class PyWorker:
    client: Any
    name: str
    recorded: queue.Queue[Any]
    calls: int = 0


def list_functions(client: Any) -> list[dict[str, Any]]:
    return list(client.trigger({"function_id": "engine::functions::list", "payload": {}})[
        "functions"
    ])


def function_ids(client: Any) -> set[str]:
    return {f["function_id"] for f in list_functions(client)}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def engine_url() -> Iterator[str]:
    external = os.environ.get("III_RX_INTEROP_ENGINE_URL")
    if external:
        yield external
        return
    from iii_rx.engine import Engine

    handle = Engine.start_in_thread()
    try:
        yield handle.url
    finally:
        handle.stop()


@pytest.fixture(scope="module")
def py_worker(engine_url: str) -> Iterator[PyWorker]:
    name = f"interop-py-{uuid.uuid4().hex[:8]}"
    options = InitOptions(
        worker_name=name,
        otel={"enabled": False},
        enable_metrics_reporting=False,
        invocation_timeout_ms=int(WAIT * 1000),
    )
    client = register_worker(engine_url, options)
    recorded: queue.Queue[Any] = queue.Queue()

    def echo(data: Any) -> Any:
        return {"echoed": data, "runtime": "python"}

    def fail(data: Any) -> Any:
        raise ValueError(f"python handler refused: {data['reason']}")

    def record(data: Any) -> None:
        recorded.put(data)

    client.register_function(f"{PY}::echo", echo, description="Echo the input back")
    client.register_function(f"{PY}::fail", fail)
    client.register_function(f"{PY}::record", record)
    try:
        yield PyWorker(client, name, recorded)
    finally:
        client.shutdown()


@pytest.fixture(scope="module")
def node_worker(engine_url: str, py_worker: PyWorker) -> Iterator[NodeWorker]:
    worker = NodeWorker(engine_url, f"interop-node-{uuid.uuid4().hex[:8]}", NODE)
    try:
        wanted = NODE_FUNCTIONS | {f"{PY}::echo", f"{PY}::fail", f"{PY}::record"}
        wait_until(lambda: wanted <= function_ids(py_worker.client), "both workers' functions")
        yield worker
    finally:
        worker.close()


# --------------------------------------------------------------------------- sync calls


def test_node_calls_python_sync(node_worker: NodeWorker) -> None:
    reply = node_worker.call(f"{PY}::echo", {"n": 1, "text": "héllo", "list": [1, None, True]})
    assert reply["ok"], reply
    result = reply["result"]
    assert result["runtime"] == "python"
    echoed = {k: v for k, v in result["echoed"].items() if k != "_caller_worker_id"}
    assert echoed == {"n": 1, "text": "héllo", "list": [1, None, True]}


def test_python_calls_node_sync(py_worker: PyWorker, node_worker: NodeWorker) -> None:
    payload = {"n": 2, "nested": {"a": [1.5, "b"]}}
    result = py_worker.client.trigger({"function_id": f"{NODE}::echo", "payload": payload})
    assert result["runtime"] == "node"
    echoed = {k: v for k, v in result["echoed"].items() if k != "_caller_worker_id"}
    assert echoed == payload


def test_python_calls_node_which_calls_python(
    py_worker: PyWorker, node_worker: NodeWorker
) -> None:
    """A Node handler that calls back into Python while its own call is in flight."""
    request = {"target": f"{PY}::echo", "payload": {"hop": 2}}
    result = py_worker.client.trigger({"function_id": f"{NODE}::forward", "payload": request})
    assert result["forwarded"]["runtime"] == "python"
    assert result["forwarded"]["echoed"]["hop"] == 2


def test_node_call_without_payload_reaches_python(node_worker: NodeWorker) -> None:
    """Node omits `data` when the payload is undefined: the handler gets null.

    See docs/protocol.md §11 row 4.
    """
    reply = node_worker.call(f"{PY}::echo")
    assert reply["ok"], reply
    assert reply["result"] == {"echoed": None, "runtime": "python"}


# --------------------------------------------------------------------------- void calls


def test_node_calls_python_void(py_worker: PyWorker, node_worker: NodeWorker) -> None:
    token = uuid.uuid4().hex
    reply = node_worker.call(f"{PY}::record", {"token": token}, void=True)
    assert reply == {"id": reply["id"], "ok": True, "result": None}
    received = py_worker.recorded.get(timeout=WAIT)
    assert received["token"] == token


def test_python_calls_node_void(py_worker: PyWorker, node_worker: NodeWorker) -> None:
    token = uuid.uuid4().hex
    request = {"function_id": f"{NODE}::record", "payload": {"token": token}}
    result = py_worker.client.trigger({**request, "action": TriggerAction.Void()})
    assert result is None
    event = node_worker.next_event("recorded")
    assert event["data"]["token"] == token


# --------------------------------------------------------------------------- errors


def test_python_error_reaches_node(node_worker: NodeWorker) -> None:
    reply = node_worker.call(f"{PY}::fail", {"reason": "r1"})
    assert not reply["ok"]
    assert reply["code"] == "invocation_failed"
    # The Node SDK's InvocationError message is "code: message".
    assert reply["message"] == "invocation_failed: python handler refused: r1"
    assert "ValueError" in reply["stacktrace"]


def test_node_error_reaches_python(py_worker: PyWorker, node_worker: NodeWorker) -> None:
    with pytest.raises(InvocationError) as caught:
        py_worker.client.trigger({"function_id": f"{NODE}::fail", "payload": {"reason": "r2"}})
    assert caught.value.code == "invocation_failed"
    assert caught.value.message == "node handler refused: r2"
    assert "Error: node handler refused: r2" in (caught.value.stacktrace or "")


def test_node_calls_missing_function(node_worker: NodeWorker) -> None:
    reply = node_worker.call(f"{PY}::missing", {})
    assert not reply["ok"]
    assert reply["code"] == "function_not_found"
    assert f"{PY}::missing" in reply["message"]


def test_python_calls_missing_node_function(py_worker: PyWorker, node_worker: NodeWorker) -> None:
    with pytest.raises(InvocationError) as caught:
        py_worker.client.trigger({"function_id": f"{NODE}::missing", "payload": {}})
    assert caught.value.code == "function_not_found"


# --------------------------------------------------------------------------- discovery


def test_functions_list_shows_node_functions(py_worker: PyWorker, node_worker: NodeWorker) -> None:
    rows = {f["function_id"]: f for f in list_functions(py_worker.client)}
    assert NODE_FUNCTIONS <= rows.keys()
    for function_id in NODE_FUNCTIONS:
        assert rows[function_id]["worker_name"] == node_worker.name
        assert rows[function_id]["namespace"] == "default"
    assert rows[f"{NODE}::echo"].get("description") == "Echo the input back"


def test_node_lists_python_functions(py_worker: PyWorker, node_worker: NodeWorker) -> None:
    reply = node_worker.call("engine::functions::list", {})
    assert reply["ok"], reply
    rows = {f["function_id"]: f for f in reply["result"]["functions"]}
    assert rows[f"{PY}::echo"]["worker_name"] == py_worker.name
    assert NODE_FUNCTIONS <= rows.keys()


def test_workers_list_shows_node_worker(py_worker: PyWorker, node_worker: NodeWorker) -> None:
    listing = py_worker.client.trigger({"function_id": "engine::workers::list", "payload": {}})
    rows = {w["name"]: w for w in listing["workers"]}
    assert rows[node_worker.name]["runtime"] == "node"
    assert rows[node_worker.name]["function_count"] == len(NODE_FUNCTIONS)
    assert rows[py_worker.name]["runtime"] == "python"


# --------------------------------------------------------------------------- disconnect


def test_killing_node_worker_mid_call_stops_python_call(
    engine_url: str, py_worker: PyWorker, node_worker: NodeWorker
) -> None:
    doomed = NodeWorker(engine_url, f"interop-node-doomed-{uuid.uuid4().hex[:8]}", "nodedoomed")
    try:
        wait_until(lambda: "nodedoomed::hang" in function_ids(py_worker.client), "doomed worker")
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            request = {"function_id": "nodedoomed::hang", "payload": {"n": 3}}
            pending = pool.submit(py_worker.client.trigger, request)
            assert doomed.next_event("hanging")["data"]["n"] == 3
            doomed.proc.kill()
            with pytest.raises(InvocationError) as caught:
                pending.result(timeout=WAIT)
        assert caught.value.code == "invocation_stopped"
        wait_until(
            lambda: not any(f.startswith("nodedoomed::") for f in function_ids(py_worker.client)),
            "the killed worker's functions to be unregistered",
        )
    finally:
        doomed.close()
    # The surviving Node worker is unaffected.
    assert node_worker.call(f"{PY}::echo", {"after": True})["ok"]
