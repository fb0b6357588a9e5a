"""The Redis feature store on a real Redis: capped histories, versions, the result cache."""

from __future__ import annotations

import asyncio

import pytest

from serving.errors import FeatureStoreUnavailable
from serving.store.embedded_redis import EmbeddedRedis, free_port
from serving.store.feature_store import FeatureStore
from tests.serving.store.stores import StoreSettings, with_stores


def test_append_caps_the_history_and_bumps_the_version(redis_url: str, namespace: str) -> None:
    async def body(store: FeatureStore) -> None:
        assert await store.append("u", ["a", "b", "c"]) == (1, 3, 0)
        assert await store.append("u", ["d", "e"]) == (2, 4, 0)
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


def test_a_redis_restart_costs_no_outage_and_no_repeated_write() -> None:
    """After a restart every pooled connection is dead: reads are made again on a fresh one,
    a write fails alone (never repeated: it might have been applied) and the store never
    declares itself down while Redis answers."""
    port = free_port()
    server = EmbeddedRedis(port=port).start()
    changes: list[bool] = []

    async def body() -> None:
        store = FeatureStore(server.url, "restart", 50, 0.5, 0.2, on_availability=changes.append)
        try:
            await asyncio.gather(*(store.append(f"u{i}", ["a"]) for i in range(4)))  # 4 in pool
            server.stop()
            server.start()  # no persistence: empty again
            assert (
                await asyncio.gather(*(store.history(f"u{i}") for i in range(4))) == [([], 0)] * 4
            )
            await asyncio.gather(*(store.history(f"u{i}") for i in range(4)))
            writes = await asyncio.gather(
                *(store.append(f"u{i}", ["b"]) for i in range(4)), return_exceptions=True
            )
            for outcome in writes:
                assert outcome == (1, 1, 0) or "Redis answers again: retry" in str(outcome)
            assert await store.append("u0", ["c"]) in ((1, 1, 0), (2, 2, 0))
            assert store.available
        finally:
            await store.close()

    try:
        asyncio.run(body())
    finally:
        server.close()
    assert changes == []


def test_a_redis_that_is_gone_marks_the_store_down() -> None:
    server = EmbeddedRedis(port=free_port()).start()
    changes: list[bool] = []

    async def body() -> None:
        store = FeatureStore(server.url, "gone", 50, 0.5, 0.2, on_availability=changes.append)
        try:
            await store.append("u", ["a"])
            server.stop()
            with pytest.raises(FeatureStoreUnavailable, match="unreachable"):
                await store.history("u")
            assert not store.available
        finally:
            await store.close()

    try:
        asyncio.run(body())
    finally:
        server.close()
    assert changes == [False]


def test_event_ids_make_a_retried_write_append_nothing_twice(
    redis_url: str, namespace: str
) -> None:
    async def body(store: FeatureStore) -> None:
        assert await store.append("u", ["a", "b"], ["e1", "e2"]) == (1, 2, 0)
        assert await store.append("u", ["a", "b"], ["e1", "e2"]) == (1, 2, 2)  # the retry
        assert await store.append("u", ["b", "c"], ["e2", "e3"]) == (2, 3, 1)  # one new
        assert await store.append("u", ["d", "d"], ["e4", "e4"]) == (3, 4, 1)  # repeat in call
        assert await store.history("u") == (["a", "b", "c", "d"], 3)
        assert await store.append("v", ["a"], ["e1"]) == (1, 1, 0)  # ids are per user
        assert await store.append("u", ["x"]) == (4, 4, 0)  # no ids: always appended (cap 4)

    with_stores(redis_url, namespace, body)


def test_event_ids_are_forgotten_after_the_window(redis_url: str, namespace: str) -> None:
    async def body(store: FeatureStore) -> None:
        store.dedup_window_s = 0.2
        assert await store.append("u", ["a"], ["e1"]) == (1, 1, 0)
        await asyncio.sleep(0.3)
        assert await store.append("u", ["a"], ["e1"]) == (2, 2, 0)  # out of the window
        ttl_ms = await store.client.pttl(store.keys.event_ids("u"))
        assert 0 < ttl_ms <= 200  # the id set expires with the window: no key left behind

    with_stores(redis_url, namespace, body)


def test_concurrent_retries_of_one_write_append_it_once(redis_url: str, namespace: str) -> None:
    async def body(store: FeatureStore) -> None:
        outcomes = await asyncio.gather(
            *(store.append("u", ["a", "b"], ["e1", "e2"]) for _ in range(8))
        )
        assert sorted(outcome[2] for outcome in outcomes) == [0] + [2] * 7
        assert await store.history("u") == (["a", "b"], 1)

    with_stores(redis_url, namespace, body)


def test_a_write_with_event_ids_longer_than_luas_stack_is_stored_whole(
    redis_url: str, namespace: str
) -> None:
    items = [f"i{n}" for n in range(9_000)]  # unpack() of this many would overflow Lua's stack

    async def body(store: FeatureStore) -> None:
        assert await store.append("u", items, items) == (1, 9_000, 0)
        assert await store.history("u") == (items, 1)

    with_stores(redis_url, namespace, body, settings=StoreSettings(max_history=10_000))
