"""A small bounded, thread-safe memo for pure functions of the line (dialog steps, TwiML documents).

The line's answers depend only on where a caller is and what they pressed, and the number of
distinct places and keys is small: remembering answers per process turns most key presses into a
dictionary lookup. Nothing about a caller is kept (callers' own words never go into a key).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class LruCache(Generic[V]):
    """At most `size` values, the least recently used one dropped first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._values: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_make(self, key: Hashable, make: Callable[[], V]) -> V:
        """The value remembered for `key`, or `make()`'s, remembered from now on."""
        with self._lock:
            value = self._values.get(key)
            if value is not None:
                self._values.move_to_end(key)
                return value
        value = make()  # outside the lock: two threads may both make it, and both get the same
        with self._lock:
            self._values[key] = value
            if len(self._values) > self.size:
                self._values.popitem(last=False)
        return value

    def remembered(self) -> list[Hashable]:
        """The keys remembered now, least recently used first."""
        with self._lock:
            return list(self._values)

    def __len__(self) -> int:
        return len(self._values)
