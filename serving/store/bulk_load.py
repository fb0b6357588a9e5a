"""Bulk writes to the feature store: replace many users' histories in pipelined transactions.

Used by ``recsys load-features``. Each chunk of users is one pipelined round trip (per node on a
cluster) of one script per user: DEL + RPUSH of the (already capped) history + INCR of the
version, atomically, so cached answers computed from the old history become unreachable and no
reader ever sees a half-written history.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import redis

from serving.errors import FeatureStoreUnavailable
from serving.store.feature_store import FeatureKeys

REPLACE_HISTORY = """
-- KEYS: history, version. ARGV: the items, oldest first.
redis.call('DEL', KEYS[1])
for first = 1, #ARGV, 1000 do  -- unpack() is bounded by Lua's stack: push in pieces
  redis.call('RPUSH', KEYS[1], unpack(ARGV, first, math.min(first + 999, #ARGV)))
end
return redis.call('INCR', KEYS[2])
"""
"""One user's history replaced and its version bumped, atomically (a user's keys share a slot,
so this runs on a Redis Cluster too, where a transaction over many users' keys cannot)."""


def load_histories(
    client: redis.Redis | redis.RedisCluster,
    keys: FeatureKeys,
    histories: Iterable[tuple[str, Sequence[str]]],
    batch_users: int,
    on_batch: Callable[[int, int], None] | None = None,
) -> tuple[int, int]:
    """Write ``(user_id, item_ids oldest first)`` pairs; returns (users, items) written.

    ``on_batch(users, items)`` is called after each written chunk with the chunk's counts.
    A Redis failure raises ``FeatureStoreUnavailable``; every user written before it is complete
    (each user's replacement is one script), so running the job again finishes the load.
    """
    users = items = 0
    chunk_users = chunk_items = 0
    pipe = client.pipeline(transaction=False)
    try:
        for user_id, item_ids in histories:
            history, version = keys.history(user_id), keys.version(user_id)
            pipe.execute_command("EVAL", REPLACE_HISTORY, 2, history, version, *item_ids)
            chunk_users += 1
            chunk_items += len(item_ids)
            if chunk_users >= batch_users:
                pipe.execute()
                users, items = users + chunk_users, items + chunk_items
                if on_batch is not None:
                    on_batch(chunk_users, chunk_items)
                chunk_users = chunk_items = 0
        if chunk_users:
            pipe.execute()
            users, items = users + chunk_users, items + chunk_items
            if on_batch is not None:
                on_batch(chunk_users, chunk_items)
    except (redis.RedisError, OSError) as err:
        raise FeatureStoreUnavailable(
            f"Redis failed after {users:,} users were loaded: {type(err).__name__}: {err}"
        ) from err
    finally:
        pipe.reset()
    return users, items
