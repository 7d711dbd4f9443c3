"""A wheel of one-second buckets: what is due to be looked at, and when."""

from __future__ import annotations

import time
from collections.abc import Iterator


class DueWheel:
    """Keys to look at again once their time has passed.

    A periodic sweep then visits only what is due instead of every channel
    every second, and a key scheduled many times within one second sits in
    its bucket once. Stale entries are harmless: the sweep re-checks.
    """

    __slots__ = ("_due", "done")

    def __init__(self, now: float | None = None) -> None:
        # Buckets are dicts used as ordered sets: a dict of str keys and
        # None values is not tracked by the cyclic GC, where a set always
        # is, and a full collection would walk every key of a big bucket
        # (200,000 channels: ~40 ms).
        self._due: dict[int, dict[str, None]] = {}
        # The last second due() has handed out; later ones are pending.
        self.done = int(time.time() if now is None else now) - 1

    def schedule(self, key: str, when: float) -> None:
        self.add(key, int(when) + 1)

    def add(self, key: str, second: int) -> None:
        """Schedule key for `second` (a time rounded up, as schedule() does)."""
        bucket = self._due.get(second)
        if bucket is None:
            self._due[second] = {key: None}
        else:
            bucket[key] = None

    def due(self, now: float) -> Iterator[str]:
        """Every key whose second has passed by now, each bucket once."""
        last = int(now)
        for second in range(self.done + 1, last + 1):
            yield from self._due.pop(second, ())
        self.done = max(self.done, last)

    def __len__(self) -> int:
        return sum(len(b) for b in self._due.values())
