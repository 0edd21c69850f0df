"""A minimal raw-frame worker for engine tests: plain websockets + JSON, no SDK.

It keeps frames it was not asked for in a backlog, so a test can wait for one kind of frame
while others (an invocation, a trigger delivery) arrive in between.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any, ClassVar

from websockets.asyncio.client import ClientConnection, connect

Frame = dict[str, Any]


class RawWorker:
    """One websocket to the engine, speaking protocol frames as dicts."""

    live: ClassVar[set[RawWorker]] = set()
    """Workers not closed yet: the engine tests' conftest closes them after each test."""

    def __init__(self, ws: ClientConnection, hello: Frame) -> None:
        self.ws = ws
        self.worker_id: str = hello["worker_id"]
        self.reattach_token: str | None = hello.get("reattach_token")
        self.hello = hello
        self._backlog: list[Frame] = []
        self.loop = asyncio.get_running_loop()
        RawWorker.live.add(self)

    @classmethod
    async def connect(cls, url: str, **kwargs: Any) -> RawWorker:
        ws = await connect(url, compression=None, max_size=2**27, **kwargs)
        hello = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert hello["type"] == "workerregistered", hello
        return cls(ws, hello)

    async def send(self, frame: Frame | str) -> None:
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def recv(self, kind: str | None = None, *, timeout: float = 5.0,
                   where: Callable[[Frame], bool] | None = None) -> Frame:
        """The next frame of ``kind`` (and matching ``where``), from the backlog first."""

        def wanted(frame: Frame) -> bool:
            return (kind is None or frame.get("type") == kind) and (where is None or where(frame))

        for i, frame in enumerate(self._backlog):
            if wanted(frame):
                return self._backlog.pop(i)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise asyncio.TimeoutError(f"no {kind or 'frame'} within {timeout} s")
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), remaining))
            if wanted(frame):
                return frame
            self._backlog.append(frame)

    async def nothing(self, kind: str | None = None, *, within: float = 0.2) -> None:
        """Assert that no frame of ``kind`` arrives within ``within`` seconds."""
        try:
            frame = await self.recv(kind, timeout=within)
        except asyncio.TimeoutError:
            return
        raise AssertionError(f"unexpected frame {frame}")

    async def register(self, name: str | None = None, namespace: str | None = None,
                       pid: int | None = 1234, **extra: Any) -> None:
        """Send ``engine::workers::register`` as the SDKs do (a void call)."""
        data: Frame = {"runtime": "raw", "version": "0", "name": name, "namespace": namespace,
                       **extra}
        if pid is not None:
            data["pid"] = pid
        await self.send({"type": "invokefunction", "function_id": "engine::workers::register",
                         "action": {"type": "void"}, "data": data})

    async def register_function(self, function_id: str, **fields: Any) -> None:
        await self.send({"type": "registerfunction", "id": function_id, **fields})

    async def invoke(self, function_id: str, data: Any = None, **fields: Any) -> str:
        """Send a sync call; returns its invocation id."""
        invocation_id = fields.pop("invocation_id", None) or str(uuid.uuid4())
        await self.send({"type": "invokefunction", "function_id": function_id, "data": data,
                         "invocation_id": invocation_id, **fields})
        return invocation_id

    async def call(self, function_id: str, data: Any = None, *, timeout: float = 5.0,
                   **fields: Any) -> Frame:
        """Sync call; returns the ``invocationresult`` frame."""
        invocation_id = await self.invoke(function_id, data, **fields)
        return await self.recv("invocationresult", timeout=timeout,
                               where=lambda f: f.get("invocation_id") == invocation_id)

    async def result_of(self, function_id: str, data: Any = None, **fields: Any) -> Any:
        """Sync call that must succeed; returns ``result``."""
        frame = await self.call(function_id, data, **fields)
        assert "error" not in frame, frame
        return frame.get("result")

    async def serve_once(self, reply: Callable[[Frame], Frame] | None = None,
                         *, timeout: float = 5.0) -> Frame:
        """Answer the next ``invokefunction``: echo ``data`` or send ``reply(frame)``."""
        frame = await self.recv("invokefunction", timeout=timeout)
        if frame.get("invocation_id") is not None:
            body = reply(frame) if reply is not None else {"result": frame.get("data")}
            await self.send({"type": "invocationresult", "invocation_id": frame["invocation_id"],
                             "function_id": frame["function_id"], **body})
        return frame

    async def close(self) -> None:
        RawWorker.live.discard(self)
        await self.ws.close()


async def close_live_workers() -> None:
    """Close the workers a test left open on this loop, so no socket outlives its loop."""
    loop = asyncio.get_running_loop()
    for worker in list(RawWorker.live):
        if worker.loop is loop:
            await worker.close()
        else:
            RawWorker.live.discard(worker)  # another loop's (asyncio.run): not closable here


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``condition`` (no event exists for engine-internal state) until true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)
