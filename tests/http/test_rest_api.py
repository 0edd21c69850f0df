"""The REST API's engine-side rules through real HTTP: envelope encoding (docs/protocol.md
§6.5.3), streaming edge cases (§6.5.4), route replacement, conflicts and ownership (§6.5.1),
binding metadata, HEAD, CORS and middleware. The handlers run in an iii_rx worker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from http_helpers import REST_TIMEOUT_MS, rest_url, wait_for_routes

import iii_rx
from iii_rx import ApiRequest, IIIInvocationError
from iii_rx.client import Client
from iii_rx.engine import EngineThread
from iii_rx.http import ResponseStream

ENVELOPES: dict[str, Any] = {
    "camel": {"statusCode": 202, "body": {"a": 1}},
    "both": {"status_code": 201, "statusCode": 500, "body": None},
    "lines": {"status_code": 200, "headers": ["X-One: 1", "bad line", 7, "X-Two:  2 "],
              "body": [1, 2]},
    "text": {"headers": {"Content-Type": "text/plain; charset=utf-8"}, "body": "héllo"},
    "null": {"headers": {"content-type": "application/json"}, "body": None},
    "xml": {"headers": {"content-type": "application/xml"}, "body": {"k": "v"}},
    "plain": {"message": "not an envelope"},
    "string": "just a string",
    "absent": {"status_code": 404},
    "range": {"status_code": 99, "body": "x", "headers": {"content-type": "text/plain"}},
    "badheaders": {"headers": {"ok": "1", "bad name": "x", "crlf": "a\r\nb"}},
}


async def envelope(data: dict[str, Any]) -> Any:
    return ENVELOPES[data["query_params"]["case"]]


ABANDONED: list[ResponseStream] = []
"""Response streams a handler left open (the engine abandons them): a socket to close."""


async def stream_cases(data: dict[str, Any]) -> Any:
    request = ApiRequest.model_validate(data)
    case = request.query_params["case"]
    out = request.stream()
    if case == "empty":  # status and headers, then close without a body
        await out.set_status(201)
        await out.set_headers({"x-empty": "yes"})
        await out.close()
        return None
    if case == "buffered-wins":  # control messages, then a value before any binary frame
        await out.set_status(299)
        ABANDONED.append(out)  # the test closes it once the buffered response has won
        return {"status_code": 200, "body": {"buffered": True}}
    if case == "slow-body":  # the head comes at once, the body takes longer than the timeout
        for _ in range(3):
            await out.write(b"part;")
            await asyncio.sleep(REST_TIMEOUT_MS / 1000 / 2)
        await out.close()
        return None
    raise AssertionError(case)


async def with_metadata(data: dict[str, Any], metadata: Any) -> Any:
    return {"body": {"metadata": metadata, "method": data["method"]}}


async def first(data: dict[str, Any]) -> Any:
    return {"body": "first"}


async def second(data: dict[str, Any]) -> Any:
    return {"body": "second"}


async def middleware(data: dict[str, Any]) -> Any:
    assert data["phase"] == "preHandler"
    if data["request"]["query_params"].get("stop"):
        return {"action": "respond",
                "response": {"status_code": 403, "body": {"stopped": True}}}
    return {"action": "continue"}


@pytest.fixture
async def rx(engine: EngineThread) -> AsyncIterator[Client]:
    async with iii_rx.connect(engine.url, name=f"rest-{uuid.uuid4().hex[:8]}") as client:
        for function_id, handler in (("r::envelope", envelope), ("r::stream", stream_cases),
                                     ("r::meta", with_metadata), ("r::first", first),
                                     ("r::second", second), ("r::mw", middleware)):
            client.register_function(function_id, handler)
        yield client


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


def bind(client: Client, function_id: str, path: str, method: str = "GET",
         **extra: Any) -> Any:
    return client.register_trigger({"type": "http", "function_id": function_id,
                                    "config": {"api_path": path, "http_method": method},
                                    **extra})


@pytest.mark.parametrize(
    ("case", "status", "content_type", "body", "headers"),
    [
        ("camel", 202, "application/json", b'{"a":1}', {}),
        ("both", 201, "application/json", b"null", {}),
        ("lines", 200, "application/json", b"[1,2]", {"X-One": "1", "X-Two": "2"}),
        ("text", 200, "text/plain; charset=utf-8", "héllo".encode(), {}),
        ("null", 200, "application/json", b"", {}),
        ("xml", 200, "application/xml", b'{"k":"v"}', {}),
        ("plain", 200, "application/json", b"{}", {}),
        ("string", 200, "application/json", b"{}", {}),
        ("absent", 404, "application/json", b"{}", {}),
        ("range", 200, "text/plain", b"x", {}),
        ("badheaders", 200, "application/json", b"{}", {"ok": "1"}),
    ],
)
async def test_buffered_envelope_encoding(
    engine: EngineThread, rx: Client, http: aiohttp.ClientSession, case: str, status: int,
    content_type: str, body: bytes, headers: dict[str, str],
) -> None:
    bind(rx, "r::envelope", "/env")
    await wait_for_routes(engine, "r::envelope")
    async with http.get(rest_url(engine) + f"/env?case={case}") as response:
        assert response.status == status
        assert response.headers["content-type"] == content_type
        assert await response.read() == body
        for name, value in headers.items():
            assert response.headers[name] == value
        assert "bad name" not in response.headers and "crlf" not in response.headers


async def test_streaming_edge_cases(engine: EngineThread, rx: Client,
                                    http: aiohttp.ClientSession) -> None:
    bind(rx, "r::stream", "/s")
    await wait_for_routes(engine, "r::stream")
    async with http.get(rest_url(engine) + "/s?case=empty") as response:
        assert response.status == 201
        assert response.headers["x-empty"] == "yes"
        assert await response.read() == b""
    async with http.get(rest_url(engine) + "/s?case=buffered-wins") as response:
        assert response.status == 200
        assert await response.json() == {"buffered": True}
    await ABANDONED.pop().close()  # the engine removed it (1011): not a refusal of the writer
    # The REST timeout bounds the time to the response head, not a streamed body.
    async with http.get(rest_url(engine) + "/s?case=slow-body") as response:
        assert response.status == 200
        assert await response.read() == b"part;" * 3


async def test_binding_metadata_reaches_the_handler_and_head_uses_get(
    engine: EngineThread, rx: Client, http: aiohttp.ClientSession,
) -> None:
    bind(rx, "r::meta", "/meta", metadata={"route": "meta"})
    await wait_for_routes(engine, "r::meta")
    async with http.get(rest_url(engine) + "/meta") as response:
        assert await response.json() == {"metadata": {"route": "meta"}, "method": "GET"}
    async with http.head(rest_url(engine) + "/meta") as response:
        assert response.status == 200
        assert await response.read() == b""


async def test_replacement_conflict_and_ownership(
    engine: EngineThread, rx: Client, http: aiohttp.ClientSession,
) -> None:
    url = rest_url(engine) + "/dup/7"
    older = bind(rx, "r::first", "/dup/:id")
    await wait_for_routes(engine, "r::first")
    bind(rx, "r::second", "dup/:id", "get")  # same route: replaces
    await wait_for_routes(engine, "r::second")
    async with http.get(url) as response:
        assert await response.json() == "second"
    older.unregister()  # no longer the owner: the route stays
    await rx.trigger("engine::functions::list", {})  # a round trip after the unregister
    async with http.get(url) as response:
        assert await response.json() == "second"
    with pytest.raises(IIIInvocationError) as info:  # same shape, other parameter name
        await rx.trigger("engine::register_trigger", {
            "trigger_type": "http", "function_id": "r::first",
            "config": {"api_path": "/dup/:other", "http_method": "GET"}})
    assert info.value.code == "trigger_registration_failed"
    assert "conflicts" in info.value.message
    with pytest.raises(IIIInvocationError) as info:
        await rx.trigger("engine::register_trigger", {
            "trigger_type": "http", "function_id": "r::first", "config": {}})
    assert "api_path is required" in info.value.message


async def test_middleware_and_cors(engine: EngineThread, rx: Client,
                                   http: aiohttp.ClientSession) -> None:
    bind(rx, "r::first", "/guarded", "POST")
    rx.register_trigger({"type": "http", "function_id": "r::second", "config": {
        "api_path": "/mw", "middleware_function_ids": ["r::mw"]}})
    await wait_for_routes(engine, "r::first", "r::second")
    async with http.get(rest_url(engine) + "/mw?stop=1") as response:
        assert response.status == 403
        assert await response.json() == {"stopped": True}
    async with http.get(rest_url(engine) + "/mw", headers={"Origin": "http://a.test"}) as resp:
        assert await resp.json() == "second"
        assert resp.headers["access-control-allow-origin"] == "*"
    async with http.options(rest_url(engine) + "/guarded", headers={
            "Origin": "http://a.test", "Access-Control-Request-Method": "POST"}) as response:
        assert response.status == 200
        assert response.headers["access-control-allow-origin"] == "*"
        assert response.headers["access-control-allow-methods"] == "POST"


async def test_http_trigger_type_is_described(engine: EngineThread, rx: Client) -> None:
    info = await rx.trigger("engine::triggers::info", {"id": "http"})
    assert info["worker_name"] == "iii-http"
    assert info["configuration_schema"]["required"] == ["api_path"]
    assert "status_code" in info["response_schema"]["properties"]
