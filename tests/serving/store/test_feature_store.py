"""The Redis feature store on a real Redis: capped histories, versions, the result cache."""

from __future__ import annotations

import asyncio

from serving.store.feature_store import FeatureStore
from tests.serving.store.stores import with_stores


def test_append_caps_the_history_and_bumps_the_version(redis_url: str, namespace: str) -> None:
    async def body(store: FeatureStore) -> None:
        assert await store.append("u", ["a", "b", "c"]) == (1, 3)
        assert await store.append("u", ["d", "e"]) == (2, 4)
        assert await store.history("u") == (["b", "c", "d", "e"], 2)
        assert await store.history("u", limit=2) == (["d", "e"], 2)
        assert await store.history("someone-else") == ([], 0)

    with_stores(redis_url, namespace, body)


def test_one_read_returns_history_on_a_miss_and_the_answer_on_a_hit(
    redis_url: str, namespace: str
) -> None:
    async def body(store: FeatureStore) -> None:
        await store.append("u", ["a", "b"])
        prefix = store.keys.result_prefix("u", "model-1", "opts")
        miss = await store.read_user("u", prefix)
        assert (miss.version, miss.cached, miss.history) == (1, None, ["a", "b"])
        store.put_cached(prefix + str(miss.version), b"answer", ttl_s=30)
        hit = await store.read_user("u", prefix)
        assert (hit.version, hit.cached) == (1, b"answer")
        other_model = await store.read_user("u", store.keys.result_prefix("u", "model-2", "opts"))
        assert other_model.cached is None

        await store.append("u", ["c"])  # a new version: the cached answer is unreachable
        after = await store.read_user("u", prefix)
        assert (after.version, after.cached, after.history) == (2, None, ["a", "b", "c"])
        unknown = await store.read_user("nobody", None)
        assert (unknown.version, unknown.history) == (0, [])

    with_stores(redis_url, namespace, body)


def test_cached_answers_expire(redis_url: str, namespace: str) -> None:
    async def body(store: FeatureStore) -> bytes | None:
        key = store.keys.result_prefix(None, "m", "o") + "0"
        assert await store.get_cached(key) is None  # a fill follows a lookup, as in a request
        store.put_cached(key, b"x", ttl_s=0.05)
        assert await store.get_cached(key) == b"x"
        await asyncio.sleep(0.2)
        return await store.get_cached(key)

    assert with_stores(redis_url, namespace, body) is None
