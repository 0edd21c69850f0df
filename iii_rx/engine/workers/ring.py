"""A store of the newest items bounded in count and in bytes.

The engine keeps what peers send for observation (log entries, exported metrics) in memory.
A bound on the count alone lets a peer grow it without limit in bytes: one frame may carry up
to 64 MiB, so a thousand entries may hold gigabytes. :class:`Ring` also bounds their total
size (each item's size is the caller's estimate: the bytes of the frame it came in, or of its
JSON), dropping the oldest first; the newest item is always kept.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Generic, TypeVar

__all__ = ["Ring"]

T = TypeVar("T")


class Ring(Generic[T]):
    """The newest items: at most ``max_items`` of them, and about ``max_bytes`` together."""

    def __init__(self, max_items: int, max_bytes: int) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._items: deque[tuple[T, int]] = deque()
        self.bytes = 0
        """The estimated size of the items kept."""

    def append(self, item: T, size: int) -> None:
        """Keep ``item`` (about ``size`` bytes), dropping the oldest past either bound."""
        items = self._items
        items.append((item, size))
        self.bytes += size
        while len(items) > 1 and (len(items) > self.max_items or self.bytes > self.max_bytes):
            self.bytes -= items.popleft()[1]

    def clear(self) -> None:
        self._items.clear()
        self.bytes = 0

    def __iter__(self) -> Iterator[T]:
        return (item for item, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)
