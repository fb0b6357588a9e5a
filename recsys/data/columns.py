"""Column names of the canonical interaction frame and of the prepared dataset, defined once.

Readers map whatever the input calls its columns onto these names; everything downstream (polars
and pandas code alike) uses only these constants.
"""

from typing import Final

USER_ID: Final = "user_id"
"""External user id as found in the input (string or integer)."""
ITEM_ID: Final = "item_id"
"""External item id as found in the input (string or integer)."""
TIMESTAMP: Final = "timestamp"
"""Event time, normalised to ``Datetime[ms, UTC]``; null when the input has no time column."""
RATING: Final = "rating"
"""Optional explicit feedback value (float)."""
EVENT_ORDER: Final = "event_order"
"""Row number in the input (0-based): breaks time ties and orders logs without timestamps."""

USER_IDX: Final = "user_idx"
"""Contiguous user index, starting at 1."""
ITEM_IDX: Final = "item_idx"
"""Contiguous item index, starting at 1; 0 is the padding index and never an item."""
POSITION: Final = "position"
"""0-based position of the event in its user's chronological sequence."""
SPLIT: Final = "split"
"""Which split an event belongs to: one of ``SPLIT_NAMES``."""
COUNT: Final = "count"
"""Number of interactions of an item (popularity) or user, after filtering."""

TRAIN: Final = "train"
VALIDATION: Final = "validation"
TEST: Final = "test"
SPLIT_NAMES: Final = (TRAIN, VALIDATION, TEST)

PADDING_IDX: Final = 0
