"""HTTP-invoked functions end to end (issue 5, "Done when"): functions registered with an
HttpInvocationConfig by an iii_rx worker and by an official iii-sdk worker, served by the
embedded engine calling a real aiohttp server on 127.0.0.1, called from both SDKs; each auth
type (the server verifies the HMAC signature with iii_rx.http.verify_request); error statuses,
timeouts and refused registrations mapped to the protocol's codes."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from http_helpers import on_engine_until
from iii import InitOptions, InvocationError, register_worker
from iii.iii import III
from iii_helpers.http import HttpAuthApiKey as SdkApiKey
from iii_helpers.http import HttpAuthBearer as SdkBearer
from iii_helpers.http import HttpAuthHmac as SdkHmac
from iii_helpers.http import HttpInvocationConfig as SdkConfig

import iii_rx
from iii_rx import HttpInvocationConfig, IIIInvocationError
from iii_rx.client import Client
from iii_rx.engine import EngineThread
from iii_rx.http import verify_request

SECRET = "s3cret-for-hmac"
TOKEN = "token-for-bearer"
API_KEY = "value-for-api-key"
ENV = {"IIIRX_T_HMAC": SECRET, "IIIRX_T_TOKEN": TOKEN, "IIIRX_T_KEY": API_KEY}

AUTHS: dict[str, dict[str, str] | None] = {
    "none": None,
    "hmac": {"type": "hmac", "secret_key": "IIIRX_T_HMAC"},
    "bearer": {"type": "bearer", "token_key": "IIIRX_T_TOKEN"},
    "api_key": {"type": "api_key", "header": "X-Service-Key", "value_key": "IIIRX_T_KEY"},
}
SDK_AUTHS: dict[str, Any] = {
    "none": None,
    "hmac": SdkHmac(secret_key="IIIRX_T_HMAC"),
    "bearer": SdkBearer(token_key="IIIRX_T_TOKEN"),
    "api_key": SdkApiKey(header="X-Service-Key", value_key="IIIRX_T_KEY"),
}


@dataclass
class Target:
    """A local endpoint: reports what it saw, including whether the HMAC verified."""

    base: str
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str) -> str:
        return self.base + path


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    holder: list[Target] = []

    async def seen(request: web.Request) -> web.Response:
        body = await request.read()
        data = json.loads(body)
        return web.json_response({
            "data": data,
            "method": request.method,
            "signed": verify_request(SECRET, request.headers, body),
            "authorization": request.headers.get("Authorization"),
            "service_key": request.headers.get("X-Service-Key"),
            "tenant": request.headers.get("X-Tenant"),
            "function_path": request.headers.get("x-iii-function-path"),
        })

    async def declined(request: web.Request) -> web.Response:
        return web.json_response({"error": {"code": "card_declined", "message": "nope"}},
                                 status=402)

    async def bad_gateway(request: web.Request) -> web.Response:
        return web.Response(status=502, text="down")

    async def odd_error(request: web.Request) -> web.Response:  # not {"error": {...}}
        return web.json_response({"error": "plain text"}, status=400)

    async def text(request: web.Request) -> web.Response:
        return web.Response(text="not json")

    async def empty(request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def slow(request: web.Request) -> web.Response:
        await holder[0].release.wait()
        return web.json_response({})

    app = web.Application()
    for path, handler in (("/seen", seen), ("/declined", declined), ("/bad", bad_gateway),
                          ("/text", text), ("/empty", empty), ("/slow", slow),
                          ("/odd", odd_error)):
        app.router.add_route("*", path, handler)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    holder.append(Target(f"http://{host}:{port}"))
    yield holder[0]
    holder[0].release.set()
    await runner.cleanup()


@dataclass
class Workers:
    rx: Client
    sdk: III

    async def call_rx(self, function_id: str, data: Any) -> Any:
        return await self.rx.trigger(function_id, data, timeout_ms=10_000)

    async def call_sdk(self, function_id: str, data: Any) -> Any:
        return await asyncio.to_thread(self.sdk.trigger, {
            "function_id": function_id, "payload": data, "timeout_ms": 10_000})

    async def call(self, caller: str, function_id: str, data: Any) -> Any:
        return await (self.call_rx if caller == "rx" else self.call_sdk)(function_id, data)

    async def error_of(self, caller: str, function_id: str) -> tuple[str, str]:
        """The (code, message) a failing call raises, read from either SDK's error type."""
        try:
            await self.call(caller, function_id, {"x": 1})
        except (IIIInvocationError, InvocationError) as exc:
            return exc.code, exc.message
        raise AssertionError(f"{function_id} did not fail")


