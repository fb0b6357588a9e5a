"""ServeConfig refuses impossible settings with the flag's name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from recsys.errors import ConfigError
from serving.config import ServeConfig


@pytest.mark.parametrize(
    ("values", "flag"),
    [
        ({"max_k": 0}, "--max-k"),
        ({"max_batch_size": -1}, "--max-batch-size"),
        ({"max_history": True}, "--max-history"),
        ({"max_wait_ms": -0.5}, "--max-wait-ms"),
        ({"batch_yield_ms": -1}, "--batch-yield-ms"),
        ({"fair_share": 0}, "--fair-share"),
        ({"busy_in_flight": 0}, "--busy-in-flight"),
        ({"read_hold_ms": -1}, "--read-hold-ms"),
        ({"read_hold_ms": 300, "redis_timeout_s": 0.5}, "--read-hold-ms"),
        ({"redis_timeout_s": 0}, "--redis-timeout-s"),
        ({"near_cache_size": -1}, "--near-cache-size"),
        ({"port": 70000}, "--port"),
        ({"host": ""}, "--host"),
        ({"namespace": "has space"}, "--namespace"),
        ({"namespace": ""}, "--namespace"),
        ({"redis_url": "localhost:6379"}, "--redis-url"),
    ],
)
def test_bad_values_name_their_flag(values: dict[str, Any], flag: str) -> None:
    with pytest.raises(ConfigError, match=flag):
        ServeConfig(**values)


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "rediss://user:pw@cache:6380/1", "unix:///tmp/r.sock"]
)
def test_tcp_tls_and_unix_urls_are_accepted(url: str) -> None:
    assert ServeConfig(redis_url=url).redis_url == url


def test_defaults_are_valid() -> None:
    config = ServeConfig()
    assert config.redis_url is None  # embedded Redis
    assert config.port == 50051


def test_the_embedded_redis_folder_defaults_to_the_user_data_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert ServeConfig().embedded_redis_dir() == tmp_path / "recsys" / "redis"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert ServeConfig().embedded_redis_dir() == Path.home() / ".local/share/recsys/redis"
    assert ServeConfig(redis_dir="none").embedded_redis_dir() is None
    assert ServeConfig(redis_dir=str(tmp_path / "x")).embedded_redis_dir() == tmp_path / "x"
    with pytest.raises(ConfigError, match="--redis-dir must not be empty"):
        ServeConfig(redis_dir="")
