"""Helpers of the compat tests (imported by name: tests/ has no packages)."""

from __future__ import annotations

import time
from typing import Any


def wait_for_function(iii: Any, function_id: str) -> None:
    """Until the engine lists ``function_id`` (a compat client: its calls are blocking)."""
    for _ in range(500):
        listed = iii.trigger({"function_id": "engine::functions::list", "payload": {}})
        if any(f["function_id"] == function_id for f in listed["functions"]):
            return
        time.sleep(0.01)
    raise AssertionError(f"{function_id} was never listed")
