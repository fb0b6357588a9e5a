"""The online feature store in Redis: user histories, history versions and the result cache.

Keys (``ns`` = the configured namespace; ``{user}`` is a Redis Cluster hash tag, so all keys of one
user live in one slot)::

    ns:h:{user}                         list of external item ids, oldest first, capped
    ns:v:{user}                         history version, +1 on every append or bulk load
    ns:r:{user}:MODEL:OPTIONS:VERSION   a serialized RecommendResponse, with a TTL

The result key holds the model version, the request options' digest and the history version, so
a new model or a new event makes old entries unreachable (they expire by their TTL).

Round trips and client overhead are what a Redis-backed server spends its time on, so the hot path
(cache lookups and writes) goes through one lean pipelined connection
(``serving.store.pipelined_client``) that lets concurrent requests share writes and round trips, and
a lookup is one server-side script that reads the version, the cached answer and (on a miss) the
history in one atomic step. Writes and reads off the hot path use redis-py.

In front of Redis sits an optional near cache (``serving.store.near_cache``): versions and answers
this process has read or computed, invalidated by Redis's client-side-caching pushes, so that a
repeated request is answered without a round trip.

On a Redis Cluster (``redis+cluster://``) every command goes through redis-py's cluster client
(``serving.store.cluster_hot_path``), the near cache is off, and a failing node is not an
outage of the store: the requests of users on its shard degrade, the others are answered as
usual, and nothing has to be declared up again when the node returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.asyncio.cluster import RedisCluster

from serving.errors import FeatureStoreUnavailable, FeatureStoreUnreachable, describe_error
from serving.store.cluster_hot_path import ClusterHotPath
from serving.store.near_cache import NearCache
from serving.store.pipelined_client import PipelinedConnection
from serving.store.redis_clients import AsyncClient, async_client

log = logging.getLogger(__name__)

_CONNECTION_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError, asyncio.TimeoutError)

READ_SCRIPT = """
local version = redis.call('GET', KEYS[1]) or '0'
if ARGV[1] ~= '' then
  local hit = redis.call('GET', ARGV[1] .. version)
  if hit then return {version, hit} end
end
return {version, false, redis.call('LRANGE', KEYS[2], 0, -1)}
"""
"""KEYS: version, history. ARGV[1]: the result key without its version ('' = no cache lookup).
Returns {version, cached answer} on a hit, {version, nil, history} otherwise."""


SHARD_FAILURE_LOG_INTERVAL_S = 10.0
"""On a cluster, a failing shard is logged at most this often (every request on it fails)."""

MAX_EVENT_IDS = 10_000
"""Event ids remembered per user at most (the newest), whatever the window."""

_APPEND_EVENTS = """
-- KEYS: history, version, event ids.
-- ARGV: max_history, window_ms, max_ids, n, m (0, or n: one id per item), n items, m ids.
local n, m = tonumber(ARGV[4]), tonumber(ARGV[5])
local fresh = {}
if m == 0 then
  for i = 1, n do fresh[i] = ARGV[5 + i] end
else
  local now = redis.call('TIME')
  local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  local window = tonumber(ARGV[2])
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now_ms - window)
  for i = 1, n do
    if redis.call('ZADD', KEYS[3], 'NX', now_ms, ARGV[5 + n + i]) == 1 then
      fresh[#fresh + 1] = ARGV[5 + i]
    end
  end
  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -tonumber(ARGV[3]) - 1)
  redis.call('PEXPIRE', KEYS[3], window)
