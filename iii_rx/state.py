"""Connection states and the reconnect policy (docs/protocol.md §2.8).

``ConnectionState`` is a ``str`` enum, so ``state == "connected"`` works as in the official SDK,
whose states are plain strings.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum

__all__ = ["ConnectionState", "ReconnectConfig"]

_jitter = random.Random()
"""The reconnect jitter's own generator: a library must not draw from (and so move) the
application's global ``random`` state, which seeded simulations and property tests rely on."""


class ConnectionState(str, Enum):
    """Where the client's engine connection stands.

    ``connecting`` (first attempt) → ``connected`` (the engine accepted this worker) →
    ``reconnecting`` (lost, retrying with backoff) → ``connected`` ...; ``disconnected`` after
    ``close()``; ``failed`` when the engine rejected the worker or the retries ran out (final).
    """

    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    DISCONNECTED = "disconnected"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class ReconnectConfig:
    """Exponential backoff with jitter between connection attempts (docs/protocol.md §2.8).

    The delay before retry *n* (0-based) is ``c = min(initial_delay_ms * backoff_multiplier**n,
    max_delay_ms)`` spread by ``± jitter_factor * c``. ``max_retries=-1`` retries for ever;
    ``max_queued`` bounds the calls made while disconnected (one more fails with
    :class:`~iii_rx.errors.IIIConnectionError`).
    """

    initial_delay_ms: int = 1000
    max_delay_ms: int = 30000
    backoff_multiplier: float = 2.0
    jitter_factor: float = 0.3
    max_retries: int = -1
    max_queued: int = 1000

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry ``attempt`` (0-based)."""
        base = min(self.initial_delay_ms * (self.backoff_multiplier ** min(attempt, 64)),
                   float(self.max_delay_ms))
        spread = base * self.jitter_factor * _jitter.uniform(-1.0, 1.0)
        return max(0.0, base + spread) / 1000.0
