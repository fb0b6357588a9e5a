"""Bulk writes to the feature store: replace many users' histories in pipelined transactions.

Used by ``recsys load-features``. Each chunk of users is one MULTI/EXEC round trip: per user
DEL + RPUSH of the (already capped) history + INCR of the version, so cached answers computed
from the old history become unreachable and no reader ever sees a half-written history.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import redis

from serving.errors import FeatureStoreUnavailable
from serving.store.feature_store import FeatureKeys

_RPUSH_CHUNK = 1000
"""Items per RPUSH command (keeps every command small, whatever the history length)."""


def load_histories(
    client: redis.Redis,
    keys: FeatureKeys,
    histories: Iterable[tuple[str, Sequence[str]]],
    batch_users: int,
    on_batch: Callable[[int, int], None] | None = None,
) -> tuple[int, int]:
    """Write ``(user_id, item_ids oldest first)`` pairs; returns (users, items) written.

    ``on_batch(users, items)`` is called after each committed chunk with the chunk's counts.
    A Redis failure raises ``FeatureStoreUnavailable``; chunks committed before it stay written
    (each is complete on its own), so running the job again finishes the load.
    """
    users = items = 0
    chunk_users = chunk_items = 0
    pipe = client.pipeline(transaction=True)
    try:
        for user_id, item_ids in histories:
            history_key = keys.history(user_id)
            pipe.delete(history_key)
            for start in range(0, len(item_ids), _RPUSH_CHUNK):
                pipe.rpush(history_key, *item_ids[start : start + _RPUSH_CHUNK])
            pipe.incr(keys.version(user_id))
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
