"""http triggers end to end (issue 5, "Done when"): real HTTP requests on 127.0.0.1 through the
embedded engine's REST API to a function of an iii_rx worker and of an official iii-sdk worker:
GET with query and path params, POST JSON, POST binary read from request_body, a streamed
10 MB response read by a real HTTP client, and the 404 / 422 / 500 / 504 envelopes."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from http_helpers import rest_url, wait_for_routes
from iii import InitOptions, register_worker
from iii_helpers.http import HttpResponse, http

import iii_rx
from iii_rx import ApiRequest, ApiResponse
from iii_rx.engine import EngineThread
from iii_rx.http import api_handler

pytestmark = pytest.mark.filterwarnings("ignore:register_trigger is deprecated")

CHUNK = 64 * 1024
STREAM_CHUNKS = 160  # 10 MiB
SLOW_RELEASE = threading.Event()  # the slow handlers answer once the test saw its 504
SLOW_DONE = threading.Event()


async def slow_answer() -> None:
    await asyncio.to_thread(SLOW_RELEASE.wait, 10)
    SLOW_DONE.set()


def pattern(i: int) -> bytes:
    return bytes([i % 251]) * CHUNK


EXPECTED_STREAM = hashlib.sha256(b"".join(pattern(i) for i in range(STREAM_CHUNKS))).hexdigest()


def echo_body(data: dict[str, Any]) -> dict[str, Any]:
    return {key: data.get(key) for key in
            ("query_params", "path_params", "path", "method", "body", "trigger")} | {
        "x_test": data["headers"].get("x-test")}


# ------------------------------------------------------------------ iii_rx handlers


@api_handler
async def rx_echo(request: ApiRequest) -> ApiResponse:
    data = request.model_dump()
    assert request.header("X-Test") == data["headers"].get("x-test")
    return ApiResponse(status_code=201, headers={"x-handler": "rx"}, body=echo_body(data))


async def rx_upload(data: dict[str, Any]) -> ApiResponse:
    raw = await ApiRequest.model_validate(data).request_body.read_all()
    return ApiResponse(body={"n": len(raw), "sha256": hashlib.sha256(raw).hexdigest()})


async def rx_stream(data: dict[str, Any]) -> None:
    async with ApiRequest.model_validate(data).stream() as out:
        await out.set_status(203)
        await out.set_headers({"content-type": "application/octet-stream", "x-handler": "rx"})
        for i in range(STREAM_CHUNKS):
            await out.write(pattern(i))


async def rx_fail(data: dict[str, Any]) -> None:
    raise RuntimeError("kaput")


async def rx_slow(data: dict[str, Any]) -> ApiResponse:
    await slow_answer()
    return ApiResponse()


async def rx_none(data: dict[str, Any]) -> None:
    return None


async def rx_condition(data: dict[str, Any]) -> bool:
    assert "request_body" not in data and "response" not in data
    return data["query_params"].get("ok") == "yes"


# ------------------------------------------------------------------ official SDK handlers


async def sdk_echo(data: dict[str, Any]) -> HttpResponse[Any]:
    # The official model serialises as "statusCode": the engine must read it too.
    return HttpResponse(statusCode=201, headers={"x-handler": "sdk"}, body=echo_body(data))


async def sdk_upload(data: dict[str, Any]) -> dict[str, Any]:
    raw = await data["request_body"].read_all()
    return {"status_code": 200, "body": {"n": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}}


async def _sdk_stream(request: Any, response: Any) -> None:
    await response.status(203)
    await response.headers({"content-type": "application/octet-stream", "x-handler": "sdk"})
    for i in range(STREAM_CHUNKS):
        await response.writer.write(pattern(i))
    response.close()


sdk_stream = http(_sdk_stream)


async def sdk_fail(data: dict[str, Any]) -> None:
    raise RuntimeError("kaput")


async def sdk_slow(data: dict[str, Any]) -> dict[str, Any]:
    await slow_answer()
    return {"status_code": 200}


async def sdk_none(data: dict[str, Any]) -> None:
    return None


async def sdk_condition(data: dict[str, Any]) -> bool:
    return bool(data["query_params"].get("ok") == "yes")


HANDLERS: dict[str, dict[str, Callable[..., Any]]] = {
    "rx": {"echo": rx_echo, "upload": rx_upload, "stream": rx_stream, "fail": rx_fail,
           "slow": rx_slow, "none": rx_none, "condition": rx_condition},
    "sdk": {"echo": sdk_echo, "upload": sdk_upload, "stream": sdk_stream, "fail": sdk_fail,
            "slow": sdk_slow, "none": sdk_none, "condition": sdk_condition},
}


def triggers(kind: str) -> list[dict[str, Any]]:
    def bind(name: str, path: str, method: str = "GET", **config: Any) -> dict[str, Any]:
        return {"type": "http", "function_id": f"{kind}::{name}", "metadata": {"via": kind},
                "config": {"api_path": f"/{kind}{path}", "http_method": method, **config}}

    return [
        bind("echo", "/users/:id/posts/:post"),
        bind("echo", "/json", "POST"),
        bind("upload", "/upload", "POST"),
        bind("stream", "/stream"),
        bind("fail", "/fail"),
        bind("slow", "/slow"),
        bind("none", "/none"),
        bind("echo", "/guarded", condition_function_id=f"{kind}::condition"),
    ]


@dataclass
class Served:
    kind: str
    base: str


@pytest.fixture(params=["rx", "sdk"])
async def served(request: pytest.FixtureRequest, engine: EngineThread) -> AsyncIterator[Served]:
    kind: str = request.param
    handlers = HANDLERS[kind]
    ids = [f"{kind}::{name}" for name in handlers if name != "condition"]
    if kind == "rx":
        async with iii_rx.connect(engine.url, name=f"http-rx-{uuid.uuid4().hex[:8]}") as iii:
            for name, handler in handlers.items():
                iii.register_function(f"{kind}::{name}", handler)
            for trigger in triggers(kind):
                iii.register_trigger(trigger)
            await wait_for_routes(engine, *ids)
            yield Served(kind, rest_url(engine) + f"/{kind}")
    else:
        sdk = register_worker(engine.url, InitOptions(
            worker_name=f"http-sdk-{uuid.uuid4().hex[:8]}"))
        try:
            for name, handler in handlers.items():
                sdk.register_function(f"{kind}::{name}", handler)
            for trigger in triggers(kind):
                sdk.register_trigger(trigger)
            await wait_for_routes(engine, *ids)
            yield Served(kind, rest_url(engine) + f"/{kind}")
        finally:
            await asyncio.to_thread(sdk.shutdown)


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


async def test_get_with_query_and_path_params(served: Served,
                                              client: aiohttp.ClientSession) -> None:
    async with client.get(served.base + "/users/42/posts/a%20b?page=2&sort=new",
                          headers={"X-Test": "hi"}) as response:
        assert response.status == 201
        assert response.headers["x-handler"] == served.kind
        assert response.headers["content-type"].startswith("application/json")
        body = await response.json()
    assert body == {
        "query_params": {"page": "2", "sort": "new"},
        "path_params": {"id": "42", "post": "a%20b"},  # as sent (the Rust engine's way)
        "path": f"/{served.kind}/users/:id/posts/:post",
        "method": "GET",
        "body": None,
        "trigger": {"type": "http", "path": f"/{served.kind}/users/:id/posts/:post",
                    "method": "GET"},
        "x_test": "hi",
    }


async def test_post_json(served: Served, client: aiohttp.ClientSession) -> None:
    payload = {"name": "zoë", "tags": [1, 2, {"deep": None}]}
    async with client.post(served.base + "/json", json=payload) as response:
        assert response.status == 201
        body = await response.json()
    assert body["body"] == payload
    assert body["method"] == "POST"


async def test_post_binary_read_from_request_body(served: Served,
                                                  client: aiohttp.ClientSession) -> None:
    raw = os.urandom(700_000)
    async with client.post(served.base + "/upload", data=raw,
                           headers={"content-type": "application/octet-stream"}) as response:
        assert response.status == 200
        body = await response.json()
    assert body == {"n": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}


async def test_streamed_10_mb_response(served: Served, client: aiohttp.ClientSession) -> None:
    digest = hashlib.sha256()
    size = 0
    async with client.get(served.base + "/stream") as response:
        assert response.status == 203
        assert response.headers["content-type"] == "application/octet-stream"
        assert response.headers["x-handler"] == served.kind
        async for chunk in response.content.iter_chunked(256 * 1024):
            digest.update(chunk)
            size += len(chunk)
    assert size == STREAM_CHUNKS * CHUNK
    assert digest.hexdigest() == EXPECTED_STREAM


async def test_handler_error_is_a_500_envelope(served: Served,
                                               client: aiohttp.ClientSession) -> None:
    async with client.get(served.base + "/fail") as response:
        assert response.status == 500
        body = await response.json()
    error = body["error"]
    assert error["code"] == "invocation_failed"
    assert "kaput" in error["message"]
    assert len(error["error_id"]) >= 8 and int(error["error_id"], 16) >= 0


async def test_timeout_is_a_504(served: Served, client: aiohttp.ClientSession) -> None:
    SLOW_RELEASE.clear()
    SLOW_DONE.clear()
    try:
        async with client.get(served.base + "/slow") as response:
            assert response.status == 504
            assert await response.read() == b""
    finally:
        SLOW_RELEASE.set()
        assert await asyncio.to_thread(SLOW_DONE.wait, 10)


async def test_no_response_is_a_500_after_the_grace(served: Served,
                                                    client: aiohttp.ClientSession) -> None:
    async with client.get(served.base + "/none") as response:
        assert response.status == 500
        body = await response.json()
    assert body["error"]["code"] == "NO_RESPONSE"
    assert "error_id" in body["error"]


async def test_condition_function(served: Served, client: aiohttp.ClientSession) -> None:
    async with client.get(served.base + "/guarded?ok=no") as response:
        assert response.status == 422
        assert await response.json() == {
            "error": {"code": "CONDITION_NOT_MET", "message": "Request condition not met"},
            "skipped": True}
    async with client.get(served.base + "/guarded?ok=yes") as response:
        assert response.status == 201
        assert (await response.json())["query_params"] == {"ok": "yes"}


async def test_unmatched_route_is_a_404(served: Served, client: aiohttp.ClientSession) -> None:
    for method, path in (("GET", "/nowhere"), ("DELETE", "/json"), ("GET", "/users/1")):
        async with client.request(method, served.base + path) as response:
            assert response.status == 404
            assert await response.json() == {
                "error": {"code": "NOT_FOUND", "message": "Not Found"}}


async def test_a_request_continues_its_callers_trace(engine: EngineThread,
                                                    client: aiohttp.ClientSession) -> None:
    """A request's ``traceparent`` / ``baggage`` headers reach the condition function and the
    handler (docs/protocol.md §10.4; the Rust engine continues them too)."""
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

    def seen() -> dict[str, Any]:
        ctx = iii_rx.get_context()
        return {"traceparent": ctx.traceparent, "baggage": ctx.baggage}

    async with iii_rx.connect(engine.url, name=f"http-trace-{uuid.uuid4().hex[:8]}") as iii:
        iii.register_function("trace::web", lambda data: {"status_code": 200, "body": seen()})
        iii.register_function("trace::guard", lambda data: seen()["traceparent"] == traceparent)
        iii.register_trigger({"type": "http", "function_id": "trace::web", "config": {
            "api_path": "/traced", "http_method": "GET",
            "condition_function_id": "trace::guard"}})
        await wait_for_routes(engine, "trace::web")
        async with client.get(rest_url(engine) + "/traced",
                              headers={"traceparent": traceparent, "baggage": "k=v"}) as response:
            assert response.status == 200  # the condition saw the trace too
            assert await response.json() == {"traceparent": traceparent, "baggage": "k=v"}
        async with client.get(rest_url(engine) + "/traced") as response:
            assert response.status == 422  # no trace: the condition says no
        iii.register_function("trace::open", lambda data: {"status_code": 200, "body": seen()})
        iii.register_trigger({"type": "http", "function_id": "trace::open",
                              "config": {"api_path": "/open", "http_method": "GET"}})
        await wait_for_routes(engine, "trace::open")
        for bad in ({"traceparent": "garbage", "baggage": "k=\u00e9"},
                    {"traceparent": traceparent.replace("00-", "ff-", 1), "baggage": "k=\tv"},
                    {"traceparent": "00-" + "0" * 32 + "-b7ad6b7169203331-01"}):
            async with client.get(rest_url(engine) + "/open", headers=bad) as response:
                assert response.status == 200  # a header that is not valid is left out
                assert await response.json() == {"traceparent": None, "baggage": None}


async def test_a_failed_or_lying_streamed_response(engine: EngineThread,
                                                   client: aiohttp.ClientSession) -> None:
    """A stream whose handler fails is cut (the client cannot take it for a whole body); a
    Content-Length the handler set is not sent on a chunked body (the client waited for bytes
    that never came); a middleware's answer without a body has ``{}``."""
    async def fails_midway(data: dict[str, Any]) -> None:
        async with ApiRequest.model_validate(data).stream() as out:
            await out.write(b"x" * 10_000)
            raise RuntimeError("midway")

    async def claims_more(data: dict[str, Any]) -> None:
        async with ApiRequest.model_validate(data).stream() as out:
            await out.set_headers({"content-length": "100"})
            await out.write(b"0123456789")

    def answers_early(data: dict[str, Any]) -> dict[str, Any]:
        return {"action": "respond", "response": {"status_code": 202}}

    async with iii_rx.connect(engine.url, name=f"http-cut-{uuid.uuid4().hex[:8]}") as iii:
        iii.register_function("cut::fails", fails_midway)
        iii.register_function("cut::claims", claims_more)
        iii.register_function("cut::early", answers_early)
        for function_id, path, extra in (("cut::fails", "/cut/fails", {}),
                                         ("cut::claims", "/cut/claims", {}),
                                         ("cut::claims", "/cut/early", {
                                             "middleware_function_ids": ["cut::early"]})):
            iii.register_trigger({"type": "http", "function_id": function_id, "config": {
                "api_path": path, "http_method": "GET", **extra}})
        await wait_for_routes(engine, "cut::fails", "cut::claims")
        async with client.get(rest_url(engine) + "/cut/fails") as response:
            assert response.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.read()
        async with client.get(rest_url(engine) + "/cut/claims") as response:
            assert await asyncio.wait_for(response.read(), 10) == b"0123456789"
        async with client.get(rest_url(engine) + "/cut/early") as response:
            assert response.status == 202 and await response.json() == {}


