"""Log lines a peer cannot forge or flood, as the engine keeps them.

:func:`~iii_rx.logsafe.printable` and :class:`~iii_rx.logsafe.RateLimitedLog` (shared with the
client) escape and budget lines peers cause. The engine owns one budget (``Engine.peer_log``)
and hands it to the parts that write such lines, and its extensions take theirs from the same
:class:`LogBudgets` (``services.limited_log(logger)``), so that engines in one process never
share a budget: a flood at one never silences another's warnings.
"""

from __future__ import annotations

import logging

from iii_rx.logsafe import RateLimitedLog, printable

__all__ = ["LogBudgets", "RateLimitedLog", "printable"]


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
