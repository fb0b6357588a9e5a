"""The model runtime: batched forwards give each request the answer it would get alone."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc
import pytest

from serving.errors import ResourceExhausted, ServiceError
from serving.model.runtime import ModelJob, ModelRuntime, ModelSnapshot, load_snapshot, run_batch
from serving.model.scheduling import marked_threads

if TYPE_CHECKING:
    from tests.servers import Artifacts


@pytest.fixture(scope="module")
def snapshot(artifacts: Artifacts) -> ModelSnapshot:
    return load_snapshot(artifacts.first)


def _job(
    items: list[int],
    k: int,
    exclude: list[int] | None = None,
    allow: list[int] | None = None,
    explain: bool = False,
) -> ModelJob:
    loop = asyncio.new_event_loop()
    try:
        future = loop.create_future()
    finally:
        loop.close()
    return ModelJob(items, k, exclude or [], allow, explain, None, future)


def test_a_batch_answers_each_job_as_if_alone(snapshot: ModelSnapshot) -> None:
    jobs = [
        _job([1, 2, 3], 5),
        _job(list(range(1, 30)), 3, exclude=[7, 8]),  # longer than max_len: the newest are read
        _job([4], 7, explain=True),
    ]
    together = run_batch(snapshot, jobs, explain_top=10)
    for job, result in zip(jobs, together, strict=True):
        (alone,) = run_batch(snapshot, [job], explain_top=10)
        assert result.indices == alone.indices
        assert result.scores == pytest.approx(alone.scores, abs=1e-5)
        assert len(result.indices) == job.k
        assert not set(result.indices) & set(job.exclude)
    assert together[2].explanation is not None
    assert [(e.index, e.position) for e in together[2].explanation] == [(4, 0)]
    assert together[2].explanation[0].weight == pytest.approx(1.0)
    assert together[0].explanation is None


def test_an_indexed_model_answers_as_the_exact_one(
    snapshot: ModelSnapshot, artifacts: Artifacts
) -> None:
    indexed = load_snapshot(artifacts.indexed)
    assert indexed.retrieval is not None and snapshot.retrieval is None
    jobs = [
        _job([1, 2, 3], 5, exclude=[1, 2, 3]),
        _job(list(range(1, 30)), 10, exclude=list(range(1, 30)), explain=True),
        _job([4], 7, exclude=[9]),
    ]
    for exact, approximate in zip(
        run_batch(snapshot, jobs, 10), run_batch(indexed, jobs, 10), strict=True
    ):
        assert approximate.indices == exact.indices
        assert approximate.scores == pytest.approx(exact.scores, abs=1e-5)
        assert approximate.explanation == exact.explanation
    allowed = [_job([1, 2], 5, allow=[3, 4, 1])]  # allow-lists are scored exactly
    assert run_batch(indexed, allowed, 10)[0].indices == run_batch(snapshot, allowed, 10)[0].indices


def test_fewer_eligible_items_than_k_returns_fewer(snapshot: ModelSnapshot) -> None:
    (result,) = run_batch(snapshot, [_job([1, 2], 5, allow=[3, 4, 1])], explain_top=10)
    assert sorted(result.indices) == [1, 3, 4]
    assert 0 not in result.indices


def test_popularity_fallback_honours_exclude_and_allow(snapshot: ModelSnapshot) -> None:
    order = [index for index, _ in snapshot.artifact.popular(5)]
    assert snapshot.popular(3, set(), None).indices == order[:3]
    assert snapshot.popular(3, {order[0]}, None).indices == order[1:4]
    allowed = snapshot.popular(5, {order[1]}, [order[3], order[1], order[2]])
    assert allowed.indices == [order[2], order[3]]
    assert allowed.scores == sorted(allowed.scores, reverse=True)


def _started_runtime(
    snapshot: ModelSnapshot,
    max_wait_ms: float = 0,
    busy_in_flight: int = 1,
    on_forward: Callable[[bool], None] | None = None,
) -> ModelRuntime:
    """A running runtime (call inside a loop): batches of up to 8, a queue of 16."""
    runtime = ModelRuntime(
        snapshot,
        max_batch_size=8,
        max_wait_ms=max_wait_ms,
        busy_in_flight=busy_in_flight,
        max_queue=16,
        explain_top=5,
        on_forward=on_forward,
    )
    runtime.start()
    return runtime


def test_a_failing_batch_fails_its_callers_and_the_runtime_keeps_serving(
    snapshot: ModelSnapshot,
) -> None:
    async def main() -> tuple[BaseException | None, list[int], dict[str, float]]:
        runtime = _started_runtime(snapshot)
        loop = asyncio.get_running_loop()
        bad = ModelJob([10**6], 3, [], None, False, None, loop.create_future())
        failure: BaseException | None = None
        try:
            await runtime.infer(snapshot, bad)
        except ServiceError as err:
            failure = err
        good = ModelJob([1, 2], 3, [], None, False, None, loop.create_future())
        result = await runtime.infer(snapshot, good)
        await runtime.close()
        return failure, result.indices, runtime.stats

    failure, indices, stats = asyncio.run(main())
    assert failure is not None and "model inference failed" in str(failure)
    assert getattr(failure, "code", None) == grpc.StatusCode.INTERNAL
    assert len(indices) == 3
    assert (stats["batches"], stats["requests"]) == (2, 2)
    assert stats["forward_s"] > 0  # the shutdown log reports the time a forward takes


def test_every_forward_is_announced_before_and_after_even_when_it_fails(
    snapshot: ModelSnapshot,
) -> None:
    """The server holds Redis reads between the two calls, so the second must always come."""

    async def main() -> list[bool]:
        events: list[bool] = []
        runtime = _started_runtime(snapshot, on_forward=events.append)
        loop = asyncio.get_running_loop()
        good = ModelJob([1, 2], 3, [], None, False, None, loop.create_future())
        await runtime.infer(snapshot, good)
        bad = ModelJob([10**6], 3, [], None, False, None, loop.create_future())
        with pytest.raises(ServiceError):
            await runtime.infer(snapshot, bad)
        await runtime.close()
        return events

    assert asyncio.run(main()) == [True, False, True, False]


def _two_requests_apart(snapshot: ModelSnapshot, in_flight: int) -> dict[str, float]:
    """Two jobs queued 50 ms apart on a runtime whose batches wait 2 s when busy
    (``busy_in_flight`` 3) while ``in_flight`` requests are counted as in flight."""

    async def main() -> dict[str, float]:
        runtime = _started_runtime(snapshot, max_wait_ms=2_000, busy_in_flight=3)
        runtime.in_flight = in_flight
        loop = asyncio.get_running_loop()
        jobs = [ModelJob([1, 2], 3, [], None, False, None, loop.create_future()) for _ in "ab"]
        first = loop.create_task(runtime.infer(snapshot, jobs[0]))
        await asyncio.sleep(0.05)
        second = loop.create_task(runtime.infer(snapshot, jobs[1]))
        # generous against the 50 ms gap, far below the 2 s wait
        await asyncio.wait_for(asyncio.gather(first, second), timeout=1.0 if in_flight < 3 else 5)
        await runtime.close()
        return runtime.stats

    return asyncio.run(main())


def test_an_idle_server_runs_each_request_at_once(snapshot: ModelSnapshot) -> None:
    stats = _two_requests_apart(snapshot, in_flight=2)
    assert (stats["batches"], stats["largest_batch"]) == (2, 1)


def test_a_busy_server_waits_to_batch_requests_together(snapshot: ModelSnapshot) -> None:
    stats = _two_requests_apart(snapshot, in_flight=3)
    assert (stats["batches"], stats["largest_batch"]) == (1, 2)


def test_a_busy_server_does_not_wait_once_every_request_is_queued(
    snapshot: ModelSnapshot,
) -> None:
    async def main() -> dict[str, float]:
        runtime = _started_runtime(snapshot, max_wait_ms=2_000)
        runtime.in_flight = 2
        loop = asyncio.get_running_loop()
        jobs = [ModelJob([1, 2], 3, [], None, False, None, loop.create_future()) for _ in "ab"]
        calls = [loop.create_task(runtime.infer(snapshot, job)) for job in jobs]
        await asyncio.wait_for(asyncio.gather(*calls), timeout=1.0)  # far below the 2 s wait
        await runtime.close()
        return runtime.stats

    stats = asyncio.run(main())
    assert (stats["batches"], stats["largest_batch"]) == (1, 2)


_needs_sched_batch = pytest.mark.skipif(
    not hasattr(os, "SCHED_BATCH"), reason="SCHED_BATCH is a Linux scheduling policy"
)


@_needs_sched_batch
def test_the_thread_that_runs_forwards_becomes_sched_batch(snapshot: ModelSnapshot) -> None:
    async def main() -> int:
        runtime = _started_runtime(snapshot)
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


@_needs_sched_batch
def test_a_hot_swap_loads_the_new_model_on_a_sched_batch_thread(
    snapshot: ModelSnapshot, artifacts: Artifacts
) -> None:
    """Loading and warming up a model takes seconds of CPU while the old one serves."""
    before = marked_threads()

    async def main() -> str:
        runtime = _started_runtime(snapshot)
        swapped = await runtime.swap(artifacts.second)
        await runtime.close()
        return swapped.model_version

    assert asyncio.run(main()) != snapshot.model_version
    loaders = {thread: ok for thread, ok in marked_threads().items() if thread not in before}
    if loaders and not any(loaders.values()):
        pytest.skip("this system refuses SCHED_BATCH (see the log)")
    assert list(loaders.values()) == [True]  # the executor thread the new model was loaded on


def test_a_large_batch_caller_leaves_room_in_every_forward_for_others(
    snapshot: ModelSnapshot,
) -> None:
    """A 40-request RecommendBatch queued first and one single request after it: the single
    one rides in the first forward, not behind all of the batch's."""

    async def main() -> list[list[int]]:
        runtime = ModelRuntime(
            snapshot, 16, 0, 1, max_queue=100, explain_top=5, fair_share=6
        )  # not started: the forwards' membership is read off the queue directly
        loop = asyncio.get_running_loop()
        big = [
            ModelJob([1, 2], 3, [], None, False, None, loop.create_future(), caller=7)
            for _ in range(40)
        ]
        other = ModelJob([3], 3, [], None, False, None, loop.create_future(), caller=8)
        single = ModelJob([4], 3, [], None, False, None, loop.create_future())
        runtime._pending = [(snapshot, job) for job in [*big, other, single]]
        forwards = []
        while runtime._pending:
            forwards.append([job.caller for _, job in runtime._take_batch()])
        return forwards

    forwards = asyncio.run(main())
    assert forwards[0] == [7] * 6 + [8, 0]  # at most 6 of the big call, the others at once
    assert [len(f) for f in forwards[1:]] == [6] * 5 + [4]
    assert sum(len(f) for f in forwards) == 42


def test_a_full_queue_is_resource_exhausted_with_a_retry_hint(snapshot: ModelSnapshot) -> None:
    async def main() -> None:
        runtime = _started_runtime(snapshot)
        loop = asyncio.get_running_loop()
        runtime._pending = [
            (snapshot, ModelJob([1], 3, [], None, False, None, loop.create_future()))
        ] * runtime.max_queue
        with pytest.raises(ResourceExhausted, match=r"--max-queue\); retry in \d+ ms") as full:
            await runtime.infer(snapshot, _job([1], 3))
        assert full.value.retry_after_ms >= 10
        assert full.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        runtime._pending = []
        await runtime.close()

    asyncio.run(main())
