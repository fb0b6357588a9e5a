"""The encoded log: the one chronological sort (three ways), and times that must be complete."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.data import columns as C
from recsys.data import read_interactions
from recsys.data.events import chronological_order, encode_events
from recsys.errors import DataError


def _lexsort_reference(
    user: npt.NDArray[np.int32], time_ms: npt.NDArray[np.int64] | None
) -> npt.NDArray[np.int64]:
    rows = np.arange(len(user))
    keys = (rows, user) if time_ms is None else (rows, time_ms, user)
    return np.lexsort(keys)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 5), st.integers(-3, 3)), min_size=1, max_size=50),
    st.sampled_from(["shuffled", "in order", "none", "wide", "overflowing"]),
)
def test_chronological_order_is_user_time_then_input_order(
    events: list[tuple[int, int]], time_kind: str
) -> None:
    user = np.array([u for u, _ in events], dtype=np.int32)
    times = np.array([t for _, t in events], dtype=np.int64)
    time_ms: npt.NDArray[np.int64] | None = {
        "shuffled": times,
        "in order": np.sort(times),
        "none": None,
        # The key fits in int64, but not with the row number packed beside it.
        "wide": times * 2**55,
        # user * span + time would overflow int64: the two-column sort takes over.
        "overflowing": times * 2**60,
    }[time_kind]
    order = chronological_order(user, time_ms)
    assert order.tolist() == _lexsort_reference(user, time_ms).tolist()


def test_partly_missing_times_must_be_dropped_before_encoding() -> None:
    log = read_interactions(
        pl.DataFrame({"user_id": [1, 1], "item_id": [1, 2], "timestamp": [5, None]})
    )
    with pytest.raises(DataError, match="no timestamp"):
        encode_events(log)
    assert encode_events(log.drop_nulls(C.TIMESTAMP)).row.tolist() == [0]
