"""Issue 12 item 11: the engine pings its workers and drops one that stops answering.

The frozen worker is a real process (a raw-frame echo worker on 127.0.0.1) stopped with
SIGSTOP, so nothing in it can answer: not the websocket library, not the handler. The
engine's timers are set in milliseconds.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator

import pytest
from raw_engine_client import RawWorker, wait_until

from iii_rx.engine import Engine

INTERVAL_MS, TIMEOUT_MS = 100, 300

WORKER = r"""
import asyncio, json, sys
from websockets.asyncio.client import connect

async def main(url, function_id):
    # No pings of its own: only the engine's keepalive is under test.
    async with connect(url, ping_interval=None, compression=None) as ws:
        json.loads(await ws.recv())  # workerregistered
        await ws.send(json.dumps({"type": "registerfunction", "id": function_id}))
        await ws.send(json.dumps({"type": "invokefunction", "invocation_id": "reg",
                                  "function_id": "engine::workers::register",
                                  "data": {"name": "frozen"}}))
        async for message in ws:
            frame = json.loads(message)
            if frame.get("invocation_id") == "reg":
                print("ready", flush=True)
            elif frame.get("type") == "invokefunction":
                await ws.send(json.dumps({"type": "invocationresult",
                                          "invocation_id": frame["invocation_id"],
                                          "function_id": frame["function_id"],
                                          "result": frame.get("data")}))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


Processes = list[asyncio.subprocess.Process]


@pytest.fixture
async def processes() -> AsyncIterator[Processes]:
    started: Processes = []
    yield started
    for proc in started:
        if proc.returncode is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
        await asyncio.wait_for(proc.wait(), 10)


async def start_worker(url: str, function_id: str,
                       processes: Processes) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", WORKER, url, function_id,
                                                stdout=asyncio.subprocess.PIPE)
    processes.append(proc)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert line.strip() == b"ready", line
    return proc


async def test_a_frozen_worker_is_dropped_and_its_calls_stopped(
        processes: Processes) -> None:
    async with Engine(port=0, namespace_grace_ms=300, ping_interval_ms=INTERVAL_MS,
                      ping_timeout_ms=TIMEOUT_MS) as engine:
        proc = await start_worker(engine.url, "frozen::echo", processes)
        caller = await RawWorker.connect(engine.url)
        await caller.register("caller")
        [conn] = [c for c in engine.registry.workers.values() if c.name == "frozen"]

        # Alive: it answers pings (and calls) and is not dropped.
        await wait_until(lambda: conn.pongs >= 3)
        assert (await caller.call("frozen::echo", {"n": 1}))["result"] == {
            "n": 1, "_caller_worker_id": caller.worker_id}
        assert conn.dropped is None

        os.kill(proc.pid, signal.SIGSTOP)
        invocation_id = await caller.invoke("frozen::echo", {"n": 2})
        bound = (INTERVAL_MS + TIMEOUT_MS) / 1000
        answer = await caller.recv("invocationresult", timeout=bound + 5,
                                   where=lambda f: f.get("invocation_id") == invocation_id)
        assert answer["error"]["code"] == "invocation_stopped"
        assert conn.dropped is not None and "ping" in conn.dropped
        assert conn.id not in engine.registry.workers
        workers = await caller.result_of("engine::workers::list", {})
        assert all(w.get("name") != "frozen" for w in workers["workers"])
        gone = await caller.call("frozen::echo", {"n": 3})
        assert gone["error"]["code"] == "function_not_found"


async def test_keepalive_can_be_disabled(processes: Processes) -> None:
    async with Engine(port=0, namespace_grace_ms=300, ping_interval_ms=0) as engine:
        proc = await start_worker(engine.url, "frozen::echo", processes)
        [conn] = [c for c in engine.registry.workers.values() if c.name == "frozen"]
        os.kill(proc.pid, signal.SIGSTOP)
        caller = await RawWorker.connect(engine.url)
        # Nothing pings it: a call goes out and simply waits, the worker stays listed.
        invocation_id = await caller.invoke("frozen::echo", {})
        await caller.nothing("invocationresult", within=(INTERVAL_MS + TIMEOUT_MS) / 1000 * 2)
        assert conn.pongs == 0 and conn.dropped is None
        assert conn.id in engine.registry.workers and invocation_id in conn.inbound
        os.kill(proc.pid, signal.SIGCONT)  # so that stopping the engine need not abort it
