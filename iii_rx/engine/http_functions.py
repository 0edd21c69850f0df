"""HTTP-invoked functions of the embedded engine (docs/protocol.md §9, §12.7).

A refused URL or a missing secret does not reject the registration (the official SDK treats
every rejection code but one as fatal): the function stays unregistered and its callers get
``function_not_found`` naming the reason.

A worker may register a function with an ``invocation`` (:class:`HttpInvocationRef`) instead of
handling it: the engine then serves every call of it by making one HTTP request.

* :class:`HttpFunctionSettings` holds the policy, which :mod:`iii_rx.engine.http_policy`
  applies: the URL (checked at registration and at every call), the configured headers, and
  which environment variables auth may read (``secret_env_allowlist``, empty by default).
* :meth:`HttpFunctionInvoker.prepare` checks a registration against it and reads the auth
  secrets from the engine's environment now. A problem raises :class:`RegistrationRefused`,
  whose ``reason`` the engine logs and repeats to callers as ``function_not_found``.
* :meth:`HttpFunctionInvoker.invoke` performs a call exactly as docs/protocol.md §9.2-9.4: JSON
  body, ``x-iii-*`` headers, HMAC signature, no retries, no redirects, a timeout, and the outcome
  mapping by status. It never raises for a failed call; it returns an :class:`HttpOutcome`.
  It connects to the addresses the URL policy checked (:class:`PinnedResolver`), never to a
  second lookup's answer, so a name cannot be rebound to a refused address in between.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
from pydantic import ValidationError

from iii_rx.engine.connection import WorkerConnection
from iii_rx.engine.dispatch import HttpFunctionHook
from iii_rx.engine.http_policy import (
    HttpFunctionSettings,
    PinnedResolver,
    RegistrationRefused,
    UrlRefused,
    check_header,
    check_url,
    has_control,
    pinned,
    secret_allowed,
)
from iii_rx.engine.json_bounds import loads_bounded
from iii_rx.engine.registry import CallContext, InProcessHandler
from iii_rx.engine.services import EngineServices
from iii_rx.errors import IIIInvocationError
from iii_rx.http import sign
from iii_rx.protocol import ApiKeyAuth, BearerAuth, HmacAuth, HttpInvocationRef, RegisterFunction

__all__ = [
    "HttpFunction",
    "HttpFunctionInvoker",
    "HttpFunctionsExtension",
    "HttpFunctionSettings",
    "HttpOutcome",
    "PinnedResolver",
    "RegistrationRefused",
    "UrlRefused",
    "check_url",
    "registration_hook",
    "secret_allowed",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HttpOutcome:
    """The result of one call: ``error`` (``{"code", "message"}``) set means failure."""

    result: Any = None
    error: dict[str, str] | None = None

    @classmethod
    def failed(cls, code: str, message: str) -> HttpOutcome:
        """A failed outcome."""
        return cls(error={"code": code, "message": message})


@dataclass(frozen=True)
class HttpFunction:
    """A registration that passed :meth:`HttpFunctionInvoker.prepare`, secrets resolved."""

    function_id: str
    url: str
    method: str
    timeout_ms: int
    headers: Mapping[str, str]
    auth_kind: Literal["hmac", "bearer", "api_key"] | None = None
    auth_header: str | None = None
    secret: str | None = field(default=None, repr=False)
    invocation: HttpInvocationRef | None = field(default=None, repr=False, compare=False)


# ----------------------------------------------------------------------------- invoker


class HttpFunctionInvoker:
    """Checks registrations of HTTP-invoked functions and performs their calls.

    Owns one :class:`aiohttp.ClientSession` (no cookies, no proxies from the environment,
    redirects never followed); use it as an async context manager or call :meth:`close`.
    ``environ`` is where secrets are read (default: the engine's ``os.environ``).
    """

    def __init__(
        self,
        settings: HttpFunctionSettings | None = None,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings or HttpFunctionSettings()
        self._environ = environ
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HttpFunctionInvoker:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session (calls in flight fail with ``http_request_failed``)."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                auto_decompress=True,
                connector=aiohttp.TCPConnector(limit=256, limit_per_host=64,
                                               resolver=PinnedResolver(), use_dns_cache=False),
            )
        return self._session

    # ------------------------------------------------------------------ registration

    async def prepare(self, function_id: str, invocation: Any) -> HttpFunction:
        """Check a registration and resolve its secrets; raise :class:`RegistrationRefused`.

        ``invocation`` is an :class:`HttpInvocationRef` or the equivalent dict.
        """
        try:
            ref = (invocation if isinstance(invocation, HttpInvocationRef)
                   else HttpInvocationRef.model_validate(invocation))
        except ValidationError as exc:
            raise RegistrationRefused(
                "invalid_invocation", f"invalid invocation of {function_id!r}: "
                f"{exc.errors(include_url=False, include_input=False)[0]['msg']}") from None
        try:
            await check_url(ref.url, self.settings)
        except UrlRefused as exc:
            raise RegistrationRefused("url_validation_failed", str(exc)) from None
        for name, value in (ref.headers or {}).items():
            check_header(name, value)
        kind, header, secret = self._resolve_auth(ref)
        timeout = ref.timeout_ms or self.settings.default_timeout_ms
        return HttpFunction(
            function_id=function_id,
            url=ref.url,
            method=ref.method or "POST",
            timeout_ms=min(timeout, self.settings.max_timeout_ms),
            headers=dict(ref.headers or {}),
            auth_kind=kind,
            auth_header=header,
            secret=secret,
            invocation=ref,
        )

    def _resolve_auth(
        self, ref: HttpInvocationRef,
    ) -> tuple[Literal["hmac", "bearer", "api_key"] | None, str | None, str | None]:
        environ = os.environ if self._environ is None else self._environ
        auth = ref.auth
        if auth is None:
            return None, None, None
        if isinstance(auth, HmacAuth):
            return "hmac", None, self._secret(environ, auth.secret_key, "secret_not_found")
        if isinstance(auth, BearerAuth):
            token = self._secret(environ, auth.token_key, "token_not_found", in_header=True)
            return "bearer", None, token
        if isinstance(auth, ApiKeyAuth):
            check_header(auth.header, "")
            value = self._secret(environ, auth.value_key, "api_key_not_found", in_header=True)
            return "api_key", auth.header, value
        raise RegistrationRefused("invalid_invocation", "unknown auth type")

    def _secret(self, environ: Mapping[str, str], name: str, code: str, *,
                in_header: bool = False) -> str:
        # The allowlist comes first: a refusal must not tell whether the variable exists.
        if not secret_allowed(name, self.settings.secret_env_allowlist):
            raise RegistrationRefused(
                "secret_not_allowed", f"environment variable {name!r} is not in the engine's "
                "secret allowlist (Engine(http_secret_env_allowlist=...), "
                "iii-rx engine --http-secret-env)")
        value = environ.get(name)
        if value is None:
            raise RegistrationRefused(
                code, f"environment variable {name!r} is not set in the engine's environment")
        if in_header and has_control(value):
            raise RegistrationRefused(
                "invalid_header", f"environment variable {name!r} holds a control character "
                "and cannot be sent in an HTTP header")
        return value

    # ------------------------------------------------------------------ calls

    async def invoke(self, function: HttpFunction, data: Any) -> HttpOutcome:
        """Call ``function`` with ``data`` as JSON body; map the answer (docs/protocol.md §9.4)."""
        try:
            addresses = await check_url(function.url, self.settings)
        except UrlRefused as exc:
            return HttpOutcome.failed("url_validation_failed", str(exc))
        try:
            body = json.dumps(data, ensure_ascii=False, separators=(",", ":"),
                              allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            return HttpOutcome.failed("serialization_error", str(exc))
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "x-iii-Function-Path": function.function_id,
            "x-iii-Invocation-ID": str(uuid.uuid4()),
            "x-iii-Timestamp": timestamp,
            **function.headers,
        }
        if function.auth_kind == "hmac" and function.secret is not None:
            headers["x-iii-Signature"] = sign(function.secret, timestamp, body)
        elif function.auth_kind == "bearer":
            headers["Authorization"] = f"Bearer {function.secret}"
        elif function.auth_kind == "api_key" and function.auth_header:
            headers[function.auth_header] = function.secret or ""
        try:
            return await asyncio.wait_for(self._exchange(function, headers, body, addresses),
                                          function.timeout_ms / 1000)
        except asyncio.TimeoutError:
            return HttpOutcome.failed(
                "http_request_failed",
                f"request to {function.url} timed out after {function.timeout_ms} ms")

    async def _exchange(self, function: HttpFunction, headers: dict[str, str],
                        body: bytes, addresses: tuple[str, ...]) -> HttpOutcome:
        token = pinned.set(addresses)  # what PinnedResolver answers for this request
        try:
            response = await self._client().request(
                function.method, function.url, data=body, headers=headers,
                allow_redirects=False, timeout=aiohttp.ClientTimeout(total=None),
            )
        except (aiohttp.ClientError, OSError) as exc:
            return HttpOutcome.failed("http_request_failed", _cause_chain(exc))
        finally:
            pinned.reset(token)
        async with response:
            try:
                payload = await self._read(response)
            except (aiohttp.ClientError, OSError, _TooLarge) as exc:
                return HttpOutcome.failed("http_response_failed", _cause_chain(exc))
            return _map_response(response.status, response.reason, payload)

    async def _read(self, response: aiohttp.ClientResponse) -> bytes:
        limit = self.settings.max_response_bytes
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(256 * 1024):
            size += len(chunk)
            if size > limit:
                raise _TooLarge(f"response body exceeds {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


class _TooLarge(Exception):
    pass


def _cause_chain(exc: BaseException) -> str:
    """``str(exc)`` followed by its causes, as the Rust engine reports request errors."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current) or type(current).__name__
        if not parts or parts[-1] != text:
            parts.append(text)
        current = current.__cause__ or current.__context__
    return ": ".join(parts)


def _map_response(status: int, reason: str | None, payload: bytes) -> HttpOutcome:
    """docs/protocol.md §9.4: 2xx JSON/empty succeed, 1xx/3xx succeed leniently, >= 400 fail.

    JSON no frame could carry (too deep, lone surrogates) counts as not JSON."""
    if 200 <= status < 300:
        if not payload:
            return HttpOutcome()
        try:
            return HttpOutcome(result=loads_bounded(payload))
        except ValueError as exc:
            return HttpOutcome.failed("invalid_response", str(exc))
    if status < 400:
        try:
            return HttpOutcome(result=loads_bounded(payload) if payload else None)
        except ValueError:
            return HttpOutcome()
    try:
        parsed = loads_bounded(payload) if payload else None
    except ValueError:
        parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict):  # {"error": {"code", "message"}}; any other body: the status
        code, message = error.get("code"), error.get("message")
        return HttpOutcome.failed(
            code if isinstance(code, str) else "http_error",
            message if isinstance(message, str) else "HTTP request failed")
    return HttpOutcome.failed("http_error", f"HTTP {status} {reason or ''}".rstrip())


