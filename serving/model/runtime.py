"""The model runtime: the loaded artifact, micro-batched inference off the event loop, hot swap.

Concurrent requests are gathered into one TorchScript forward: a batch takes every request that
arrived while the previous one ran (up to ``max_batch_size``), and on a busy server (at least
``busy_in_flight`` requests in flight) it first waits ``max_wait_ms`` for more, so batches grow
with load and a lightly loaded server adds no delay. The forward runs as a TorchScript task on
torch's inter-op thread pool, never on the event loop, one at a time (``serving.model.forward_task``
says why not in a Python worker thread), a thread that never preempts the loop
(``serving.model.scheduling``). A swap replaces the current
``ModelSnapshot`` between batches; a request keeps the snapshot it started with, so nothing in
flight is dropped or mixed.

Shape letters: B requests in a batch, W window width (<= max_len), E excluded items per row,
A allowed items per row, K the largest k in the batch.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from recsys.export import (
    Artifact,
    ArtifactError,
    load_artifact,
    right_aligned_rows,
    verify_loaded_artifact,
)
from serving.errors import DeadlineExceeded, ResourceExhausted, ServiceError, Unavailable
from serving.model.forward_task import TaskOutput, launch, on_done, script_task, warm_up
from serving.model.scheduling import mark_cpu_bound

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Explanation:
    """One history item's attention weight; ``position`` 0 is the newest history item."""

    index: int
    weight: float
    position: int


@dataclass(frozen=True)
class ModelResult:
    """Top-k item indices (best first) and scores; explanation when asked."""

    indices: list[int]
    scores: list[float]
    explanation: list[Explanation] | None


@dataclass
class ModelJob:
    """One request's model work. ``items``: known history indices, oldest first (any length)."""

    items: list[int]
    k: int
    exclude: list[int]
    allow: list[int] | None
    explain: bool
    deadline: float | None
    future: asyncio.Future[ModelResult] = field(repr=False)
    caller: int = 0
    """Who asked: the jobs of one call (a RecommendBatch) share it; 0 is a caller of its own.
    Forwards take jobs round-robin over callers (``fair_share`` each at most)."""


class ModelSnapshot:
    """One loaded artifact and the lookups a request needs, immutable once built."""

    def __init__(self, artifact: Artifact) -> None:
        self.artifact = artifact
        self.module = artifact.module
        self.model_version = artifact.model_version
        self.max_len = artifact.max_len
        self.num_items = artifact.num_items
        self.item_ids = artifact.item_ids
        self.popularity = artifact.popularity
        self.retrieval = artifact.retrieval
        """The approximate index, if the artifact has one: requests without an allow-list
        search it with the model's user vectors; allow-lists are scored exactly."""
        self.task = script_task(artifact.module)
        self.vector_task = None
        if self.retrieval is not None:
            self.vector_task = script_task(artifact.module, user_vectors=True)
        try:
            warm_up(self.task, self.max_len)
            if self.vector_task is not None:
                warm_up(self.vector_task, self.max_len)
        except RuntimeError as err:  # what TorchScript raises
            raise ArtifactError(
                f"{artifact.path}: the model failed its warm-up forwards: {err}"
            ) from err
        self.loaded_at = datetime.now(UTC).isoformat(timespec="seconds")

    def to_indices(self, item_ids: Sequence[str]) -> tuple[list[int], list[str]]:
        """(indices of the known ids in order, the unknown ids in order)."""
        return self.artifact.to_indices(item_ids)

    def popular(self, k: int, exclude: set[int], allow: list[int] | None) -> ModelResult:
        """The cold-start answer: the ``k`` most popular eligible items, scored by popularity."""
        if allow is None:
            chosen = self.artifact.popular(k, exclude)
        else:
            candidates = sorted(
                {index for index in allow if index not in exclude},
                key=lambda index: (-self.popularity[index], index),
            )
            chosen = [(index, float(self.popularity[index])) for index in candidates[:k]]
        return ModelResult([i for i, _ in chosen], [s for _, s in chosen], None)


def load_snapshot(path: Path, verify_key: Ed25519PublicKey | None = None) -> ModelSnapshot:
    """Verify an artifact (signature with ``verify_key``, checksums, smoke inference) and load
    it; raises ``ArtifactError``."""
    # Checksums (and the signature) are checked here, so verification need not reload.
    artifact = load_artifact(path, verify_key=verify_key)
    verify_loaded_artifact(artifact)
    return ModelSnapshot(artifact)


