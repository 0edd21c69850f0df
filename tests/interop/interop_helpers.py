"""Helpers shared by the interop tests (official SDKs are blocking, so these are too)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
WAIT = 15.0  # seconds; a generous bound for polls and replies on a busy 2-core machine


def wait_until(condition: Callable[[], T], what: str, timeout: float = WAIT) -> T:
    """Poll ``condition`` until it is truthy (engine topology has no event to wait on)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
