"""``recsys synth`` in a real process: a log with a header row, and an existing file kept."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

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


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--users", "0"], "users (--users): must be >= 1, got 0"),
        (["--users", "10", "--events", "5"], "--events (5) must be >= --users (10)"),
    ],
    ids=["no-users", "fewer-events-than-users"],
)
def test_synth_names_the_flag_of_an_impossible_size(
    tmp_path: Path,
    run_recsys: RunRecsys,
    assert_user_error: UserErrorCheck,
    args: list[str],
    message: str,
) -> None:
    out = tmp_path / "log.csv"
    assert_user_error(run_recsys("synth", *args, "--out", str(out)), message)
    assert not out.exists()
