"""Feature-store fixtures: the socket writes of a store's hot connection, counted."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from serving.store.feature_store import FeatureStore

CountWrites = Callable[[FeatureStore], list[bytes]]


def _count_writes(store: FeatureStore) -> list[bytes]:
    """Every socket write of the store's hot connection from now on (it must be open)."""
    protocol = store._hot._protocol
    assert protocol is not None and protocol.transport is not None
    transport = protocol.transport
    writes: list[bytes] = []
    real_write = transport.write

    def counting_write(data: bytes | bytearray | memoryview) -> None:
        writes.append(bytes(data))
        real_write(data)

    transport.write = counting_write  # type: ignore[method-assign]
    return writes


@pytest.fixture
def count_writes() -> CountWrites:
    """``count_writes(store)``: the list that collects the hot connection's socket writes."""
    return _count_writes
