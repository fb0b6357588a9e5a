"""The near cache: repeated reads answered in process, kept true by Redis's invalidation pushes.

Everything but the first test runs on a real Redis (client-side caching needs the real server).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, TypeVar

import pytest
import redis

from serving.store.embedded_redis import EmbeddedRedis, free_port
from serving.store.feature_store import FeatureStore
from serving.store.near_cache import ENTRY_OVERHEAD, NearCache
from tests.serving.store.stores import StoreSettings, with_stores

pytestmark = pytest.mark.single_redis  # client tracking, one pipelined connection

if TYPE_CHECKING:
    from tests.serving.store.conftest import CountWrites

T = TypeVar("T")


NEAR = StoreSettings(max_history=10, near_cache_size=100, near_cache_ttl_s=30.0)
"""Stores with a near cache of 100 entries, answers kept 30 s."""


async def _until(condition: Callable[[], bool], timeout_s: float = 2.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "no invalidation arrived within the time limit"
        await asyncio.sleep(0.005)


async def _hit(store: FeatureStore, user: str, prefix: str, answer: bytes) -> int:
    """Read the user (a miss), cache an answer for its version; returns the version."""
    miss = await store.read_user(user, prefix)
    assert miss.cached is None
    store.put_cached(prefix + str(miss.version), answer, ttl_s=30)
    return miss.version


def _versions(near: NearCache, count: int) -> NearCache:
    for n in range(count):
        near.remember_version(f"v{n}", n)
    return near


def test_entries_are_bounded_to_the_newest() -> None:
    near = _versions(NearCache(max_entries=2, ttl_s=0.05), 3)
    assert (near.version("v0"), near.version("v1"), near.version("v2")) == (None, 1, 2)


def test_answers_expire() -> None:
    near = NearCache(max_entries=2, ttl_s=0.05)
    near.remember_answer("r", b"x")
    assert near.answer("r") == b"x"
    time.sleep(0.1)
    assert near.answer("r") is None


def test_entries_are_forgotten_by_key_or_all_at_once_and_counted() -> None:
    near = _versions(NearCache(max_entries=2, ttl_s=30), 3)
    near.remember_answer("r", b"x")
    assert near.answer("r") == b"x"
    near.forget([b"v1"])
    assert (near.version("v1"), near.version("v2")) == (None, 2)
    near.forget(None)
    assert len(near) == 0
    assert near.stats == {"answers served": 1, "invalidations": 1, "clears": 1}


def test_the_bytes_held_stay_within_the_budget_oldest_answers_first() -> None:
    cache = NearCache(max_entries=1_000_000, ttl_s=60, max_bytes=100_000)
    cache.remember_version("v:{u}", 1)
    for index in range(200):  # 200 x ~15 KB answers: far more than 100 KB
        cache.remember_answer(f"r:{index}", bytes(15_000))
        assert cache.bytes <= 100_000
    kept = [index for index in range(200) if cache.answer(f"r:{index}") is not None]
    assert kept == list(range(200 - len(kept), 200)) and 1 <= len(kept) <= 6  # the newest
    assert cache.version("v:{u}") == 1  # small versions outlive large answers
    expected = sum(len(f"r:{i}") + 15_000 + ENTRY_OVERHEAD for i in kept)
    assert cache.bytes == expected + len("v:{u}") + ENTRY_OVERHEAD
    cache.forget([b"v:{u}", b"r:199"])
    assert cache.bytes == expected - len("r:199") - 15_000 - ENTRY_OVERHEAD
    cache.remember_answer("huge", bytes(200_000))  # larger than the budget: not kept
    assert cache.answer("huge") is None and cache.bytes <= 100_000
    cache.clear()
    assert cache.bytes == 0


def test_rewriting_an_entry_counts_it_once() -> None:
    cache = NearCache(max_entries=10, ttl_s=60, max_bytes=10_000)
    for _ in range(5):
        cache.remember_answer("r", bytes(100))
        cache.remember_version("v", 3)
    assert cache.bytes == len("r") + 100 + len("v") + 2 * ENTRY_OVERHEAD


def test_a_cache_without_room_is_refused() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        NearCache(max_entries=0, ttl_s=1)


def test_a_repeated_read_is_answered_without_a_round_trip(
    redis_url: str, namespace: str, count_writes: CountWrites
) -> None:
    async def body(store: FeatureStore) -> None:
        await store.append("u", ["a", "b"])
        prefix = store.keys.result_prefix("u", "m", "o")
        version = await _hit(store, "u", prefix, b"answer")
        await asyncio.sleep(0.01)  # the fill has left
        writes = count_writes(store)
        for _ in range(3):
            state = await store.read_user("u", prefix)
            assert (state.version, state.cached) == (version, b"answer")
        assert writes == []
        # Other options: a different answer key, so Redis is asked (and the history returned).
        other = await store.read_user("u", store.keys.result_prefix("u", "m", "other"))
        assert (other.cached, other.history) == (None, ["a", "b"])
        assert len(writes) == 1

    with_stores(redis_url, namespace, body, settings=NEAR)


def test_without_a_near_cache_every_read_asks_redis(
    redis_url: str, namespace: str, count_writes: CountWrites
) -> None:
    async def body(store: FeatureStore) -> None:
        prefix = store.keys.result_prefix("u", "m", "o")
        await _hit(store, "u", prefix, b"answer")
        await asyncio.sleep(0.01)
        writes = count_writes(store)
        assert (await store.read_user("u", prefix)).cached == b"answer"
        assert len(writes) == 1

    with_stores(redis_url, namespace, body, settings=replace(NEAR, near_cache_size=0))


def test_a_write_by_another_replica_reaches_this_one(redis_url: str, namespace: str) -> None:
    """Replica B records events: Redis pushes the invalidation to replica A, whose next read
    goes back to Redis and sees the new history."""

    async def body(replica_a: FeatureStore, replica_b: FeatureStore) -> None:
        await replica_a.append("u", ["a"])
        prefix = replica_a.keys.result_prefix("u", "m", "o")
        await _hit(replica_a, "u", prefix, b"old answer")
        assert (await replica_a.read_user("u", prefix)).cached == b"old answer"
        version_key = replica_a.keys.version("u")
        near = replica_a.near
        assert near is not None and near.version(version_key) == 1
        await replica_b.append("u", ["b"])
        await _until(lambda: near.version(version_key) is None)
        state = await replica_a.read_user("u", prefix)
        assert (state.version, state.cached, state.history) == (2, None, ["a", "b"])

    with_stores(redis_url, namespace, body, count=2, settings=NEAR)


def test_a_write_by_any_client_invalidates(redis_url: str, namespace: str) -> None:
    """The bulk loader, an operator's redis-cli: any client's change is pushed."""

    async def body(store: FeatureStore) -> None:
        prefix = store.keys.result_prefix("u", "m", "o")
        await _hit(store, "u", prefix, b"cold-start answer")  # no history yet: version 0
        other = redis.Redis.from_url(redis_url)
        try:
            other.rpush(store.keys.history("u"), "x")
            other.incr(store.keys.version("u"))
        finally:
            other.close()
        near = store.near
        assert near is not None
        await _until(lambda: near.version(store.keys.version("u")) is None)
        state = await store.read_user("u", prefix)
        assert (state.version, state.cached, state.history) == (1, None, ["x"])

    with_stores(redis_url, namespace, body, settings=NEAR)


def test_own_appends_are_seen_by_the_very_next_read(redis_url: str, namespace: str) -> None:
    """RecordInteractions then Recommend on one server: no waiting for Redis's push."""

    async def body(store: FeatureStore) -> None:
        prefix = store.keys.result_prefix("u", "m", "o")
        await _hit(store, "u", prefix, b"before")
        protocol = store._hot._protocol
        assert protocol is not None and protocol.transport is not None
        protocol.transport.pause_reading()  # Redis's push for the append waits in the socket
        await store.append("u", ["a"])
        near = store.near
        assert near is not None and near.version(store.keys.version("u")) is None
        protocol.transport.resume_reading()
        state = await store.read_user("u", prefix)
        assert (state.version, state.cached, state.history) == (1, None, ["a"])

    with_stores(redis_url, namespace, body, settings=NEAR)


