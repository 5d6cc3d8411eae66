"""A bounded memory of the most recently used results, by key (texts and their embeddings).

The word embedder and BERTScore both see the same texts again and again (a prompt state while it is
edited; a doctor's reply at every epoch): they remember the most recent `capacity` results and encode
only what is new. Results in use by the current call are never evicted by it.
"""

from __future__ import annotations

from collections import OrderedDict


class Recent:
    def __init__(self, capacity: int = 1000):
        self.capacity = capacity
        self._items: OrderedDict = OrderedDict()

    def __contains__(self, key) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key):
        """The remembered result (marked as recently used)."""
        self._items.move_to_end(key)
        return self._items[key]

    def put(self, key, value, keep: int = 0) -> None:
        """Remember a result; forget the least recently used beyond the capacity (but never below the
        `keep` most recent, the results the caller is still using)."""
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > max(self.capacity, keep):
            self._items.popitem(last=False)
