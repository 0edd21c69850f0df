"""The engine's worker sockets: the library's ``ServerConnection`` with the fast lane.

The lane itself (whole data frames read and written beside the ``websockets`` frame machinery,
the library's behaviour kept for everything else) is :class:`iii_rx.wslane.HotLane`.
"""

from __future__ import annotations

from websockets.asyncio.server import ServerConnection

from iii_rx.wslane import HotLane

__all__ = ["HotConnection"]


class HotConnection(HotLane, ServerConnection):
    """A ``ServerConnection`` with the fast lane (off until :meth:`enable_hot`)."""
