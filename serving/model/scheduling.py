"""A scheduling hint for the server's CPU-bound helper threads (Linux's ``SCHED_BATCH``).

The event loop starts each forward by waking torch's inter-op thread. That thread sleeps between
forwards, so the kernel treats it as interactive and lets it preempt the thread that woke it: the
event loop then lost its core for the whole forward instead of answering other requests
meanwhile, and starting a forward blocked the loop for a forward's length at the tail. A
``SCHED_BATCH`` thread never preempts on wake-up (it runs on a free core or at the next
scheduling point) and otherwise shares the CPU as before (same nice level). Paired runs of
``bench/serve_load.py`` showed the gain at low concurrency and none lost at high.

Elsewhere (macOS, Windows), or where the policy may not be set (a seccomp filter), this does
nothing and the server runs as it did without it.
"""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)

_marked: dict[int, bool] = {}
"""Native thread id -> whether that thread got ``SCHED_BATCH`` (tried once per thread)."""


def mark_cpu_bound(loop_thread_id: int) -> None:
    """Give the calling thread the ``SCHED_BATCH`` policy, unless it is ``loop_thread_id``.

    Called from a forward's completion callback, which runs on the thread that ran the forward,
    or on the event loop's own thread when the forward finished before the callback was added:
    the loop must keep its normal policy. Costs a dict lookup after a thread's first call.
    """
    thread_id = threading.get_native_id()
    if thread_id == loop_thread_id or thread_id in _marked:
        return
    _marked[thread_id] = _set_batch_policy(thread_id)


def marked_threads() -> dict[int, bool]:
    """Threads tried so far and whether each has ``SCHED_BATCH`` (for tests)."""
    return dict(_marked)


def _set_batch_policy(thread_id: int) -> bool:
    set_scheduler = getattr(os, "sched_setscheduler", None)
    policy = getattr(os, "SCHED_BATCH", None)
    if set_scheduler is None or policy is None:
        return False
    try:
        set_scheduler(thread_id, policy, os.sched_param(0))
    except OSError as err:
        log.info("model thread %d keeps its scheduling policy: %s", thread_id, err)
        return False
    log.info("model thread %d runs as SCHED_BATCH (never preempts the event loop)", thread_id)
    return True