@pytest.fixture
async def workers(engine: EngineThread, monkeypatch: pytest.MonkeyPatch,
                  ) -> AsyncIterator[Workers]:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)  # the engine reads secrets from its environment
    sdk = register_worker(engine.url, InitOptions(worker_name=f"hf-sdk-{uuid.uuid4().hex[:8]}"))
    try:
        async with iii_rx.connect(engine.url, name=f"hf-rx-{uuid.uuid4().hex[:8]}") as rx:
            yield Workers(rx, sdk)
    finally:
        await asyncio.to_thread(sdk.shutdown)


def register(workers: Workers, registrar: str, function_id: str, url: str, *,
             auth: str = "none", **options: Any) -> None:
    if registrar == "rx":
        workers.rx.register_function(function_id, HttpInvocationConfig(
            url, auth=AUTHS[auth], **options))
    else:
        workers.sdk.register_function(function_id, SdkConfig(
            url=url, auth=SDK_AUTHS[auth], **options))


async def wait_registered(engine: EngineThread, *function_ids: str) -> None:
    """Until the engine registered (or refused) every one of ``function_ids``."""
    registry = engine.engine.registry

    def settled() -> bool:
        return all(("default", f) in registry.functions
                   or registry.refusal_reason(("default", f)) is not None for f in function_ids)

    await on_engine_until(engine, settled, f"registration of {function_ids}")


@pytest.mark.parametrize("registrar", ["rx", "sdk"])
async def test_each_auth_type_from_both_callers(
    engine: EngineThread, workers: Workers, target: Target, registrar: str,
) -> None:
    ids = {auth: f"{registrar}::ext::{auth}" for auth in AUTHS}
    for auth, function_id in ids.items():
        register(workers, registrar, function_id, target.url("/seen"), auth=auth,
                 headers={"X-Tenant": "acme"})
    await wait_registered(engine, *ids.values())
    for caller in ("rx", "sdk"):
        for auth, function_id in ids.items():
            result = await workers.call(caller, function_id, {"amount": 5, "caller": caller})
            assert result["data"]["amount"] == 5 and result["data"]["caller"] == caller
            # added by the engine (docs/protocol.md §9.2)
            assert "_caller_worker_id" in result["data"]
            assert result["method"] == "POST"
            assert result["tenant"] == "acme"
            assert result["function_path"] == function_id
            assert result["signed"] is (auth == "hmac"), (auth, caller)
            assert result["authorization"] == (f"Bearer {TOKEN}" if auth == "bearer" else None)
            assert result["service_key"] == (API_KEY if auth == "api_key" else None)


