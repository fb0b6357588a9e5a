"""One closed-loop gRPC load, sent from a client process of its own, and the CPU it cost.

The client runs in a fresh spawned process per load so that its event loop, its collector and its
CPU time are its own: nothing of the parent's (or of an earlier load) is measured with it. While
it is measured, the parent reads the CPU the server's threads and Redis spend, so that every
load's cost per request is known in every process, not only its QPS.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import multiprocessing as mp
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

METHOD: Final = "/recsys.v1.Recommender/Recommend"
K: Final = 10
HOT_USERS: Final = 100
CALL_TIMEOUT_S: Final = 10.0


@dataclass(frozen=True)
class LoadSpec:
    """One closed-loop load, sent to the client process."""

    server: str
    """"recsys", "model-only" (``recsys serve`` without a result cache) or "echo"."""
    traffic: str
    """"miss", "hit" or "history" (the user's stored history in the request, no user id)."""
    target: str
    concurrency: int
    seconds: float
    warmup_s: float
    max_requests: int
    users: list[str] = field(repr=False)
    """miss: every loaded user, asked in turn; hit: the hot users."""
    items: list[str] = field(repr=False)
    salt: int
    """miss: offsets the excluded item, so that no two loads send the same request."""
    expect: str
    """The source every answer must have ("" for the echo server)."""
    histories: dict[str, list[str]] = field(default_factory=dict, repr=False)
    """history: each user's stored history, oldest first."""


def request_bytes(spec: LoadSpec, index: int) -> bytes:
    """The ``index``-th request of a load, serialized.

    miss: user ``index mod U`` with one excluded item that changes on every pass over the users
    (and between loads): a new result-cache key every time. hit: the hot users with a fixed
    excluded item (the primed keys). history: the miss requests with the user's stored history
    in place of the user id. Every request has k and one excluded item.
    """
    from serving.proto.recsys.v1 import recommender_pb2 as pb

    users, items = spec.users, spec.items
    if spec.traffic == "hit":
        user, excluded = users[index % len(users)], items[0]
    else:
        passes, position = divmod(index, len(users))
        user, excluded = users[position], items[1 + (spec.salt + passes) % (len(items) - 1)]
    if spec.traffic == "history":
        request = pb.RecommendRequest(history=spec.histories[user], k=K, exclude=[excluded])
        return request.SerializeToString()
    return pb.RecommendRequest(user_id=user, k=K, exclude=[excluded]).SerializeToString()


def _client_main(spec: LoadSpec, results: mp.Queue[dict[str, Any]]) -> None:
    try:
        results.put(asyncio.run(_load(spec, results)))
    except BaseException as err:  # noqa: BLE001 - the parent must hear of any failure
        results.put({"error": f"{type(err).__name__}: {err}"})


async def _load(spec: LoadSpec, events: mp.Queue[dict[str, Any]]) -> dict[str, Any]:
    """Run the load; puts ``{"event": "start"}`` on ``events`` as the measured phase begins."""
    import grpc
    import numpy as np

    from serving.proto.recsys.v1 import recommender_pb2 as pb

    # The client's own collector pauses (a full collection over all it has imported) would be
    # measured as latency of whichever server it was loading.
    gc.collect()
    gc.freeze()
    async with grpc.aio.insecure_channel(spec.target) as channel:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, pb.RecommendResponse]
        call = channel.unary_unary(
            METHOD, request_serializer=None, response_deserializer=pb.RecommendResponse.FromString
        )
        if spec.traffic == "hit":  # prime: one sequential answer per hot user, then check one
            for index in range(len(spec.users)):
                await call(request_bytes(spec, index), timeout=CALL_TIMEOUT_S)
        counter = itertools.count()
        loop = asyncio.get_running_loop()

        async def phase(seconds: float, limit: int) -> tuple[list[float], Counter[str], float]:
            latencies: list[float] = []
            outcomes: Counter[str] = Counter()
            stop_at = loop.time() + seconds
            issued = 0

            async def worker() -> None:
                nonlocal issued
                while issued < limit and loop.time() < stop_at:
                    issued += 1
                    payload = request_bytes(spec, next(counter))
                    started = time.perf_counter()
                    try:
                        response = await call(payload, timeout=CALL_TIMEOUT_S)
                    except grpc.aio.AioRpcError as err:
                        outcomes["error " + err.code().name] += 1
                        continue
                    latencies.append(time.perf_counter() - started)
                    outcomes[pb.Source.Name(response.source)] += 1

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(spec.concurrency)))
            return latencies, outcomes, time.perf_counter() - started

        if spec.warmup_s > 0:
            await phase(spec.warmup_s, spec.max_requests)
        events.put({"event": "start"})
        cpu_started = time.process_time()
        latencies, outcomes, elapsed = await phase(spec.seconds, spec.max_requests)
        client_cpu_s = time.process_time() - cpu_started
    values = np.asarray(latencies) * 1000.0
    answered = len(latencies)
    expected = outcomes.get(spec.expect, 0) if spec.expect else answered
    return {
        "server": spec.server,
        "traffic": spec.traffic,
        "concurrency": spec.concurrency,
        "requests": answered,
        "errors": sum(n for name, n in outcomes.items() if name.startswith("error")),
        "seconds": round(elapsed, 3),
        "qps": round(answered / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": round(float(np.percentile(values, 50)), 3) if answered else None,
        "p95_ms": round(float(np.percentile(values, 95)), 3) if answered else None,
        "p99_ms": round(float(np.percentile(values, 99)), 3) if answered else None,
        "max_ms": round(float(values.max()), 3) if answered else None,
        "sources": dict(sorted(outcomes.items())),
        "expected_source": spec.expect or None,
        "source_ok": answered > 0 and expected == answered,
        "cpu_ms_per_request": {"client": round(client_cpu_s * 1000 / max(answered, 1), 4)},
        "latencies_ms": values.tolist(),
    }


def _thread_cpu_s(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) of a process: (its main thread, all its other threads)."""
    tick = os.sysconf("SC_CLK_TCK")
    main = other = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # a thread that ended
        seconds = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        if int(task.name) == pid:
            main += seconds
        else:
            other += seconds
    return main, other


def _redis_cpu_s(url: str) -> float:
    """CPU seconds Redis has used (every master's, on a cluster)."""
    from redis.cluster import RedisCluster

    from serving.store.redis_clients import sync_client

    client = sync_client(url, timeout_s=2)
    try:
        nodes: list[dict[str, Any]]
        if isinstance(client, RedisCluster):
            nodes = list(client.info("cpu", target_nodes=RedisCluster.PRIMARIES).values())
        else:
            nodes = [client.info("cpu")]
        return sum(float(info["used_cpu_user"]) + float(info["used_cpu_sys"]) for info in nodes)
    finally:
        client.close()


def _cpu(server_pid: int, redis_url: str) -> dict[str, float]:
    main, other = _thread_cpu_s(server_pid)
    return {"server_loop": main, "server_other": other, "redis": _redis_cpu_s(redis_url)}


def run_load(spec: LoadSpec, server_pid: int, redis_url: str) -> dict[str, Any]:
    """One load in a fresh client process; adds the CPU the server (event-loop thread / other
    threads: the model's inter-op task and gRPC's) and Redis spent per request while it was
    measured."""
    context = mp.get_context("spawn")
    results: mp.Queue[dict[str, Any]] = context.Queue()
    process = context.Process(target=_client_main, args=(spec, results), daemon=True)
    process.start()
    try:
        started = results.get(timeout=spec.warmup_s + 120)
        before = _cpu(server_pid, redis_url) if started.get("event") == "start" else None
        result = started if before is None else results.get(timeout=spec.seconds + 120)
        after = _cpu(server_pid, redis_url)
    finally:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
    if "error" in result:
        raise SystemExit(f"load {spec.server}/{spec.traffic}/{spec.concurrency}: {result['error']}")
    assert before is not None
    for name, value in after.items():
        share = (value - before[name]) * 1000 / max(result["requests"], 1)
        result["cpu_ms_per_request"][name] = round(share, 4)
    return result
