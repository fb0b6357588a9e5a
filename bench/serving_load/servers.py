"""What the serving benchmark measures: ``recsys serve`` on a cached artifact, and an echo server.

The data, the artifact and the Redis they read are set up here too, cached under ``WORK`` so that
a second run only loads the histories and starts the servers. Every server runs in a process of
its own and is waited for until it answers, so that no load measures a start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from bench.serving_load.load import K

if TYPE_CHECKING:
    from serving.proto.recsys.v1 import recommender_pb2 as pb

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
WORK: Final = REPO_ROOT / "bench" / ".work" / "serve_load"
VIDEO_GAMES: Final = REPO_ROOT.parent / "shared" / "datasets" / "video_games.txt"
CONFIG: Final = REPO_ROOT / "pipelines" / "configs" / "paper_video_games.yaml"
PREPARED_ELSEWHERE: Final = REPO_ROOT / "runs" / "vg_data"
SHARED_REDIS: Final = "redis://127.0.0.1:6379/0"
FIRST_REQUESTS: Final = 3


def log(message: str) -> None:
    print(f"[serve_load] {message}", file=sys.stderr, flush=True)


# -- setup: data, artifact, Redis ----------------------------------------------------------------


def run_recsys(*args: str) -> None:
    """One ``recsys`` command of this venv; its output goes to a log file in WORK."""
    command = [sys.executable, "-m", "pipelines.cli", *args]
    log("recsys " + " ".join(args))
    with open(WORK / "setup.log", "a") as setup_log:
        done = subprocess.run(command, cwd=REPO_ROOT, stdout=setup_log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(
            f"`recsys {args[0]}` failed (exit {done.returncode}): see {setup_log.name}"
        )


def prepared_data() -> Path:
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
        log(f"copying the prepared dataset {PREPARED_ELSEWHERE}")
        shutil.copytree(PREPARED_ELSEWHERE, data)
        return data
    log(f"preparing {VIDEO_GAMES}")
    return write_prepared(prepare_dataset(VIDEO_GAMES), data, overwrite=True)


def exported_artifact(data: Path) -> Path:
    """The exported artifact of a 1-epoch model on ``data`` (trained and exported when absent)."""
    artifact = WORK / "artifact"
    if (artifact / "manifest.json").is_file():
        return artifact
    run = WORK / "run"
    checkpoints = [run / "checkpoints" / name for name in ("best.ckpt", "last.ckpt")]
    if not any(path.is_file() for path in checkpoints):
        run_recsys(
            "train", "--data", str(data), "--out", str(run), "--config", str(CONFIG),
            "--max-epochs", "1", "--max-minutes", "2", "--val-protocol", "sampled",
            "--check-val-every-n-epoch", "1", "--overwrite",
        )  # fmt: skip
    checkpoint = next(path for path in checkpoints if path.is_file())
    run_recsys(
        "export", "--checkpoint", str(checkpoint), "--data", str(data), "--out", str(artifact),
        "--overwrite",
    )  # fmt: skip
    return artifact


def served_artifact() -> Path:
    """The Video Games artifact the serving benchmarks load (built and cached when absent)."""
    WORK.mkdir(parents=True, exist_ok=True)
    return exported_artifact(prepared_data())


def process_memory_mb(pid: int, field: str = "VmRSS") -> float:
    """A process's ``VmRSS`` (now) or ``VmHWM`` (its peak) in MB, from ``/proc/PID/status``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"/proc/{pid}/status has no {field}")


def user_ids(data: Path) -> list[str]:
    import polars as pl

    from recsys.data import columns as C
    from recsys.data import load_prepared

    table = load_prepared(data).users.table
    return [str(user) for user in table.get_column(C.USER_ID).cast(pl.String).to_list()]


def item_ids(artifact: Path) -> list[str]:
    import polars as pl

    table = pl.read_parquet(artifact / "items.parquet")
    column = "item_id" if "item_id" in table.columns else table.columns[-1]
    return [str(item) for item in table.get_column(column).cast(pl.String).to_list() if item]


@contextlib.contextmanager
def redis_namespace(choice: str) -> Iterator[tuple[str, str, str]]:
    """(url, namespace, a description); the namespace's keys are deleted afterwards.

    ``choice``: "machine" (127.0.0.1:6379 when it answers, else embedded), "embedded", or
    "cluster" (a three-master Redis Cluster on loopback ports, started for the run)."""
    import redis

    from serving.store.embedded_redis import EmbeddedRedis
    from serving.store.redis_clients import sync_client
    from tests.redis_cluster import LocalRedisCluster

    embedded = cluster = None
    url, kind = "", ""
    if choice == "cluster":
        cluster = LocalRedisCluster(Path(tempfile.mkdtemp(prefix="bench-redis-cluster-")))
        url, kind = cluster.url, "a three-master Redis Cluster (loopback TCP, redis-py's client)"
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
        cleaner = sync_client(url)
        try:
            keys = list(cleaner.scan_iter(match=f"{namespace}:*", count=5000))
            for start in range(0, len(keys), 5000):
                cleaner.delete(*keys[start : start + 5000])
        finally:
            cleaner.close()
        if embedded is not None:
            embedded.close()
        if cluster is not None:
            cluster.close()