@pytest.mark.parametrize("registrar", ["rx", "sdk"])
async def test_outcomes_map_to_spec_codes(
    engine: EngineThread, workers: Workers, target: Target, registrar: str,
) -> None:
    prefix = f"{registrar}::out"
    register(workers, registrar, f"{prefix}::declined", target.url("/declined"))
    register(workers, registrar, f"{prefix}::bad", target.url("/bad"))
    register(workers, registrar, f"{prefix}::text", target.url("/text"))
    register(workers, registrar, f"{prefix}::empty", target.url("/empty"), method="PUT")
    register(workers, registrar, f"{prefix}::slow", target.url("/slow"), timeout_ms=150)
    register(workers, registrar, f"{prefix}::odd", target.url("/odd"))
    await wait_registered(engine, *(f"{prefix}::{n}" for n in
                                    ("declined", "bad", "text", "empty", "slow", "odd")))
    for caller in ("rx", "sdk"):
        assert await workers.error_of(caller, f"{prefix}::declined") == ("card_declined", "nope")
        assert await workers.error_of(caller, f"{prefix}::bad") == (
            "http_error", "HTTP 502 Bad Gateway")
        assert await workers.error_of(caller, f"{prefix}::odd") == (
            "http_error", "HTTP 400 Bad Request")
        assert (await workers.error_of(caller, f"{prefix}::text"))[0] == "invalid_response"
        code, message = await workers.error_of(caller, f"{prefix}::slow")
        assert code == "http_request_failed" and "timed out after 150 ms" in message
        assert await workers.call(caller, f"{prefix}::empty", {}) is None


@pytest.mark.parametrize("registrar", ["rx", "sdk"])
async def test_refused_registrations_fail_calls_with_the_reason(
    engine: EngineThread, workers: Workers, registrar: str,
) -> None:
    prefix = f"{registrar}::refused"
    register(workers, registrar, f"{prefix}::private", "http://10.1.2.3:8080/f")
    register(workers, registrar, f"{prefix}::plain", "http://93.184.216.34/f")
    register(workers, registrar, f"{prefix}::dns", "https://no-such-host.invalid/f")
    await wait_registered(engine, *(f"{prefix}::{n}" for n in ("private", "plain", "dns")))
    expected = {
        "private": "Private IP blocked",
        "plain": "HTTPS is required",
        "dns": "DNS lookup failed",
    }
    for caller in ("rx", "sdk"):
        for name, reason in expected.items():
            code, message = await workers.error_of(caller, f"{prefix}::{name}")
            assert code == "function_not_found", (name, code, message)
            assert reason in message and "url_validation_failed" in message
    # Both workers are still connected and usable: nothing was fatal.
    for caller in ("rx", "sdk"):
        assert "functions" in await workers.call(caller, "engine::functions::list", {})


async def test_missing_secret_refuses_the_registration(
    engine: EngineThread, workers: Workers, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("IIIRX_T_TOKEN")
    register(workers, "rx", "rx::nosecret", "http://127.0.0.1:9/f", auth="bearer")
    register(workers, "sdk", "sdk::nosecret", "http://127.0.0.1:9/f", auth="bearer")
    await wait_registered(engine, "rx::nosecret", "sdk::nosecret")
    for caller in ("rx", "sdk"):
        for function_id in ("rx::nosecret", "sdk::nosecret"):
            code, message = await workers.error_of(caller, function_id)
            assert code == "function_not_found"
            assert "token_not_found" in message and "IIIRX_T_TOKEN" in message
            assert TOKEN not in message


async def test_engine_settings_reach_the_url_policy() -> None:
    """``Engine(allow_http_private=True, http_url_allowlist=...)`` relax and tighten 9.1."""
    from iii_rx.engine import Engine

    async with Engine(port=0, namespace_grace_ms=50, allow_http_private=True,
                      http_url_allowlist=("10.*", "*.test")) as engine, \
            iii_rx.connect(engine.url, name=f"policy-{uuid.uuid4().hex[:8]}") as rx:
        # Private but allowed: registered (not called: this network may answer anything).
        rx.register_function("p::private", HttpInvocationConfig("http://10.255.255.1:9/f"))
        rx.register_function("p::loopback", HttpInvocationConfig("http://127.0.0.1:9/f"))
        info = await rx.trigger("engine::functions::info", {"function_id": "p::private"})
        assert info["function_id"] == "p::private"
        with pytest.raises(IIIInvocationError) as refused:
            await rx.trigger("p::loopback", {}, timeout_ms=5000)
        assert refused.value.code == "function_not_found"
        assert "URL not in allowlist" in refused.value.message