async def test_a_stream_that_fails_before_its_first_chunk_answers_500_not_an_empty_200(
        engine: EngineThread, client: aiohttp.ClientSession) -> None:
    """Nothing of the response is sent before its first chunk, so a handler that fails there
    (a missing file after ``set_status(200)``) must not give a complete, empty 200: the
    client would store an empty download as a success."""
    async def missing_file(data: dict[str, Any]) -> None:
        async with ApiRequest.model_validate(data).stream() as out:
            await out.set_status(200)
            await out.set_headers({"content-type": "application/octet-stream"})
            raise FileNotFoundError("no such file: report.pdf")

    async def gives_up(data: dict[str, Any]) -> None:
        await data["response"].abort("changed my mind")  # the live writer, before any chunk

    async with iii_rx.connect(engine.url, name=f"http-early-{uuid.uuid4().hex[:8]}") as iii:
        iii.register_function("early::missing", missing_file)
        iii.register_function("early::gives_up", gives_up)
        for function_id, path in (("early::missing", "/early/missing"),
                                  ("early::gives_up", "/early/gives-up")):
            iii.register_trigger({"type": "http", "function_id": function_id, "config": {
                "api_path": path, "http_method": "GET"}})
        await wait_for_routes(engine, "early::missing", "early::gives_up")
        async with client.get(rest_url(engine) + "/early/missing") as response:
            assert response.status == 500
            error = (await response.json())["error"]
            assert error["code"] == "invocation_failed"
            assert "no such file: report.pdf" in error["message"]
        async with client.get(rest_url(engine) + "/early/gives-up") as response:
            assert response.status == 500
            assert (await response.json())["error"]["code"] == "RESPONSE_ABORTED"


