"""HTTP-invoked functions under hostile workers (issue 12, items 1 and 4; fuzz defects D7, D8,
D15, D16), over real sockets on 127.0.0.1: auth may read only allowlisted environment
variables (empty by default), configured headers cannot smuggle or inject, the engine connects
to the address its URL policy checked (no second lookup for DNS rebinding to exploit), and
endpoint answers no frame could carry fail with a typed error."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from iii import InitOptions, register_worker
from iii_helpers.http import HttpAuthBearer as SdkBearer
from iii_helpers.http import HttpInvocationConfig as SdkConfig
from websockets.asyncio.client import ClientConnection, connect

from iii_rx.engine import Engine
from iii_rx.engine.http_functions import HttpFunctionInvoker, HttpFunctionSettings

SECRET_VALUE = "the-engine's-own-secret"


@dataclass
class Listener:
    """A worker's own HTTP endpoint: records every request it gets."""

    port: int
    seen: list[dict[str, Any]] = field(default_factory=list)
    answer: bytes = b"{}"

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


@contextlib.asynccontextmanager
async def listener(host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[Listener]:
    holder: list[Listener] = []

    async def record(request: web.Request) -> web.Response:
        holder[0].seen.append({"headers": dict(request.headers), "body": await request.read(),
                               "host": host})
        return web.Response(body=holder[0].answer, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    holder.append(Listener(int(runner.addresses[0][1])))
    try:
        yield holder[0]
    finally:
        await runner.cleanup()


class Raw:
    """A raw-frame worker: registers HTTP-invoked functions exactly as given and calls them."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, engine: Engine) -> AsyncIterator[Raw]:
        async with connect(engine.url, compression=None) as ws:
            json.loads(await ws.recv())  # workerregistered
            raw = cls(ws)
            await raw.send({"type": "invokefunction", "function_id": "engine::workers::register",
                            "data": {"name": f"raw-{uuid.uuid4().hex[:8]}"},
                            "action": {"type": "void"}})
            yield raw

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    async def call(self, function_id: str, data: Any = None) -> dict[str, Any]:
        invocation_id = str(uuid.uuid4())
        await self.send({"type": "invokefunction", "function_id": function_id, "data": data,
                         "invocation_id": invocation_id})
        while True:
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
            if frame.get("invocation_id") == invocation_id:
                return frame

    async def register_and_call(self, invocation: dict[str, Any]) -> dict[str, Any]:
        """Register ``invocation`` under a fresh id, then call it (frames apply in order)."""
        function_id = f"hx::{uuid.uuid4().hex[:8]}"
        await self.send({"type": "registerfunction", "id": function_id,
                         "invocation": invocation})
        return await self.call(function_id, {"a": 1})


@contextlib.asynccontextmanager
async def engine_with(**options: Any) -> AsyncIterator[Engine]:
    async with Engine(port=0, namespace_grace_ms=50, **options) as engine:
        yield engine


def refusal(answer: dict[str, Any]) -> str:
    error = answer.get("error") or {}
    assert error.get("code") == "function_not_found", answer
    assert "Traceback" not in str(error.get("stacktrace")), answer
    return str(error.get("message"))


# ----------------------------------------------------------------------------- secrets


@pytest.mark.parametrize("auth", [
    {"type": "api_key", "header": "X-Leak", "value_key": "IIIRX_SEC_LEAK"},
    {"type": "bearer", "token_key": "IIIRX_SEC_LEAK"},
    {"type": "hmac", "secret_key": "IIIRX_SEC_LEAK"},
], ids=["api_key", "bearer", "hmac"])
async def test_by_default_no_environment_variable_reaches_a_worker(
        auth: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The reported exfiltration: a worker names an engine variable as its function's secret
    and points the URL at its own listener. Refused at registration; nothing is sent."""
    monkeypatch.setenv("IIIRX_SEC_LEAK", SECRET_VALUE)
    async with engine_with() as engine, listener() as own, Raw.open(engine) as raw:
        answer = await raw.register_and_call({"url": own.url(), "auth": auth})
    message = refusal(answer)
    assert "secret_not_allowed" in message and "IIIRX_SEC_LEAK" in message
    assert SECRET_VALUE not in message
    assert own.seen == []


async def test_a_refusal_does_not_tell_whether_the_variable_exists(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IIIRX_SEC_SET", SECRET_VALUE)
    monkeypatch.delenv("IIIRX_SEC_UNSET", raising=False)
    async with engine_with() as engine, listener() as own, Raw.open(engine) as raw:
        messages = [refusal(await raw.register_and_call(
            {"url": own.url(), "auth": {"type": "bearer", "token_key": name}}))
            for name in ("IIIRX_SEC_SET", "IIIRX_SEC_UNSET")]
    reasons = [m.split("refused: ", 1)[1].replace("IIIRX_SEC_UNSET", "IIIRX_SEC_SET")
               for m in messages]
    assert reasons[0] == reasons[1] and reasons[0].startswith("secret_not_allowed")


async def test_allowlisted_names_and_prefixes_are_usable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IIIRX_SEC_EXACT", "exact-value")
    monkeypatch.setenv("IIIRX_HOOK_ONE", "prefixed-value")
    monkeypatch.setenv("IIIRX_OTHER", SECRET_VALUE)
    async with engine_with(http_secret_env_allowlist=("IIIRX_SEC_EXACT", "IIIRX_HOOK_*")
                           ) as engine, listener() as own, Raw.open(engine) as raw:
        exact = await raw.register_and_call(
            {"url": own.url(), "auth": {"type": "bearer", "token_key": "IIIRX_SEC_EXACT"}})
        prefixed = await raw.register_and_call(
            {"url": own.url(), "auth": {"type": "api_key", "header": "X-Key",
                                        "value_key": "IIIRX_HOOK_ONE"}})
        outside = await raw.register_and_call(
            {"url": own.url(), "auth": {"type": "bearer", "token_key": "IIIRX_OTHER"}})
    assert "error" not in exact and "error" not in prefixed
    assert own.seen[0]["headers"]["Authorization"] == "Bearer exact-value"
    assert own.seen[1]["headers"]["X-Key"] == "prefixed-value"
    assert "secret_not_allowed" in refusal(outside) and len(own.seen) == 2


async def test_a_secret_that_would_inject_a_header_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IIIRX_SEC_CRLF", "tok\r\nX-Injected: 1")
    async with engine_with(http_secret_env_allowlist=("IIIRX_SEC_*",)) as engine, \
            listener() as own, Raw.open(engine) as raw:
        answer = await raw.register_and_call(
            {"url": own.url(), "auth": {"type": "bearer", "token_key": "IIIRX_SEC_CRLF"}})
    message = refusal(answer)
    assert "invalid_header" in message and "X-Injected" not in message and own.seen == []


async def test_the_official_sdk_registrant_is_refused_too_and_keeps_running(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An official ``iii-sdk`` worker registering such a function is not stopped (no
    ``registrationrejected``); its callers get ``function_not_found`` with the reason."""
    monkeypatch.setenv("IIIRX_SEC_LEAK", SECRET_VALUE)
    async with engine_with() as engine, listener() as own, Raw.open(engine) as raw:
        sdk = await asyncio.to_thread(register_worker, engine.url, InitOptions(
            worker_name=f"sec-sdk-{uuid.uuid4().hex[:8]}"))
        try:
            sdk.register_function("sdk::leak", SdkConfig(
                url=own.url(), auth=SdkBearer(token_key="IIIRX_SEC_LEAK")))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while engine.registry.refusal_reason(("default", "sdk::leak")) is None:
                assert loop.time() < deadline, "the registration never arrived"
                await asyncio.sleep(0.01)  # no event exists for a refusal; poll
            message = refusal(await raw.call("sdk::leak", {}))
            assert "secret_not_allowed" in message
            listed = await asyncio.to_thread(sdk.trigger, {
                "function_id": "engine::functions::list", "payload": {}, "timeout_ms": 5000})
            assert "functions" in listed  # the SDK worker still works
        finally:
            await asyncio.to_thread(sdk.shutdown)
    assert own.seen == []


# ----------------------------------------------------------------------------- headers


@pytest.mark.parametrize("headers", [
    {"": "x"}, {"a b": "1"}, {"X:Y": "1"}, {"Host": "evil.example"}, {"Content-Length": "0"},
    {"Transfer-Encoding": "chunked"}, {"Connection": "close"},
    {"X": "a\r\nX-Injected: 1"}, {"X": "\x00"}, {"X": "a\nb"}, {"X": "\x1b[31m"},
], ids=["empty", "space", "colon", "host", "content-length", "te", "connection", "crlf", "nul",
        "lf", "esc"])
async def test_headers_that_would_break_the_request_are_refused(headers: dict[str, str]) -> None:
    async with engine_with() as engine, listener() as own, Raw.open(engine) as raw:
        message = refusal(await raw.register_and_call({"url": own.url(), "headers": headers}))
    assert "invalid_header" in message and own.seen == []


async def test_an_api_key_header_name_is_validated_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IIIRX_SEC_K", "v")
    async with engine_with(http_secret_env_allowlist=("IIIRX_SEC_K",)) as engine, \
            listener() as own, Raw.open(engine) as raw:
        message = refusal(await raw.register_and_call(
            {"url": own.url(), "auth": {"type": "api_key", "header": "Content-Length",
                                        "value_key": "IIIRX_SEC_K"}}))
    assert "invalid_header" in message and own.seen == []


# ----------------------------------------------------------------------------- answers


@pytest.mark.parametrize("answer", [b'"\\ud800"', b'{"a": ["\\udfff"]}',
                                    b"[" * 5000 + b"]" * 5000, b"[" * 129 + b"]" * 129],
                         ids=["surrogate", "nested-surrogate", "deep-5000", "deep-129"])
async def test_answers_no_frame_could_carry_fail_typed(answer: bytes) -> None:
    async with engine_with() as engine, listener() as own, Raw.open(engine) as raw:
        own.answer = answer
        result = await raw.register_and_call({"url": own.url()})
    error = result.get("error") or {}
    assert error.get("code") == "invalid_response", result
    assert "Traceback" not in str(error.get("stacktrace"))


# ----------------------------------------------------------------------------- DNS rebinding


async def test_the_call_connects_to_the_checked_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """``rebind.test`` answers 127.0.0.1 to the policy's lookups and 127.0.0.2 to any later
    one (a rebinding DNS server). The request must reach 127.0.0.1, with the URL's Host."""
    async with listener("127.0.0.1") as checked:
        async with listener("127.0.0.2", checked.port) as rebound:
            lookups: list[str] = []
            real = socket.getaddrinfo

            def rebinding(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
                if host != "rebind.test":
                    return real(host, port, *args, **kwargs)
                lookups.append(host)
                address = "127.0.0.1" if len(lookups) <= 2 else "127.0.0.2"
                return real(address, port, *args, **kwargs)

            monkeypatch.setattr(socket, "getaddrinfo", rebinding)
            async with HttpFunctionInvoker(HttpFunctionSettings()) as invoker:
                function = await invoker.prepare("f", {"url": checked.url(host="rebind.test")})
                outcome = await invoker.invoke(function, {"a": 1})
    assert outcome.error is None, outcome
    assert len(lookups) == 2  # registration and call: aiohttp did not look the name up again
    assert rebound.seen == [] and len(checked.seen) == 1
    assert checked.seen[0]["headers"]["Host"] == f"rebind.test:{checked.port}"
