"""The hot path's commands on a Redis Cluster, through redis-py's cluster client.

``serving.store.pipelined_client`` is one socket to one Redis: it cannot follow a cluster's
MOVED/ASK redirections or spread keys over nodes. On a cluster the feature store sends the same
commands through this class instead, which has the pipelined connection's interface and hands
each command to ``redis.asyncio.cluster.RedisCluster`` (it routes by the key's slot and follows
redirections). A user's keys share a hash tag, so the read script's keys (and the cached answer
it reads by name) live on one node.

What the cluster path does without: read holding (``hold``/``release`` are no-ops: each command
is its own round trip to its node) and client tracking (``tracking`` is always False, so the
near cache stays off: invalidations would have to be tracked on every node's connection).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import redis
from redis.asyncio.cluster import RedisCluster

from serving.errors import FeatureStoreUnavailable, FeatureStoreUnreachable, describe_error


class ClusterHotPath:
    """``PipelinedConnection``'s interface over a ``RedisCluster`` client."""

    tracking = False

    def __init__(self, client: RedisCluster) -> None:
        self._client = client
        self._fills: set[asyncio.Future[Any]] = set()
        self.counts = {"commands": 0, "writes": 0}

    def hold(self, limit_s: float) -> None:
        """No effect: commands go to several nodes, each on its own."""

    def release(self) -> None:
        """No effect (see ``hold``)."""

    async def execute(self, *args: Any, on_reply: Callable[[Any], None] | None = None) -> Any:
        """Run one command; it sees the effect of every fill sent before it, as on the single
        connection (where Redis runs a connection's commands in order): those are awaited
        first (at most one round trip, they run concurrently)."""
        if self._fills:
            await asyncio.wait(set(self._fills))
        return await self._execute(args, on_reply)

    async def _execute(self, args: tuple[Any, ...], on_reply: Callable[[Any], None] | None) -> Any:
        self.counts["commands"] += 1
        self.counts["writes"] += 1
        try:
            reply = await self._client.execute_command(*args)
        except redis.ResponseError as err:
            raise FeatureStoreUnavailable(f"feature store error: {describe_error(err)}") from err
        except (redis.RedisError, OSError, TimeoutError) as err:
            raise FeatureStoreUnreachable(
                f"feature store shard unreachable: {describe_error(err)}"
            ) from err
        if on_reply is not None:
            on_reply(reply)
        return reply

    def send(self, *args: Any) -> None:
        """Issue a command without waiting for its reply (a cache fill); its failure is dropped."""
        fill = asyncio.ensure_future(self._execute(args, None))
        self._fills.add(fill)
        fill.add_done_callback(self._settled)

    def _settled(self, fill: asyncio.Future[Any]) -> None:
        self._fills.discard(fill)
        if not fill.cancelled():
            fill.exception()  # retrieved, so asyncio does not warn about it

    async def close(self) -> None:
        """Wait briefly for cache fills in flight (they are cheap), then drop the rest."""
        if self._fills:
            await asyncio.wait(set(self._fills), timeout=1.0)
        for fill in list(self._fills):
            fill.cancel()
