"""iii_rx channel readers and writers through the embedded engine."""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

import pytest
from reactivex import operators as ops

import iii_rx
from iii_rx.channels import (
    Channel,
    ChannelClosedError,
    ChannelError,
    ChannelReader,
    ChannelWriter,
    TruncatedStreamError,
    build_channel_url,
    encode_item,
    resolve_channel_refs,
)
from iii_rx.connect import check_url
from iii_rx.engine import Engine
from iii_rx.operators import batched, cbor_items


async def test_large_writes_are_split_into_64k_frames(client: iii_rx.Client) -> None:
    channel: Channel = await client.create_channel_async()
    data = os.urandom(200_000)
    async with channel.writer as writer:
        await writer.write(data)
    sizes = [len(chunk) async for chunk in channel.reader]
    assert sizes == [65536, 65536, 65536, 200_000 - 3 * 65536]


async def test_text_and_binary_interleave_in_order(client: iii_rx.Client) -> None:
    channel = await client.create_channel_async()
    events: list[Any] = []
    channel.reader.on_message(lambda text: events.append(("text", text)))
    sent: list[Any] = []

    async def write() -> None:
        async with channel.writer as writer:
            for i in range(20):
                if i % 4 == 1:
                    await writer.send_message(f'{{"step": {i}}}')
                    sent.append(("text", f'{{"step": {i}}}'))
                else:
                    chunk = os.urandom(100 + i)
                    await writer.write(chunk)
                    sent.append(("bytes", chunk))

    task = asyncio.create_task(write())
    async for chunk in channel.reader:
        events.append(("bytes", chunk))
    await task
    assert events == sent


async def test_send_message_takes_text_only(client: iii_rx.Client) -> None:
    """Bytes would go out as a binary frame, into the reader's data, not to on_message."""
    channel = await client.create_channel_async()
    for wrong in (b'{"progress": 50}', {"progress": 50}):
        with pytest.raises(TypeError, match=r"^send_message\(text\): text must be a str"):
            await channel.writer.send_message(wrong)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^on_message\(callback\): callback must be callable, "
                                        r"got int$"):
        channel.reader.on_message(5)  # type: ignore[arg-type]
    messages: list[str] = []
    channel.reader.on_message(messages.append)

    async def write() -> None:
        async with channel.writer as writer:
            await writer.write(b"DATA")
            await writer.send_message('{"progress": 50}')

    _, data = await asyncio.gather(write(), channel.reader.read_all())
    assert (data, messages) == (b"DATA", ['{"progress": 50}'])


@pytest.mark.parametrize(("size", "error", "message"), [
    (-1, ValueError, "must be at least 0"),
    ("5", TypeError, "must be an int .* got str '5'"),
    (1.5, TypeError, "must be an int .* got float 1.5"),
    (True, TypeError, "must be an int .* got bool True"),
])
async def test_a_buffer_size_the_engine_would_refuse_is_refused_at_the_call(
        client: iii_rx.Client, size: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=r"^create_channel\(buffer_size\): buffer_size " + message):
        await client.create_channel_async(size)
    with pytest.raises(error, match=r"^create_channel\(buffer_size\)"):
        await asyncio.to_thread(client.create_channel, size)


async def test_a_buffer_size_above_the_most_is_capped(engine: Engine,
                                                      client: iii_rx.Client) -> None:
    channel = await client.create_channel_async(10**6)
    state = engine.hub.channel_state(channel.writer_ref.channel_id)
    assert state is not None and state.pipe.capacity == 1024


async def test_late_reader_gets_everything(client: iii_rx.Client) -> None:
    channel = await client.create_channel_async(buffer_size=32)
    parts = [os.urandom(5000) for _ in range(20)]
    async with channel.writer as writer:
        for part in parts:
            await writer.write(part)
        await writer.send_message("end of parts")
    assert channel.writer.closed
    messages: list[str] = []
    channel.reader.on_message(messages.append)
    assert await channel.reader.read_all() == b"".join(parts)
    assert messages == ["end of parts"]


