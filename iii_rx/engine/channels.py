"""Channel hub of the embedded engine (spec section 7): STUB, owned by the channels work.

The engine core routes ``/ws/channels/{id}?key=..&dir=..`` here and calls :meth:`create` for
``engine::channels::create``. The interface below is fixed; the implementation is not done yet.
"""

from __future__ import annotations

from typing import Any, Literal

from websockets.asyncio.server import ServerConnection

Direction = Literal["read", "write"]


class ChannelHub:
    """All channels of one engine: creation, authorisation, one reader and one writer each."""

    def __init__(self, *, sweep_interval_s: float = 60.0, max_age_s: float = 300.0) -> None:
        self.sweep_interval_s = sweep_interval_s
        self.max_age_s = max_age_s

    async def start(self) -> None:
        """Start the background sweep of half-open channels."""

    async def close(self) -> None:
        """Stop the sweep and end every channel."""

    def create(self, buffer_size: int | None = None) -> dict[str, Any]:
        """Make a channel; returns ``{"writer": ref, "reader": ref}`` (refs as JSON dicts)."""
        raise NotImplementedError("channels are not implemented yet")

    def authorize(self, channel_id: str, access_key: str) -> bool:
        """Whether ``channel_id`` exists and ``access_key`` is its key (else HTTP 404)."""
        return False

    async def serve(self, websocket: ServerConnection, channel_id: str,
                    direction: Direction) -> None:
        """Run one end of a channel on an accepted websocket until it ends."""
        await websocket.close()
