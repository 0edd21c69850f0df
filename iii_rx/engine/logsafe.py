"""Log lines a peer cannot forge or flood.

Ids, names and messages that come from workers or HTTP clients are escaped before they reach a
log line (:func:`printable`): a newline would forge a second line, an ANSI escape would
repaint the operator's terminal. Lines a peer can trigger at will (one per bad frame, one per
malformed request) go through a :class:`RateLimitedLog`, which writes at most ``burst`` lines
per ``interval`` for each kind and then one summary of what it held back. The engine owns one
(``Engine.peer_log``) and hands it to the parts that write such lines, and its extensions take
theirs from the same :class:`LogBudgets` (``services.limited_log(logger)``), so that engines in
one process never share a budget: a flood at one never silences another's warnings.
"""

from __future__ import annotations

import logging
import time
from typing import Any

__all__ = ["LogBudgets", "RateLimitedLog", "printable"]

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


class LogBudgets:
    """One engine's :class:`RateLimitedLog` s, one per logger (made on first use): every part
    that logs to a logger shares its budget, and no other engine does."""

    __slots__ = ("_logs",)

    def __init__(self) -> None:
        self._logs: dict[str, RateLimitedLog] = {}

    def of(self, logger: logging.Logger) -> RateLimitedLog:
        """The budget of ``logger``'s peer-caused lines."""
        limited = self._logs.get(logger.name)
        if limited is None:
            limited = self._logs[logger.name] = RateLimitedLog(logger)
        return limited