async def test_objects_roundtrip_and_truncation(client: iii_rx.Client) -> None:
    items = [{"id": i, "blob": os.urandom(i * 1000)} for i in range(100)]
    channel = await client.create_channel_async()

    async def write() -> None:
        async with channel.writer as writer:
            for item in items:
                await writer.write_obj(item)

    task = asyncio.create_task(write())
    assert [x async for x in channel.reader.objects()] == items
    await task

    cut = await client.create_channel_async()
    async with cut.writer as writer:
        await writer.write_obj("whole")
        await writer.write(encode_item({"half": b"x" * 100})[:-10])  # cut inside an item
    got: list[Any] = []
    with pytest.raises(TruncatedStreamError):
        async for item in cut.reader.objects():
            got.append(item)
    assert got == ["whole"]


async def test_async_operators_over_a_reader(client: iii_rx.Client) -> None:
    channel = await client.create_channel_async()

    async def write() -> None:
        async with channel.writer as writer:
            for i in range(25):
                await writer.write_obj(i)

    task = asyncio.create_task(write())
    async with batched(cbor_items(channel.reader), max_items=10) as batches:
        assert [b async for b in batches] == [
            list(range(10)), list(range(10, 20)), list(range(20, 25))]
    await task


async def test_a_failed_writer_is_reported_to_an_iii_rx_reader(client: iii_rx.Client) -> None:
    channel = await client.create_channel_async()
    with pytest.raises(RuntimeError):
        async with channel.writer as writer:
            await writer.write(b"some")
            raise RuntimeError("producer crashed")
    chunks: list[bytes] = []
    with pytest.raises(ChannelClosedError) as info:
        async for chunk in channel.reader:
            chunks.append(chunk)
    assert chunks == [b"some"]
    assert info.value.code == 1011


async def test_the_reason_of_an_abort_reaches_the_reader(client: iii_rx.Client) -> None:
    channel = await client.create_channel_async()
    await channel.writer.write(b"some")
    await channel.writer.abort("the source went away")
    with pytest.raises(ChannelClosedError) as info:
        async for _ in channel.reader:
            pass
    assert (info.value.code, info.value.reason) == (1011, "the source went away")


async def test_an_abort_fails_the_observables_with_its_reason(client: iii_rx.Client) -> None:
    channel = await client.create_channel_async()
    await channel.writer.write(b"some")
    await channel.writer.abort("the source went away")
    loop = asyncio.get_running_loop()
    chunks: list[bytes] = []
    failed: asyncio.Future[Exception] = loop.create_future()
    messages_failed: asyncio.Future[Exception] = loop.create_future()
    channel.reader.messages.subscribe(on_error=messages_failed.set_result)
    channel.reader.chunks.subscribe(chunks.append, failed.set_result)
    for error in (await asyncio.wait_for(failed, 10), await asyncio.wait_for(messages_failed, 10)):
        assert isinstance(error, ChannelClosedError)
        assert (error.code, error.reason) == (1011, "the source went away")
    assert chunks == [b"some"]


async def test_closing_the_reader_fails_the_writer(client: iii_rx.Client) -> None:
    channel = await client.create_channel_async(buffer_size=1)
    await channel.writer.write(b"first")
    async for chunk in channel.reader:
        assert chunk == b"first"
        break
    await channel.reader.close()
    with pytest.raises(ChannelClosedError):
        for _ in range(1000):
            await channel.writer.write(os.urandom(1000))
            await asyncio.sleep(0.002)
    with pytest.raises(ChannelClosedError):
        await channel.writer.send_message("after the end")