end
local version
if #fresh > 0 then
  for first = 1, #fresh, 1000 do  -- unpack() is bounded by Lua's stack: push in pieces
    redis.call('RPUSH', KEYS[1], unpack(fresh, first, math.min(first + 999, #fresh)))
  end
  redis.call('LTRIM', KEYS[1], -tonumber(ARGV[1]), -1)
  version = redis.call('INCR', KEYS[2])
else
  version = tonumber(redis.call('GET', KEYS[2]) or '0')
end
return {version, redis.call('LLEN', KEYS[1]), n - #fresh}
"""
"""Append events and bump the version, in one atomic step. With event ids, every event whose id
was recorded for this user within the window (or earlier in the same call) is skipped, and the
version moves only if any event was new."""


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis MATCH pattern."""
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)


class FeatureKeys:
    """The key scheme, shared by the server and ``recsys load-features``."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def history(self, user_id: str) -> str:
        return f"{self.namespace}:h:{{{user_id}}}"

    def version(self, user_id: str) -> str:
        return f"{self.namespace}:v:{{{user_id}}}"

    def event_ids(self, user_id: str) -> str:
        """The user's recently recorded event ids (a sorted set scored by time)."""
        return f"{self.namespace}:e:{{{user_id}}}"

    def result_prefix(self, user_id: str | None, model_version: str, options: str) -> str:
        """The result key without the history version (appended by the reader)."""
        owner = "~anonymous" if user_id is None else f"{{{user_id}}}"
        return f"{self.namespace}:r:{owner}:{model_version}:{options}:"

    def results_pattern(self, user_id: str) -> str:
        """A MATCH pattern of every cached answer of the user (``user_id`` taken literally)."""
        return f"{self.namespace}:r:{{{_glob_escape(user_id)}}}:*"

    def pattern(self) -> str:
        """Every key of the namespace (for clean-up)."""
        return f"{self.namespace}:*"


@dataclass(frozen=True)
class UserState:
    """What one read returns: the version, and either the cached answer or the history."""

    version: int
    cached: bytes | None
    history: list[str]


class FeatureStore:
    """Histories, versions and cached answers in Redis, with outage detection and recovery.

    When a call fails for want of a connection the store marks itself unavailable: reads fail at
    once (callers degrade instead of waiting for timeouts) and a probe pings Redis every
    ``retry_interval_s`` until it answers. Writes always try, so a write succeeds as soon as Redis
    is back, and otherwise raises ``FeatureStoreUnavailable`` (never a silent loss).

    ``near_cache_size`` > 0 keeps up to that many versions and answers in process, within
    ``near_cache_bytes`` (see
    ``serving.store.near_cache``; answers live ``near_cache_ttl_s`` at most).
    """

    def __init__(
        self,
        url: str,
        namespace: str,
        max_history: int,
        timeout_s: float,
        retry_interval_s: float,
        on_availability: Callable[[bool], None] | None = None,
        near_cache_size: int = 0,
        near_cache_ttl_s: float = 0.0,
        near_cache_bytes: int | None = None,
        dedup_window_s: float = 86_400.0,
    ) -> None:
        self.client: AsyncClient = async_client(url, timeout_s)
        self.keys = FeatureKeys(namespace)
        self.max_history = max_history
        self._timeout_s = timeout_s
        self._retry_interval_s = retry_interval_s
        self.near: NearCache | None = None
        self._hot: PipelinedConnection | ClusterHotPath
        if isinstance(self.client, RedisCluster):
            if near_cache_size > 0 and near_cache_ttl_s > 0:
                log.info("near cache off: Redis Cluster (reads are not tracked on every node)")
            self._hot = ClusterHotPath(self.client)
        else:
            if near_cache_size > 0 and near_cache_ttl_s > 0:
                self.near = NearCache(near_cache_size, near_cache_ttl_s, near_cache_bytes)
            self._hot = PipelinedConnection(
                url, timeout_s, on_invalidate=self.near.forget if self.near is not None else None
            )
        self._shard_failure_logged = float("-inf")
        self._on_availability = on_availability
        self.dedup_window_s = dedup_window_s
        self._append = self.client.register_script(_APPEND_EVENTS)
        self.available = True
        self._probe: asyncio.Task[None] | None = None

    @property
    def cluster(self) -> bool:
        """Whether the store is a Redis Cluster (``redis+cluster://``)."""
        return isinstance(self.client, RedisCluster)

    # -- availability ----------------------------------------------------------------------

    async def check(self) -> bool:
        """Ping once; mark the store up or down accordingly. Returns whether it answered."""
        try:
            async with asyncio.timeout(self._timeout_s):
                await self.client.ping()
        except (redis.RedisError, *_CONNECTION_ERRORS) as err:
            self._mark_down(err)
            return False
        self._mark_up()
        return True

    def _mark_down(self, err: BaseException) -> None:
        if self.cluster:  # one node's failure: only its shard's requests fail (and degrade)
            now = time.monotonic()
            if now - self._shard_failure_logged > SHARD_FAILURE_LOG_INTERVAL_S:
                self._shard_failure_logged = now
                log.warning(
                    "feature store: a Redis Cluster call failed (%s): requests on that "
                    "shard degrade to request history and popularity",
                    describe_error(err),
                )
            return
        if self.available:
            self.available = False
            log.warning(
                "feature store unavailable (%s): degrading to request history and "
                "popularity; probing every %.1f s",
                describe_error(err),
                self._retry_interval_s,
            )
            if self._on_availability is not None:
                self._on_availability(False)
        if self._probe is None or self._probe.done():
            self._probe = asyncio.get_running_loop().create_task(self._probe_until_up())

    def _mark_up(self) -> None:
        if not self.available:
            self.available = True
            log.warning("feature store available again")
            if self._on_availability is not None:
                self._on_availability(True)

    async def _probe_until_up(self) -> None:
        while not self.available:
            await asyncio.sleep(self._retry_interval_s)
            try:
                async with asyncio.timeout(self._timeout_s):
                    await self.client.ping()
            except (redis.RedisError, *_CONNECTION_ERRORS):
                continue
            await self._drop_idle_connections()  # opened before the outage: all dead
            self._mark_up()

    async def _run(self, call: Callable[[], Awaitable[Any]], idempotent: bool) -> Any:
        """Await one Redis call (``call()`` makes it); failures raise ``FeatureStoreUnavailable``.

        A broken connection is not yet an outage: after Redis restarts, every connection the
        pool holds is dead, and each would fail once, marking the store down and up again
        (flapping, failing requests while Redis is healthy). So the pool's idle connections are
        dropped and a fresh one pings: if Redis answers, an idempotent call (a read) is made
        again, and a write fails alone (it may not be repeated: it might have been applied) with
        the store still up; only if the ping fails too is the store marked down.
        """
        try:
            return await self._call(call)
        except (redis.RedisError, *_CONNECTION_ERRORS) as err:
            if isinstance(err, redis.ResponseError):
                raise FeatureStoreUnavailable(
                    f"feature store error: {describe_error(err)}"
                ) from err
            if not await self._fresh_connection_answers():
                self._mark_down(err)
                raise FeatureStoreUnavailable(
                    f"feature store unreachable: {describe_error(err)}"
                ) from err
            if not idempotent:
                raise FeatureStoreUnavailable(
                    f"feature store connection lost during a write ({describe_error(err)}); "
                    "Redis answers again: retry"
                ) from err
        try:
            return await self._call(call)
        except (redis.RedisError, *_CONNECTION_ERRORS) as err:
            if not isinstance(err, redis.ResponseError):
                self._mark_down(err)
            raise FeatureStoreUnavailable(
                f"feature store unreachable: {describe_error(err)}"
            ) from err

    async def _call(self, call: Callable[[], Awaitable[Any]]) -> Any:
        async with asyncio.timeout(self._timeout_s):
            result = await call()
        self._mark_up()
        return result

    async def _fresh_connection_answers(self) -> bool:
        """Drop the pool's idle connections (after a restart they are all dead) and ping."""
        await self._drop_idle_connections()
        try:
            async with asyncio.timeout(self._timeout_s):
                await self.client.ping()
        except (redis.RedisError, *_CONNECTION_ERRORS):
            return False
        return True

    async def _drop_idle_connections(self) -> None:
        """Close the pool's idle connections. A cluster client's are per node, and it drops a
        failed node's connections itself."""
        if isinstance(self.client, RedisCluster):
            return
        with contextlib.suppress(Exception):
            await self.client.connection_pool.disconnect(inuse_connections=False)

    async def _batched(self, *args: Any, on_reply: Callable[[Any], None] | None = None) -> Any:
        """One hot-path command on the pipelined connection."""
        if not self.available:
            raise FeatureStoreUnavailable("feature store unavailable (waiting for it to return)")
        try:
            return await self._hot.execute(*args, on_reply=on_reply)
        except FeatureStoreUnreachable as err:
            self._mark_down(err)
            raise

    # -- hot path ----------------------------------------------------------------------------

    async def read_user(self, user_id: str, result_prefix: str | None) -> UserState:
        """The user's version and, from the cache, a stored answer or else the history."""
        version_key = self.keys.version(user_id)
        near = self.near if self.available else None
        remember = None
        if near is not None and result_prefix is not None:
            if self._hot.tracking:
                known = near.version(version_key)
                if known is not None:
                    answer = near.answer(result_prefix + str(known))
                    if answer is not None:
                        return UserState(known, answer, [])
            hot = self._hot

            def remember(reply: Any) -> None:
                # Runs in the reply parser, so a push that invalidates this version later in the
                # stream is applied after it, never before. Only what a tracked read returned
                # is kept (the connection may be opened by this very read).
                if hot.tracking:
                    near.remember_version(version_key, int(reply[0]))
                    if len(reply) == 2:
                        near.remember_answer(result_prefix + reply[0].decode(), bytes(reply[1]))

        reply = await self._batched(
            "EVAL",
            READ_SCRIPT,
            2,
            version_key,
            self.keys.history(user_id),
            result_prefix or "",
            on_reply=remember,
        )
        version = int(reply[0])
        if len(reply) == 2:
            return UserState(version, bytes(reply[1]), [])
        return UserState(version, None, [item.decode() for item in reply[2]])

    async def get_cached(self, key: str) -> bytes | None:
        near = self._near()
        if near is not None and (answer := near.answer(key)) is not None:
            return answer
        reply = await self._batched("GET", key)
        return None if reply is None else bytes(reply)

    def put_cached(self, key: str, answer: bytes, ttl_s: float) -> None:
        """Cache an answer without waiting for Redis (a lost fill only costs a later miss).

        The near cache keeps it too: the key names the history version it was computed for, so
        it can only be found while that version is current.
        """
        if self.available:
            near = self._near()
            if near is not None:
                near.remember_answer(key, answer)
            self._hot.send("SET", key, answer, "PX", max(1, int(ttl_s * 1000)))

    def hold_reads(self, limit_s: float) -> None:
        """Hold the hot path's commands from now on, to leave together at ``release_reads``
        (or ``limit_s`` later at most): see ``serving.store.pipelined_client``."""
        self._hot.hold(limit_s)

    def release_reads(self) -> None:
        self._hot.release()

    def _near(self) -> NearCache | None:
        """The near cache, while it can be trusted: Redis up and tracking this connection."""
        if self.near is None or not self.available or not self._hot.tracking:
            return None
        return self.near

    # -- writes and reads off the hot path ---------------------------------------------------

    async def append(
        self, user_id: str, item_ids: Sequence[str], event_ids: Sequence[str] = ()
    ) -> tuple[int, int, int]:
        """Append events atomically; returns (version, length, duplicates).

        One Lua script (``_APPEND_EVENTS``), so that nothing runs between the check and the
        append: with ``event_ids`` (one per item) it skips every event whose id was recorded for
        this user within the dedup window (and repeats within the call), appends the rest and
        bumps the version only if any was new; without, it appends them all.
        """
        if event_ids and len(event_ids) != len(item_ids):
            raise ValueError(
                f"event_ids: one per item or none, got {len(event_ids)} for {len(item_ids)} items"
            )
        keys = [
            self.keys.history(user_id),
            self.keys.version(user_id),
            self.keys.event_ids(user_id),
        ]
        window_ms = int(self.dedup_window_s * 1000)
        arguments = [self.max_history, window_ms, MAX_EVENT_IDS, len(item_ids), len(event_ids)]

        def write() -> Awaitable[Any]:
            return self._append(keys, [*arguments, *item_ids, *event_ids])

        try:
            version, length, duplicates = await self._run(write, idempotent=False)
        finally:
            # Also on failure: the write may have been applied before the connection broke.
            self._forget_version(user_id)
        return int(version), int(length), int(duplicates)

    async def history(self, user_id: str, limit: int = 0) -> tuple[list[str], int]:
        """(stored history, oldest first, the newest ``limit`` if > 0; its version)."""

        def read() -> Awaitable[Any]:  # a fresh pipeline for each try: execute() empties one
            pipe = self.client.pipeline(transaction=True)
            pipe.get(self.keys.version(user_id))
            pipe.lrange(self.keys.history(user_id), -limit if limit > 0 else 0, -1)
            return pipe.execute()

        version, items = await self._run(read, idempotent=True)
        return [item.decode() for item in items], int(version or 0)

    async def delete_user(self, user_id: str) -> tuple[int, int]:
        """Delete the user's history, event ids and cached answers: (items, answers) deleted.

        The version counter stays and is bumped (it holds nothing about the user): an answer
        cached under the old history by a request running right now is unreachable after it.
        """
        pattern = self.keys.results_pattern(user_id)

        async def find_answers() -> list[bytes]:
            options: dict[str, Any] = {}
            if isinstance(self.client, RedisCluster):  # the user's answers share its slot
                await self.client.initialize()
                node = self.client.get_node_from_key(self.keys.history(user_id))
                options["target_nodes"] = node
            scan = self.client.scan_iter(match=pattern, count=1000, **options)
            return [key async for key in scan]

        answers: list[bytes] = await self._run(find_answers, idempotent=True)

        def delete() -> Awaitable[Any]:
            pipe = self.client.pipeline(transaction=True)
            pipe.llen(self.keys.history(user_id))
            pipe.delete(self.keys.history(user_id), self.keys.event_ids(user_id), *answers)
            pipe.incr(self.keys.version(user_id))
            return pipe.execute()

        try:
            items, _, _ = await self._run(delete, idempotent=True)
        finally:
            self._forget_version(user_id)
        return int(items), len(answers)

    def _forget_version(self, user_id: str) -> None:
        """Drop the user's version from the near cache after this process changed it: at once,
        not when Redis's invalidation arrives, so the caller's next request sees the change."""
        if self.near is not None:
            self.near.forget([self.keys.version(user_id).encode()])

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
        await self._hot.close()
        counts = self._hot.counts
        log.info(
            "feature store hot path: %d commands in %d writes (%.1f a write)",
            counts["commands"],
            counts["writes"],
            counts["commands"] / max(counts["writes"], 1),
        )
        if self.near is not None:
            log.info(
                "near cache: %s",
                ", ".join(f"{count} {name}" for name, count in self.near.stats.items()),
            )
        await self.client.aclose()
