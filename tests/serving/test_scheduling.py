"""The model's threads run as SCHED_BATCH on Linux; the event loop's thread never does."""

from __future__ import annotations

import asyncio
import os
import threading
from typing import TYPE_CHECKING

import pytest

from serving.runtime import ModelJob, ModelRuntime, ModelSnapshot, load_snapshot
from serving.scheduling import mark_cpu_bound, marked_threads

if TYPE_CHECKING:
    from tests.serving.conftest import Artifacts

pytestmark = pytest.mark.skipif(
    not hasattr(os, "SCHED_BATCH"), reason="SCHED_BATCH is a Linux scheduling policy"
)


def _policy_in_new_thread(loop_thread_id: int) -> tuple[int, int]:
    """(policy before, policy after) ``mark_cpu_bound`` in a fresh thread."""
    seen: list[int] = []

    def body() -> None:
        seen.append(os.sched_getscheduler(0))
        mark_cpu_bound(loop_thread_id)
        seen.append(os.sched_getscheduler(0))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    return seen[0], seen[1]


def test_a_helper_thread_is_marked_and_the_loop_thread_is_not() -> None:
    before, after = _policy_in_new_thread(loop_thread_id=threading.get_native_id())
    if after != os.SCHED_BATCH and not any(marked_threads().values()):
        pytest.skip("this system refuses SCHED_BATCH (see the log)")
    assert (before, after) == (os.SCHED_OTHER, os.SCHED_BATCH)

    mark_cpu_bound(loop_thread_id=threading.get_native_id())  # called on the loop's own thread
    assert os.sched_getscheduler(0) == os.SCHED_OTHER
    assert threading.get_native_id() not in marked_threads()


def test_the_thread_that_runs_forwards_becomes_sched_batch(artifacts: Artifacts) -> None:
    snapshot: ModelSnapshot = load_snapshot(artifacts.first)

    async def main() -> int:
        runtime = ModelRuntime(snapshot, 8, 0, 1, 16, 5)
        runtime.start()
        loop = asyncio.get_running_loop()
        for _ in range(2):
            job = ModelJob([1, 2], 3, [], None, False, None, loop.create_future())
            await runtime.infer(snapshot, job)
        await runtime.close()
        return threading.get_native_id()

    loop_thread_id = asyncio.run(main())
    alive = {int(name) for name in os.listdir("/proc/self/task")}
    # torch's inter-op threads outlive the runtime; other tests' helper threads may be gone
    marked = {thread: ok for thread, ok in marked_threads().items() if thread in alive}
    if marked and not any(marked.values()):
        pytest.skip("this system refuses SCHED_BATCH (see the log)")
    assert marked, "no thread that ran a forward was given SCHED_BATCH"
    for thread_id in marked:
        assert os.sched_getscheduler(thread_id) == os.SCHED_BATCH
    assert loop_thread_id not in marked_threads()
    assert os.sched_getscheduler(0) == os.SCHED_OTHER


def test_a_hot_swap_loads_the_new_model_on_a_sched_batch_thread(artifacts: Artifacts) -> None:
    """Loading and warming up a model takes seconds of CPU while the old one serves."""
    snapshot: ModelSnapshot = load_snapshot(artifacts.first)
    before = marked_threads()

    async def main() -> str:
        runtime = ModelRuntime(snapshot, 8, 0, 1, 16, 5)
        runtime.start()
        swapped = await runtime.swap(artifacts.second)
        await runtime.close()
        return swapped.model_version

    assert asyncio.run(main()) != snapshot.model_version
    loaders = {thread: ok for thread, ok in marked_threads().items() if thread not in before}
    if loaders and not any(loaders.values()):
        pytest.skip("this system refuses SCHED_BATCH (see the log)")
    assert list(loaders.values()) == [True]  # the executor thread the new model was loaded on