async def test_close_after_a_cancelled_first_read_closes_the_socket(
    client: iii_rx.Client,
) -> None:
    # The socket opening is shielded: cancelling the read that started it lets it complete
    # unseen. close() must still close that socket, or the engine keeps the reader attached.
    channel = await client.create_channel_async(buffer_size=1)
    reader = channel.reader
    read = asyncio.ensure_future(reader.read_all())
    for _ in range(1000):  # no event tells that the opening started: a bounded poll
        if reader._opening is not None:
            break
        await asyncio.sleep(0)
    opening = reader._opening
    assert opening is not None
    read.cancel()
    await asyncio.wait({read})
    await asyncio.wait({opening})
    await reader.close()
    with pytest.raises(ChannelClosedError):
        for _ in range(1000):
            await channel.writer.write(os.urandom(1000))
            await asyncio.sleep(0.002)


async def test_one_consumer_at_a_time(client: iii_rx.Client) -> None:
    channel = await client.create_channel_async()
    first = asyncio.create_task(channel.reader.read_all())
    await asyncio.sleep(0)  # let it start its recv
    for _ in range(100):
        if channel.reader._receiving is not None:
            break
        await asyncio.sleep(0.001)
    with pytest.raises(ChannelError, match="another consumer"):
        await channel.reader.read_all()
    await channel.writer.write(b"ok")
    await channel.writer.close()
    assert await first == b"ok"


async def test_observables_chunks_and_messages(client: iii_rx.Client) -> None:
    loop = asyncio.get_running_loop()
    channel = await client.create_channel_async()
    chunks: list[bytes] = []
    messages: list[str] = []
    done: asyncio.Future[None] = loop.create_future()
    shared = channel.reader.chunks.pipe(ops.share())
    shared.subscribe(chunks.append)
    shared.pipe(ops.count()).subscribe(on_completed=lambda: done.set_result(None))
    channel.reader.messages.subscribe(messages.append)
    async with channel.writer as writer:
        await writer.write(b"a")
        await writer.send_message("m1")
        await writer.write(b"b")
    await asyncio.wait_for(done, 10)
    assert chunks == [b"a", b"b"] and messages == ["m1"]

    # messages alone drive the channel, then hand it over to an async iterator
    other = await client.create_channel_async()
    seen: list[str] = []
    other.reader.messages.subscribe(seen.append)
    await other.writer.send_message("before")
    for _ in range(500):
        if seen:
            break
        await asyncio.sleep(0.002)
    assert seen == ["before"]
    read_all = asyncio.ensure_future(other.reader.read_all())  # takes the socket over
    for _ in range(500):
        if other.reader._pump is None:
            break
        await asyncio.sleep(0.002)
    await other.writer.write(b"data")
    await other.writer.send_message("after")
    await other.writer.close()
    assert await read_all == b"data"
    assert seen == ["before", "after"]


async def test_refs_in_payloads_become_live_ends(client: iii_rx.Client) -> None:
    async def produce(data: dict[str, Any]) -> int:
        (job,) = data["jobs"]
        out = job["out"]
        assert isinstance(out, ChannelWriter) and isinstance(data["pair"][1], ChannelReader)
        async with out:
            for i in range(job["count"]):
                await out.write_obj(i)
        return job["count"]

    client.register_function("chan::produce", produce)
    channel = await client.create_channel_async()
    spare = await client.create_channel_async()
    call = asyncio.ensure_future(client.trigger("chan::produce", {
        "jobs": [{"out": channel.writer_ref, "count": 50}],  # the pydantic model, as it is
        "pair": ["x", spare.reader_ref.model_dump()],  # or its dict
    }))
    assert [x async for x in channel.reader.objects()] == list(range(50))
    assert await call == 50


