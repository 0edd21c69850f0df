"""Fixtures of the HTTP tests: an engine on its own thread (the official SDK is blocking and
runs its own loop thread) with short REST timers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from http_helpers import NO_RESPONSE_GRACE_MS, REST_TIMEOUT_MS

from iii_rx.engine import Engine, EngineThread


@pytest.fixture
def engine() -> Iterator[EngineThread]:
    handle = Engine.start_in_thread(
        port=0, namespace_grace_ms=100, rest_timeout_ms=REST_TIMEOUT_MS,
        http_no_response_grace_ms=NO_RESPONSE_GRACE_MS, functions_available_poll_ms=50,
        provider_ack_timeout_ms=500)
    try:
        yield handle
    finally:
        handle.stop()