async def test_a_handler_that_aborts_its_stream_and_works_on_does_not_hold_the_answer(
        engine: EngineThread, client: aiohttp.ClientSession) -> None:
    """The answer to a stream aborted before its first chunk waits for the handler's outcome
    only as long as the no-response grace: a handler cleaning up for long after its abort does
    not hold the HTTP client until it returns (or the REST timeout)."""
    answered = asyncio.Event()

    async def gives_up_then_cleans_up(data: dict[str, Any]) -> None:
        await data["response"].abort("changed my mind")
        await answered.wait()  # still at work when the client gets its answer

    async with iii_rx.connect(engine.url, name=f"http-late-{uuid.uuid4().hex[:8]}") as iii:
        iii.register_function("early::cleans_up", gives_up_then_cleans_up)
        iii.register_trigger({"type": "http", "function_id": "early::cleans_up", "config": {
            "api_path": "/early/cleans-up", "http_method": "GET"}})
        await wait_for_routes(engine, "early::cleans_up")
        try:
            async with client.get(rest_url(engine) + "/early/cleans-up",
                                  timeout=aiohttp.ClientTimeout(total=15)) as response:
                assert response.status == 500
                assert (await response.json())["error"]["code"] == "RESPONSE_ABORTED"
        finally:
            answered.set()
