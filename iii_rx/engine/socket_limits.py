"""Changing the largest message an open server websocket accepts.

The engine's sockets are opened with the worker port's bound (64 MiB); some of them must take
less: a channel writer's frames, and whatever a guarded connection sends before its session
is admitted (nothing reads it then, so up to ``max_queue`` messages wait in memory).
"""

from __future__ import annotations

from websockets.asyncio.server import ServerConnection

__all__ = ["set_message_limit"]


def set_message_limit(websocket: ServerConnection, limit: int | None) -> int | None:
    """Accept messages of ``limit`` bytes at most from now on (a bigger one closes the
    connection with 1009); returns the previous bound, to put back.

    websockets 14+ name it ``max_message_size``, earlier releases ``max_size``.
    """
    protocol = websocket.protocol
    for name in ("max_message_size", "max_size"):
        if hasattr(protocol, name):
            previous: int | None = getattr(protocol, name)
            setattr(protocol, name, limit)
            return previous
    return None
