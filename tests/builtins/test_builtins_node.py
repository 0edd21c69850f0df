"""The Node ``iii-sdk`` 0.22 (installed for the interop tests, ``make node``) as a client of the
state and pub/sub workers: the same calls and deliveries as the official Python SDK gets."""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from builtins_helpers import WAIT, unique, wait_bound

from iii_rx.engine import EngineThread

HERE = Path(__file__).resolve().parent
SDK = HERE.parent / "interop" / "node" / "node_modules" / "iii-sdk" / "package.json"


class NodeClient:
    def __init__(self, url: str, name: str, topic: str, scope: str) -> None:
        node = shutil.which("node")
        if node is None:
            pytest.fail("node is not installed: the Node tests need Node.js >= 18")
        if not SDK.exists():
            pytest.fail("the Node iii-sdk is not installed in tests/interop/node: run `make node`")
        self.proc = subprocess.Popen([node, str(HERE / "node_builtins.mjs"), url, name, topic,
                                      scope], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        self.events: dict[str, queue.Queue[dict[str, Any]]] = {
            kind: queue.Queue() for kind in ("result", "state", "message", "ready", "error")}
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            item = json.loads(line)
            self.events[item["event"]].put(item)

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def next(self, event: str) -> dict[str, Any]:
        assert self.events["error"].empty(), self.events["error"].get()
        return self.events[event].get(timeout=WAIT)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture
def node(engine: EngineThread) -> Iterator[tuple[NodeClient, str, str, str]]:
    name, topic, scope = unique("node"), unique("topic"), unique("scope")
    client = NodeClient(engine.url, name, topic, scope)
    try:
        yield client, name, topic, scope
    finally:
        client.close()


def test_node_sdk_state_and_pubsub(engine: EngineThread,
                                   node: tuple[NodeClient, str, str, str]) -> None:
    client, name, topic, _scope = node
    wait_bound(engine, f"{name}.sub")
    wait_bound(engine, f"{name}.state")
    client.go()
    results = {}
    for _ in range(6):
        item = client.next("result")
        results[item["step"]] = item["value"]
    assert results["set"] == {"old_value": None, "new_value": {"count": 0, "name": "initial"}}
    updated = {"count": 5, "name": "initial", "events": [{"kind": "chunk"}]}
    assert results["update"] == {"old_value": {"count": 0, "name": "initial"},
                                 "new_value": updated}
    assert results["get"] == updated and results["list"] == [updated]
    assert results["delete"] == updated and results["missing"] is None
    kinds = [client.next("state")["data"]["event_type"] for _ in range(3)]
    assert kinds == ["state:created", "state:updated", "state:deleted"]

    client.next("ready")
    messages: list[Any] = [{"id": 1, "text": "héllo", "list": [1, None, 2.5]}, "plain", 3]
    for message in messages:
        assert engine.call("publish", {"topic": topic, "data": message}) is None
    assert [client.next("message")["data"] for _ in messages] == messages
