"""Connection states and the reconnect policy (docs/protocol.md §2.8).

``ConnectionState`` is a ``str`` enum, so ``state == "connected"`` works as in the official SDK,
whose states are plain strings.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import Enum
from numbers import Integral, Real
from typing import Any, cast

__all__ = ["ConnectionState", "ReconnectConfig", "resolve_reconnect"]

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
    :class:`~iii_rx.errors.IIIConnectionError`). A field of the wrong type or out of its range
    (``_RANGES``) raises here: found later, it would break the reconnect loop of a running client.
    """

    initial_delay_ms: int = 1000
    max_delay_ms: int = 30000
    backoff_multiplier: float = 2.0
    jitter_factor: float = 0.3
    max_retries: int = -1
    max_queued: int = 1000

    def __post_init__(self) -> None:
        for name, (whole, least, most) in _RANGES.items():
            value = getattr(self, name)
            kind = "a whole number" if whole else "a number"
            if isinstance(value, bool) or not isinstance(value, Integral if whole else Real):
                raise TypeError(f"ReconnectConfig.{name} must be {kind}, "
                                f"not {type(value).__name__} {value!r}")
            number = cast(float, value)
            if not (math.isfinite(number) and least <= number <= most):
                bounds = f">= {least}" if most == math.inf else f"from {least} to {most}"
                raise ValueError(f"ReconnectConfig.{name} must be {kind} {bounds}, got {value!r}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry ``attempt`` (0-based)."""
        try:
            grown = self.initial_delay_ms * self.backoff_multiplier ** min(attempt, 64)
        except OverflowError:  # a large multiplier: the cap is reached long before
            grown = math.inf
        base = min(grown, float(self.max_delay_ms))
        spread = base * self.jitter_factor * _jitter.uniform(-1.0, 1.0)
        return max(0.0, base + spread) / 1000.0


_RANGES: dict[str, tuple[bool, float, float]] = {
    # field: (whole numbers only, smallest, largest)
    "initial_delay_ms": (False, 0, math.inf),
    "max_delay_ms": (False, 0, math.inf),
    "backoff_multiplier": (False, 1, math.inf),  # below 1 the delays would shrink
    "jitter_factor": (False, 0, 1),               # above 1 many delays would be 0
    "max_retries": (True, -1, math.inf),          # -1: for ever
    "max_queued": (True, 0, math.inf),            # 0: a call made while disconnected fails
}
_FIELDS = frozenset(f.name for f in fields(ReconnectConfig))


def resolve_reconnect(reconnect: Any) -> ReconnectConfig:
    """The policy ``connect(reconnect=...)`` stands for: a :class:`ReconnectConfig`, a mapping of
    its fields, or ``None`` (the defaults); anything else raises ``TypeError`` here, not in the
    reconnect loop at the first lost connection."""
    if reconnect is None:
        return ReconnectConfig()
    if isinstance(reconnect, ReconnectConfig):
        return reconnect
    if isinstance(reconnect, Mapping):
        unknown = sorted(str(key) for key in set(reconnect) - _FIELDS)
        if unknown:
            raise TypeError(f"unknown ReconnectConfig fields: {unknown}; "
                            f"the fields are {sorted(_FIELDS)}")
        return ReconnectConfig(**reconnect)
    raise TypeError(f"reconnect must be a ReconnectConfig or a mapping of its fields, "
                    f"not {type(reconnect).__name__} {reconnect!r}")
