"""The transport against a plain websockets server: what it needs of websockets, and a writer
that crashes.

The batched write reads two undocumented attributes of websockets' asyncio connection
(``protocol`` and ``transport``). The first test pins them: if a websockets release renames
them, it fails here instead of the writer quietly falling back to one ``send`` per frame.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvloop
import websockets
from client_helpers import wait_for
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.protocol import Protocol

from iii_rx import transport as transport_module
from iii_rx.state import ConnectionState, ReconnectConfig
from iii_rx.streams import HotStream
from iii_rx.transport import CALL, Transport, batch_handles

FAST = ReconnectConfig(initial_delay_ms=10, max_delay_ms=50)


@dataclass
class Peer:
    """A websockets server that records what each connection received and how it closed."""

    url: str = ""
    received: list[list[str]] = field(default_factory=list)
    close_codes: list[int | None] = field(default_factory=list)

    async def handler(self, ws: ServerConnection) -> None:
        frames: list[str] = []
        self.received.append(frames)
        try:
            async for message in ws:
                frames.append(message if isinstance(message, str) else message.decode())
        except ConnectionClosed:
            pass
        self.close_codes.append(ws.close_code)

    def frames(self) -> list[str]:
        return [frame for connection in self.received for frame in connection]


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    recorder = Peer()
    async with serve(recorder.handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        recorder.url = f"ws://127.0.0.1:{port}"
        yield recorder


def make_transport(url: str, lost: list[set[str]] | None = None) -> Transport:
    state: HotStream[ConnectionState] = HotStream(asyncio.get_running_loop(), "test.state",
                                                  replay=True)
    return Transport(url, {}, FAST, state, on_open=lambda: ["hello"],
                     on_message=lambda message: None,
                     on_lost=(lost.append if lost is not None else lambda ids: None))


async def open_ready(transport: Transport, peer: Peer, connection: int = 1) -> None:
    """Wait until connection number ``connection`` got its replay, then accept it."""
    await wait_for(lambda: len(peer.received) >= connection
                   and peer.received[connection - 1] == ["hello"], what="the replay")
    transport.set_ready()
    assert transport.state.value is ConnectionState.CONNECTED


async def test_the_batched_write_finds_the_websockets_attributes_it_reads(peer: Peer) -> None:
    async with connect(peer.url, compression=None) as ws:
        handles = batch_handles(ws)
        assert handles is not None, (
            f"websockets {websockets.__version__}: ClientConnection.protocol or .transport "
            "was renamed; iii_rx.transport.batch_handles must follow, or every frame pays "
            "a socket write of its own")
        protocol, transport = handles
        assert isinstance(protocol, Protocol)  # the transport is checked by its methods
        assert protocol is ws.protocol and transport is ws.transport


def test_the_batched_write_is_used_on_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    """uvloop's transports have every method the batched write calls but do not derive from
    ``asyncio.WriteTransport``: checked by class, every frame paid a socket write of its own
    there, on the loop people choose for speed."""
    used: list[bool] = []
    real: Callable[[ClientConnection], Any] = batch_handles

    def spy(ws: ClientConnection) -> Any:
        handles = real(ws)
        used.append(handles is not None)
        return handles

    monkeypatch.setattr(transport_module, "batch_handles", spy)

    async def run() -> None:
        peer = Peer()
        async with serve(peer.handler, "127.0.0.1", 0, compression=None) as server:
            peer.url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
            transport = make_transport(peer.url)
            transport.start()
            try:
                await open_ready(transport, peer)
                texts = [f"frame {i}" for i in range(500)]
                for text in texts:
                    transport.send(text, CALL, None)
                await wait_for(lambda: len(peer.frames()) >= 1 + len(texts), what="every frame")
                assert peer.frames() == ["hello", *texts]
            finally:
                await transport.close()

    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(run())
    finally:
        loop.close()
    assert used == [True]


async def test_batch_handles_decline_a_connection_without_them() -> None:
    class Bare:
        protocol = None

    assert batch_handles(Bare()) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "send-per-frame"])
async def test_frames_leave_in_order_on_both_write_paths(
        peer: Peer, batched: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    used: list[bool] = []
    real: Callable[[ClientConnection], Any] = batch_handles

    def spy(ws: ClientConnection) -> Any:
        handles = real(ws) if batched else None
        used.append(handles is not None)
        return handles

    monkeypatch.setattr(transport_module, "batch_handles", spy)
    transport = make_transport(peer.url)
    transport.start()
    try:
        await open_ready(transport, peer)
        texts = [f"frame {i} " + "x" * (i % 97) for i in range(2000)]
        for text in texts:
            transport.send(text, CALL, None)
        await wait_for(lambda: len(peer.frames()) >= 1 + len(texts), what="every frame")
        assert peer.frames() == ["hello", *texts]
        assert used == [batched]
    finally:
        await transport.close()


async def test_a_crashed_writer_is_logged_and_its_connection_replaced(
        peer: Peer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """What a websockets upgrade renaming an attribute the writer reads used to do: the writer
    died, nothing said so, and the connection read on for ever while every call waited."""
    real = Transport._write_loop
    crashes = 0

    async def write_loop(self: Transport, ws: ClientConnection) -> None:
        nonlocal crashes
        if crashes == 0:
            crashes += 1
            await asyncio.sleep(0.05)  # the outbox holds the replay and the queued calls
            raise AttributeError("'ClientConnection' object has no attribute 'renamed'")
        await real(self, ws)

    monkeypatch.setattr(Transport, "_write_loop", write_loop)
    lost: list[set[str]] = []
    transport = make_transport(peer.url, lost)
    for i in range(3):  # calls made before the first connection wait in the queue
        transport.send(f"call {i}", CALL, f"id-{i}")
    caplog.set_level(logging.ERROR, "iii_rx.transport")
    transport.start()
    try:
        await wait_for(lambda: transport.connections == 2 and len(peer.received) == 2,
                       what="a new connection")
        crash = [r for r in caplog.records if "writer of" in r.getMessage()]
        assert len(crash) == 1 and crash[0].exc_info is not None
        assert isinstance(crash[0].exc_info[1], AttributeError)
        await wait_for(lambda: peer.close_codes[:1] == [1011], what="the close of the first")
        assert peer.received[0] == []  # it never wrote, not even the replay
        await open_ready(transport, peer, connection=2)
        # The crash dropped the replay it was about to write (stale on a closed connection
        # anyway); the calls stayed queued and went out on the new connection, in order.
        await wait_for(lambda: len(peer.received[1]) == 4, what="the queued calls")
        assert peer.received[1] == ["hello", "call 0", "call 1", "call 2"]
        assert lost[0] == {"id-0", "id-1", "id-2"}  # still queued: not failed
    finally:
        await transport.close()
    assert transport.state.value is ConnectionState.DISCONNECTED


async def test_a_frame_that_crashes_the_writer_is_dropped_not_resent(
        peer: Peer, caplog: pytest.LogCaptureFixture) -> None:
    """A frame the batched write cannot encode kills that writer; sent again it would kill
    every new connection, so it is dropped, and its call fails with the connection."""
    lost: list[set[str]] = []
    transport = make_transport(peer.url, lost)
    caplog.set_level(logging.ERROR, "iii_rx.transport")
    transport.start()
    try:
        await open_ready(transport, peer)
        transport.send("before", CALL, "a")
        await wait_for(lambda: peer.frames()[-1:] == ["before"], what="the first call")
        transport.send("bad \ud800", CALL, "poison")  # a lone surrogate: no UTF-8 for it
        transport.send("after", CALL, "b")
        await wait_for(lambda: transport.connections == 2, what="a new connection")
        assert any("writer of" in r.getMessage() and "dropped a frame" in r.getMessage()
                   for r in caplog.records)
        await open_ready(transport, peer, connection=2)
        await wait_for(lambda: peer.received[1][-1:] == ["after"], what="the call after it")
        assert peer.received[0] == ["hello", "before"]
        assert peer.received[1] == ["hello", "after"]
        assert peer.close_codes[0] == 1011
        assert lost[0] == {"b"}  # "a" was written, "poison" dropped: both fail; "b" waits
    finally:
        await transport.close()
