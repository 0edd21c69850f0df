"""Log lines a peer cannot forge or flood (engine and client alike).

Text that comes from the other side (ids, names, messages, frames) is escaped before it
reaches a log line (:func:`printable`): a newline would forge a second line, an ANSI escape
would repaint the operator's terminal. Lines a peer can trigger at will (one per bad frame,
one per failed call it makes) go through a :class:`RateLimitedLog`, which writes at most
``burst`` lines per ``interval`` for each kind and then one summary of what it held back.
"""

from __future__ import annotations

import logging
import time
from typing import Any

__all__ = ["RateLimitedLog", "printable"]

_ESCAPES = {i: f"\\x{i:02x}" for i in (*range(0x20), 0x7F)}
_ESCAPES.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})
_ESCAPES.update({i: f"\\x{i:02x}" for i in range(0x80, 0xA0)})  # C1 controls (CSI is 0x9b)
_ESCAPES.update({0x2028: "\\u2028", 0x2029: "\\u2029"})


def printable(value: Any, limit: int = 200) -> str:
    """``value`` as one safe line: control characters escaped, at most ``limit`` characters."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = f"{text[:limit]}...(+{len(text) - limit} chars)"
    return text.translate(_ESCAPES)


class RateLimitedLog:
    """At most ``burst`` lines per ``interval`` seconds for each key, then a summary."""

    def __init__(self, logger: logging.Logger, *, burst: int = 10,
                 interval: float = 10.0) -> None:
        self._log = logger
        self._burst = burst
        self._interval = interval
        self._windows: dict[str, tuple[float, int]] = {}

    def log(self, level: int, key: str, message: str, *args: Any,
            exc_info: Any = None) -> None:
        """Log ``message % args`` unless ``key`` already used up its burst in this window."""
        if not self._log.isEnabledFor(level):
            return
        now = time.monotonic()
        start, count = self._windows.get(key, (now, 0))
        if now - start >= self._interval:
            held = count - self._burst
            if held > 0:
                self._log.log(level, "%d more %r lines were held back in the last %.0fs",
                              held, key, now - start)
            start, count = now, 0
        count += 1
        self._windows[key] = (start, count)
        if count <= self._burst:
            self._log.log(level, message, *args, exc_info=exc_info)
        elif count == self._burst + 1:
            self._log.log(level, "more %r lines are held back for up to %.0fs", key,
                          self._interval)
        if len(self._windows) > 1024:  # keys are ours, but never let the map grow
            self._windows = {k: v for k, v in self._windows.items()
                             if now - v[0] < self._interval}
