"""The forward as an inter-op task: inputs padded like the model expects, only plain lists cross
the thread boundary, and a process that ran it exits cleanly."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from serving.forward_task import launch, right_aligned
from serving.runtime import load_snapshot

if TYPE_CHECKING:
    from tests.serving.conftest import Artifacts

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_rows_are_right_aligned_keeping_their_newest_items() -> None:
    assert right_aligned([[1, 2], [3], []], 3) == [[0, 1, 2], [0, 0, 3], [0, 0, 0]]
    assert right_aligned([[1, 2, 3, 4, 5]], 2) == [[4, 5]]
    assert right_aligned([[1, 2], []], 0) == [[], []]


def test_the_task_hands_back_plain_lists_never_tensors(artifacts: Artifacts) -> None:
    """A tensor Python has seen and the inter-op thread frees last needs the GIL on that thread;
    at interpreter exit that aborts the process (``serving.forward_task``), so none may cross."""
    snapshot = load_snapshot(artifacts.first)
    future = launch(snapshot.task, [[0, 1, 2], [3, 4, 5]], 4, [[7], [0]], None, [1])
    indices, scores, weights = future.wait()
    assert [len(row) for row in indices] == [4, 4] and [len(row) for row in scores] == [4, 4]
    assert len(weights) == 1 and len(weights[0]) == 3
    for rows, kind in ((indices, int), (scores, float), (weights, float)):
        assert all(type(value) is kind for row in rows for value in row), rows


_EXIT_RIGHT_AFTER_FORWARDS = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    import torch
    from serving.runtime import ModelJob, ModelRuntime, load_snapshot, run_batch

    snapshot = load_snapshot(Path(sys.argv[1]))
    torch.set_num_threads(1)
    loop = asyncio.new_event_loop()
    job = ModelJob([1, 2, 3], 5, [4], None, True, None, loop.create_future())
    run_batch(snapshot, [job], explain_top=3)
    torch.set_num_threads(2)  # what the test suite's per-test reset does between server tests

    async def serve_one() -> None:
        runtime = ModelRuntime(snapshot, max_batch_size=8, max_wait_ms=0, max_queue=8,
                               explain_top=3)
        runtime.start()
        job = ModelJob([5, 6], 4, [], [1, 2, 3, 7], True, None,
                       asyncio.get_running_loop().create_future())
        await runtime.infer(snapshot, job)
        await runtime.close()

    asyncio.run(serve_one())
    run_batch(snapshot, [job], explain_top=3)  # the last thing before the interpreter exits
    print("ok")
    """
)


def test_a_process_exits_cleanly_right_after_its_last_forward(artifacts: Artifacts) -> None:
    """With tensors crossing into the task, 4 of 6 such processes aborted at exit ("terminate
    called without an active exception"); the race is timing-dependent, hence the test above."""
    done = subprocess.run(
        [sys.executable, "-c", _EXIT_RIGHT_AFTER_FORWARDS, str(artifacts.first)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr[-2000:]