async def test_sync_handler_reads_with_the_sync_twins(client: iii_rx.Client) -> None:
    def consume(data: dict[str, Any]) -> dict[str, Any]:
        reader: ChannelReader = data["in"]
        assert threading.current_thread() is not threading.main_thread()
        total = sum(len(chunk) for chunk in reader)
        return {"total": total}

    client.register_function("chan::consume", consume)
    channel = await client.create_channel_async()
    call = asyncio.ensure_future(client.trigger("chan::consume", {"in": channel.reader_ref}))
    payload = os.urandom(300_000)

    def write_from_a_thread() -> None:
        with channel.writer as writer:
            writer.write_sync(payload)
            writer.send_message_sync("text is not counted")

    await asyncio.to_thread(write_from_a_thread)
    assert await call == {"total": len(payload)}

    with pytest.raises(RuntimeError, match="deadlock"):
        channel.reader.read_all_sync()  # on the channel's own loop thread


async def test_objects_sync_reads_cbor_items_from_a_thread(client: iii_rx.Client) -> None:
    channel = await client.create_channel_async()
    async with channel.writer as writer:
        for i in range(5):
            await writer.write_obj({"i": i})
    items = await asyncio.to_thread(lambda: list(channel.reader.objects_sync()))
    assert items == [{"i": i} for i in range(5)]


async def test_write_obj_sync_writes_cbor_items_from_a_thread(client: iii_rx.Client) -> None:
    channel = await client.create_channel_async()

    def write_from_a_thread() -> None:
        with channel.writer as writer:
            for i in range(3):
                writer.write_obj_sync({"i": i})

    await asyncio.to_thread(write_from_a_thread)
    assert [item async for item in channel.reader.objects()] == [{"i": i} for i in range(3)]


async def test_ends_can_be_awaited_from_another_loop(client: iii_rx.Client) -> None:
    channel = await client.create_channel_async()

    def other_loop() -> bytes:
        async def main() -> bytes:
            await channel.writer.write(b"from elsewhere")
            await channel.writer.close()
            return await channel.reader.read_all()

        return asyncio.run(main())

    assert await asyncio.to_thread(other_loop) == b"from elsewhere"


async def test_unknown_channel_fails_clearly(engine: Engine) -> None:
    ref = {"channel_id": "00000000-0000-4000-8000-000000000000", "access_key": "k",
           "direction": "read"}
    reader = ChannelReader(engine.url, ref)
    with pytest.raises(ChannelClosedError, match="not found"):
        await reader.read_all()


def test_url_building() -> None:
    assert build_channel_url("ws://h:1/", "c1", "k/1 2", "read") == (
        "ws://h:1/ws/channels/c1?key=k%2F1%202&dir=read")
    assert build_channel_url("wss://h:1/base?token=t", "c", "k", "write") == (
        "wss://h:1/base/ws/channels/c?token=t&key=k&dir=write")
    # A fragment after the query (accepted by check_url when empty) held the key and dir.
    url = build_channel_url("ws://127.0.0.1:1/?a=1#", "c", "k", "read")
    assert url == "ws://127.0.0.1:1/ws/channels/c?a=1&key=k&dir=read"
    assert check_url(url) == url
    assert build_channel_url("ws://h:1/#f", "c", "k", "read") == (
        "ws://h:1/ws/channels/c?key=k&dir=read")


def test_resolve_channel_refs_walks_any_depth() -> None:
    ref = {"channel_id": "c", "access_key": "k", "direction": "write", "extra": 1}
    data = {"a": [1, {"b": (ref, "x")}], "plain": {"channel_id": "c"}}
    out = resolve_channel_refs(data, engine_url="ws://h:1", headers={"Authorization": "B t"})
    writer = out["a"][1]["b"][0]
    assert isinstance(writer, ChannelWriter) and writer.ref.channel_id == "c"
    assert writer.url == "ws://h:1/ws/channels/c?key=k&dir=write"
    assert out["a"][1]["b"][1] == "x" and isinstance(out["a"][1]["b"], tuple)
    assert out["plain"] is data["plain"]
    untouched = {"x": [1, 2]}
    assert resolve_channel_refs(untouched, engine_url="ws://h", headers={}) is untouched


