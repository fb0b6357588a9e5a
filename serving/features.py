"""The online feature store in Redis: user histories, history versions and the result cache.

Keys (``ns`` = the configured namespace; ``{user}`` is a Redis Cluster hash tag, so all keys of one
user live in one slot)::

    ns:h:{user}                         list of external item ids, oldest first, capped
    ns:v:{user}                         history version, +1 on every append or bulk load
    ns:r:{user}:MODEL:OPTIONS:VERSION   a serialized RecommendResponse, with a TTL

The result key holds the model version, the request options' digest and the history version, so
a new model or a new event makes old entries unreachable (they expire by their TTL).

Round trips are what a Redis-backed server spends its time on, so every hot-path command of all
requests that are ready in the same event-loop turn goes out in one pipeline (``CommandBatcher``),
and a cache lookup is one server-side script that reads the version, the cached answer and (on a
miss) the history in one atomic step.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis

from serving.errors import FeatureStoreUnavailable

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


class FeatureKeys:
    """The key scheme, shared by the server and ``recsys load-features``."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def history(self, user_id: str) -> str:
        return f"{self.namespace}:h:{{{user_id}}}"

    def version(self, user_id: str) -> str:
        return f"{self.namespace}:v:{{{user_id}}}"

    def result_prefix(self, user_id: str | None, model_version: str, options: str) -> str:
        """The result key without the history version (appended by the reader)."""
        owner = "~anonymous" if user_id is None else f"{{{user_id}}}"
        return f"{self.namespace}:r:{owner}:{model_version}:{options}:"

    def pattern(self) -> str:
        """Every key of the namespace (for clean-up)."""
        return f"{self.namespace}:*"


@dataclass(frozen=True)
class UserState:
    """What one read returns: the version, and either the cached answer or the history."""

    version: int
    cached: bytes | None
    history: list[str]


class FeatureStoreUnreachable(FeatureStoreUnavailable):
    """The round trip itself failed (no connection, timeout), not one command."""


class CommandBatcher:
    """Sends the commands of every caller that is ready in one event-loop turn as one pipeline.

    ``execute(*args)`` returns the command's reply; a reply that is an error raises
    ``FeatureStoreUnavailable``, as does a failed round trip (for every command in it).
    """

    def __init__(self, client: aioredis.Redis, timeout_s: float) -> None:
        self._client = client
        self._timeout_s = timeout_s
        self._pending: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._scheduled = False
        self._in_flight: set[asyncio.Task[None]] = set()

    def execute(self, *args: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((args, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _send(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        try:
            async with asyncio.timeout(self._timeout_s):
                pipe = self._client.pipeline(transaction=False)
                for args, _ in batch:
                    pipe.execute_command(*args)
                replies = await pipe.execute(raise_on_error=False)
        except (redis.RedisError, *_CONNECTION_ERRORS) as err:
            failure = FeatureStoreUnreachable(f"feature store unreachable: {_describe(err)}")
            for _, future in batch:
                if not future.done():
                    future.set_exception(failure)
            return
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(FeatureStoreUnavailable(f"feature store error: {reply}"))
            else:
                future.set_result(reply)


def _describe(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


class FeatureStore:
    """Histories, versions and cached answers in Redis, with outage detection and recovery.

    When a call fails for want of a connection the store marks itself unavailable: reads fail at
    once (callers degrade instead of waiting for timeouts) and a probe pings Redis every
    ``retry_interval_s`` until it answers. Writes always try, so a write succeeds as soon as Redis
    is back, and otherwise raises ``FeatureStoreUnavailable`` (never a silent loss).
    """

    def __init__(
        self,
        client: aioredis.Redis,
        namespace: str,
        max_history: int,
        timeout_s: float,
        retry_interval_s: float,
        on_availability: Callable[[bool], None] | None = None,
    ) -> None:
        self.client = client
        self.keys = FeatureKeys(namespace)
        self.max_history = max_history
        self._timeout_s = timeout_s
        self._retry_interval_s = retry_interval_s
        self._batcher = CommandBatcher(client, timeout_s)
        self._on_availability = on_availability
        self.available = True
        self._probe: asyncio.Task[None] | None = None

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
        if self.available:
            self.available = False
            log.warning(
                "feature store unavailable (%s): degrading to request history and "
                "popularity; probing every %.1f s",
                _describe(err),
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
            self._mark_up()

    async def _run(self, call: Any) -> Any:
        """Await one Redis call; connection failures mark the store down and raise."""
        try:
            async with asyncio.timeout(self._timeout_s):
                result = await call
        except (redis.RedisError, *_CONNECTION_ERRORS) as err:
            if not isinstance(err, redis.ResponseError):
                self._mark_down(err)
            raise FeatureStoreUnavailable(f"feature store unreachable: {_describe(err)}") from err
        self._mark_up()
        return result

    async def _batched(self, *args: Any) -> Any:
        """One hot-path command, coalesced with those of concurrent requests."""
        if not self.available:
            raise FeatureStoreUnavailable("feature store unavailable (waiting for it to return)")
        try:
            return await self._batcher.execute(*args)
        except FeatureStoreUnreachable as err:
            self._mark_down(err)
            raise

    # -- hot path ----------------------------------------------------------------------------

    async def read_user(self, user_id: str, result_prefix: str | None) -> UserState:
        """The user's version and, from the cache, a stored answer or else the history."""
        reply = await self._batched(
            "EVAL",
            READ_SCRIPT,
            2,
            self.keys.version(user_id),
            self.keys.history(user_id),
            result_prefix or "",
        )
        version = int(reply[0])
        if len(reply) == 2:
            return UserState(version, bytes(reply[1]), [])
        return UserState(version, None, [item.decode() for item in reply[2]])

    async def get_cached(self, key: str) -> bytes | None:
        reply = await self._batched("GET", key)
        return None if reply is None else bytes(reply)

    async def put_cached(self, key: str, answer: bytes, ttl_s: float) -> None:
        await self._batched("SET", key, answer, "PX", max(1, int(ttl_s * 1000)))

    # -- writes and reads off the hot path ---------------------------------------------------

    async def append(self, user_id: str, item_ids: Sequence[str]) -> tuple[int, int]:
        """Append events atomically (MULTI: RPUSH, LTRIM, INCR); returns (version, length)."""
        history_key = self.keys.history(user_id)
        pipe = self.client.pipeline(transaction=True)
        pipe.rpush(history_key, *item_ids)
        pipe.ltrim(history_key, -self.max_history, -1)
        pipe.incr(self.keys.version(user_id))
        pipe.llen(history_key)
        _, _, version, length = await self._run(pipe.execute())
        return int(version), int(length)

    async def history(self, user_id: str, limit: int = 0) -> tuple[list[str], int]:
        """(stored history, oldest first, the newest ``limit`` if > 0; its version)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.get(self.keys.version(user_id))
        pipe.lrange(self.keys.history(user_id), -limit if limit > 0 else 0, -1)
        version, items = await self._run(pipe.execute())
        return [item.decode() for item in items], int(version or 0)

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
        await self.client.aclose()
