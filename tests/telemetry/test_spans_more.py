"""Spans beyond calls and invocations: channel transfers, HTTP-triggered invocations, and
CLIENT spans of calls that time out or are cancelled (they end, as errors, never leak)."""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import Any

import aiohttp
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from websockets.utils import accept_key

import iii_rx
from iii_rx.channels.writer import ChannelWriter
from iii_rx.engine import Engine
from iii_rx.protocol import StreamChannelRef
from iii_rx.telemetry.payload import _SECRET_PARTS, REDACTED, redacted_json

ON = iii_rx.OtelConfig(enabled=True)
_unique = itertools.count(1)


def unique_name(prefix: str) -> str:
    """A worker name of its own (``conftest`` is not importable by name when other test
    directories are collected in the same run)."""
    return f"{prefix}-{os.getpid()}-{next(_unique)}"


def named(exporter: InMemorySpanExporter, name: str) -> list[Any]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


async def test_channel_transfers_get_spans(engine: Engine,
                                           exporter: InMemorySpanExporter) -> None:
    async with iii_rx.connect(str(engine.url), name=unique_name("ch"), otel=ON) as iii:
        channel = await iii.create_channel_async()
        payload = b"y" * 70_000  # two frames

        async def write() -> None:
            async with channel.writer as writer:
                await writer.write(payload)

        got, _ = await asyncio.gather(channel.reader.read_all(), write())
        assert got == payload
        await channel.reader.close()

    (written,) = named(exporter, "channel write")
    (read,) = named(exporter, "channel read")
    for span, direction in ((written, "write"), (read, "read")):
        assert span.attributes["iii.channel.id"] == channel.writer_ref.channel_id
        assert span.attributes["iii.channel.direction"] == direction
        assert span.attributes["iii.channel.bytes"] == 70_000
        assert span.attributes["iii.channel.frames"] == 2
        assert span.status.status_code is StatusCode.UNSET
        assert span.end_time is not None


async def test_a_writer_close_cancelled_mid_handshake_still_ends_its_span(
        engine: Engine, exporter: InMemorySpanExporter) -> None:
    """A channel server that upgrades and then never answers the close frame: ``close()``
    waits for it, is cancelled, and the transfer's span ends anyway (as an error)."""
    upgraded, closing, release = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        (key,) = [line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
                  if line.lower().startswith(b"sec-websocket-key:")]
        accept = accept_key(key.decode()).encode()
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        upgraded.set()
        await reader.readexactly(7)              # b"x": 2 header bytes, 4 mask, 1 data
        await reader.read(1)                     # the client's close frame: left unanswered
        closing.set()
        await release.wait()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with iii_rx.connect(str(engine.url), name=unique_name("cc"), otel=ON):
        writer = ChannelWriter(f"ws://127.0.0.1:{port}",
                               StreamChannelRef(channel_id="c-1", access_key="k",
                                                direction="write"))
        await writer.write(b"x")
        await upgraded.wait()
        closing_task = asyncio.create_task(writer.close())
        await closing.wait()
        closing_task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closing_task
        release.set()
    server.close()
    await server.wait_closed()
    (written,) = named(exporter, "channel write")
    assert written.end_time is not None and written.status.status_code is StatusCode.ERROR


async def test_an_aborted_transfer_ends_its_spans_as_errors(
        engine: Engine, exporter: InMemorySpanExporter) -> None:
    async with iii_rx.connect(str(engine.url), name=unique_name("ab"), otel=ON) as iii:
        channel = await iii.create_channel_async()

        async def write() -> None:
            await channel.writer.write(b"z" * 10)
            await channel.writer.abort("gave up")

        async def read() -> None:
            with pytest.raises(iii_rx.ChannelClosedError):
                await channel.reader.read_all()

        await asyncio.gather(read(), write())
        await channel.reader.close()

    (written,) = named(exporter, "channel write")
    (read_span,) = named(exporter, "channel read")
    assert written.status.status_code is StatusCode.ERROR
    assert written.status.description == "gave up"
    assert read_span.status.status_code is StatusCode.ERROR
    assert read_span.attributes["iii.channel.bytes"] == 10


async def test_a_channel_opened_in_a_handler_is_a_child_of_its_span(
        engine: Engine, exporter: InMemorySpanExporter) -> None:
    async with iii_rx.connect(str(engine.url), name=unique_name("h"), otel=ON) as iii:
        async def produce(data: Any) -> Any:
            async with data["out"] as writer:
                await writer.write(b"abc")
            return "done"

        iii.register_function("ch::produce", produce)
        await iii.wait_for_function("ch::produce", timeout=10)
        channel = await iii.create_channel_async()
        result, got = await asyncio.gather(
            iii.trigger("ch::produce", {"out": channel.writer_ref}), channel.reader.read_all())
        assert (result, got) == ("done", b"abc")
        await channel.reader.close()

    (execute,) = named(exporter, "execute ch::produce")
    (written,) = named(exporter, "channel write")
    assert written.parent is not None
    assert written.parent.span_id == execute.context.span_id
    assert written.context.trace_id == execute.context.trace_id