def stored_histories(redis_url: str, namespace: str, users: list[str]) -> dict[str, list[str]]:
    """Every user's history as the feature store holds it (what a cache miss reads)."""
    from serving.store.feature_store import FeatureKeys
    from serving.store.redis_clients import sync_client

    keys = FeatureKeys(namespace)
    client = sync_client(redis_url, timeout_s=30)
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


# -- recsys serve (a subprocess) ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_serving(
    target: str, process: subprocess.Popen[bytes], log_path: Path, timeout_s: float
) -> None:
    from pipelines.service.health import check_health
    from serving.client import RemoteError

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited ({process.returncode}): see {log_path}")
        with contextlib.suppress(RemoteError):
            if check_health(target, timeout_s=1.0) == "SERVING":
                return
        time.sleep(0.2)
    raise SystemExit(f"no SERVING answer from {target} within {timeout_s:.0f} s")


def start_server(
    artifact: Path,
    redis_url: str | None,
    namespace: str,
    profile: Path | None,
    extra: list[str],
    log_path: Path,
    port: int | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """``recsys serve`` in a process of its own, waited for until it serves; ``redis_url``
    None: its default embedded store; ``port`` None: a free one."""
    port = _free_port() if port is None else port
    command = [sys.executable]
    if profile is not None:
        command += ["-m", "cProfile", "-o", str(profile)]
    command += [
        "-m", "pipelines.cli", "serve", "--artifact", str(artifact), "--port", str(port),
        "--namespace", namespace, "--log-level", "info", *extra,
    ]  # fmt: skip
    if redis_url is not None:
        command += ["--redis-url", redis_url]
    server_log = open(log_path, "w")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=server_log, stderr=subprocess.STDOUT)
    target = f"127.0.0.1:{port}"
    _wait_serving(target, process, log_path, timeout_s=120)
    return process, target


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()  # SIGTERM: graceful, as in production
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def first_answers(
    target: str, users: list[str], items: list[str]
) -> tuple[pb.ModelInfo, list[float], pb.RecommendRequest, pb.RecommendResponse]:
    """The model's info, the times of the server's first cache-miss answers (a model not warmed
    up at load would be compiled in them) and the last of those requests and answers, checked to
    be a model's top K."""
    import grpc

    from serving.proto.recsys.v1 import recommender_pb2 as pb
    from serving.proto.recsys.v1 import recommender_pb2_grpc as pb_grpc

    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.RecommenderStub(channel)
        info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
        first_ms = []
        for user in users[-FIRST_REQUESTS:]:
            sample = pb.RecommendRequest(user_id=user, k=K, exclude=[items[0]])
            started = time.perf_counter()
            answer = stub.Recommend(sample, timeout=10)
            first_ms.append(round(1000 * (time.perf_counter() - started), 2))
    if answer.source != pb.SOURCE_MODEL or len(answer.items) != K:
        raise SystemExit(f"unexpected sample answer: {answer}")
    return info, first_ms, sample, answer


def check_model_only(
    target: str, history: list[str], excluded: str, answer: pb.RecommendResponse
) -> None:
    """The model-only server must answer a user's stored history as the server answers the user:
    else its loads would not be the model work of a cache miss."""
    import grpc

    from serving.proto.recsys.v1 import recommender_pb2 as pb
    from serving.proto.recsys.v1 import recommender_pb2_grpc as pb_grpc

    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.RecommenderStub(channel)
        same = pb.RecommendRequest(history=history, k=K, exclude=[excluded])
        twin = stub.Recommend(same, timeout=10)
    if [item.item_id for item in twin.items] != [item.item_id for item in answer.items]:
        raise SystemExit(
            "the model-only server does not answer a user's stored history as the "
            f"server answers the user: {twin} against {answer}"
        )


def model_runtime(server_log: Path) -> str | None:
    """The server's own account of its model runtime, from the line it logs as it stops."""
    return next(
        (
            line.split("model runtime: ", 1)[1].strip()
            for line in server_log.read_text().splitlines()
            if "model runtime: " in line
        ),
        None,
    )


def write_profile_text(profile: Path) -> Path:
    """The server's cProfile output as text beside it: the 40 costliest by own and total time."""
    import pstats

    text = WORK / "server.prof.txt"
    with open(text, "w") as out:
        stats = pstats.Stats(str(profile), stream=out)
        stats.sort_stats("tottime").print_stats(40)
        stats.sort_stats("cumulative").print_stats(40)
    return text


# -- the echo server (its own process) -----------------------------------------------------------


def start_echo(answer: bytes) -> tuple[BaseProcess, str]:
    """The echo server in a spawned process, answering every ``Recommend`` with ``answer``;
    returned with its target once it answers."""
    port = _free_port()
    process = mp.get_context("spawn").Process(target=_echo_main, args=(port, answer), daemon=True)
    process.start()
    target = f"127.0.0.1:{port}"
    try:
        _echo_health_wait(target)
    except BaseException:
        stop_echo(process)
        raise
    return process, target


def stop_echo(process: BaseProcess) -> None:
    process.terminate()
    process.join(timeout=10)


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
