"""The embedded Redis: a start that fails says why, with the server's log."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from recsys.errors import ConfigError
from serving.store.embedded_redis import EmbeddedRedis


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
