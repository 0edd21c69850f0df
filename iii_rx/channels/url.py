"""The websocket URL of one end of a channel (docs/protocol.md §1.2, §7.2)."""

from __future__ import annotations

from typing import Literal
from urllib.parse import quote

__all__ = ["build_channel_url"]


def build_channel_url(
    engine_url: str, channel_id: str, access_key: str, direction: Literal["read", "write"]
) -> str:
    """``{engine}/ws/channels/{id}?key=..&dir=..``, keeping a query the engine URL already has.

    A trailing ``/`` of the engine address and its fragment are dropped; the id and key are
    percent-encoded.
    """
    # The fragment goes first: after a query (``?a=1#``, which the engine URL check accepts) it
    # took the key and direction in, and the channel socket's URL was refused.
    base, _, query = engine_url.partition("#")[0].partition("?")
    params = f"key={quote(access_key, safe='')}&dir={direction}"
    query = f"{query}&{params}" if query else params
    return f"{base.rstrip('/')}/ws/channels/{quote(channel_id, safe='')}?{query}"