async def test_buffered_writer_gathers_small_writes(client: iii_rx.Client) -> None:
    channel = await client.create_channel_async()
    pieces = [os.urandom(1000) for _ in range(200)]
    events: list[Any] = []
    channel.reader.on_message(lambda text: events.append(text))

    async def write() -> None:
        async with channel.writer.buffered() as out:
            for piece in pieces[:100]:
                await out.write(piece)
            await out.send_message("half")  # flushes the bytes before it: order holds
            for piece in pieces[100:]:
                await out.write(piece)
            await out.write_obj("tail")
            assert out.pending > 0  # waits for close()

    task = asyncio.create_task(write())
    async for chunk in channel.reader:
        events.append(len(chunk))
    await task
    half = events.index("half")
    assert sum(events[:half]) == 100_000 and all(n <= 65536 for n in events[:half])
    assert sum(events[half + 1:]) == 100_000 + len(encode_item("tail"))
    assert len(events) <= 6  # not 201 frames


async def test_a_buffered_writer_sends_each_frame_of_its_size_as_it_fills(
        client: iii_rx.Client) -> None:
    """Full frames go out during the writes, not at ``close()``: the buffer never holds a
    stream's worth of bytes."""
    channel = await client.create_channel_async()
    data = os.urandom(1010)

    async def write() -> None:
        async with channel.writer.buffered(size=100) as out:
            for start in range(0, len(data), 30):
                await out.write(data[start:start + 30])
                assert out.pending < 100
            assert out.pending == 10

    task = asyncio.create_task(write())
    chunks = [chunk async for chunk in channel.reader]
    await task
    assert chunks == [data[start:start + 100] for start in range(0, len(data), 100)]


async def test_a_reader_used_with_async_with_is_itself(
        client: iii_rx.Client) -> None:
    channel = await client.create_channel_async()
    async with channel.writer as writer:
        await writer.write(b"abc")
    async with channel.reader as reader:
        assert reader is channel.reader
        assert await reader.read_all() == b"abc"


async def test_a_chunks_subscriber_that_leaves_leaves_the_rest_for_the_next_reader(
        client: iii_rx.Client) -> None:
    """The last subscriber's leaving stops the pump: the chunks after it are not read (and
    dropped) for nobody."""
    channel = await client.create_channel_async()
    async with channel.writer as writer:
        for i in range(3):
            await writer.write(bytes([i]) * 10)
    first: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    channel.reader.chunks.pipe(ops.take(1)).subscribe(first.set_result)
    assert await asyncio.wait_for(first, 10) == b"\x00" * 10
    assert [chunk async for chunk in channel.reader] == [b"\x01" * 10, b"\x02" * 10]


async def test_a_buffered_writer_takes_sizes_from_one_byte_to_a_frame(
        client: iii_rx.Client) -> None:
    channel = await client.create_channel_async()
    for size in (0, 65537):
        with pytest.raises(ValueError, match=r"size must be within 1\.\.65536"):
            channel.writer.buffered(size=size)
    async with channel.writer.buffered(size=1) as out:
        await out.write(b"ab")
        assert out.pending == 0
    assert [chunk async for chunk in channel.reader] == [b"a", b"b"]
    assert channel.writer.buffered(size=65536).pending == 0


async def test_a_removed_message_callback_gets_nothing(client: iii_rx.Client) -> None:
    channel = await client.create_channel_async()
    kept: list[str] = []
    removed: list[str] = []
    remove = channel.reader.on_message(removed.append)
    channel.reader.on_message(kept.append)
    remove()
    remove()  # twice is harmless
    async with channel.writer as writer:
        await writer.send_message("one")
    async for _ in channel.reader:
        pass
    assert (removed, kept) == ([], ["one"])


async def test_close_without_writing_ends_an_empty_stream(client: iii_rx.Client) -> None:
    channel = await client.create_channel_async()
    await channel.writer.close()
    assert await channel.reader.read_all() == b""


