"""Client-side HTTP models and helpers (no engine needed): config validation, envelopes,
signatures and the streaming-response control messages."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from pydantic import ValidationError

import iii_rx
from iii_rx.http import (
    ApiRequest,
    ApiResponse,
    HttpAuthApiKey,
    HttpAuthBearer,
    HttpAuthHmac,
    HttpInvocationConfig,
    ResponseStream,
    api_handler,
    looks_like_secret,
    sign,
    verify_request,
    verify_signature,
)
from iii_rx.protocol import HttpInvocationRef, RegisterFunction, decode, encode


def test_exported_from_the_package_root() -> None:
    assert iii_rx.HttpInvocationConfig is HttpInvocationConfig
    assert iii_rx.ApiRequest is ApiRequest
    assert iii_rx.ApiResponse is ApiResponse


# ------------------------------------------------------------------ HttpInvocationConfig


def test_config_defaults_and_positional_url() -> None:
    config = HttpInvocationConfig("https://fn.example/add")
    assert config.to_wire() == {"url": "https://fn.example/add", "method": "POST"}


def test_an_unset_timeout_is_the_engines_default() -> None:
    """The official model takes ``timeout_ms=None`` (the engine's default): code passing it
    keeps working after switching to ``iii_rx.compat``."""
    for config in (HttpInvocationConfig("https://fn.example/add", timeout_ms=None),
                   HttpInvocationConfig("https://fn.example/add")):
        assert "timeout_ms" not in config.to_wire()  # the engine applies its invocation timeout
    assert HttpInvocationConfig("https://fn.example/add", timeout_ms=5).to_wire()["timeout_ms"] == 5


@pytest.mark.parametrize(
    ("auth", "wire"),
    [
        ({"type": "hmac", "secret_key": "ADD_SECRET"},
         {"type": "hmac", "secret_key": "ADD_SECRET"}),
        (HttpAuthBearer(token_key="TOKEN"), {"type": "bearer", "token_key": "TOKEN"}),
        (HttpAuthApiKey(header="X-Key", value_key="KEY_VAR"),
         {"type": "api_key", "header": "X-Key", "value_key": "KEY_VAR"}),
    ],
)
def test_auth_as_dict_or_model_reaches_the_wire(auth: Any, wire: dict[str, Any]) -> None:
    config = HttpInvocationConfig(url="https://x.example/f", method="put", auth=auth)
    frame = RegisterFunction(id="ext::f", invocation=HttpInvocationRef(**config.to_wire()))
    sent = json.loads(encode(frame))
    assert sent["invocation"]["auth"] == wire
    assert sent["invocation"]["method"] == "PUT"
    assert decode(encode(frame)) == frame


def test_official_sdk_auth_models_are_accepted() -> None:
    from iii_helpers.http import HttpAuthHmac as OfficialHmac

    config = HttpInvocationConfig(url="https://x.example", auth=OfficialHmac(secret_key="S_K"))
    assert config.auth == HttpAuthHmac(secret_key="S_K")


@pytest.mark.parametrize(
    "name",
    ["sk_live_4eC39HqLyjWDarjtT1zdp7dc", "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
     "s3cr3t value", "Bearer abc", "hunter2!", "eyJhbGciOiJIUzI1NiJ9", "1TOKEN",
     "aB3dE5gH7jK9mN1pQ3sT5v"],
)
def test_secret_looking_key_names_are_refused_without_echoing_them(name: str) -> None:
    assert looks_like_secret(name)
    with pytest.raises(ValidationError) as info:
        HttpInvocationConfig(url="https://x.example", auth={"type": "bearer", "token_key": name})
    assert name not in str(info.value)


@pytest.mark.parametrize("name", ["MY_TOKEN", "charge_secret", "ApiKey", "_X", "K8S_TOKEN_2"])
def test_variable_names_are_accepted(name: str) -> None:
    assert not looks_like_secret(name)
    HttpInvocationConfig(url="https://x.example", auth={"type": "hmac", "secret_key": name})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"url": "https://x.example", "headers": {"Authorization": "Bearer abc"}},
        {"url": "https://x.example", "headers": {"x-api-key": "abc"}},
        {"url": "https://user:pass@x.example/f"},
        {"url": "https://x.example/f?token=abc"},
        {"url": "https://x.example/f?a=1&API_KEY=abc"},
        {"url": "ftp://x.example/f"},
        {"url": "/relative"},
        {"url": "https://x.example", "method": "HEAD"},
        {"url": "https://x.example", "timeout_ms": -1},
        {"url": "https://x.example", "auth": {"type": "basic", "user_key": "U"}},
        {"url": "https://x.example", "extra": 1},
    ],
)
def test_bad_configs_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        HttpInvocationConfig(**kwargs)


def test_plain_headers_are_kept() -> None:
    config = HttpInvocationConfig(url="https://x.example/f?page=2", headers={"X-Tenant": "a"})
    assert config.to_wire()["headers"] == {"X-Tenant": "a"}


# ------------------------------------------------------------------ ApiRequest / ApiResponse


def test_api_response_accepts_both_spellings_and_sends_status_code() -> None:
    assert ApiResponse(statusCode=201).status_code == 201  # type: ignore[call-arg]
    assert ApiResponse(status_code=202).status_code == 202
    assert ApiResponse.model_validate({"statusCode": 404}).status_code == 404
    response = ApiResponse(statusCode=201, body={"id": 1})  # type: ignore[call-arg]
    for dumped in (response.model_dump(), response.model_dump(by_alias=True),
                   json.loads(response.model_dump_json(by_alias=True, exclude_none=True)),
                   response.to_wire()):
        assert dumped["status_code"] == 201
        assert "statusCode" not in dumped
    assert ApiResponse().status_code == 200
    with pytest.raises(ValidationError):
        ApiResponse(status_code=99)


def test_api_request_reads_the_engine_payload() -> None:
    payload = {
        "query_params": {"page": "2"}, "path_params": {"id": "42"},
        "headers": {"content-type": "application/json", "x-multi": ["a", "b"]},
        "path": "/users/:id", "method": "POST", "body": {"name": "x"},
        "trigger": {"type": "http", "path": "/users/:id", "method": "POST"},
        "request_body": {"channel_id": "c", "access_key": "k", "direction": "read"},
        "response": {"channel_id": "c2", "access_key": "k", "direction": "write"},
        "_caller_worker_id": "w",
    }
    request = ApiRequest.model_validate(payload)
    assert request.path_params == {"id": "42"}
    assert request.header("Content-Type") == "application/json"
    assert request.header("X-Multi") == "a"
    assert request.header("missing", "d") == "d"
    assert request.body == {"name": "x"}
    with pytest.raises(RuntimeError):
        request.stream()  # still a ref, not a live writer



def test_request_and_response_take_a_body_type_as_the_official_models_do() -> None:
    # The official SDK's example annotates handlers with HttpRequest[Any] / HttpResponse[Any];
    # compat's names are these classes, so the subscript must work and change nothing.
    payload = {"body": {"a": 1}, "path_params": {"id": "7"}}
    request = ApiRequest[dict[str, Any]].model_validate(payload)
    assert isinstance(request, ApiRequest)
    assert (request.body, request.path_params) == ({"a": 1}, {"id": "7"})
    response = ApiResponse[Any](statusCode=201, body={"id": 1})  # type: ignore[call-arg]
    assert isinstance(response, ApiResponse)
    assert response.model_dump(by_alias=True)["status_code"] == 201
    assert response.to_wire() == {"status_code": 201, "headers": {}, "body": {"id": 1}}

async def test_api_handler_adapts_async_and_sync_handlers() -> None:
    async def get_async(request: ApiRequest) -> ApiResponse:
        return ApiResponse(statusCode=201, body=request.path_params)  # type: ignore[call-arg]

    def get_sync(request: ApiRequest) -> dict[str, Any]:
        return {"status_code": 202, "body": request.query_params}

    payload = {"path_params": {"id": "1"}, "query_params": {"q": "x"}}
    wrapped_async = api_handler(get_async)
    assert wrapped_async.__name__ == "get_async"
    assert await wrapped_async(payload) == {"status_code": 201, "headers": {},
                                            "body": {"id": "1"}}
    assert api_handler(get_sync)(payload) == {"status_code": 202, "body": {"q": "x"}}


# ------------------------------------------------------------------ streaming helpers


class RecordingWriter:
    """Stands in for a ChannelWriter: records what the helpers send (no wire involved)."""

    def __init__(self, *, awaitable: bool) -> None:
        self.awaitable = awaitable
        self.sent: list[Any] = []

    def _done(self) -> Any:
        if not self.awaitable:
            return None

        async def nothing() -> None:
            return None

        return nothing()

    def send_message(self, message: str) -> Any:
        self.sent.append(json.loads(message))
        return self._done()

    def write(self, data: bytes) -> Any:
        self.sent.append(data)
        return self._done()

    def close(self) -> Any:
        self.sent.append("closed")
        return self._done()


@pytest.mark.parametrize("awaitable", [True, False])
async def test_response_stream_sends_control_messages_then_body(awaitable: bool) -> None:
    writer = RecordingWriter(awaitable=awaitable)
    async with ApiRequest(response=writer).stream() as out:
        await out.set_status(201)
        await out.set_headers({"content-type": "text/plain"})
        await out.write("hé")
        await out.write(b"\x00")
    assert writer.sent == [
        {"type": "set_status", "status_code": 201},
        {"type": "set_headers", "headers": {"content-type": "text/plain"}},
        "hé".encode(), b"\x00", "closed",
    ]
    with pytest.raises(ValueError):
        await ResponseStream(writer).set_status(600)


# ------------------------------------------------------------------ signatures


def reference_signature(secret: str, ts: str, body: bytes) -> str:
    """The docs/protocol.md §9.3 example, written out independently of iii_rx.http."""
    mac = hmac.new(secret.encode(), f"{ts}:{base64.b64encode(body).decode()}".encode(),
                   hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def test_sign_matches_the_spec_scheme() -> None:
    body = b'{"a":1,"_caller_worker_id":"w"}'
    assert sign("s3", "1700000000", body) == reference_signature("s3", "1700000000", body)
    assert sign(b"s3", 1700000000, body) == reference_signature("s3", "1700000000", body)


def test_verify_signature_accepts_fresh_and_refuses_tampered_or_stale() -> None:
    body, ts = b'{"x":1}', "1700000000"
    good = reference_signature("k", ts, body)
    now = 1700000100.0
    assert verify_signature("k", ts, body, good, now=now)
    assert verify_signature("k", ts, body.decode(), good, now=now)
    assert not verify_signature("k", ts, b'{"x":2}', good, now=now)
    assert not verify_signature("other", ts, body, good, now=now)
    assert not verify_signature("k", "1700000001", body, good, now=now)
    assert not verify_signature("k", ts, body, good[:-1] + "0", now=now)
    assert not verify_signature("k", ts, body, "md5=" + good[7:], now=now)
    assert not verify_signature("k", ts, body, good, now=1700000301.0)  # 301 s old
    assert not verify_signature("k", ts, body, good, now=1699999699.0)  # 301 s ahead
    assert verify_signature("k", ts, body, good, max_age=None, now=1800000000.0)
    assert not verify_signature("k", "soon", body, good, now=now)


def test_verify_request_reads_headers_case_insensitively() -> None:
    import time

    ts = str(int(time.time()))
    body = b"[]"
    headers = {"X-III-Timestamp": ts, "X-iii-Signature": reference_signature("k", ts, body)}
    assert verify_request("k", headers, body)
    assert not verify_request("k", {"x-iii-timestamp": ts}, body)


@pytest.mark.parametrize("url", ["ftp://user:SUPERSECRETPW@127.0.0.1/x",
                                 "127.0.0.1/x?token=SUPERSECRETPW"])
def test_a_refused_url_is_not_repeated_in_the_error(url: str) -> None:
    with pytest.raises(ValidationError) as refused:
        HttpInvocationConfig(url=url)
    assert "SUPERSECRETPW" not in str(refused.value)