# ----------------------------------------------------------------------------- engine hook


def registration_hook(invoker: HttpFunctionInvoker) -> HttpFunctionHook:
    """The engine's HTTP-function hook (see :mod:`iii_rx.engine.dispatch`).

    ``await hook(conn, frame)`` for a ``registerfunction`` with ``invocation`` returns the
    in-process handler ``handler(data, ctx)`` serving the function, or a string: the reason
    it was refused (the engine logs it and repeats it in ``function_not_found``; a
    rejection would be fatal to the official SDK).
    The handler raises :class:`IIIInvocationError` with the codes of docs/protocol.md §9.4.
    """

    async def hook(conn: WorkerConnection, frame: RegisterFunction) -> InProcessHandler | str:
        function_id = frame.id
        try:
            function = await invoker.prepare(function_id, frame.invocation)
        except RegistrationRefused as exc:
            host = _host_of(frame.invocation)
            return f"{exc.reason} (host {host})" if host and exc.code.startswith("url") else (
                exc.reason)

        async def handler(data: Any, ctx: CallContext) -> Any:
            outcome = await invoker.invoke(function, data)
            if outcome.error is not None:
                raise IIIInvocationError(outcome.error["code"], outcome.error["message"],
                                         function_id=function_id)
            return outcome.result

        return handler

    return hook