async def test_break_leaves_the_socket_for_the_next_pass(client: iii_rx.Client) -> None:
    channel = await client.create_channel_async()
    async with channel.writer as writer:
        for i in range(3):
            await writer.write(bytes([i]) * 10)
    async for chunk in channel.reader:
        assert chunk == b"\x00" * 10
        break
    assert [chunk async for chunk in channel.reader] == [b"\x01" * 10, b"\x02" * 10]


async def test_a_break_out_of_objects_leaves_the_rest_to_the_next_pass(
        client: iii_rx.Client) -> None:
    # Buffered: the ten items, and half of an eleventh, arrive in chunks that hold several.
    channel = await client.create_channel_async()
    async with channel.writer.buffered(size=40) as writer:
        for i in range(10):
            await writer.write_obj({"i": i})
        await writer.write_obj({"i": 10, "pad": bytes(100)})
    first = []
    async for item in channel.reader.objects():
        first.append(item["i"])
        if len(first) == 3:
            break
    rest = [item["i"] async for item in channel.reader.objects()]
    assert first + rest == list(range(11))


async def test_a_second_reader_is_refused(engine: Engine, client: iii_rx.Client) -> None:
    channel = await client.create_channel_async()
    first = asyncio.ensure_future(channel.reader.read_all())
    for _ in range(500):  # wait for the first reader's socket (no event for "attached")
        if channel.reader._ws is not None:
            break
        await asyncio.sleep(0.002)
    second = ChannelReader(engine.url, channel.reader_ref)
    with pytest.raises(ChannelClosedError) as info:
        await second.read_all()
    assert info.value.code == 1008
    await channel.writer.write(b"for the first")
    await channel.writer.close()
    assert await first == b"for the first"


async def test_a_worker_closing_ends_the_channel_ends_of_the_handlers_it_cuts_short(
        engine: Engine, client: iii_rx.Client) -> None:
    """A worker that closes while a handler holds channel ends (running, or waiting for a
    ``max_concurrency`` slot): the caller's reader fails rather than waiting for the worker
    process to end, and its writer's writes fail."""
    started = asyncio.Event()

    async def produce(data: dict[str, Any]) -> None:
        await data["out"].write(b"partial")
        started.set()
        await asyncio.Event().wait()  # cut short by the close

    worker = await iii_rx.connect(engine.url)
    worker.register_function("chan::slow", produce, max_concurrency=1)
    await client.wait_for_function("chan::slow")
    running, waiting, request = [await client.create_channel_async() for _ in range(3)]
    calls = [asyncio.ensure_future(client.trigger("chan::slow", {"out": running.writer_ref})),
             asyncio.ensure_future(client.trigger("chan::slow", {"out": waiting.writer_ref,
                                                               "in": request.reader_ref}))]
    await started.wait()
    await worker.aclose()
    for channel, expected in ((running, [b"partial"]), (waiting, [])):
        chunks: list[bytes] = []
        with pytest.raises(ChannelClosedError) as info:
            async for chunk in channel.reader:
                chunks.append(chunk)
        assert (chunks, info.value.code) == (expected, 1011)
        assert "chan::slow" in info.value.reason and "closed" in info.value.reason
    with pytest.raises(ChannelClosedError):
        for _ in range(1000):
            await request.writer.write(os.urandom(1000))
            await asyncio.sleep(0.002)
    for call in calls:
        with pytest.raises(iii_rx.IIIInvocationError):
            await call


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_a_failed_handler_ends_the_channel_ends_it_received(client: iii_rx.Client,
                                                                  kind: str) -> None:
    """A handler that fails holding a writer (it wrote, never closed) or a reader: its peer
    learns it (the reader waited for ever, the writer kept writing into nothing)."""
    async def async_handler(data: dict[str, Any]) -> None:
        await data["out"].write(b"partial")
        async for _ in data["in"]:
            break
        raise RuntimeError("the handler failed midway")

    def sync_handler(data: dict[str, Any]) -> None:
        data["out"].write_sync(b"partial")
        for _ in data["in"]:
            break
        raise RuntimeError("the handler failed midway")

    client.register_function("chan::fails", async_handler if kind == "async" else sync_handler)
    result = await client.create_channel_async()
    request = await client.create_channel_async(buffer_size=1)
    await request.writer.write(b"first")
    with pytest.raises(iii_rx.IIIInvocationError):
        await client.trigger("chan::fails", {"out": result.writer_ref.model_dump(),
                                             "in": request.reader_ref.model_dump()})
    chunks: list[bytes] = []
    with pytest.raises(ChannelClosedError) as info:
        async for chunk in result.reader:
            chunks.append(chunk)
    assert (chunks, info.value.code) == ([b"partial"], 1011)
    assert "chan::fails" in info.value.reason
    with pytest.raises(ChannelClosedError):
        for _ in range(1000):
            await request.writer.write(os.urandom(1000))
            await asyncio.sleep(0.002)


