"""Redis URLs in logs and errors: a password never shows."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from recsys.errors import ConfigError
from serving.store.redis_clients import async_client, redacted, sync_client


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@cache:6380/1", "redis://:***@cache:6380/1"),
        (
            "rediss://app:s3cret@cache/0?ssl_cert_reqs=none",
            "rediss://app:***@cache/0?ssl_cert_reqs=none",
        ),
        ("redis://app@cache:6379/0", "redis://app@cache:6379/0"),
        ("unix:///tmp/redis.sock", "unix:///tmp/redis.sock"),
    ],
    ids=["password", "user-password-tls", "user-only", "unix"],
)
def test_redacted_hides_only_the_password(url: str, shown: str) -> None:
    assert redacted(url) == shown


@pytest.mark.parametrize(
    "client", [lambda url: async_client(url, 1.0), sync_client], ids=["async", "sync"]
)
def test_an_unusable_url_names_the_flag_without_the_password(
    client: Callable[[str], object],
) -> None:
    with pytest.raises(ConfigError, match="--redis-url") as caught:
        client("http://app:s3cret@cache:6379/0")
    assert "s3cret" not in str(caught.value)
    assert "app:***@cache" in str(caught.value)
