"""Client side of channels (spec section 7): STUB, owned by the channels work.

The client core calls :func:`resolve_channel_refs` on every invocation's data and delegates
``create_channel_async`` to :func:`open_channel`. The signatures are fixed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def resolve_channel_refs(value: Any, *, engine_url: str, headers: Mapping[str, str]) -> Any:
    """Replace channel refs anywhere in ``value`` by live readers/writers (spec 7.6)."""
    return value


async def open_channel(client: Any, buffer_size: int | None = None) -> Any:
    """Create a channel through ``engine::channels::create`` and return a ``Channel``."""
    raise NotImplementedError("channels are not implemented yet")
