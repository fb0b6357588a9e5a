"""The serving step of ``make demo``: a real server, an embedded Redis and real requests.

``make demo`` is not part of the test command, so its last step is run here on a tiny artifact,
once for the module: every answer it prints must say what the demo claims about it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from pipelines.console import console
from pipelines.jobs.demo import DemoAnswers, run_serving_demo
from serving.proto.recsys.v1 import recommender_pb2 as pb

if TYPE_CHECKING:
    from tests.servers import Artifacts


@dataclass(frozen=True)
class Demo:
    answers: DemoAnswers
    printed: str


@pytest.fixture(scope="module")
def demo(artifacts: Artifacts) -> Demo:
    """The serving demo on the first tiny artifact: its answers and what it printed."""
    with console.capture() as captured:
        answers = run_serving_demo(artifacts.first, artifacts.data)
    return Demo(answers=answers, printed=captured.get())


def test_the_demo_serves_then_answers_the_repeat_from_the_cache(demo: Demo) -> None:
    first, again = demo.answers.first, demo.answers.again
    assert first.source == pb.SOURCE_MODEL and len(first.items) == 5
    assert again.source == pb.SOURCE_CACHE
    assert [i.item_id for i in again.items] == [i.item_id for i in first.items]


def test_the_demo_explains_with_attention_over_the_history(demo: Demo) -> None:
    drivers = demo.answers.explained.items[0].explanation  # every item shares them (one user state)
    weights = [driver.weight for driver in drivers]
    assert weights and all(w > 0 for w in weights) and sum(weights) <= 1 + 1e-5
    assert weights == sorted(weights, reverse=True)
    assert "drivers (attention over the history)" in demo.printed


def test_the_demo_records_events_that_change_the_next_answer(demo: Demo) -> None:
    # The two recorded items were the first answer's top two: the next answer runs the model on
    # the new history version and, excluding what the user has seen, no longer offers them.
    first, recorded, after = demo.answers.first, demo.answers.recorded, demo.answers.after
    assert recorded.history_version == first.history_version + 1
    assert after.source == pb.SOURCE_MODEL
    assert after.history_version == recorded.history_version
    offered_after = {item.item_id for item in after.items}
    assert not offered_after & {item.item_id for item in first.items[:2]}


def test_the_demo_falls_back_for_a_new_user_and_stops_the_server(demo: Demo) -> None:
    cold = demo.answers.cold
    assert cold.source == pb.SOURCE_FALLBACK
    assert cold.fallback_reason == pb.FALLBACK_REASON_COLD_START
    assert "server stopped" in demo.printed