def run_batch(
    snapshot: ModelSnapshot, jobs: Sequence[ModelJob], explain_top: int
) -> list[ModelResult]:
    """One forward for jobs that all have, or all lack, an allow-list, waiting for it here (the
    server's runtime awaits the task instead)."""
    future = _launch(snapshot, jobs)
    future.wait()
    return _results(snapshot, jobs, future.value(), explain_top)


def _uses_index(snapshot: ModelSnapshot, jobs: Sequence[ModelJob]) -> bool:
    """Whether ``jobs`` (one group: all with, or all without, an allow-list) search the index."""
    return snapshot.vector_task is not None and jobs[0].allow is None


def _launch(snapshot: ModelSnapshot, jobs: Sequence[ModelJob]) -> torch.futures.Future[Any]:
    """Start the forward for ``jobs`` on torch's inter-op pool; returns at once."""
    width = max(1, max(min(len(job.items), snapshot.max_len) for job in jobs))
    allow = None
    if jobs[0].allow is not None:
        allow = right_aligned_rows(
            [job.allow or [] for job in jobs], max(len(j.allow or []) for j in jobs)
        )
    task = snapshot.vector_task if _uses_index(snapshot, jobs) else snapshot.task
    assert task is not None  # for mypy: _uses_index checked it
    return launch(
        task,
        right_aligned_rows([job.items for job in jobs], width),
        max(job.k for job in jobs),
        right_aligned_rows([job.exclude for job in jobs], max(len(j.exclude) for j in jobs)),
        allow,
        [row for row, job in enumerate(jobs) if job.explain],
    )


def _results(
    snapshot: ModelSnapshot, jobs: Sequence[ModelJob], output: TaskOutput, explain_top: int
) -> list[ModelResult]:
    all_indices, all_scores, weights = output
    if _uses_index(snapshot, jobs):
        # The task returned user vectors: the index's search (about a millisecond for a batch)
        # runs here, with each job's exclusions applied exactly.
        assert snapshot.retrieval is not None  # for mypy: _uses_index checked it
        all_indices, all_scores = snapshot.retrieval.top_k(
            np.asarray(all_scores, dtype=np.float32),
            max(job.k for job in jobs),
            [job.exclude for job in jobs],
        )
    explanations = _explanations(snapshot, jobs, weights, explain_top)
    results = []
    for row, job in enumerate(jobs):
        indices = all_indices[row][: job.k]
        scores = all_scores[row][: job.k]
        if indices and indices[-1] == 0:  # fewer eligible items than k: drop the padding tail
            keep = next(i for i, index in enumerate(indices) if index == 0)
            indices, scores = indices[:keep], scores[:keep]
        results.append(ModelResult(indices, scores, explanations.get(row)))
    return results


def _explanations(
    snapshot: ModelSnapshot, jobs: Sequence[ModelJob], weights: list[list[float]], top: int
) -> dict[int, list[Explanation]]:
    """Per explained row: its ``top`` history items by attention weight (``weights`` holds one
    row per job that asked, in batch order, over the newest min(len, max_len) items)."""
    rows = [row for row, job in enumerate(jobs) if job.explain]
    out: dict[int, list[Explanation]] = {}
    for row, row_weights in zip(rows, weights, strict=True):
        width = len(row_weights)
        window = right_aligned_rows([jobs[row].items], width)[0]
        ranked = sorted(
            (
                Explanation(index, weight, width - 1 - column)
                for column, (index, weight) in enumerate(zip(window, row_weights, strict=True))
                if index != 0
            ),
            key=lambda entry: (-entry.weight, entry.position),
        )
        out[row] = ranked[:top]
    return out


