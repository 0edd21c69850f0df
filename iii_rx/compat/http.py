"""The official SDK's streaming HTTP helper: ``http(callback)`` with ``StreamRequest`` /
``StreamResponse`` (``iii_helpers.http.http``, ``iii.types``).

``http(callback)`` turns a ``(request, response)`` coroutine into a handler for an ``http``
trigger: the request's fields arrive as a :class:`StreamRequest` (its raw body readable from
``request_body``), and :class:`StreamResponse` sets the status and headers and writes the body
over the request's ``response`` channel (docs/protocol.md §6.5.4). Buffered responses need none of
this: return ``{"status_code": ..., "headers": ..., "body": ...}`` or an ``HttpResponse``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from iii_rx.compat.channels import ChannelReader, ChannelWriter, WritableStream

__all__ = ["StreamRequest", "StreamResponse", "http"]


@dataclass
class StreamRequest:
    """An HTTP request delivered by an ``http`` trigger, with its body as a channel."""

    path_params: dict[str, str]
    query_params: dict[str, str | list[str]]
    body: Any
    headers: dict[str, str | list[str]]
    method: str
    request_body: ChannelReader


class StreamResponse:
    """Streams the HTTP response: ``await status(code)``, ``await headers({...})``, then the
    body through :attr:`writer` (or :attr:`stream`), and ``close()`` to end it."""

    def __init__(self, writer: ChannelWriter) -> None:
        self._writer = writer

    async def status(self, status_code: int) -> None:
        await self._writer.send_message_async(
            json.dumps({"type": "set_status", "status_code": status_code}))

    async def headers(self, headers: Mapping[str, str]) -> None:
        await self._writer.send_message_async(
            json.dumps({"type": "set_headers", "headers": dict(headers)}, ensure_ascii=False))

    @property
    def stream(self) -> WritableStream:
        return self._writer.stream

    @property
    def writer(self) -> ChannelWriter:
        return self._writer

    def close(self) -> None:
        """End the body (fire and forget, after everything written before)."""
        self._writer.close()


def http(
    callback: Callable[[StreamRequest, StreamResponse], Awaitable[Any]],
) -> Callable[[Any], Awaitable[Any]]:
    """A handler for an ``http`` trigger that calls ``callback(request, response)``."""

    async def handler(req: Any) -> Any:
        def get(key: str) -> Any:
            return req.get(key) if isinstance(req, Mapping) else getattr(req, key, None)

        request = StreamRequest(
            path_params=get("path_params") or {},
            query_params=get("query_params") or {},
            body=get("body"),
            headers=get("headers") or {},
            method=get("method") or "GET",
            request_body=get("request_body"),
        )
        return await callback(request, StreamResponse(get("response")))

    return handler
