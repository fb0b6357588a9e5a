"""One large request must not stall everyone: single ``Recommend`` latency while maximum-size
``RecommendBatch`` calls run, with the server's fair sharing on and off.

    .venv/bin/python bench/fairness.py                 # ~2 minutes
    .venv/bin/python bench/fairness.py --seconds 3     # a smoke run

The Video Games artifact of ``bench/serve_load.py``. Two servers (result cache off, so every
answer is the model's), one per setting in ``SETTINGS``: the defaults (``--fair-share 4``, batch
pieces yield to single calls for up to ``--batch-yield-ms 10``), without the yield, the earlier
default ``--fair-share 16``, and ``--fair-share 64`` (= the batch
size: no cut, the behaviour before fair sharing). For each: the p50/p99 of single requests sent
one at a time for ``--seconds`` on an idle server, then again while a second client keeps one
maximum-size batch in flight (``max-batch-requests`` requests of ``max-request-items`` history
and allow-list items, explanations, k = ``max-k``). That client is a process of its own, as
another caller would be: in the measuring process its decoding of 4 MB answers would hold the
GIL against the single requests' client and be counted as the server's delay. Target: loaded
p99 at most 3x idle p99. Writes ``fairness.{json,md}`` to ``--results``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
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
SETTINGS: Final = (
    {"fair_share": 4, "batch_yield_ms": 10.0},  # the defaults
    {"fair_share": 4, "batch_yield_ms": 0.0},
    {"fair_share": 16, "batch_yield_ms": 0.0},
    {"fair_share": 64, "batch_yield_ms": 0.0},  # no cut, no yield: as before fair sharing
)


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


def big_batches(target: str, items: list[str]) -> None:
    """Keep one maximum-size batch in flight until killed; print each one's seconds."""
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
        for _ in range(100_000):
            started = time.perf_counter()
            stub.RecommendBatch(request, timeout=120)
            print(time.perf_counter() - started, flush=True)


def _start_big_batches(target: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "bench.fairness", "--big-batches", target]
    return subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)


def _stop_big_batches(process: subprocess.Popen[str]) -> list[float]:
    """Stop the large-batch client; the seconds of the batches it finished."""
    if process.poll() is not None:
        raise SystemExit("the large-batch client failed: see its traceback above")
    process.terminate()  # mid-batch: that one is not counted
    output, _ = process.communicate(timeout=60)
    return [float(line) for line in output.split()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--results", type=Path, default=REPO_ROOT / "bench" / "results")
    parser.add_argument("--big-batches", metavar="TARGET", help=argparse.SUPPRESS)
    args = parser.parse_args()
    from recsys.io import atomic_write_text, write_json

    artifact = served_artifact()
    items = artifact_item_ids(artifact)[1:]
    if args.big_batches:  # the large-batch client's own process
        big_batches(args.big_batches, items)
        return
    rows: list[dict[str, Any]] = []
    with redis_namespace("machine") as (redis_url, namespace, _):
        for setting in SETTINGS:
            share, yield_ms = setting["fair_share"], setting["batch_yield_ms"]
            extra = ["--cache-ttl-s", "0", "--fair-share", str(share)]
            extra += ["--batch-yield-ms", str(yield_ms)]
            server, target = start_server(
                artifact, redis_url, namespace, None, extra, WORK / f"fair-{share}-{yield_ms:g}.log"
            )
            loader = None
            try:
                _singles(target, items, 2.0)  # warm
                idle = _percentiles(_singles(target, items, args.seconds))
                loader = _start_big_batches(target)
                time.sleep(3.0)  # its start-up, and its first batch under way
                loaded = _percentiles(_singles(target, items, args.seconds))
                batches = _stop_big_batches(loader)
            finally:
                if loader is not None and loader.poll() is None:
                    loader.kill()
                stop_server(server)
            row: dict[str, Any] = {
                "fair_share": share,
                "batch_yield_ms": yield_ms,
                "idle": idle,
                "loaded": loaded,
                "p99_ratio": round(loaded["p99_ms"] / idle["p99_ms"], 2),
                "big_batches": len(batches),
                "big_batch_s": round(statistics.median(batches), 3) if batches else None,
            }
            rows.append(row)
            log(f"{setting}: {row}")
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    args.results.mkdir(parents=True, exist_ok=True)
    write_json(args.results / f"{STEM}.json", {"updated": stamp, "rows": rows})
    lines = [
        "# One large request and everyone else",
        "",
        "Single `Recommend` calls (8-item histories, k 10, one at a time) on an idle server and "
        "while another client keeps one maximum-size `RecommendBatch` in flight (256 requests x "
        "1,000 history + 1,000 allow-list items, explanations, k 100) from a process of its "
        "own, result cache off, the Video Games artifact. Target: loaded p99 at most 3x idle "
        "p99. `--fair-share 64` (the micro-batch size) cuts nothing: the behaviour without it.",
        "",
        "| --fair-share | --batch-yield-ms | idle p50 / p99 ms | loaded p50 / p99 ms | "
        "p99 loaded / idle | large batches (median s) |",
        "|---:|---:|---|---|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['fair_share']} | {row['batch_yield_ms']:g} | "
            f"{row['idle']['p50_ms']} / {row['idle']['p99_ms']} | "
            f"{row['loaded']['p50_ms']} / {row['loaded']['p99_ms']} | {row['p99_ratio']} | "
            f"{row['big_batches']} ({row['big_batch_s']}) |"
        )
    lines += [
        "",
        f"![single-call latency under a large batch, per setting]({STEM}.png)",
        "",
        f"Updated {stamp}. Reproduce: `.venv/bin/python bench/fairness.py`.",
    ]
    atomic_write_text(args.results / f"{STEM}.md", "\n".join(lines) + "\n")
    plot(rows, args.results / f"{STEM}.png")
    log(f"wrote {args.results / STEM}.{{json,md,png}}")


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Idle and loaded p50/p99 per setting, with the target (3x idle p99) marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from recsys.evaluation.plots import save_figure

    labels = [f"share {r['fair_share']}\nyield {r['batch_yield_ms']:g} ms" for r in rows]
    positions = range(len(rows))
    figure, axis = plt.subplots(figsize=(8, 4.2))
    width = 0.2
    series = (
        ("idle p50", "idle", "p50_ms"),
        ("idle p99", "idle", "p99_ms"),
        ("loaded p50", "loaded", "p50_ms"),
        ("loaded p99", "loaded", "p99_ms"),
    )
    for offset, (label, state, key) in enumerate(series):
        axis.bar(
            [p + (offset - 1.5) * width for p in positions],
            [row[state][key] for row in rows],
            width,
            label=label,
        )
    for position, row in zip(positions, rows, strict=True):
        target = 3 * row["idle"]["p99_ms"]
        axis.hlines(target, position - 2 * width, position + 2 * width, colors="black")
    axis.plot([], [], color="black", label="target: 3x idle p99")
    axis.set_xticks(list(positions), labels)
    axis.set_yscale("log")
    axis.set_ylabel("single Recommend latency (ms)")
    axis.set_title("One maximum-size RecommendBatch in flight: everyone else's latency")
    axis.legend(fontsize=8)
    save_figure(figure, path)


if __name__ == "__main__":
    main()
