"""Where code that must not import OpenTelemetry finds this process's telemetry.

``CHANNELS[0]`` is set (to a :class:`~iii_rx.telemetry.transfers.ChannelTelemetry`) once a
client enables OpenTelemetry; until then a channel end pays one ``if`` when it opens.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CHANNELS", "install", "uninstall"]

CHANNELS: list[Any] = [None]
"""The channel telemetry of this process, or ``None``."""

_ACTIVE: list[Any] = []


def install(channels: Any) -> None:
    """A client enabled OpenTelemetry: channel ends use ``channels`` from now on."""
    _ACTIVE.append(channels)
    CHANNELS[0] = channels


def uninstall(channels: Any) -> None:
    """That client closed: the latest still open takes over, or nobody."""
    if channels in _ACTIVE:
        _ACTIVE.remove(channels)
    CHANNELS[0] = _ACTIVE[-1] if _ACTIVE else None
