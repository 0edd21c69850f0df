"""The engine's HTTP-invoked function invoker against a real aiohttp server on 127.0.0.1:
headers, the three auth types (HMAC verified by the server with verify_signature), outcome
mapping by status, timeouts, redirects not followed, and the URL policy (loopback
allowed, other private ranges refused unless allowed, other hosts need https)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from iii_rx.engine.http_functions import (
    HttpFunctionInvoker,
    HttpFunctionSettings,
    RegistrationRefused,
    UrlRefused,
    check_url,
)
from iii_rx.http import HttpInvocationConfig, verify_request

SECRET = "hmac-secret-value"
ENV = {"HMAC_SECRET": SECRET, "BEARER_TOKEN": "tok-123", "API_KEY_VALUE": "key-456"}
ALLOWED = HttpFunctionSettings(secret_env_allowlist=(*ENV, "MISSING_*"))
"""Auth may read only allowlisted variables (empty by default): these tests allow theirs."""


@dataclass
class Target:
    """A local HTTP endpoint that records what it received."""

    base: str
    seen: list[dict[str, Any]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    holder: list[Target] = []

    async def record(request: web.Request) -> dict[str, Any]:
        body = await request.read()
        entry = {"method": request.method, "path": request.path,
                 "headers": dict(request.headers), "body": body,
                 "signed": verify_request(SECRET, request.headers, body)}
        holder[0].seen.append(entry)
        return entry

    async def echo(request: web.Request) -> web.Response:
        entry = await record(request)
        return web.json_response({"got": json.loads(entry["body"]), "signed": entry["signed"]})

    async def empty(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(status=204)

    async def text(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(text="plain words")

    async def redirect(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(status=302, headers={"Location": "/echo"}, text='{"moved":true}')

    async def declined(request: web.Request) -> web.Response:
        await record(request)
        return web.json_response({"error": {"code": "card_declined", "message": "nope"}},
                                 status=402)

    async def bad_gateway(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(status=502, text="upstream down")

    async def slow(request: web.Request) -> web.Response:
        await record(request)
        await holder[0].release.wait()
        return web.json_response({"late": True})

    async def big(request: web.Request) -> web.Response:
        await record(request)
        return web.json_response({"blob": "x" * 4096})

    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    app.router.add_route("*", "/empty", empty)
    app.router.add_route("*", "/text", text)
    app.router.add_route("*", "/redirect", redirect)
    app.router.add_route("*", "/declined", declined)
    app.router.add_route("*", "/bad-gateway", bad_gateway)
    app.router.add_route("*", "/slow", slow)
    app.router.add_route("*", "/big", big)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    holder.append(Target(base=f"http://{host}:{port}"))
    yield holder[0]
    holder[0].release.set()
    await runner.cleanup()


@pytest.fixture
async def invoker() -> AsyncIterator[HttpFunctionInvoker]:
    async with HttpFunctionInvoker(ALLOWED, environ=ENV) as inv:
        yield inv


async def call(invoker: HttpFunctionInvoker, config: HttpInvocationConfig, data: Any,
               function_id: str = "ext::fn") -> Any:
    fn = await invoker.prepare(function_id, config.to_wire())
    return await invoker.invoke(fn, data)


async def test_headers_and_json_body(target: Target, invoker: HttpFunctionInvoker) -> None:
    config = HttpInvocationConfig(target.url("/echo"), headers={"X-Tenant": "acme"})
    first = await call(invoker, config, {"a": 1, "é": [True, None]})
    second = await call(invoker, config, {"a": 2})
    assert first.error is None
    assert first.result == {"got": {"a": 1, "é": [True, None]}, "signed": False}
    assert second.result["got"] == {"a": 2}
    seen = target.seen[0]
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert seen["method"] == "POST"
    assert seen["body"] == '{"a":1,"é":[true,null]}'.encode()
    assert headers["content-type"] == "application/json"
    assert headers["x-iii-function-path"] == "ext::fn"
    assert headers["x-tenant"] == "acme"
    assert int(headers["x-iii-timestamp"]) > 1_600_000_000
    ids = [{k.lower(): v for k, v in s["headers"].items()}["x-iii-invocation-id"]
           for s in target.seen]
    assert len({str(uuid.UUID(i)) for i in ids}) == 2  # fresh UUID per call
    assert "authorization" not in headers and "x-iii-signature" not in headers


async def test_get_still_sends_the_json_body(target: Target,
                                             invoker: HttpFunctionInvoker) -> None:
    outcome = await call(invoker, HttpInvocationConfig(target.url("/echo"), method="GET"), [1])
    assert outcome.result["got"] == [1]
    assert target.seen[0]["method"] == "GET"


async def test_hmac_signature_verifies_at_the_receiver(target: Target,
                                                       invoker: HttpFunctionInvoker) -> None:
    config = HttpInvocationConfig(target.url("/echo"),
                                  auth={"type": "hmac", "secret_key": "HMAC_SECRET"})
    outcome = await call(invoker, config, {"amount": 5})
    assert outcome.result == {"got": {"amount": 5}, "signed": True}
    headers = {k.lower(): v for k, v in target.seen[0]["headers"].items()}
    assert headers["x-iii-signature"].startswith("sha256=")


async def test_hmac_with_the_wrong_secret_does_not_verify(target: Target) -> None:
    async with HttpFunctionInvoker(ALLOWED, environ={"HMAC_SECRET": "other"}) as inv:
        config = HttpInvocationConfig(target.url("/echo"),
                                      auth={"type": "hmac", "secret_key": "HMAC_SECRET"})
        outcome = await call(inv, config, {"amount": 5})
    assert outcome.result["signed"] is False


async def test_bearer_and_api_key(target: Target, invoker: HttpFunctionInvoker) -> None:
    await call(invoker, HttpInvocationConfig(
        target.url("/echo"), auth={"type": "bearer", "token_key": "BEARER_TOKEN"}), {})
    await call(invoker, HttpInvocationConfig(
        target.url("/echo"),
        auth={"type": "api_key", "header": "X-Api-Key", "value_key": "API_KEY_VALUE"}), {})
    bearer = {k.lower(): v for k, v in target.seen[0]["headers"].items()}
    api_key = {k.lower(): v for k, v in target.seen[1]["headers"].items()}
    assert bearer["authorization"] == "Bearer tok-123"
    assert api_key["x-api-key"] == "key-456"
    assert "authorization" not in api_key


@pytest.mark.parametrize(
    ("auth", "code", "name"),
    [
        ({"type": "hmac", "secret_key": "MISSING_SECRET"}, "secret_not_found", "MISSING_SECRET"),
        ({"type": "bearer", "token_key": "MISSING_TOKEN"}, "token_not_found", "MISSING_TOKEN"),
        ({"type": "api_key", "header": "X-K", "value_key": "MISSING_KEY"}, "api_key_not_found",
         "MISSING_KEY"),
    ],
)
async def test_missing_env_var_refuses_the_registration(
    invoker: HttpFunctionInvoker, auth: dict[str, str], code: str, name: str,
) -> None:
    with pytest.raises(RegistrationRefused) as info:
        await invoker.prepare("ext::f", {"url": "http://127.0.0.1:1/x", "auth": auth})
    assert info.value.code == code
    assert name in info.value.reason


async def test_refused_url_refuses_the_registration(invoker: HttpFunctionInvoker) -> None:
    with pytest.raises(RegistrationRefused) as info:
        await invoker.prepare("ext::f", {"url": "http://10.1.2.3/x"})
    assert info.value.code == "url_validation_failed"
    assert info.value.reason == "url_validation_failed: Private IP blocked"
    with pytest.raises(RegistrationRefused) as info:
        await invoker.prepare("ext::f", {"url": "http://x", "method": "TRACE"})
    assert info.value.code == "invalid_invocation"


@pytest.mark.parametrize(
    ("path", "result", "error"),
    [
        ("/empty", None, None),
        ("/redirect", {"moved": True}, None),
        ("/text", None, "invalid_response"),
        ("/declined", None, ("card_declined", "nope")),
        ("/bad-gateway", None, ("http_error", "HTTP 502 Bad Gateway")),
    ],
)
async def test_outcome_mapping(target: Target, invoker: HttpFunctionInvoker, path: str,
                               result: Any, error: Any) -> None:
    outcome = await call(invoker, HttpInvocationConfig(target.url(path)), {"q": 1})
    assert outcome.result == result
    if error is None:
        assert outcome.error is None
    elif isinstance(error, tuple):
        assert (outcome.error["code"], outcome.error["message"]) == error
    else:
        assert outcome.error["code"] == error
    assert [s["path"] for s in target.seen] == [path]  # one request, redirect not followed


async def test_timeout(target: Target, invoker: HttpFunctionInvoker) -> None:
    outcome = await call(invoker, HttpInvocationConfig(target.url("/slow"), timeout_ms=50), {})
    assert outcome.error is not None
    assert outcome.error["code"] == "http_request_failed"
    assert "timed out after 50 ms" in outcome.error["message"]


async def test_connection_refused(invoker: HttpFunctionInvoker) -> None:
    import socket

    with socket.socket() as sock:  # a port that nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    outcome = await call(invoker, HttpInvocationConfig(f"http://127.0.0.1:{port}/x"), {})
    assert outcome.error is not None
    assert outcome.error["code"] == "http_request_failed"
    assert str(port) in outcome.error["message"]


async def test_oversized_response_fails(target: Target) -> None:
    async with HttpFunctionInvoker(HttpFunctionSettings(max_response_bytes=1024)) as inv:
        outcome = await call(inv, HttpInvocationConfig(target.url("/big")), {})
    assert outcome.error is not None
    assert outcome.error["code"] == "http_response_failed"


async def test_unserialisable_data(target: Target, invoker: HttpFunctionInvoker) -> None:
    outcome = await call(invoker, HttpInvocationConfig(target.url("/echo")), float("nan"))
    assert outcome.error is not None and outcome.error["code"] == "serialization_error"
    assert target.seen == []


async def test_timeouts_default_and_ceiling(invoker: HttpFunctionInvoker) -> None:
    zero = await invoker.prepare("f", {"url": "http://127.0.0.1/x", "timeout_ms": 0})
    huge = await invoker.prepare("f", {"url": "http://127.0.0.1/x", "timeout_ms": 10**9})
    assert zero.timeout_ms == 30_000
    assert huge.timeout_ms == 60_000


async def test_secret_is_not_in_repr(invoker: HttpFunctionInvoker) -> None:
    fn = await invoker.prepare("f", {"url": "http://127.0.0.1/x",
                                     "auth": {"type": "bearer", "token_key": "BEARER_TOKEN"}})
    assert "tok-123" not in repr(fn)


# ------------------------------------------------------------------ URL policy

DEFAULT = HttpFunctionSettings()
PRIVATE_OK = HttpFunctionSettings(allow_http_private=True)
PLAIN_OK = HttpFunctionSettings(require_https=False)


@pytest.mark.parametrize(
    ("url", "settings", "refusal"),
    [
        ("http://127.0.0.1:8080/f", DEFAULT, None),
        ("http://127.8.9.10/f", DEFAULT, None),
        ("http://localhost:3000/f", DEFAULT, None),
        ("http://[::1]:3000/f", DEFAULT, None),
        ("https://127.0.0.1/f", DEFAULT, None),
        ("http://[::ffff:127.0.0.1]/f", DEFAULT, None),
        ("http://10.0.0.5/f", DEFAULT, "Private IP blocked"),
        ("https://192.168.1.10/f", DEFAULT, "Private IP blocked"),
        ("http://169.254.169.254/latest/meta-data", DEFAULT, "Private IP blocked"),
        ("http://[fd00::1]/f", DEFAULT, "Private IP blocked"),
        ("http://[fe80::1]/f", DEFAULT, "Private IP blocked"),
        ("http://[::ffff:10.0.0.1]/f", DEFAULT, "Private IP blocked"),
        ("http://0.0.0.0/f", DEFAULT, "Private IP blocked"),
        ("http://192.0.2.1/f", DEFAULT, "Private IP blocked"),
        # IPv6 forms that carry an IPv4 address are judged by that address
        ("http://[2002:c0a8:101::1]/f", DEFAULT, "Private IP blocked"),  # 6to4, 192.168.1.1
        ("http://[2002:7f00:1::1]/f", DEFAULT, "Private IP blocked"),  # 6to4, 127.0.0.1
        ("http://[64:ff9b::a9fe:a9fe]/f", DEFAULT, "Private IP blocked"),  # NAT64, 169.254.
        ("http://[64:ff9b::7f00:1]/f", DEFAULT, "Private IP blocked"),  # NAT64, 127.0.0.1
        ("http://[64:ff9b:1::a00:5]/f", DEFAULT, "Private IP blocked"),  # local-use NAT64
        ("http://[::a00:5]/f", DEFAULT, "Private IP blocked"),  # IPv4-compatible, 10.0.0.5
        ("http://[::ffff:0:c0a8:101]/f", DEFAULT, "Private IP blocked"),  # SIIT, 192.168.1.1
        ("http://[::]/f", DEFAULT, "Private IP blocked"),
        ("https://[2002:5db8:d822::1]/f", DEFAULT, None),  # 6to4, 93.184.216.34
        ("http://[64:ff9b::5db8:d822]/f", DEFAULT, "HTTPS is required"),  # NAT64, public
        ("http://10.0.0.5/f", PRIVATE_OK, None),
        ("http://169.254.1.1/f", PRIVATE_OK, None),
        ("http://93.184.216.34/f", DEFAULT, "HTTPS is required"),
        ("https://93.184.216.34/f", DEFAULT, None),
        ("http://93.184.216.34/f", PLAIN_OK, None),
        ("http://93.184.216.34/f", PRIVATE_OK, "HTTPS is required"),
        ("https://no-such-host.invalid/f", DEFAULT, "DNS lookup failed"),
        ("ftp://127.0.0.1/f", DEFAULT, "Invalid URL"),
        ("http:///nohost", DEFAULT, "Invalid URL"),
        ("http://[::1/f", DEFAULT, "Invalid URL"),
        ("https://127.0.0.1/f", HttpFunctionSettings(url_allowlist=("*.example.com",)),
         "URL not in allowlist"),
        ("https://93.184.216.34/f", HttpFunctionSettings(url_allowlist=("93.184.*",)), None),
        # the host is matched, never the whole URL (`*` spans `/` in a glob)
        ("http://127.0.0.1/.example.com", HttpFunctionSettings(url_allowlist=("*.example.com",)),
         "URL not in allowlist"),
        ("https://evil.invalid/x.example.com",
         HttpFunctionSettings(url_allowlist=("*.example.com",)), "URL not in allowlist"),
        ("https://a.b.invalid:8443/f", HttpFunctionSettings(url_allowlist=("https://*",)),
         "URL not in allowlist"),
    ],
)
async def test_url_policy(url: str, settings: HttpFunctionSettings, refusal: str | None) -> None:
    if refusal is None:
        await check_url(url, settings)
    else:
        with pytest.raises(UrlRefused) as info:
            await check_url(url, settings)
        assert str(info.value) == refusal


async def test_url_is_checked_again_at_call_time(target: Target) -> None:
    async with HttpFunctionInvoker(PRIVATE_OK) as inv:
        fn = await inv.prepare("f", {"url": "http://10.255.255.1:9/x"})
    async with HttpFunctionInvoker(DEFAULT) as strict:
        outcome = await strict.invoke(fn, {})
    assert outcome.error == {"code": "url_validation_failed", "message": "Private IP blocked"}
