"""Feature stores for a test body: ``with_stores(url, namespace, body)`` runs ``body(*stores)`` in
its own event loop and closes the stores afterwards."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from serving.store.feature_store import FeatureStore

T = TypeVar("T")


@dataclass(frozen=True)
class StoreSettings:
    max_history: int = 4
    near_cache_size: int = 0
    near_cache_ttl_s: float = 0.0


def with_stores(
    redis_url: str,
    namespace: str,
    body: Callable[..., Awaitable[T]],
    count: int = 1,
    settings: StoreSettings = StoreSettings(),
) -> T:
    """``body(*stores)``: ``count`` feature stores (think: server replicas) on one namespace, with
    short timeouts and retries."""

    async def main() -> T:
        stores = [
            FeatureStore(
                redis_url,
                namespace,
                max_history=settings.max_history,
                timeout_s=1.0,
                retry_interval_s=0.1,
                near_cache_size=settings.near_cache_size,
                near_cache_ttl_s=settings.near_cache_ttl_s,
            )
            for _ in range(count)
        ]
        try:
            return await body(*stores)
        finally:
            for store in stores:
                await store.close()

    return asyncio.run(main())
