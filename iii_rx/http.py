"""HTTP for workers: http-trigger models, HTTP-invoked function config, signatures, streaming.

Three things live here, none of which needs a connection:

* :class:`ApiRequest` / :class:`ApiResponse`: the payload an ``http`` trigger hands a handler
  (docs/protocol.md §6.5.2) and the buffered response envelope it may return (§6.5.3).
  ``ApiResponse`` accepts ``statusCode`` or ``status_code`` but always *serialises* ``status_code``,
  the only key the Rust engine reads (docs/protocol.md §6.5.3).
* :class:`HttpInvocationConfig` and its auth models: register a function that the engine
  serves by calling a URL (docs/protocol.md §9). The config names environment variables of the
  *engine*; a config that looks like it carries a raw secret is refused on construction.
* :func:`sign` / :func:`verify_signature`: the HMAC scheme of docs/protocol.md §9.3, for receivers
  of HTTP-invoked calls. :class:`ResponseStream` (and :func:`set_status`, :func:`set_headers`)
  streams a response from a handler over the request's ``response`` channel (§6.5.4).

This module is shared by the client and the embedded engine, so it imports neither.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import inspect
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, Generic, Literal, Protocol
from urllib.parse import parse_qsl, urlsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
)
from typing_extensions import TypeVar

from iii_rx.errors import NoResponseChannelError

__all__ = [
    "FUNCTION_PATH_HEADER",
    "INVOCATION_ID_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "ApiRequest",
    "ApiResponse",
    "HttpAuthApiKey",
    "HttpAuthBearer",
    "HttpAuthConfig",
    "HttpAuthHmac",
    "HttpInvocationConfig",
    "HttpMethod",
    "NoResponseChannelError",
    "ResponseStream",
    "api_handler",
    "looks_like_secret",
    "set_headers",
    "set_status",
    "sign",
    "verify_request",
    "verify_signature",
]

SIGNATURE_HEADER = "x-iii-signature"
"""Header carrying ``sha256=<hex>`` on HMAC-signed calls (lower case, as on the wire)."""
TIMESTAMP_HEADER = "x-iii-timestamp"
"""Header carrying the Unix time in seconds that the signature covers."""
FUNCTION_PATH_HEADER = "x-iii-function-path"
"""Header carrying the id of the function being invoked."""
INVOCATION_ID_HEADER = "x-iii-invocation-id"
"""Header carrying a fresh UUIDv4 per HTTP call."""

HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
"""Methods an HTTP-invoked function may use (upper case on the wire)."""

# ----------------------------------------------------------------------------- secrets

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_TOKEN_PREFIXES = (
    "sk_live_", "sk_test_", "rk_live_", "ghp_", "gho_", "ghs_", "github_pat_", "glpat",
    "xoxb", "xoxp", "akia", "eyj",
)
_CREDENTIAL_HEADERS = frozenset({
    "authorization", "proxy-authorization", "cookie", "x-api-key", "api-key", "x-auth-token",
    "x-access-token", SIGNATURE_HEADER,
})
_CREDENTIAL_QUERY_KEYS = frozenset({
    "token", "access_token", "api_key", "apikey", "key", "secret", "client_secret", "password",
})


def looks_like_secret(name: str) -> bool:
    """Whether ``name``, meant to be an environment variable's name, looks like a secret.

    A name must be a portable variable name (letters, digits, ``_``, not starting with a
    digit). Anything else, a known token prefix (``sk_live_``, ``ghp_``, ...), or a long
    mixed-case string with digits (how random tokens look, not how variables are named) is
    taken for a raw secret pasted where its variable's name belongs.
    """
    if not _ENV_NAME.fullmatch(name):
        return True
    if name.lower().startswith(_TOKEN_PREFIXES):
        return True
    mixed = any(c.islower() for c in name) and any(c.isupper() for c in name)
    return mixed and any(c.isdigit() for c in name) and len(name) >= 20


def _env_name(value: str, field: str) -> str:
    if looks_like_secret(value):
        raise ValueError(
            f"{field} must name an environment variable of the engine (e.g. "
            f"'MY_SERVICE_TOKEN'), not hold the secret itself; got a value that looks like a "
            f"secret ({len(value)} characters)"
        )
    return value


# ----------------------------------------------------------------------------- auth models


class _AuthModel(BaseModel):
    # hide_input_in_errors: a refused value may be the very secret it should not carry.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class HttpAuthHmac(_AuthModel):
    """Sign each call with HMAC-SHA256; ``secret_key`` names an engine env var.

    The scheme of docs/protocol.md §9.3.
    """

    type: Literal["hmac"] = "hmac"
    secret_key: str

    @field_validator("secret_key")
    @classmethod
    def _is_env_name(cls, value: str) -> str:
        return _env_name(value, "secret_key")


class HttpAuthBearer(_AuthModel):
    """Send ``Authorization: Bearer <token>``; ``token_key`` names an engine env var."""

    type: Literal["bearer"] = "bearer"
    token_key: str

    @field_validator("token_key")
    @classmethod
    def _is_env_name(cls, value: str) -> str:
        return _env_name(value, "token_key")


class HttpAuthApiKey(_AuthModel):
    """Send ``<header>: <value>``; ``value_key`` names an engine env var."""

    type: Literal["api_key"] = "api_key"
    header: str = Field(min_length=1)
    value_key: str

    @field_validator("value_key")
    @classmethod
    def _is_env_name(cls, value: str) -> str:
        return _env_name(value, "value_key")


HttpAuthConfig = Annotated[
    HttpAuthHmac | HttpAuthBearer | HttpAuthApiKey, Field(discriminator="type")
]
"""One of the three auth models, or the equivalent dict (tagged by ``type``)."""


def _as_plain(value: Any) -> Any:
    """Models from other libraries (the official SDK's auth models) become dicts."""
    if isinstance(value, BaseModel) and not isinstance(value, _AuthModel):
        return value.model_dump(exclude_none=True)
    return value


class HttpInvocationConfig(BaseModel):
    """A function served by the engine calling ``url`` instead of a worker (docs/protocol.md §9).

    ``iii.register_function("ext::charge", HttpInvocationConfig("https://...", auth=...))``.
    ``auth`` is a model or a dict such as ``{"type": "bearer", "token_key": "CHARGE_TOKEN"}``;
    every ``*_key`` names an environment variable that the *engine* reads when the function is
    registered. Raw secrets are refused: in key fields, in credential headers
    (``Authorization``, ``Cookie``, ``X-Api-Key``, ...), in the URL's user info and in
    credential-like query parameters (``token``, ``key``, ``api_key``, ...).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    url: str
    method: HttpMethod = "POST"
    timeout_ms: int | None = Field(default=None, ge=0)
    """Unset (as in the official model), the engine's ``invocation_timeout_ms`` applies (30000
    by default; the Rust engine's is 30000)."""
    headers: dict[str, str] | None = None
    auth: HttpAuthConfig | None = None

    def __init__(self, url: str | None = None, /, **data: Any) -> None:
        if url is not None:
            data["url"] = url
        super().__init__(**data)

    @field_validator("method", mode="before")
    @classmethod
    def _upper_method(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("auth", mode="before")
    @classmethod
    def _foreign_auth(cls, value: Any) -> Any:
        return _as_plain(value)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            # The value itself is not repeated: it may hold a credential.
            host = "given" if parts.hostname else "missing"
            raise ValueError("url must be an absolute http(s) URL "
                             f"(scheme {parts.scheme[:16]!r}, host {host})")
        if parts.username is not None or parts.password is not None:
            raise ValueError("url must not carry credentials (user info); use auth with an "
                             "environment variable instead")
        for key, _ in parse_qsl(parts.query, keep_blank_values=True):
            if key.lower() in _CREDENTIAL_QUERY_KEYS:
                raise ValueError(f"url query parameter {key!r} looks like a credential; use "
                                 "auth with an environment variable instead")
        return value

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for name in value or {}:
            if name.lower() in _CREDENTIAL_HEADERS:
                raise ValueError(f"header {name!r} would carry a raw credential; use auth "
                                 "(bearer / api_key / hmac) naming an environment variable")
        return value

    def to_wire(self) -> dict[str, Any]:
        """The ``invocation`` of ``registerfunction`` (docs/protocol.md §3.0, HttpInvocationRef)."""
        return self.model_dump(exclude_none=True)


# ----------------------------------------------------------------------------- http trigger

#: The body's type in ``ApiRequest[T]`` / ``ApiResponse[T]``, for annotations only: the official
#: ``HttpRequest[T]`` / ``HttpResponse[T]`` are generic and scripts annotate with them. The
#: default keeps a bare ``ApiRequest`` valid under ``mypy --strict``.
TBody = TypeVar("TBody", default=Any)


class ApiRequest(BaseModel, Generic[TBody]):
    """The ``data`` an ``http`` trigger hands its function (docs/protocol.md §6.5.2).

    ``path`` is the registered pattern (``/users/:id``); ``path_params`` the concrete values.
    ``body`` is the parsed JSON body (``None`` unless the request was JSON); the raw body is
    readable from ``request_body`` (a channel reader once the client resolved the ref) and
    ``response`` is the writer of the streaming response (see :class:`ResponseStream`).
    """

    model_config = ConfigDict(extra="allow", arbitrary_types_allowed=True)

    query_params: dict[str, str | list[str]] = Field(default_factory=dict)
    path_params: dict[str, str] = Field(default_factory=dict)
    headers: dict[str, str | list[str]] = Field(default_factory=dict)
    path: str = ""
    method: str = "GET"
    body: Any = None
    trigger: dict[str, Any] | None = None
    request_body: Any = None
    response: Any = None

    def header(self, name: str, default: str | None = None) -> str | None:
        """A request header by case-insensitive name (the first value if repeated)."""
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value[0] if isinstance(value, list) else value
        return default

    def stream(self) -> ResponseStream:
        """A :class:`ResponseStream` over this request's ``response`` writer."""
        if self.response is None or isinstance(self.response, Mapping):
            raise NoResponseChannelError("the response channel is not open here (the client "
                                         "resolves it into a writer before the handler runs)")
        return ResponseStream(self.response)


class ApiResponse(BaseModel, Generic[TBody]):
    """The buffered response a handler returns (docs/protocol.md §6.5.3).

    ``ApiResponse(status_code=201, body={...})`` or ``ApiResponse(statusCode=201, ...)``; it
    serialises as ``{"status_code", "headers", "body"}`` (never ``statusCode``: the Rust
    engine reads only ``status_code``). ``headers`` may be a dict or ``"Name: value"`` lines.
    """

    model_config = ConfigDict(populate_by_name=True)

    status_code: int = Field(
        default=200, ge=100, le=599,
        validation_alias=AliasChoices("status_code", "statusCode"),
    )
    headers: dict[str, str] | list[str] = Field(default_factory=dict)
    body: Any = None

    def to_wire(self) -> dict[str, Any]:
        """The envelope as sent on the wire."""
        return {"status_code": self.status_code, "headers": self.headers, "body": self.body}


def api_handler(
    handler: Callable[[ApiRequest], Awaitable[Any]] | Callable[[ApiRequest], Any],
) -> Callable[[Any], Any]:
    """Adapt a handler that takes an :class:`ApiRequest` to the raw payload an engine sends.

    ``iii.register_function("users::get", api_handler(get_user))`` where ``get_user(request)``
    returns an :class:`ApiResponse`, an envelope dict, or ``None`` after streaming. An async
    handler stays async; a sync one stays sync (the client runs it in its thread pool).
    """
    if inspect.iscoroutinefunction(handler):

        @functools.wraps(handler)
        async def run_async(data: Any) -> Any:
            return _wire(await handler(ApiRequest.model_validate(data)))

        return run_async

    @functools.wraps(handler)
    def run_sync(data: Any) -> Any:
        return _wire(handler(ApiRequest.model_validate(data)))

    return run_sync


def _wire(result: Any) -> Any:
    return result.to_wire() if isinstance(result, ApiResponse) else result


# ----------------------------------------------------------------------------- streaming


class _MessageWriter(Protocol):
    def send_message(self, message: str) -> Any: ...


class _ChannelWriter(_MessageWriter, Protocol):
    def write(self, data: bytes) -> Any: ...

    def close(self) -> Any: ...


async def _settle(result: Any) -> None:
    """Await what a writer method returned, when it is awaitable (compat writers return None)."""
    if inspect.isawaitable(result):
        await result


async def set_status(writer: _MessageWriter, status_code: int) -> None:
    """Set the status of a streamed response; only before the first body chunk counts."""
    if not 100 <= status_code <= 599:
        raise ValueError(f"status_code must be within 100..599, got {status_code}")
    await _settle(writer.send_message(
        json.dumps({"type": "set_status", "status_code": status_code})))


async def set_headers(writer: _MessageWriter, headers: Mapping[str, str]) -> None:
    """Add headers to a streamed response (merged); only before the first body chunk counts."""
    await _settle(writer.send_message(
        json.dumps({"type": "set_headers", "headers": dict(headers)}, ensure_ascii=False)))


class ResponseStream:
    """Stream an HTTP response from a handler over the request's ``response`` channel.

    Set the status and headers first, then write the body; the first body chunk sends the
    response head, closing ends the body::

        async with request.stream() as out:
            await out.set_status(200)
            await out.set_headers({"content-type": "text/plain"})
            await out.write(b"hello")

    The handler should then return ``None``. (A handler that returns ``None`` and never
    writes gets a 500 from the embedded engine after a short grace.)
    """

    def __init__(self, writer: _ChannelWriter) -> None:
        self.writer = writer

    async def set_status(self, status_code: int) -> None:
        """See :func:`set_status`."""
        await set_status(self.writer, status_code)

    async def set_headers(self, headers: Mapping[str, str]) -> None:
        """See :func:`set_headers`."""
        await set_headers(self.writer, headers)

    async def write(self, data: bytes | str) -> None:
        """Write body bytes (``str`` is encoded as UTF-8)."""
        await _settle(self.writer.write(data.encode() if isinstance(data, str) else data))

    async def close(self) -> None:
        """End the body (an empty body if nothing was written)."""
        await _settle(self.writer.close())

    async def __aenter__(self) -> ResponseStream:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        """End the body; when the block raised, end it as failed (``abort``): the HTTP
        client then sees a cut response, not a complete one."""
        abort = getattr(self.writer, "abort", None)  # a writer that cannot abort just closes
        if exc_type is None or abort is None:
            await self.close()
        else:
            await _settle(abort(f"the handler failed ({exc_type.__name__})"))


# ----------------------------------------------------------------------------- signatures


def sign(secret: str | bytes, timestamp: str | int, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, ``"{timestamp}:{base64(body)}"``).

    The scheme of docs/protocol.md §9.3.
    """
    key = secret.encode() if isinstance(secret, str) else secret
    message = f"{timestamp}:{base64.b64encode(body).decode('ascii')}".encode("ascii")
    return "sha256=" + hmac.new(key, message, hashlib.sha256).hexdigest()


def verify_signature(
    secret: str | bytes,
    timestamp: str | int,
    body: bytes | str,
    signature: str,
    max_age: float | None = 300,
    *,
    now: float | None = None,
) -> bool:
    """Whether ``signature`` is the engine's signature of ``body`` at ``timestamp``.

    ``timestamp`` is the exact ``x-iii-timestamp`` header, ``body`` the exact request body,
    ``signature`` the ``x-iii-signature`` header. The comparison is constant-time. A timestamp
    further than ``max_age`` seconds from ``now`` (default: the current time) either way is
    refused, which bounds replays; ``max_age=None`` skips that check.
    """
    raw = body.encode() if isinstance(body, str) else body
    stamp = str(timestamp)
    if max_age is not None:
        try:
            sent = int(stamp)
        except ValueError:
            return False
        current = time.time() if now is None else now
        if abs(current - sent) > max_age:
            return False
    return hmac.compare_digest(sign(secret, stamp, raw).encode(), signature.encode())


def verify_request(
    secret: str | bytes,
    headers: Mapping[str, str],
    body: bytes | str,
    max_age: float | None = 300,
) -> bool:
    """:func:`verify_signature` reading the timestamp and signature from ``headers``.

    Header names are compared case-insensitively; a missing header fails the check.
    """
    lower = {name.lower(): value for name, value in headers.items()}
    timestamp = lower.get(TIMESTAMP_HEADER)
    signature = lower.get(SIGNATURE_HEADER)
    if timestamp is None or signature is None:
        return False
    return verify_signature(secret, timestamp, body, signature, max_age)
