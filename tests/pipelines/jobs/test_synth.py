"""``recsys synth`` in a real process: a log with a header row, and an existing file kept."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tests.pipelines.jobs.conftest import SYNTH_EVENTS

if TYPE_CHECKING:
    from tests.pipelines.conftest import RunRecsys, UserErrorCheck


def test_synth_writes_a_csv_log_of_the_events_asked_for(synth_log: Path) -> None:
    lines = synth_log.read_text().splitlines()
    assert lines[0] == "user_id,item_id,timestamp"
    assert len(lines) == 1 + SYNTH_EVENTS


def test_synth_refuses_to_replace_an_existing_log(
    synth_log: Path, run_recsys: RunRecsys, assert_user_error: UserErrorCheck
) -> None:
    before = synth_log.read_bytes()
    assert_user_error(
        run_recsys("synth", "--users", "5", "--events", "10", "--out", str(synth_log)),
        "already exists",
    )
    assert synth_log.read_bytes() == before
