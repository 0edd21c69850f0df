"""The engine token (issue 12, item 3), over real sockets: with ``Engine(token=...)`` the
worker socket, ``/otel``, the channel sockets and the streams socket need ``Authorization:
Bearer <token>`` (401 at the handshake otherwise, no traceback); iii_rx clients and the
official ``iii-sdk`` send it from ``III_TOKEN`` on their main and channel sockets; reattach
tokens compare in constant time; the CLI reads ``--token`` / ``III_TOKEN``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator

import pytest
from iii import InitOptions, register_worker
from iii.helpers import create_channel
from raw_engine_client import RawWorker
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

import iii_rx
from iii_rx.engine import Engine, auth
from iii_rx.engine.auth import SecretToken
from iii_rx.engine.run import add_engine_arguments, secret_env_allowlist
from iii_rx.errors import IIIConnectionError

TOKEN = "t0ken-" + uuid.uuid4().hex


@pytest.fixture
async def guarded() -> AsyncIterator[Engine]:
    async with Engine(port=0, namespace_grace_ms=50, token=TOKEN, stream_port=0) as engine:
        yield engine


def stream_url(engine: Engine) -> str:
    socket = engine.workers.streams.socket
    assert socket is not None and socket.port is not None
    return f"ws://127.0.0.1:{socket.port}/"


async def handshake_status(url: str, headers: dict[str, str] | None = None) -> int:
    """101 when the socket opens, else the HTTP status of the refusal."""
    try:
        async with connect(url, additional_headers=headers, compression=None):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


def channel_url(engine: Engine, ref: dict[str, str], direction: str) -> str:
    return f"{engine.url}/ws/channels/{ref['channel_id']}?key={ref['access_key']}&dir={direction}"


@pytest.mark.parametrize("headers", [None, {"Authorization": "Bearer wrong"},
                                     {"Authorization": f"Basic {TOKEN}"},
                                     {"Authorization": TOKEN}],
                         ids=["missing", "wrong", "basic", "no-scheme"])
async def test_every_path_refuses_a_missing_or_wrong_token(
        guarded: Engine, headers: dict[str, str] | None,
        caplog: pytest.LogCaptureFixture) -> None:
    pair = guarded.hub.create(None)
    for url in (guarded.url, f"{guarded.url}/otel", channel_url(guarded, pair["reader"], "read"),
                f"{guarded.url}/nowhere", stream_url(guarded)):
        assert await handshake_status(url, headers) == 401, url
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


async def test_the_right_token_opens_every_path(guarded: Engine) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    worker = await RawWorker.connect(guarded.url, additional_headers=bearer)
    assert worker.hello["type"] == "workerregistered"
    assert await handshake_status(f"{guarded.url}/otel", bearer) == 101
    assert await handshake_status(stream_url(guarded), bearer) == 101
    pair = guarded.hub.create(None)
    async with connect(channel_url(guarded, pair["writer"], "write"),
                       additional_headers=bearer) as writer, \
            connect(channel_url(guarded, pair["reader"], "read"),
                    additional_headers=bearer) as reader:
        await writer.send(b"through")
        assert await asyncio.wait_for(reader.recv(), 5) == b"through"


async def test_an_iii_rx_client_sends_iii_token_on_its_main_and_channel_sockets(
        guarded: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("III_TOKEN", TOKEN)
    async with iii_rx.connect(guarded.url, name=f"tok-rx-{uuid.uuid4().hex[:6]}",
                              connect_timeout=10) as iii:
        listed = await iii.trigger("engine::workers::list", {})
        assert "workers" in listed
        channel = await iii.create_channel_async()

        async def write() -> None:
            async with channel.writer as writer:
                await writer.write(b"x" * 100_000)

        task = asyncio.create_task(write())
        assert await asyncio.wait_for(channel.reader.read_all(), 10) == b"x" * 100_000
        await task


async def test_an_iii_rx_client_without_the_token_is_refused(guarded: Engine,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    monkeypatch.delenv("III_TOKEN", raising=False)
    with pytest.raises(IIIConnectionError):
        async with iii_rx.connect(guarded.url, name="tok-none", connect_timeout=1):
            pass


async def test_the_official_sdk_sends_iii_token_on_its_main_and_channel_sockets(
        guarded: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("III_TOKEN", TOKEN)
    sdk = await asyncio.to_thread(register_worker, guarded.url, InitOptions(
        worker_name=f"tok-sdk-{uuid.uuid4().hex[:6]}"))
    try:
        assert sdk.get_connection_state() == "connected"
        listed = await asyncio.to_thread(sdk.trigger, {
            "function_id": "engine::workers::list", "payload": {}, "timeout_ms": 5000})
        assert "workers" in listed
        channel = await asyncio.to_thread(create_channel, sdk)

        async def write() -> None:
            await channel.writer.write(b"sdk bytes")
            await channel.writer.close_async()

        task = asyncio.create_task(write())
        assert await asyncio.wait_for(channel.reader.read_all(), 10) == b"sdk bytes"
        await task
    finally:
        await asyncio.to_thread(sdk.shutdown)


async def test_without_a_token_the_engine_stays_open(engine: Engine) -> None:
    worker = await RawWorker.connect(engine.url)
    assert worker.hello["type"] == "workerregistered"


async def test_reattach_tokens_compare_in_constant_time(engine: Engine,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = auth.hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    first = await RawWorker.connect(engine.url)
    await first.register("ct")
    assert isinstance(engine.registry.workers[first.worker_id].reattach_token, SecretToken)
    second = await RawWorker.connect(engine.url)
    await second.send({"type": "reattach", "previous_worker_id": first.worker_id,
                       "reattach_token": "not-the-token"})
    await second.result_of("engine::functions::list", {})  # frames apply in order
    assert compared, "the reattach token was not compared with hmac.compare_digest"
    assert first.worker_id in engine.registry.workers  # and the wrong token retired nothing


def test_the_cli_reads_the_token_and_secret_allowlist_from_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("III_TOKEN", " from-env ")
    monkeypatch.setenv("III_HTTP_SECRET_ENV", "BILLING_SECRET, HOOK_*")
    parser = argparse.ArgumentParser()
    add_engine_arguments(parser)
    defaults = parser.parse_args([])
    assert defaults.token == "from-env"
    assert secret_env_allowlist(defaults.http_secret_env) == ("BILLING_SECRET", "HOOK_*")
    given = parser.parse_args(["--token", "flag", "--http-secret-env", "A",
                               "--http-secret-env", "B_*,C"])
    assert given.token == "flag"
    assert secret_env_allowlist(given.http_secret_env) == ("A", "B_*", "C")
    monkeypatch.delenv("III_TOKEN")
    monkeypatch.delenv("III_HTTP_SECRET_ENV")
    parser = argparse.ArgumentParser()
    add_engine_arguments(parser)
    bare = parser.parse_args([])
    assert bare.token is None and secret_env_allowlist(bare.http_secret_env) == ()


async def test_refusals_are_logged_once_in_a_while(guarded: Engine,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="iii_rx.engine")
    caplog.clear()
    for _ in range(50):
        assert await handshake_status(guarded.url) == 401
    refusals = [r for r in caplog.records if "missing or wrong token" in r.getMessage()]
    assert len(refusals) <= 10
    assert all(TOKEN not in json.dumps(r.getMessage()) for r in caplog.records)


async def test_a_refused_channel_socket_s_key_is_not_logged(guarded: Engine,
                                                          caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    """The official Node SDK opens channel ends without headers: each refusal logged the
    channel's access key (the query), which is all another client needs to attach."""
    caplog.set_level(logging.INFO, logger="iii_rx.engine")
    caplog.clear()
    url = guarded.url + "/ws/channels/some-id?key=the-access-key&dir=read"
    assert await handshake_status(url) == 401
    refusals = [r.getMessage() for r in caplog.records if "wrong token" in r.getMessage()]
    assert refusals and "/ws/channels/some-id" in refusals[0]
    assert not [line for line in refusals if "the-access-key" in line]