def test_an_invalidation_right_behind_a_reply_is_not_undone(redis_url: str, namespace: str) -> None:
    """A read's reply and the push for a change made just after it arrive back to back: the
    version is remembered in the parser, before the push is applied, so the push wins. (Were it
    remembered when the reading coroutine resumes, the stale version would stay, since Redis
    pushes once per read.)"""

    async def body(store: FeatureStore) -> None:
        version_key = store.keys.version("u")
        prefix = store.keys.result_prefix("u", "m", "o")
        await store.read_user("u", prefix)  # connected and tracking
        near = store.near
        assert near is not None
        near.forget(None)
        # Written in one turn: the read, then a change to the key it reads.
        read = asyncio.ensure_future(store.read_user("u", prefix))
        change = asyncio.ensure_future(store._hot.execute("INCR", version_key))
        state, version = await asyncio.gather(read, change)
        assert (state.version, version) == (0, 1)
        assert near.version(version_key) is None
        assert (await store.read_user("u", prefix)).version == 1

    with_stores(redis_url, namespace, body, settings=NEAR)


def test_a_lost_connection_empties_the_near_cache(redis_url: str, namespace: str) -> None:
    async def body(store: FeatureStore) -> None:
        await store.append("u", ["a"])
        prefix = store.keys.result_prefix("u", "m", "o")
        await _hit(store, "u", prefix, b"answer")
        await asyncio.sleep(0.01)  # the fill has left
        near = store.near
        assert near is not None and len(near) == 2
        connection_id = await store._hot.execute("CLIENT", "ID")
        admin = redis.Redis.from_url(redis_url)
        try:
            assert admin.client_kill_filter(_id=connection_id) == 1
        finally:
            admin.close()
        await _until(lambda: len(near) == 0)
        # While the store reconnects nothing is served from memory; then it is Redis's answer.
        await _until(lambda: store.available)
        for _ in range(50):
            try:
                state = await store.read_user("u", prefix)
                break
            except Exception:  # noqa: BLE001 - the read that finds the connection gone
                await asyncio.sleep(0.05)
        assert (state.version, state.cached) == (1, b"answer")

    with_stores(redis_url, namespace, body, settings=NEAR)


def test_a_redis_that_cannot_track_is_used_without_the_near_cache(
    caplog: pytest.LogCaptureFixture, count_writes: CountWrites
) -> None:
    """A Redis without HELLO (as before 6, here a real one with the command disabled): answers
    still come, every one from Redis, and the log says why."""
    embedded = EmbeddedRedis(port=free_port(), extra_args=["--rename-command", "HELLO", ""]).start()
    try:

        async def body(store: FeatureStore) -> None:
            prefix = store.keys.result_prefix("u", "m", "o")
            await _hit(store, "u", prefix, b"answer")
            await asyncio.sleep(0.01)
            assert not store._hot.tracking
            writes = count_writes(store)
            assert (await store.read_user("u", prefix)).cached == b"answer"
            assert len(writes) == 1

        with caplog.at_level(logging.WARNING, logger="serving.store.pipelined_client"):
            with_stores(embedded.url, "no-tracking", body, settings=NEAR)
        assert "cannot track reads" in caplog.text
    finally:
        embedded.close()
