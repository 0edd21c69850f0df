"""Channels between iii_rx and the official Python ``iii-sdk`` 0.25, both ways, via our engine."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Awaitable, Callable
from typing import Any

from channel_helpers import wait_registered
from iii.helpers import create_channel_async as official_create_channel

import iii_rx
from iii_rx.channels import ChannelReader, ChannelWriter, encode_item
from iii_rx.engine import Engine

PAYLOAD = os.urandom(300_000)  # more than one 64 KiB frame


async def test_official_function_writes_an_iii_rx_reader_reads(
        engine: Engine, client: iii_rx.Client, official: Callable[..., Awaitable[Any]]) -> None:
    async def produce(data: dict[str, Any]) -> int:
        writer = data["out"]  # the official SDK made it a live ChannelWriter
        await writer.send_message_async('{"phase": "start"}')
        await writer.write(PAYLOAD)
        await writer.send_message_async('{"phase": "end"}')
        await writer.close_async()
        return len(PAYLOAD)

    worker = await official(engine.url)
    worker.register_function("offchan::produce", produce)
    await wait_registered(client, "offchan::produce")
    channel = await client.create_channel_async()
    messages: list[str] = []
    channel.reader.on_message(messages.append)
    call = asyncio.ensure_future(client.trigger("offchan::produce", {"out": channel.writer_ref}))
    assert await channel.reader.read_all() == PAYLOAD
    assert await call == len(PAYLOAD)
    assert messages == ['{"phase": "start"}', '{"phase": "end"}']


async def test_iii_rx_writes_an_official_function_reads(
        engine: Engine, client: iii_rx.Client, official: Callable[..., Awaitable[Any]]) -> None:
    async def consume(data: dict[str, Any]) -> dict[str, Any]:
        reader = data["in"]
        messages: list[str] = []
        reader.on_message(messages.append)
        content = await reader.read_all()
        return {"sha": hashlib.sha256(content).hexdigest(), "messages": messages}

    worker = await official(engine.url)
    worker.register_function("offchan::consume", consume)
    await wait_registered(client, "offchan::consume")
    channel = await client.create_channel_async()
    call = asyncio.ensure_future(client.trigger("offchan::consume", {"in": channel.reader_ref}))
    async with channel.writer as writer:
        await writer.send_message("hello")
        await writer.write(PAYLOAD)
        await writer.write_obj({"tail": True})
    result = await call
    assert result["messages"] == ["hello"]
    assert result["sha"] == hashlib.sha256(PAYLOAD + encode_item({"tail": True})).hexdigest()


async def test_official_caller_hands_refs_to_an_iii_rx_function(
        engine: Engine, client: iii_rx.Client, official: Callable[..., Awaitable[Any]]) -> None:
    """The official SDK creates the channels; iii_rx resolves its refs into live ends."""

    async def upper(data: dict[str, Any]) -> str:
        source: ChannelReader = data["streams"]["in"]
        sink: ChannelWriter = data["streams"]["out"]
        async with sink:
            async for chunk in source:
                await sink.write(chunk.upper())
        return "ok"

    client.register_function("rxchan::upper", upper)
    worker = await official(engine.url)
    inbound = await official_create_channel(worker)
    outbound = await official_create_channel(worker)

    def call() -> Any:
        return worker.trigger({"function_id": "rxchan::upper", "payload": {
            "streams": {"in": inbound.reader_ref.model_dump(),
                        "out": outbound.writer_ref.model_dump()}}})

    pending = asyncio.ensure_future(asyncio.to_thread(call))
    text = b"abcdefghij" * 20_000
    await inbound.writer.write(text)
    await inbound.writer.close_async()
    assert await outbound.reader.read_all() == text.upper()
    assert await pending == "ok"
