"""The forward as an inter-op task: inputs padded like the model expects, only plain lists cross
the thread boundary, and a process that ran it exits cleanly."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch

from recsys.errors import ArtifactError
from serving.model import forward_task, runtime
from serving.model.forward_task import (
    launch,
    on_done,
    script_task,
    wait_for_released_callbacks,
    warm_up,
)
from serving.model.runtime import load_snapshot

if TYPE_CHECKING:
    from tests.servers import Artifacts

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_the_task_hands_back_plain_lists_never_tensors(artifacts: Artifacts) -> None:
    """A tensor Python has seen and the inter-op thread frees last needs the GIL on that thread;
    at interpreter exit that aborts the process (``serving.model.forward_task``), so none may
    cross."""
    snapshot = load_snapshot(artifacts.first)
    future = launch(snapshot.task, [[0, 1, 2], [3, 4, 5]], 4, [[7], [0]], None, [1])
    indices, scores, weights = future.wait()
    assert [len(row) for row in indices] == [4, 4] and [len(row) for row in scores] == [4, 4]
    assert len(weights) == 1 and len(weights[0]) == 3
    for rows, kind in ((indices, int), (scores, float), (weights, float)):
        assert all(type(value) is kind for row in rows for value in row), rows


def _has_optimized_plan(task: torch.jit.ScriptModule) -> bool:
    """Whether TorchScript's profiling executor has compiled the task's ``forward`` (its debug
    state asserts an optimized plan, so it raises until then)."""
    try:
        return len(task._c.get_debug_state().execution_plans) == 1
    except RuntimeError:
        return False


def test_a_loaded_snapshot_is_compiled_before_it_serves(artifacts: Artifacts) -> None:
    """Otherwise the first requests after a start or a hot swap each wait for a compilation
    (30-95 ms on the bench host, mostly on the event loop)."""
    snapshot = load_snapshot(artifacts.first)
    assert _has_optimized_plan(snapshot.task)
    # A new load: a new module type, so a task whose compiled graphs nothing shares yet.
    model = torch.jit.load(str(artifacts.first / "model.ts"))  # type: ignore[no-untyped-call]
    fresh = script_task(model.eval())
    assert not _has_optimized_plan(fresh), "the check above would pass without a warm-up"
    warm_up(fresh, snapshot.max_len)
    assert _has_optimized_plan(fresh)


class _FailsOnTwoRows(torch.nn.Module):
    """The artifact module's interface; raises for batches of two rows or more."""

    def forward(
        self,
        items: torch.Tensor,
        k: int,
        exclude: torch.Tensor,
        exclude_history: bool,
        allow: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if items.size(0) > 1:
            raise RuntimeError("cannot batch")
        return torch.ones(items.size(0), k, dtype=torch.long), torch.zeros(items.size(0), k)

    @torch.jit.export
    def explain(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weights = torch.zeros(items.size(0), items.size(1))
        return weights.unsqueeze(1), weights


def test_the_warm_up_raises_what_the_model_raises() -> None:
    task = script_task(torch.jit.script(_FailsOnTwoRows()))
    with pytest.raises(RuntimeError, match="cannot batch"):
        warm_up(task, max_len=4)


def test_an_artifact_whose_warm_up_fails_is_refused(
    artifacts: Artifacts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A swap keeps the current model when the new one cannot run (``ModelRuntime.swap``)."""

    def failing(task: torch.jit.ScriptModule, max_len: int) -> None:
        raise RuntimeError("cannot batch")

    monkeypatch.setattr(runtime, "warm_up", failing)
    with pytest.raises(ArtifactError, match="failed its warm-up forwards: cannot batch"):
        load_snapshot(artifacts.first)


def test_exit_waits_until_torch_has_released_a_completion_callback() -> None:
    """Torch releases a callback on the thread that completed the future, taking the GIL after
    the call; an interpreter that finalized meanwhile would abort that thread."""
    future: torch.futures.Future[int] = torch.futures.Future()
    seen: list[int] = []
    on_done(future, lambda done: seen.append(done.value()))
    assert len(forward_task._callbacks_torch_holds) == 1
    assert not wait_for_released_callbacks(timeout_s=0.05), "torch still holds the callback"
    completer = threading.Thread(target=future.set_result, args=(7,))
    completer.start()
    assert wait_for_released_callbacks(timeout_s=5.0)
    completer.join()
    assert seen == [7] and len(forward_task._callbacks_torch_holds) == 0


_EXIT_RIGHT_AFTER_FORWARDS = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    import torch
    from serving.model.runtime import ModelJob, ModelRuntime, load_snapshot, run_batch

    snapshot = load_snapshot(Path(sys.argv[1]))
    torch.set_num_threads(1)
    loop = asyncio.new_event_loop()
    job = ModelJob([1, 2, 3], 5, [4], None, True, None, loop.create_future())
    run_batch(snapshot, [job], explain_top=3)
    torch.set_num_threads(2)  # what the test suite's per-test reset does between server tests

    async def serve_one() -> None:
        runtime = ModelRuntime(snapshot, max_batch_size=8, max_wait_ms=0, busy_in_flight=1,
                               max_queue=8, explain_top=3)
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
