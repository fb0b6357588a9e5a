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
    row = encode_events(log.drop_nulls(C.TIMESTAMP)).row
    assert row is not None and row.tolist() == [0]


@pytest.mark.parametrize("with_rating", [False, True])
def test_consuming_encode_gives_the_same_log_and_empties_the_frame(with_rating: bool) -> None:
    rng = np.random.default_rng(0)
    columns = {
        "user_id": rng.integers(0, 30, 500),
        "item_id": rng.integers(100, 200, 500),
        "timestamp": rng.integers(0, 50, 500),
    }
    if with_rating:
        columns["rating"] = rng.integers(1, 6, 500)
    kept = encode_events(read_interactions(pl.DataFrame(columns)))
    frame = read_interactions(pl.DataFrame(columns), event_order=False)
    consumed = encode_events(frame, consume=True)
    assert frame.width == 0
    assert consumed.row is None
    assert consumed.user.tolist() == kept.user.tolist()
    assert consumed.item.tolist() == kept.item.tolist()
    assert consumed.time_ms is not None and kept.time_ms is not None
    assert consumed.time_ms.tolist() == kept.time_ms.tolist()
    assert consumed.user_ids.equals(kept.user_ids)
    assert consumed.item_ids.equals(kept.item_ids)
    if with_rating:
        assert consumed.rating is not None and kept.rating is not None
        assert consumed.rating.to_list() == kept.rating.to_list()
    else:
        assert consumed.rating is None


def test_event_order_is_left_out_only_when_asked() -> None:
    frame = pl.DataFrame({"user_id": [1, 1], "item_id": [1, 2], "timestamp": [5, 6]})
    assert C.EVENT_ORDER in read_interactions(frame).columns
    assert C.EVENT_ORDER not in read_interactions(frame, event_order=False).columns