class ModelRuntime:
    """Holds the current snapshot and runs micro-batched inference for it (and older ones)."""

    def __init__(
        self,
        snapshot: ModelSnapshot,
        max_batch_size: int,
        max_wait_ms: float,
        busy_in_flight: int,
        max_queue: int,
        explain_top: int,
        on_forward: Callable[[bool], None] | None = None,
        verify_key: Ed25519PublicKey | None = None,
        fair_share: int | None = None,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.busy_in_flight = busy_in_flight
        self.in_flight = 0
        """Requests in flight, counted by their callers (``RecommendEngine``): the load signal."""
        self.max_queue = max_queue
        self.on_batch = on_batch
        """Called with (requests, seconds) after each forward (the metrics)."""
        self.fair_share = fair_share or max_batch_size
        """Most jobs of one caller in one forward."""
        self.explain_top = explain_top
        self.verify_key = verify_key
        """Artifacts swapped in must be signed with its private key (None: no signature)."""
        self.on_forward = on_forward
        """Called with True as a forward starts and False as it ends (the server holds Redis
        reads in between, see ``serving.store.pipelined_client``)."""
        self._forward: torch.futures.Future[Any] | None = None
        """The forward in progress, if any (``close`` waits for it)."""
        self._pending: list[tuple[ModelSnapshot, ModelJob]] = []
        self._running: list[tuple[ModelSnapshot, ModelJob]] = []
        self._wakeup = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._loop_thread_id = 0
        """The event loop's native thread id, which keeps its scheduling policy."""
        self._swap_lock = asyncio.Lock()
        self.stats = {
            "batches": 0,
            "requests": 0,
            "abandoned": 0,
            "largest_batch": 0,
            "forward_s": 0.0,
        }
        """Counters: forwards run, requests they served, requests dropped before the model
        (deadline passed or caller gone), the largest batch, seconds from starting forwards to
        the loop holding their results."""

    def start(self) -> None:
        if self._worker is None:
            self._loop_thread_id = threading.get_native_id()
            self._worker = asyncio.get_running_loop().create_task(self._run_forever())

    async def close(self) -> None:
        """Stop taking work; fail whatever is queued or running; wait for a forward in progress
        (its task must not outlive the runtime: see ``serving.model.forward_task``)."""
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
            stats = self.stats
            log.info(
                "model runtime: %d requests in %d forwards (mean batch %.1f, largest %d; "
                "%.2f ms a forward from launch to result), %d abandoned",
                stats["requests"],
                stats["batches"],
                stats["requests"] / max(stats["batches"], 1),
                stats["largest_batch"],
                1000 * stats["forward_s"] / max(stats["batches"], 1),
                stats["abandoned"],
            )
        stopping = Unavailable("the server is shutting down")
        for _, job in [*self._pending, *self._running]:
            if not job.future.done():
                job.future.set_exception(stopping)
        self._pending.clear()
        self._running = []
        forward, self._forward = self._forward, None
        if forward is not None and not forward.done():
            await asyncio.to_thread(_wait_quietly, forward)

    async def infer(self, snapshot: ModelSnapshot, job: ModelJob) -> ModelResult:
        """Queue one job for the next batch and wait for its result."""
        if len(self._pending) >= self.max_queue:
            raise ResourceExhausted(
                f"overloaded: {len(self._pending)} requests wait for the model (--max-queue)",
                retry_after_ms=self._drain_ms(),
            )
        if self._worker is None:
            raise Unavailable("the model runtime is not running")
        self._pending.append((snapshot, job))
        self._wakeup.set()
        return await job.future

    async def _run_forever(self) -> None:
        while True:
            await self._wakeup.wait()
            if (
                self.max_wait_s > 0
                and self.in_flight >= self.busy_in_flight
                and len(self._pending) < min(self.max_batch_size, self.in_flight)
            ):
                await asyncio.sleep(self.max_wait_s)
            batch = self._take_batch()
            if not self._pending:
                self._wakeup.clear()
            self._running = batch
            try:
                await self._run_batch(batch)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - the worker must outlive any one batch
                log.exception("model batch failed")
                failure = ServiceError(f"model inference failed: {type(err).__name__}: {err}")
                for _, job in batch:
                    if not job.future.done():
                        job.future.set_exception(failure)
            self._running = []

    @property
    def queue_depth(self) -> int:
        """Requests waiting for the model."""
        return len(self._pending)

    def _take_batch(self) -> list[tuple[ModelSnapshot, ModelJob]]:
        """The next forward's jobs: up to ``max_batch_size``, taken in arrival order but at most
        ``fair_share`` from one caller, so that a large RecommendBatch is cut into pieces that
        other callers' requests ride along with instead of queueing behind all of it."""
        taken: list[tuple[ModelSnapshot, ModelJob]] = []
        left: list[tuple[ModelSnapshot, ModelJob]] = []
        per_caller: dict[int, int] = {}
        for entry in self._pending:
            caller = entry[1].caller
            count = per_caller.get(caller, 0) if caller else 0
            if len(taken) < self.max_batch_size and count < self.fair_share:
                taken.append(entry)
                if caller:
                    per_caller[caller] = count + 1
            else:
                left.append(entry)
        self._pending = left
        return taken

    def _drain_ms(self) -> int:
        """About how long the queue takes to drain at the recent pace (at least 10 ms)."""
        batches = max(self.stats["batches"], 1)
        per_request_s = (
            self.stats["forward_s"] / batches / max(self.stats["requests"] / batches, 1.0)
        )
        return max(10, int(1000 * per_request_s * len(self._pending)))

    async def _run_batch(self, batch: list[tuple[ModelSnapshot, ModelJob]]) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        live: list[tuple[ModelSnapshot, ModelJob]] = []
        for snapshot, job in batch:
            if job.future.done():  # the caller went away (cancelled, e.g. its deadline)
                self.stats["abandoned"] += 1
                continue
            if job.deadline is not None and job.deadline <= now:
                self.stats["abandoned"] += 1
                job.future.set_exception(
                    DeadlineExceeded("deadline passed while waiting for the model")
                )
                continue
            live.append((snapshot, job))
        if not live:
            return
        self.stats["batches"] += 1
        self.stats["requests"] += len(live)
        self.stats["largest_batch"] = max(self.stats["largest_batch"], len(live))
        for group_snapshot, jobs in _groups(live):
            if self.on_forward is not None:
                self.on_forward(True)
            try:
                output = await self._forward_on_pool(loop, group_snapshot, jobs)
            finally:
                if self.on_forward is not None:
                    self.on_forward(False)
            results = _results(group_snapshot, jobs, output, self.explain_top)
            for job, result in zip(jobs, results, strict=True):
                if not job.future.done():
                    job.future.set_result(result)

    async def _forward_on_pool(
        self, loop: asyncio.AbstractEventLoop, snapshot: ModelSnapshot, jobs: list[ModelJob]
    ) -> TaskOutput:
        """Run one forward as an inter-op task; the loop is free until its callback wakes it."""
        finished: asyncio.Future[None] = loop.create_future()
        loop_thread_id = self._loop_thread_id

        def wake(_: torch.futures.Future[Any]) -> None:  # runs on the inter-op thread
            mark_cpu_bound(loop_thread_id)  # from the next forward on (serving.model.scheduling)
            try:
                loop.call_soon_threadsafe(_settle, finished)
            except RuntimeError:  # the loop closed while the forward ran: nobody waits
                pass

        started = time.perf_counter()
        forward = self._forward = _launch(snapshot, jobs)
        on_done(forward, wake)
        await finished  # if cancelled (close), _forward stays set for close() to wait on
        self._forward = None
        seconds = time.perf_counter() - started
        self.stats["forward_s"] += seconds
        if self.on_batch is not None:
            self.on_batch(len(jobs), seconds)
        output: TaskOutput = forward.value()  # raises the task's error
        return output

    async def swap(self, path: Path) -> ModelSnapshot:
        """Verify and load the artifact at ``path`` off the loop, then serve it.

        A bad artifact raises ``ArtifactError`` and the current model keeps serving.
        """
        async with self._swap_lock:
            started = time.perf_counter()
            snapshot = await asyncio.to_thread(
                _load_in_background, path, self._loop_thread_id, self.verify_key
            )
            previous, self.snapshot = self.snapshot, snapshot
            log.info(
                "model %s replaced by %s (%s) in %.2f s",
                previous.model_version,
                snapshot.model_version,
                path,
                time.perf_counter() - started,
            )
            return snapshot


def _load_in_background(
    path: Path, loop_thread_id: int, verify_key: Ed25519PublicKey | None
) -> ModelSnapshot:
    """``load_snapshot`` on a helper thread that must not take the event loop's core from it
    (several seconds of loading and warm-up forwards while the old model serves)."""
    mark_cpu_bound(loop_thread_id)
    return load_snapshot(path, verify_key)


def _groups(
    live: list[tuple[ModelSnapshot, ModelJob]],
) -> list[tuple[ModelSnapshot, list[ModelJob]]]:
    """Jobs split by (snapshot, has an allow-list): each group is one forward call."""
    groups: dict[tuple[int, bool], tuple[ModelSnapshot, list[ModelJob]]] = {}
    for snapshot, job in live:
        key = (id(snapshot), job.allow is not None)
        if key not in groups:
            groups[key] = (snapshot, [])
        groups[key][1].append(job)
    return list(groups.values())


def _settle(finished: asyncio.Future[None]) -> None:
    if not finished.done():  # not cancelled by close()
        finished.set_result(None)


def _wait_quietly(forward: torch.futures.Future[Any]) -> None:
    """Block until ``forward`` completes; its error, if any, was or will be reported elsewhere."""
    try:
        forward.wait()
    except Exception:  # noqa: BLE001, S110 - only its completion matters here
        pass
