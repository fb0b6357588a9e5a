"""In-process copies of user history versions and cached answers, kept true by Redis itself.

A repeated request (the cache-hit path) would otherwise cost a Redis round trip only to learn that
nothing changed: the user's history version, then the answer stored under it. This tier keeps
both in the server's memory and relies on Redis's server-assisted client-side caching
(``CLIENT TRACKING`` over RESP3): Redis remembers which keys the hot-path connection read and
pushes an ``invalidate`` message on that connection as soon as any client changes one of them
(an append, a bulk load, another replica), so a stale version is dropped within one event-loop
turn of the change. What this process writes itself is dropped at once (``forget_user``).

Why it stays correct:

* A version is remembered from inside the reply parser (``PipelinedConnection``'s
  ``on_reply``), so a reply and an invalidation that arrive in one chunk are applied in wire
  order: a version invalidated right after it was read is never resurrected by a coroutine
  resuming later.
* Answers are keyed by model version + options + history version, so an answer never changes
  under its key; only the user's current version needs invalidating.
* When the connection drops, tracking is lost with it: ``clear`` empties everything, and nothing
  is served from here until a new connection with tracking on has read the user again.

Both tables are LRU-bounded, in entries (``max_entries`` each) and together in bytes
(``max_bytes``: keys and answers plus ``ENTRY_OVERHEAD`` per entry for the Python objects that
hold them), so that a stream of large distinct answers (explanations at the largest k) cannot
grow the process past the budget; answers also expire after the cache TTL.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Final

ENTRY_OVERHEAD: Final = 256
"""Bytes a cache entry costs beyond its key's and answer's characters: the str and bytes
headers, the tuple, the float, the ordered dict's slot (tracemalloc: ~230 for an answer,
~150 for a version), rounded up."""


class NearCache:
    """Versions by their Redis key and answers by their result key, LRU-bounded."""

    def __init__(self, max_entries: int, ttl_s: float, max_bytes: int | None = None) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        """What the entries held now cost, as ``max_bytes`` counts it."""
        self.ttl_s = ttl_s
        self._versions: OrderedDict[str, int] = OrderedDict()
        self._answers: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self.stats = {"answers served": 0, "invalidations": 0, "clears": 0}
        """Counters for the shutdown log: answers found here, keys Redis invalidated, times
        everything was dropped (connection lost, FLUSHALL, tracking table full)."""

    def __len__(self) -> int:
        return len(self._versions) + len(self._answers)

    def version(self, version_key: str) -> int | None:
        version = self._versions.get(version_key)
        if version is not None:
            self._versions.move_to_end(version_key)
        return version

    def answer(self, result_key: str) -> bytes | None:
        entry = self._answers.get(result_key)
        if entry is None:
            return None
        expires_at, blob = entry
        if expires_at <= time.monotonic():
            self._drop_answer(result_key)
            return None
        self._answers.move_to_end(result_key)
        self.stats["answers served"] += 1
        return blob

    def remember_version(self, version_key: str, version: int) -> None:
        if version_key not in self._versions:
            self.bytes += len(version_key) + ENTRY_OVERHEAD
        self._versions[version_key] = version
        self._versions.move_to_end(version_key)
        if len(self._versions) > self.max_entries:
            self._drop_version(next(iter(self._versions)))
        self._fit()

    def remember_answer(self, result_key: str, blob: bytes) -> None:
        self._drop_answer(result_key)
        cost = len(result_key) + len(blob) + ENTRY_OVERHEAD
        if self.max_bytes is not None and cost > self.max_bytes:
            return  # larger than the whole budget: not worth evicting everything for
        self._answers[result_key] = (time.monotonic() + self.ttl_s, blob)
        self.bytes += cost
        if len(self._answers) > self.max_entries:
            self._drop_answer(next(iter(self._answers)))
        self._fit()

    def _fit(self) -> None:
        """Evict least recently used entries (answers first: they are the large ones) until
        the byte budget holds."""
        if self.max_bytes is None:
            return
        while self.bytes > self.max_bytes and self._answers:
            self._drop_answer(next(iter(self._answers)))
        while self.bytes > self.max_bytes and self._versions:
            self._drop_version(next(iter(self._versions)))

    def _drop_answer(self, result_key: str) -> None:
        entry = self._answers.pop(result_key, None)
        if entry is not None:
            self.bytes -= len(result_key) + len(entry[1]) + ENTRY_OVERHEAD

    def _drop_version(self, version_key: str) -> None:
        if self._versions.pop(version_key, None) is not None:
            self.bytes -= len(version_key) + ENTRY_OVERHEAD

    def forget(self, keys: list[bytes] | None) -> None:
        """Apply a Redis ``invalidate`` push: the named keys, or everything for None (Redis sends
        None after FLUSHALL/FLUSHDB or when its tracking table overflows)."""
        if keys is None:
            self.clear()
            return
        self.stats["invalidations"] += len(keys)
        for key in keys:
            name = key.decode() if isinstance(key, bytes) else str(key)
            self._drop_version(name)
            self._drop_answer(name)

    def clear(self) -> None:
        if self._versions or self._answers:
            self.stats["clears"] += 1
        self._versions.clear()
        self._answers.clear()
        self.bytes = 0
