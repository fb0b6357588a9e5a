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

Both tables are LRU-bounded (``max_entries`` each); answers also expire after the cache TTL.
"""

from __future__ import annotations

import time
from collections import OrderedDict


class NearCache:
    """Versions by their Redis key and answers by their result key, LRU-bounded."""

    def __init__(self, max_entries: int, ttl_s: float) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self.max_entries = max_entries
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
            del self._answers[result_key]
            return None
        self._answers.move_to_end(result_key)
        self.stats["answers served"] += 1
        return blob

    def remember_version(self, version_key: str, version: int) -> None:
        self._versions[version_key] = version
        self._versions.move_to_end(version_key)
        if len(self._versions) > self.max_entries:
            self._versions.popitem(last=False)

    def remember_answer(self, result_key: str, blob: bytes) -> None:
        self._answers[result_key] = (time.monotonic() + self.ttl_s, blob)
        self._answers.move_to_end(result_key)
        if len(self._answers) > self.max_entries:
            self._answers.popitem(last=False)

    def forget(self, keys: list[bytes] | None) -> None:
        """Apply a Redis ``invalidate`` push: the named keys, or everything for None (Redis sends
        None after FLUSHALL/FLUSHDB or when its tracking table overflows)."""
        if keys is None:
            self.clear()
            return
        self.stats["invalidations"] += len(keys)
        for key in keys:
            name = key.decode() if isinstance(key, bytes) else str(key)
            self._versions.pop(name, None)
            self._answers.pop(name, None)

    def clear(self) -> None:
        if self._versions or self._answers:
            self.stats["clears"] += 1
        self._versions.clear()
        self._answers.clear()