async def test_objects_fail_after_the_good_items_without_waiting_for_more(
        client: iii_rx.Client) -> None:
    """Invalid CBOR after valid items in one chunk, the writer still open: ``objects()``
    yields the items, then raises (it waited for a next chunk first)."""
    channel = await client.create_channel_async()
    await channel.writer.write(encode_item("whole") + b"\xff")
    got: list[Any] = []

    async def read() -> None:
        async for item in channel.reader.objects():
            got.append(item)

    with pytest.raises(iii_rx.CborDecodeError):
        await asyncio.wait_for(read(), 5)
    assert got == ["whole"]
    await channel.writer.close()


async def test_an_iterator_right_after_the_last_subscriber_left_reads_on(
        client: iii_rx.Client) -> None:
    # The released pump was still in its recv() (cancelled, not yet unwound) when read_all()
    # came in the same step: it was taken for another consumer and refused.
    channel = await client.create_channel_async()
    reader = channel.reader
    seen = asyncio.Event()
    subscription = reader.messages.subscribe(lambda text: seen.set())
    await channel.writer.send_message("hello")
    await asyncio.wait_for(seen.wait(), 10)  # the pump runs, now waiting in recv()
    async def feed() -> None:
        async with channel.writer as writer:
            await writer.write(b"x")

    feeding = asyncio.ensure_future(feed())
    subscription.dispose()
    assert await reader.read_all() == b"x"  # in this step: no loop turn after the dispose
    await feeding


async def test_a_read_all_cut_short_leaves_what_it_read_to_the_next_read(
        client: iii_rx.Client) -> None:
    channel = await client.create_channel_async()
    writer, reader = channel.writer, channel.reader
    await writer.write(b"A" * 10)
    await writer.write(b"B" * 10)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(reader.read_all(), 0.5)  # the writer has not ended yet
    await writer.write(b"C" * 10)
    await writer.close()
    assert await reader.read_all() == b"A" * 10 + b"B" * 10 + b"C" * 10


async def test_a_chunk_handed_back_by_a_cancelled_read_comes_before_the_rest(
        client: iii_rx.Client) -> None:
    # A cut read_all() gives its chunks back; a read from another loop then takes the first
    # and its waiter gives up: the bridge hands it back (_unread_chunk), and it must come
    # first again, not after the others.
    channel = await client.create_channel_async()
    writer, reader = channel.writer, channel.reader
    for part in (b"0", b"1"):
        await writer.write(part)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(reader.read_all(), 0.5)
    chunks = reader.__aiter__()
    taken = await chunks.__anext__()
    reader._unread_chunk(taken)  # what the bridge does with a value its waiter gave up on
    await writer.write(b"2")
    await writer.close()
    assert await reader.read_all() == b"012"
