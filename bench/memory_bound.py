"""The server's memory under an adversarial stream: distinct explained requests at the largest k,
each a new answer for the caches to keep, against the in-process cache's byte budget.

    .venv/bin/python bench/memory_bound.py                     # 100,000 requests: ~3 minutes
    .venv/bin/python bench/memory_bound.py --requests 5000     # a smoke run

``recsys serve`` on the Video Games artifact of ``bench/serve_load.py`` with ``--near-cache-mb``
(default 32) and the result cache on; ``--threads`` clients send requests whose history, and so
whose answer, differs every time (explain, k = 100). The server's RSS (``VmRSS``) is read after
200 warm-up requests (their answers fill ~3 MB of the cache) and then every ``--every``
requests; its peak (``VmHWM``) at the end. Target: RSS after the stream <= RSS after warm-up +
the cache budget + 150 MB. Writes ``memory_bound.{json,md,png}`` to ``--results``.
"""

from __future__ import annotations

import argparse
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.serving_load.servers import (  # noqa: E402
    WORK,
    log,
    process_memory_mb,
    redis_namespace,
    served_artifact,
    start_server,
    stop_server,
)
from bench.serving_load.servers import item_ids as artifact_item_ids  # noqa: E402

STEM: Final = "memory_bound"
ALLOWANCE_MB: Final = 150


def _send(target: str, items: list[str], first: int, count: int, step: int) -> None:
    import grpc

    from serving.proto.recsys.v1 import recommender_pb2 as pb
    from serving.proto.recsys.v1 import recommender_pb2_grpc as pb_grpc

    size = len(items)
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.RecommenderStub(channel)
        for number in range(first, first + count * step, step):
            # A history no other request has: a fresh answer (and cache entry) every time.
            history = [items[number % size], items[(number // size) % size], items[7]]
            stub.Recommend(
                pb.RecommendRequest(user_id=f"u{number}", history=history, k=100, explain=True),
                timeout=30,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--every", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--near-cache-mb", type=float, default=32.0)
    parser.add_argument("--results", type=Path, default=REPO_ROOT / "bench" / "results")
    args = parser.parse_args()
    from recsys.io import atomic_write_text, write_json

    artifact = served_artifact()
    items = artifact_item_ids(artifact)[1:]
    points: list[dict[str, float]] = []
    with redis_namespace("machine") as (redis_url, namespace, _):
        extra = ["--near-cache-mb", str(args.near_cache_mb)]
        server, target = start_server(
            artifact, redis_url, namespace, None, extra, WORK / "memory-bound.log"
        )
        try:
            assert server.pid is not None
            # Warm-up: few enough requests that their answers fill little of the cache, so that
            # the growth measured from here includes the cache filling up.
            _send(target, items, 10**9, 200, 1)
            base = process_memory_mb(server.pid, "VmRSS")
            points.append({"requests": 0, "rss_mb": round(base, 1)})
            sent = 0
            while sent < args.requests:
                chunk = min(args.every, args.requests - sent)
                per_thread = chunk // args.threads
                workers = [
                    threading.Thread(
                        target=_send, args=(target, items, sent + t, per_thread, args.threads)
                    )
                    for t in range(args.threads)
                ]
                for worker in workers:
                    worker.start()
                for worker in workers:
                    worker.join()
                sent += per_thread * args.threads
                rss = process_memory_mb(server.pid, "VmRSS")
                points.append({"requests": sent, "rss_mb": round(rss, 1)})
                log(f"{sent:,} distinct explained requests: RSS {rss:,.0f} MB")
            peak = process_memory_mb(server.pid, "VmHWM")
        finally:
            stop_server(server)
    growth = points[-1]["rss_mb"] - base
    bound = args.near_cache_mb + ALLOWANCE_MB
    payload: dict[str, Any] = {
        "updated": datetime.now(UTC).isoformat(timespec="seconds"),
        "near_cache_mb": args.near_cache_mb,
        "requests": points[-1]["requests"],
        "rss_after_warmup_mb": round(base, 1),
        "rss_growth_mb": round(growth, 1),
        "peak_rss_mb": round(peak, 1),
        "bound_mb": bound,
        "within_bound": growth <= bound,
        "points": points,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    write_json(args.results / f"{STEM}.json", payload)
    _plot(points, base + bound, args.results / f"{STEM}.png")
    lines = [
        "# Server memory under distinct explained requests",
        "",
        f"`recsys serve --near-cache-mb {args.near_cache_mb:g}` (result cache on), "
        f"{payload['requests']:,} Recommend requests, each with a history no other had "
        f"(explain, k 100), {args.threads} clients. RSS after warm-up {base:,.0f} MB; after the "
        f"stream +{growth:,.0f} MB (bound: the cache budget + {ALLOWANCE_MB} MB = {bound:g} MB: "
        f"{'met' if growth <= bound else 'NOT met'}); peak {peak:,.0f} MB.",
        "",
        "| requests | RSS MB |",
        "|---:|---:|",
        *[f"| {p['requests']:,.0f} | {p['rss_mb']:,.1f} |" for p in points],
        "",
        f"![RSS against requests]({STEM}.png)",
        "",
        f"Updated {payload['updated']}. Reproduce: `.venv/bin/python bench/memory_bound.py`.",
    ]
    atomic_write_text(args.results / f"{STEM}.md", "\n".join(lines) + "\n")
    log(f"wrote {args.results / STEM}.{{json,md,png}}")


def _plot(points: list[dict[str, float]], limit_mb: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    axis.plot([p["requests"] for p in points], [p["rss_mb"] for p in points], marker="o")
    axis.axhline(limit_mb, color="red", linestyle="--", label="warm-up RSS + budget + 150 MB")
    axis.set_xlabel("distinct explained requests")
    axis.set_ylabel("server RSS (MB)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    main()
