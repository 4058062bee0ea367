"""A bounded first-in-first-out index: key -> slot of a store the caller owns.

Shared by the explanation reward's verifier cache (sentence -> row of a numpy array of
probabilities) and the judge's in-memory reply cache (prompt digest -> reply). Slots are
handed out round-robin, so once the index is full the next slot to reuse always belongs
to the oldest entry: eviction is FIFO and costs no bookkeeping beyond one list.
"""

from __future__ import annotations

from collections.abc import Hashable, ItemsView, Iterator, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class FifoSlots(Generic[K]):
    """At most ``capacity`` keys, each with a slot in ``range(capacity)``, oldest out first."""

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self._slot: dict[K, int] = {}
        self._keys: list[K] = []  # the key of each used slot
        self._next = 0  # the slot the next new key takes

    def __len__(self) -> int:
        """Slots in use (the store must have at least this many rows)."""
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._slot

    def __iter__(self) -> Iterator[K]:
        """The keys held, oldest first."""
        return iter(self._slot)

    def items(self) -> ItemsView[K, int]:
        """(key, slot) pairs, oldest first."""
        return self._slot.items()

    def get(self, key: K) -> int | None:
        return self._slot.get(key)

    def lookup(self, keys: Sequence[K]) -> list[int | None]:
        """The slot of each key, None where it is not held."""
        return list(map(self._slot.get, keys))

    def clear(self) -> None:
        self._slot.clear()
        self._keys = []
        self._next = 0

    def add(self, keys: Sequence[K]) -> list[int]:
        """Slots for ``keys``, which must be distinct and not held; past ``capacity`` the
        oldest entries give theirs up. Only the last ``capacity`` keys fit: the slots
        returned are those of ``keys[len(keys) - len(slots):]``, in order."""
        capacity = self.capacity
        if not capacity:
            return []
        keys = list(keys[-capacity:]) if len(keys) > capacity else list(keys)
        slot, names = self._slot, self._keys
        start, count = self._next, len(keys)
        used = len(names)
        out: list[int] = []
        if used < capacity:  # still filling: slots used..used+fresh
            fresh = min(count, capacity - used)
            names.extend(keys[:fresh])
            slot.update(zip(keys[:fresh], range(used, used + fresh)))
            out.extend(range(used, used + fresh))
            keys, start, count = keys[fresh:], (used + fresh) % capacity, count - fresh
        while count:  # full: reuse the slots of the oldest entries, round-robin
            n = min(count, capacity - start)
            for old in names[start:start + n]:
                del slot[old]
            names[start:start + n] = keys[:n]
            slot.update(zip(keys[:n], range(start, start + n)))
            out.extend(range(start, start + n))
            keys, count, start = keys[n:], count - n, (start + n) % capacity
        self._next = start
        return out
