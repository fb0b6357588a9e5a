"""The embedded Redis: a start that fails says why, with the server's log; a data folder
persists it (one owner at a time); temporary folders never outlive their process."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest
import redis

from recsys.errors import ConfigError
from serving.store.embedded_redis import EmbeddedRedis, Fsync, remove_stale_folders


def test_an_embedded_redis_that_cannot_bind_fails_with_its_log() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = EmbeddedRedis(port=port)
        try:
            with pytest.raises(ConfigError, match=r"status 1\); log .*Address already in use"):
                server.start()
        finally:
            server.close()


def test_an_embedded_redis_killed_at_start_is_tried_twice_then_named(tmp_path: Path) -> None:
    """A server killed by a signal before answering (a crash, not a bad option) gets one retry."""
    starts = tmp_path / "starts"
    binary = tmp_path / "crashing-redis-server"
    binary.write_text(f'#!/bin/sh\necho start >> "{starts}"\nkill -ABRT $$\n')
    binary.chmod(0o755)
    server = EmbeddedRedis(binary=str(binary))
    try:
        with pytest.raises(ConfigError, match="killed by SIGABRT.*wrote no log"):
            server.start()
    finally:
        server.close()
    assert starts.read_text().split() == ["start", "start"]


def _client(server: EmbeddedRedis) -> redis.Redis:
    return redis.Redis.from_url(server.url, socket_timeout=5)


@pytest.mark.parametrize("fsync", ["always", "everysec"])
def test_a_persisted_store_comes_back_after_a_restart(tmp_path: Path, fsync: Fsync) -> None:
    first = EmbeddedRedis(data_dir=tmp_path / "data", fsync=fsync).start()
    try:
        _client(first).rpush("history", "a", "b")
    finally:
        first.close()  # SIGTERM: Redis flushes its append-only file
    assert any((tmp_path / "data").rglob("*.aof")), "an append-only file is written"
    again = EmbeddedRedis(data_dir=tmp_path / "data").start()
    try:
        assert _client(again).lrange("history", 0, -1) == [b"a", b"b"]
    finally:
        again.close()


def test_a_killed_redis_keeps_what_it_acknowledged_with_fsync_always(tmp_path: Path) -> None:
    server = EmbeddedRedis(data_dir=tmp_path / "data", fsync="always").start()
    try:
        client = _client(server)
        for index in range(50):
            client.rpush("events", str(index))
        assert server._process is not None
        server._process.send_signal(signal.SIGKILL)  # no chance to flush anything more
        server._process.wait()
        server.start()
        assert _client(server).llen("events") == 50
    finally:
        server.close()


def test_without_a_data_folder_nothing_is_persisted() -> None:
    server = EmbeddedRedis().start()
    try:
        _client(server).set("key", "value")
        server.stop()
        server.start()
        assert _client(server).get("key") is None
    finally:
        server.close()


def test_one_data_folder_has_one_owner(tmp_path: Path) -> None:
    owner = EmbeddedRedis(data_dir=tmp_path / "data")
    try:
        with pytest.raises(ConfigError, match=r"--redis-dir .* is in use by pid \d+"):
            EmbeddedRedis(data_dir=tmp_path / "data")
    finally:
        owner.close()
    EmbeddedRedis(data_dir=tmp_path / "data").close()  # free again once closed


def test_a_data_folder_that_cannot_be_made_names_the_flag(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match="--redis-dir .*file/data: cannot use it"):
        EmbeddedRedis(data_dir=blocker / "data")


def test_closing_removes_the_temporary_folder_and_stale_ones_are_swept(tmp_path: Path) -> None:
    server = EmbeddedRedis().start()
    folder = Path(server.url.removeprefix("unix://")).parent
    assert folder.is_dir()
    server.close()
    assert not folder.exists()
    dead, alive, fresh = (tmp_path / f"recsys-redis-{name}" for name in ("a", "b", "c"))
    for path, owner in ((dead, 2**22 + 1), (alive, os.getpid()), (fresh, 2**22 + 1)):
        path.mkdir()
        (path / "owner.pid").write_text(str(owner))
    old = time.time() - 3600
    for path in (dead, alive):
        os.utime(path, (old, old))
    assert remove_stale_folders(tmp_path) == [dead]
    assert alive.is_dir() and fresh.is_dir()
