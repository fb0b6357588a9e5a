"""One large request must not stall everyone: single ``Recommend`` latency while maximum-size
``RecommendBatch`` calls run, with the server's fair share of forwards on and off.

    .venv/bin/python bench/fairness.py                 # ~2 minutes
    .venv/bin/python bench/fairness.py --seconds 3     # a smoke run

The Video Games artifact of ``bench/serve_load.py``. Two servers (result cache off, so every
answer is the model's): the default ``--fair-share 16`` and ``--fair-share 64`` (= the batch
size: no cut, the behaviour before fair sharing). For each: the p50/p99 of single requests sent
one at a time for ``--seconds`` on an idle server, then again while a second client keeps one
maximum-size batch in flight (``max-batch-requests`` requests of ``max-request-items`` history
and allow-list items, explanations, k = ``max-k``). Target: loaded p99 at most 3x idle p99.
Writes ``fairness.{json,md}`` to ``--results``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.serving_load.servers import (  # noqa: E402
    WORK,
    log,
    redis_namespace,
    served_artifact,
    start_server,
    stop_server,
)
from bench.serving_load.servers import item_ids as artifact_item_ids  # noqa: E402

STEM: Final = "fairness"
SHARES: Final = (16, 64)


def _percentiles(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "p50_ms": round(1000 * statistics.median(ordered), 3),
        "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 3),
    }


def _singles(target: str, items: list[str], seconds: float) -> list[float]:
    import grpc

    from serving.proto.recsys.v1 import recommender_pb2 as pb
    from serving.proto.recsys.v1 import recommender_pb2_grpc as pb_grpc

    latencies = []
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.RecommenderStub(channel)
        deadline = time.monotonic() + seconds
        index = 0
        while time.monotonic() < deadline and index < 100_000:
            history = items[index % 500 : index % 500 + 8]
            started = time.perf_counter()
            stub.Recommend(pb.RecommendRequest(history=history, k=10), timeout=30)
            latencies.append(time.perf_counter() - started)
            index += 1
    return latencies


def _big_batches(target: str, items: list[str], stop: threading.Event, done: list[float]) -> None:
    import grpc

    from serving.config import ServeConfig
    from serving.proto.recsys.v1 import recommender_pb2 as pb
    from serving.proto.recsys.v1 import recommender_pb2_grpc as pb_grpc

    limits = ServeConfig()
    size = limits.max_request_items
    request = pb.RecommendBatchRequest(
        requests=[
            pb.RecommendRequest(
                history=items[i : i + size],
                allow=items[-size:],
                k=limits.max_k,
                explain=True,
            )
            for i in range(limits.max_batch_requests)
        ]
    )
    # A maximum-size answer (256 x 100 items with explanations) is over gRPC's default 4 MB.
    options = [("grpc.max_receive_message_length", 64 * 2**20)]
    with grpc.insecure_channel(target, options=options) as channel:
        stub = pb_grpc.RecommenderStub(channel)
        while not stop.is_set():
            started = time.perf_counter()
            stub.RecommendBatch(request, timeout=120)
            done.append(time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--results", type=Path, default=REPO_ROOT / "bench" / "results")
    args = parser.parse_args()
    from recsys.io import atomic_write_text, write_json

    artifact = served_artifact()
    items = artifact_item_ids(artifact)[1:]
    rows: list[dict[str, Any]] = []
    with redis_namespace("machine") as (redis_url, namespace, _):
        for share in SHARES:
            extra = ["--cache-ttl-s", "0", "--fair-share", str(share)]
            server, target = start_server(
                artifact, redis_url, namespace, None, extra, WORK / f"fair-{share}.log"
            )
            try:
                _singles(target, items, 2.0)  # warm
                idle = _percentiles(_singles(target, items, args.seconds))
                stop = threading.Event()
                batches: list[float] = []
                loader = threading.Thread(
                    target=_big_batches, args=(target, items, stop, batches), daemon=True
                )
                loader.start()
                time.sleep(1.0)
                loaded = _percentiles(_singles(target, items, args.seconds))
                if not loader.is_alive():
                    raise SystemExit("the large-batch client failed: see its traceback above")
                stop.set()
                loader.join(timeout=180)
            finally:
                stop_server(server)
            row: dict[str, Any] = {
                "fair_share": share,
                "idle": idle,
                "loaded": loaded,
                "p99_ratio": round(loaded["p99_ms"] / idle["p99_ms"], 2),
                "big_batches": len(batches),
                "big_batch_s": round(statistics.median(batches), 3) if batches else None,
            }
            rows.append(row)
            log(f"fair share {share}: {row}")
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    args.results.mkdir(parents=True, exist_ok=True)
    write_json(args.results / f"{STEM}.json", {"updated": stamp, "rows": rows})
    lines = [
        "# One large request and everyone else",
        "",
        "Single `Recommend` calls (8-item histories, k 10, one at a time) on an idle server and "
        "while another client keeps one maximum-size `RecommendBatch` in flight (256 requests x "
        "1,000 history + 1,000 allow-list items, explanations, k 100), result cache off, the "
        "Video Games artifact. Target: loaded p99 at most 3x idle p99.",
        "",
        "| --fair-share | idle p50 / p99 ms | loaded p50 / p99 ms | p99 loaded / idle | "
        "large batches (median s) |",
        "|---:|---|---|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['fair_share']} | {row['idle']['p50_ms']} / {row['idle']['p99_ms']} | "
            f"{row['loaded']['p50_ms']} / {row['loaded']['p99_ms']} | {row['p99_ratio']} | "
            f"{row['big_batches']} ({row['big_batch_s']}) |"
        )
    lines += ["", f"Updated {stamp}. Reproduce: `.venv/bin/python bench/fairness.py`."]
    atomic_write_text(args.results / f"{STEM}.md", "\n".join(lines) + "\n")
    log(f"wrote {args.results / STEM}.{{json,md}}")


if __name__ == "__main__":
    main()
