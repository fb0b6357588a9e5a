"""The online feature store: user histories, history versions and cached answers in Redis.

``feature_store`` (keys, reads, appends, the result cache, outage handling),
``pipelined_client`` (the hot path's lean pipelined Redis connection), ``near_cache`` (in-process
copies kept true by Redis client tracking), ``bulk_load`` (``recsys load-features``),
``redis_clients`` (URL checks, redis-py clients for the slow paths) and ``embedded_redis`` (a real
Redis started for this process when no URL is given).
"""

from serving.store.bulk_load import load_histories
from serving.store.embedded_redis import EmbeddedRedis
from serving.store.feature_store import FeatureKeys, FeatureStore, UserState
from serving.store.redis_clients import async_client, redacted, sync_client

__all__ = [
    "EmbeddedRedis",
    "FeatureKeys",
    "FeatureStore",
    "UserState",
    "async_client",
    "load_histories",
    "redacted",
    "sync_client",
]