def _host_of(invocation: Any) -> str | None:
    url = getattr(invocation, "url", None)
    try:
        return urlsplit(url).hostname if isinstance(url, str) else None
    except ValueError:
        return None


class HttpFunctionsExtension:
    """Engine extension: serves ``registerfunction`` frames that carry an ``invocation``.

    Settings come from the engine (``require_https``, ``allow_http_private``,
    ``http_url_allowlist``, ``http_secret_env_allowlist``, and ``invocation_timeout_ms`` as the
    default timeout); secrets from ``os.environ``, only the allowed variables.
    """

    def __init__(self) -> None:
        self.invoker: HttpFunctionInvoker | None = None
        self._services: EngineServices | None = None

    async def start(self, services: EngineServices) -> None:
        """Install the registration hook, with the engine's URL policy."""
        config = services.config
        self.invoker = HttpFunctionInvoker(HttpFunctionSettings(
            require_https=config.require_https,
            allow_http_private=config.allow_http_private,
            url_allowlist=config.http_url_allowlist,
            secret_env_allowlist=config.http_secret_env_allowlist,
            default_timeout_ms=config.invocation_timeout_ms,
        ))
        self._services = services
        services.set_http_function_hook(registration_hook(self.invoker))

    async def stop(self) -> None:
        """Remove the hook and close the HTTP session."""
        services, self._services = self._services, None
        if services is not None:
            services.set_http_function_hook(None)
        invoker, self.invoker = self.invoker, None
        if invoker is not None:
            await invoker.close()
