"""The client's fast socket lane, against a websockets server writing raw bursts.

The server is the library's own (its parser refuses an unmasked or badly masked client frame
and bad UTF-8, so every answer it reads proves the client framed it right). It writes calls as
raw bytes, many frames in one TCP write: text and binary calls, a ping, a fragmented call and
a call cut across two writes. Every call must be answered once, in the order it was sent.
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets

import iii_rx
from iii_rx.wslane import HotClientConnection

FUNCTION = "lane::echo"


def server_frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """One unmasked frame, as a server writes them."""
    head = bytes(((0x80 if fin else 0) | opcode,))
    n = len(payload)
    if n < 126:
        return head + bytes((n,)) + payload
    if n < 65536:
        return head + bytes((126,)) + struct.pack("!H", n) + payload
    return head + bytes((127,)) + struct.pack("!Q", n) + payload


def call(invocation_id: str, pad: int = 0) -> bytes:
    return json.dumps({"type": "invokefunction", "function_id": FUNCTION,
                       "invocation_id": invocation_id,
                       "data": {"id": invocation_id, "pad": "é" * pad}}).encode()


class ClientReads:
    """Watches what the client's connections are handed (``data_received``): :attr:`ended` is
    set once a read ends with :attr:`wait_for`, so the burst writes the rest of the cut frame
    only after the client holds its first part (without that, both writes may arrive in one
    read and the cut goes untested)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.wait_for: bytes | None = None
        self.ended = asyncio.Event()
        received = HotClientConnection.data_received

        def watching(conn: HotClientConnection, data: bytes) -> None:
            if self.wait_for is not None and data.endswith(self.wait_for):
                self.ended.set()
            received(conn, data)

        monkeypatch.setattr(HotClientConnection, "data_received", watching)


class BurstEngine:
    """Greets, acks the worker registration, then writes the calls of ``burst`` raw."""

    def __init__(self, client_reads: ClientReads) -> None:
        self.client_reads = client_reads
        self.port = 0
        self.answers: list[dict[str, Any]] = []
        self.done = asyncio.Event()
        self.expected = 0

    async def handler(self, ws: Any) -> None:
        await ws.send(json.dumps({"type": "workerregistered", "worker_id": "w1"}))
        async for message in ws:
            frame = json.loads(message)
            if frame.get("function_id") == "engine::workers::register":
                await ws.send(json.dumps({"type": "invocationresult", "function_id":
                                          frame["function_id"], "result": {"success": True},
                                          "invocation_id": frame["invocation_id"]}))
            elif frame.get("type") == "registerfunction" and frame.get("id") == FUNCTION:
                await self.burst(ws)
            elif frame.get("type") == "invocationresult":
                self.answers.append(frame)
                if len(self.answers) >= self.expected:
                    self.done.set()

    async def burst(self, ws: Any) -> None:
        many = b"".join(server_frame(1, call(f"m{i}")) for i in range(300))
        fragmented = call("frag", pad=200)
        cut = server_frame(1, call("cut", pad=40_000))  # a 16-bit length, cut mid-payload
        first = (server_frame(1, call("t1")) + server_frame(2, call("b1"))
                 + server_frame(9, b"are you there") + many
                 + server_frame(1, fragmented[:7], fin=False)
                 + server_frame(0, fragmented[7:50], fin=False)
                 + server_frame(0, fragmented[50:]) + server_frame(1, call("t2"))
                 + cut[:3000])
        self.expected = 2 + 300 + 1 + 1 + 1 + 1
        self.client_reads.wait_for = first[-64:]
        ws.transport.write(first)
        await asyncio.wait_for(self.client_reads.ended.wait(), 10)
        ws.transport.write(cut[3000:] + server_frame(1, call("last")))

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


@pytest.fixture
async def burst_engine(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[BurstEngine]:
    engine = BurstEngine(ClientReads(monkeypatch))
    async with websockets.serve(engine.handler, "127.0.0.1", 0, compression=None) as server:
        engine.port = server.sockets[0].getsockname()[1]
        yield engine


async def test_every_call_of_a_raw_burst_is_answered_in_order(burst_engine: BurstEngine,
                                                               name: str) -> None:
    async def echo(data: Any) -> Any:  # async: answered in the order the calls came
        return data

    async with iii_rx.connect(burst_engine.url, name=name) as iii:
        iii.register_function(FUNCTION, echo)
        await asyncio.wait_for(burst_engine.done.wait(), 20)
    ids = [answer["invocation_id"] for answer in burst_engine.answers]
    assert ids == ["t1", "b1", *(f"m{i}" for i in range(300)), "frag", "t2", "cut", "last"]
    for answer in burst_engine.answers:
        assert answer["result"]["id"] == answer["invocation_id"]
    assert burst_engine.answers[-2]["result"]["pad"] == "é" * 40_000