async def test_http_invocations_carry_http_attributes(engine: Engine,
                                                      exporter: InMemorySpanExporter) -> None:
    async with iii_rx.connect(str(engine.url), name=unique_name("web"), otel=ON) as iii:
        async def greet(request: Any) -> Any:
            return {"status_code": 201, "body": {"hi": request["path_params"]["who"]}}

        iii.register_function("web::greet", greet)
        iii.register_trigger({"type": "http", "function_id": "web::greet",
                              "config": {"api_path": "/greet/:who", "http_method": "POST"}})
        url = f"http://127.0.0.1:{engine.rest_port}/greet/ann"
        async with aiohttp.ClientSession() as session:
            for _ in range(200):  # the route binds asynchronously; no event says when
                async with session.post(url, json={}) as response:
                    if response.status != 404:
                        break
                await asyncio.sleep(0.02)
            assert response.status == 201

    (span,) = [s for s in named(exporter, "execute web::greet")
               if s.attributes.get("http.response.status_code") == 201]
    assert span.kind is SpanKind.SERVER
    assert span.attributes["http.request.method"] == "POST"
    assert span.attributes["http.route"] == "/greet/:who"


async def test_a_timed_out_call_ends_its_span_as_an_error(
        engine: Engine, exporter: InMemorySpanExporter) -> None:
    async with iii_rx.connect(str(engine.url), name=unique_name("to"), otel=ON) as iii:
        release = asyncio.Event()

        async def slow(data: Any) -> Any:
            await release.wait()
            return data

        iii.register_function("to::slow", slow)
        await iii.wait_for_function("to::slow", timeout=10)
        with pytest.raises(iii_rx.IIITimeoutError):
            await iii.trigger("to::slow", 1, timeout_ms=100)
        release.set()

    (span,) = named(exporter, "invoke to::slow")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["iii.error.code"] == "TIMEOUT"


async def test_a_cancelled_call_ends_its_span_as_an_error(
        engine: Engine, exporter: InMemorySpanExporter) -> None:
    async with iii_rx.connect(str(engine.url), name=unique_name("cx"), otel=ON) as iii:
        started = asyncio.Event()
        release = asyncio.Event()

        async def hold(data: Any) -> Any:
            started.set()
            await release.wait()
            return data

        iii.register_function("cx::hold", hold)
        await iii.wait_for_function("cx::hold", timeout=10)
        call = asyncio.ensure_future(iii.trigger("cx::hold", 1))
        await started.wait()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert [s.name for s in named(exporter, "invoke cx::hold")] == ["invoke cx::hold"]
        release.set()

    (span,) = named(exporter, "invoke cx::hold")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["iii.error.code"] == "cancelled"


def test_payload_secrets_are_redacted() -> None:
    text, cut = redacted_json({"user": "ann", "nested": [{"API_Key": "k", "x_token": "t"}],
                               "password": "p", "note": "token-free"}, None)
    assert not cut
    assert '"k"' not in text and '"t"' not in text and '"p"' not in text
    assert text.count(REDACTED) == 3 and '"ann"' in text
    assert redacted_json({"plain": [1, 2]}, None) == ('{"plain":[1,2]}', False)
    assert redacted_json("a" * 100, 20) == ('"aaa..."[TRUNCATED]"', True)  # 20 bytes


@pytest.mark.parametrize("key", [*_SECRET_PARTS, "token", "X-Token", "my_token",
                                 "Client_Secret"])
def test_every_secret_key_is_redacted(key: str) -> None:
    """The quick look for secret-looking keys (a few words searched in the text) misses none
    of the keys the redaction replaces."""
    text, _ = redacted_json({"outer": {key: "hidden-value"}, "plain": "shown"}, None)
    assert "hidden-value" not in text and REDACTED in text and "shown" in text


def test_secrets_in_models_and_dataclasses_are_redacted_too() -> None:
    """A pydantic model or a dataclass is written as a JSON object: its secret-looking fields
    are redacted like a dict's."""
    import dataclasses

    from pydantic import BaseModel

    class Login(BaseModel):
        user: str
        api_key: str

    @dataclasses.dataclass
    class Account:
        password: str

    text, _ = redacted_json({"login": Login(user="ann", api_key="k-123"),
                             "account": Account("hunter2")}, None)
    assert "k-123" not in text and "hunter2" not in text and '"ann"' in text
    assert text.count(REDACTED) == 2
    assert "k-9" not in redacted_json(Login(user="bo", api_key="k-9"), None)[0]


def test_a_lone_surrogate_in_a_payload_does_not_raise() -> None:
    for cap in (None, 16):
        text, _ = redacted_json({"name": "x\udcff" * 10}, cap)
        text.encode()  # writable by any exporter


async def test_a_failing_telemetry_hook_costs_no_answer(
        engine: Engine, exporter: InMemorySpanExporter,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever goes wrong while a span is made or ended, the call is answered."""
    from iii_rx.telemetry import tracing

    def broken(value: Any, max_bytes: int | None) -> tuple[str, bool]:
        raise RuntimeError("telemetry fault")

    async with iii_rx.connect(str(engine.url), name=unique_name("hf"), otel=ON) as iii:
        iii.register_function("hf::echo", lambda data: data)
        await iii.wait_for_function("hf::echo", timeout=10)
        monkeypatch.setattr(tracing, "redacted_json", broken)  # input and output events
        assert await asyncio.wait_for(iii.trigger("hf::echo", 7), 10) == 7
        monkeypatch.setattr(tracing, "traceparent_of", broken)  # a call's span start
        assert await asyncio.wait_for(iii.trigger("hf::echo", 8), 10) == 8
