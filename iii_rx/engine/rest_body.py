"""Request bodies of the REST API: read with stall bounds, parsed with depth bounds.

A body is read in chunks of up to 64 KiB, and a client that sends nothing for ``stall``
seconds ends its request (:class:`Stalled`: 408 for a JSON body read whole, an aborted
``request_body`` channel for a streamed one) so that a slow upload cannot hold the engine's
resources at will. A JSON body is parsed leniently (not JSON: ``body`` is ``None``, as in the
Rust engine) but refused when nothing downstream could carry it (:func:`parse_json_body`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiohttp import web

from iii_rx.engine.json_bounds import JsonRefused, loads_bounded
from iii_rx.engine.logsafe import printable
from iii_rx.engine.rest_envelope import error_response
from iii_rx.engine.services import LocalWriter

__all__ = ["CHUNK", "Stalled", "parse_json_body", "pump", "read_body", "stalled_response"]

log = logging.getLogger("iii_rx.engine.rest")

CHUNK = 64 * 1024
"""Largest frame of a body in the ``request_body`` channel."""


class Stalled(Exception):
    """A request body that sent nothing for its stall bound."""


def parse_json_body(raw: bytes, max_depth: int) -> tuple[Any, str | None]:
    """The parsed body (``None`` when it is not JSON, as before) or the reason to refuse it
    (:func:`~iii_rx.engine.json_bounds.loads_bounded`: too deep, lone surrogates)."""
    if not raw:
        return None, None
    try:
        return loads_bounded(raw, max_depth), None
    except JsonRefused as exc:
        return None, f"JSON body refused: {exc}"
    except ValueError:
        return None, None


async def read_body(request: web.BaseRequest, limit: int, stall: float | None) -> bytes | None:
    """The whole body, ``None`` above ``limit`` bytes; :class:`Stalled` if it stops."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await _next_chunk(request, stall)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)


async def pump(writer: LocalWriter, request: web.BaseRequest, raw: bytes | None,
               stall: float | None) -> None:
    """Copy the request body into the ``request_body`` channel in 64 KiB frames, then close.

    A body that stalls for ``stall`` seconds, or a client that goes away mid-body, aborts the
    channel instead, so the handler's reader sees an error rather than a short body.
    """
    try:
        if raw is not None:
            for start in range(0, len(raw), CHUNK):
                await writer.write(raw[start:start + CHUNK])
        else:
            while chunk := await _next_chunk(request, stall):
                await writer.write(chunk)
    except Exception as exc:
        reason = "request body stalled" if isinstance(exc, Stalled) else "request body failed"
        log.debug("request body copy stopped: %s", printable(exc) or reason)
        abort = getattr(writer, "abort", None)
        if abort is not None:
            with contextlib.suppress(Exception):
                await abort(reason)
            return
    try:
        await writer.close()
    except Exception as exc:
        log.debug("request body channel did not close cleanly: %s", printable(exc))


async def _next_chunk(request: web.BaseRequest, stall: float | None) -> bytes:
    """Up to 64 KiB of the body (``b""`` at its end); :class:`Stalled` after ``stall`` s."""
    try:
        return await asyncio.wait_for(request.content.read(CHUNK), stall)
    except asyncio.TimeoutError:
        raise Stalled(f"no body bytes for {stall} s") from None


def stalled_response(stall: float | None) -> web.Response:
    """408 for a JSON body that stalled; the connection closes (its body is unread)."""
    response = error_response(408, "REQUEST_TIMEOUT",
                              f"the request body sent nothing for {stall} s")
    response.force_close()
    return response
