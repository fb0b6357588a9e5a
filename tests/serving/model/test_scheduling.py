"""``mark_cpu_bound``: a helper thread becomes SCHED_BATCH on Linux, the event loop's never does
(the runtime's use of it: ``test_runtime``)."""

from __future__ import annotations

import os
import threading

import pytest

from serving.model.scheduling import mark_cpu_bound, marked_threads

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
