"""Why a connection to the engine failed or ended, in words for a person.

:func:`describe_failure` also says whether retrying can help (the transport stops at once
when it cannot, before its first connection); :func:`describe_close` names who closed a
connection, with the close code and reason, for the log line of every loss.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI

__all__ = ["describe_close", "describe_failure"]

_RETRYABLE_STATUS = frozenset({408, 425, 429})  # ask to come back later


def describe_failure(url: str, exc: BaseException) -> tuple[str, bool]:
    """Why connecting to ``url`` failed, for a person, and whether retrying can help.

    A handshake answered with an HTTP status other than 101 cannot succeed by retrying,
    unless the status asks for it (408, 425, 429) or the server failed (5xx); neither can an
    invalid redirect or a certificate that does not verify.
    """
    if isinstance(exc, InvalidStatus):
        response = exc.response
        status = response.status_code
        what = f"{url} answered the websocket handshake with HTTP {status} {response.reason_phrase}"
        if status in (401, 403):
            what += " (a missing or wrong token: pass connect(token=...) or set III_TOKEN)"
        elif status in (404, 405, 426):
            what += (" (not the engine's worker port: a wrong path, or the REST API's port; "
                     "the worker port is the one `iii_rx.engine` prints as ws://...)")
        return what, status >= 500 or status in _RETRYABLE_STATUS
    if isinstance(exc, InvalidURI):
        return f"{url}: {exc}", False
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"{url}: the engine's TLS certificate does not verify: {exc}", False
    if isinstance(exc, ConnectionRefusedError):
        return f"connection to {url} refused: is the engine running at {url}?", True
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host of {url}: {exc}", True
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):  # apart on 3.10
        return f"no websocket handshake with {url} in time: {exc or 'timed out'}", True
    return f"cannot connect to {url}: {type(exc).__name__}: {exc}", True


def describe_close(closed: ConnectionClosed) -> str:
    """Who closed a connection, with which code and reason, for a person (a message over
    :data:`MAX_MESSAGE` is closed by this side with 1009)."""
    def frame(close: Any) -> str:
        return f"code {close.code}" + (f", {close.reason!r}" if close.reason else "")

    if closed.rcvd is not None:
        return f"closed by the engine: {frame(closed.rcvd)}"
    if closed.sent is not None:
        why = " (a message over 64 MiB)" if closed.sent.code == 1009 else ""
        return f"closed by this client: {frame(closed.sent)}{why}"
    return "dropped without a closing handshake"
