"""Helpers of the channel tests (imported by name: tests/ has no packages)."""

from __future__ import annotations

import asyncio
import itertools
import os

import iii_rx

_names = itertools.count(1)


def unique(prefix: str) -> str:
    """A worker name no other worker of this run uses."""
    return f"{prefix}-{os.getpid()}-{next(_names)}"


async def wait_registered(client: iii_rx.Client, function_id: str) -> None:
    """Poll discovery until another worker's function is there (no event for it)."""
    for _ in range(1500):
        listed = await client.trigger("engine::functions::list", {})
        if any(f["function_id"] == function_id for f in listed["functions"]):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{function_id} never registered")
