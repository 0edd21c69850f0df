"""The engine's fast socket lane keeps the library's behaviour, over a raw TCP socket.

Several frames of every kind arrive in one TCP write: complete text and binary frames (the
lane), a ping, a fragmented message, a frame cut in two across writes (the library). Each call
is answered, in arrival order, and the ping too. Bad UTF-8 still closes with 1007, an unmasked
frame with 1002.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct

import pytest

from iii_rx.engine import Engine
from iii_rx.engine.hotsocket import HotConnection


def frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True,
          key: bytes | None = None) -> bytes:
    """One client frame (masked, as RFC 6455 requires of clients, unless told otherwise)."""
    head = bytes(((0x80 if fin else 0) | opcode,))
    bit = 0x80 if masked else 0
    n = len(payload)
    if n < 126:
        head += bytes((bit | n,))
    elif n < 65536:
        head += bytes((bit | 126,)) + struct.pack("!H", n)
    else:
        head += bytes((bit | 127,)) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    key = key or os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def call(invocation_id: str, pad: int = 0) -> bytes:
    """An invokefunction of a missing function: answered at once with function_not_found."""
    return json.dumps({"type": "invokefunction", "function_id": "no::such",
                       "invocation_id": invocation_id, "data": {"pad": "x" * pad}}).encode()


class RawSocket:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, engine: Engine) -> RawSocket:
        reader, writer = await asyncio.open_connection("127.0.0.1", engine.port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    async def next_frame(self) -> tuple[int, bytes]:
        b0, b1 = await self.reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return b0 & 0x0F, await self.reader.readexactly(n)

    async def frames(self, count: int) -> list[tuple[int, bytes]]:
        return [await asyncio.wait_for(self.next_frame(), 10) for _ in range(count)]


async def test_frames_of_every_kind_in_one_write_are_answered_in_order(engine: Engine) -> None:
    sock = await RawSocket.open(engine)
    _, first = (await sock.frames(1))[0]
    assert json.loads(first)["type"] == "workerregistered"
    fragmented = call("3")
    sock.writer.write(
        frame(1, call("1")) + frame(2, call("2")) + frame(9, b"hello")
        + frame(1, fragmented[:10], fin=False) + frame(0, fragmented[10:])
        + frame(1, call("4", pad=300)))
    await sock.writer.drain()
    got = await sock.frames(5)
    assert (0xA, b"hello") in got  # the pong (the library answers it as it reads it)
    ids = [json.loads(payload)["invocation_id"] for op, payload in got if op == 1]
    assert ids == ["1", "2", "3", "4"]
    sock.writer.close()


class Reads:
    """Counts the bytes the engine's connections were handed (``data_received``), so that a
    test writes the second part of a cut frame only once the engine has read the first."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.total = 0
        self._changed = asyncio.Event()
        received = HotConnection.data_received

        def counting(conn: HotConnection, data: bytes) -> None:
            self.total += len(data)
            self._changed.set()
            received(conn, data)

        monkeypatch.setattr(HotConnection, "data_received", counting)

    async def reach(self, total: int) -> None:
        while self.total < total:
            self._changed.clear()
            await asyncio.wait_for(self._changed.wait(), 10)


async def test_a_frame_cut_across_writes_and_the_next_one(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cut frame's payload looks like a frame of its own: read at the wrong offset, the
    engine would answer "evil" (a binary message that is not JSON gets no answer)."""
    reads = Reads(monkeypatch)
    sock = await RawSocket.open(engine)
    await sock.frames(1)  # the engine answered: it has read the handshake
    # A zero mask puts the payload on the wire as is; a 14-byte header.
    cut_frame = frame(2, frame(1, call("evil")) + b" " * 70_000, key=bytes(4))
    whole = cut_frame + frame(1, call("b"))
    for cut in (1, 5, 11, 14, 20, len(cut_frame), len(whole) - 3):
        read = reads.total
        sock.writer.write(whole[:cut])
        await sock.writer.drain()
        await reads.reach(read + cut)  # the engine read the whole first part, on its own
        assert reads.total == read + cut
        sock.writer.write(whole[cut:])
        await sock.writer.drain()
        ((_, payload),) = await sock.frames(1)
        assert json.loads(payload)["invocation_id"] == "b", cut
    sock.writer.close()


async def test_bad_utf8_after_good_frames_closes_with_1007(engine: Engine) -> None:
    sock = await RawSocket.open(engine)
    await sock.frames(1)
    sock.writer.write(frame(1, call("ok")) + frame(1, b"\xff\xfe not utf-8") + frame(1, call("x")))
    got = await sock.frames(2)
    assert json.loads(got[0][1])["invocation_id"] == "ok"
    assert got[1][0] == 8 and struct.unpack("!H", got[1][1][:2])[0] == 1007


async def test_an_unmasked_frame_closes_with_1002(engine: Engine) -> None:
    sock = await RawSocket.open(engine)
    await sock.frames(1)
    sock.writer.write(frame(1, call("ok")) + frame(1, call("bad"), masked=False))
    opcode, payload = await asyncio.wait_for(sock.next_frame(), 10)
    while opcode != 8:  # the answer to "ok" may or may not make it before the close
        opcode, payload = await asyncio.wait_for(sock.next_frame(), 10)
    assert struct.unpack("!H", payload[:2])[0] == 1002
