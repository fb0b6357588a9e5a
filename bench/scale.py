"""The product end to end at growing catalogue sizes: synth -> prepare -> train -> evaluate ->
export -> serve under load, each stage with the default command, timed and measured.

    .venv/bin/python bench/scale.py                       # 10k and 100k items (~25 minutes)
    .venv/bin/python bench/scale.py --size 1M             # a million items, 20M events
    .venv/bin/python bench/scale.py --size tiny           # seconds: a smoke run of every stage

Every stage runs as its own ``recsys`` process; its wall time and peak RSS (``wait4``'s
``ru_maxrss`` of that process alone) are recorded. Training is the default recipe under a time
budget per size (``--train-minutes`` overrides); evaluation ranks the whole catalogue for a
seeded sample of test users (``--users``, with the bootstrap interval) beside the
most-popular baseline, so a faster path that loses quality shows; export uses the default
``--index auto`` (an index from 200k items on), and an indexed artifact is served beside an
exact export of the same checkpoint. Serving is ``recsys serve`` in a process of its own, loaded
closed-loop at 1 and 16 requests in flight with requests that carry a test user's history
(``bench/serving_load``) and the result cache off, so that every answer is the model's:
p50/p99 and QPS per load, and the server's peak RSS (``VmHWM``).

Results accumulate in ``scale.json`` (a size run again replaces its row) and are written as
``scale.md`` and ``scale.png`` (each measure against catalogue size, log axes).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Final

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
WORK: Final = REPO_ROOT / "bench" / ".work" / "scale"
STEM: Final = "scale"

SIZES: Final[dict[str, dict[str, int]]] = {
    "tiny": {"items": 1_000, "users": 2_000, "events": 40_000, "train_minutes": 1},
    "10k": {"items": 10_000, "users": 50_000, "events": 1_000_000, "train_minutes": 4},
    "100k": {"items": 100_000, "users": 200_000, "events": 4_000_000, "train_minutes": 8},
    "1M": {"items": 1_000_000, "users": 1_000_000, "events": 20_000_000, "train_minutes": 30},
}
CONCURRENCY: Final = (1, 16)
LOAD_SECONDS: Final = 15.0
LOAD_USERS: Final = 2_000


def log(message: str) -> None:
    print(f"[scale] {message}", file=sys.stderr, flush=True)


def stage(name: str, *args: str, log_path: Path) -> dict[str, Any]:
    """Run ``recsys ARGS`` to completion: its wall seconds and peak RSS (GiB)."""
    log(f"{name}: recsys {' '.join(args)}")
    started = time.perf_counter()
    with log_path.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", *args],
            cwd=REPO_ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-15:]
        raise SystemExit(f"{name} failed ({process.returncode}):\n" + "\n".join(tail))
    return {"seconds": round(seconds, 1), "peak_rss_gib": round(usage.ru_maxrss / 2**20, 3)}


def _serve(artifact: Path, data: Path, label: str, workdir: Path) -> dict[str, Any]:
    """Load ``recsys serve`` on ``artifact`` with histories of test users at each concurrency."""
    from bench.serving_load.load import LoadSpec, run_load
    from bench.serving_load.servers import (
        process_memory_mb,
        redis_namespace,
        start_server,
        stop_server,
    )
    from recsys.data import held_out_targets, load_prepared
    from recsys.export import load_artifact

    dataset = load_prepared(data)
    held_out = held_out_targets(dataset, "test").sample(LOAD_USERS, seed=0)
    item_ids = load_artifact(artifact, verify_checksums=False).item_ids
    histories = {
        f"user-{row}": [item_ids[i] for i in held_out.histories.row(row)[-200:].tolist()]
        for row in range(len(held_out.targets))
    }
    users = list(histories)
    loads: dict[str, Any] = {}
    with redis_namespace("machine") as (url, namespace, _):
        process, target = start_server(
            artifact, url, namespace, None, ["--cache-ttl-s", "0"], workdir / f"serve-{label}.log"
        )
        try:
            for salt, concurrency in enumerate(CONCURRENCY):
                spec = LoadSpec(
                    server="recsys",
                    traffic="history",
                    target=target,
                    concurrency=concurrency,
                    seconds=LOAD_SECONDS,
                    warmup_s=2.0,
                    max_requests=200_000,
                    users=users,
                    items=item_ids[1:101],
                    salt=salt,
                    expect="SOURCE_MODEL",
                    histories=histories,
                )
                result = run_load(spec, process.pid, url)
                loads[str(concurrency)] = {
                    key: result[key] for key in ("qps", "p50_ms", "p99_ms", "sources", "source_ok")
                }
                log(f"serve {label} at {concurrency} in flight: {loads[str(concurrency)]}")
            peak_mb = process_memory_mb(process.pid, "VmHWM")
        finally:
            stop_server(process)
    return {"loads": loads, "peak_rss_gib": round(peak_mb / 1024, 3)}


def run_size(name: str, train_minutes: float | None, users: int) -> dict[str, Any]:
    size = SIZES[name]
    workdir = WORK / name
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    log_file = workdir / "log.parquet"
    data, run, report = workdir / "data", workdir / "run", workdir / "evaluation"
    minutes = train_minutes if train_minutes is not None else size["train_minutes"]
    stages: dict[str, Any] = {}
    stages["synth"] = stage(
        "synth", "synth", "--users", str(size["users"]), "--items", str(size["items"]),
        "--events", str(size["events"]), "--out", str(log_file), log_path=workdir / "synth.log",
    )  # fmt: skip
    stages["prepare"] = stage(
        "prepare", "prepare", "--input", str(log_file), "--out", str(data),
        log_path=workdir / "prepare.log",
    )  # fmt: skip
    stages["train"] = stage(
        "train", "train", "--data", str(data), "--out", str(run), "--max-minutes", str(minutes),
        log_path=workdir / "train.log",
    )  # fmt: skip
    summary = json.loads((run / "summary.json").read_text())
    checkpoint = run / "checkpoints" / "best.ckpt"
    stages["evaluate"] = stage(
        "evaluate", "evaluate", "--data", str(data), "--checkpoint", str(checkpoint),
        "--baseline", "most-popular", "--users", str(users), "--k", "10", "--resamples", "500",
        "--out", str(report), log_path=workdir / "evaluate.log",
    )  # fmt: skip
    metrics = json.loads((report / "metrics.json").read_text())
    artifacts = {"auto": workdir / "artifact"}
    stages["export"] = stage(
        "export", "export", "--checkpoint", str(checkpoint), "--data", str(data),
        "--out", str(artifacts["auto"]), log_path=workdir / "export.log",
    )  # fmt: skip
    manifest = json.loads((artifacts["auto"] / "manifest.json").read_text())
    if manifest["retrieval"]["kind"] != "exact":
        artifacts["exact"] = workdir / "artifact-exact"
        stages["export_exact"] = stage(
            "export (exact)", "export", "--checkpoint", str(checkpoint), "--data", str(data),
            "--out", str(artifacts["exact"]), "--index", "exact",
            log_path=workdir / "export-exact.log",
        )  # fmt: skip
    serving = {label: _serve(path, data, label, workdir) for label, path in artifacts.items()}
    sasrec = metrics["scorers"]["sasrec"]["metrics"]
    popular = metrics["scorers"]["most-popular"]["metrics"]
    return {
        "size": name,
        **size,
        "train_minutes": minutes,
        "stages": stages,
        "train": {
            "epochs": summary["epochs_trained"],
            "seconds_per_epoch": summary["train_seconds_per_epoch"],
            "stopped_by": summary["stopped_by"],
            "memory_estimate": summary.get("memory_estimate"),
            "recipe": {choice["key"]: choice["value"] for choice in summary["recipe"]},
        },
        "evaluation": {
            "users": metrics["num_users"],
            "seconds": metrics["scorers"]["sasrec"]["seconds"],
            "hr@10": sasrec["hr@10"],
            "ndcg@10": sasrec["ndcg@10"],
            "most_popular_hr@10": popular["hr@10"]["mean"],
        },
        "export": {
            "retrieval": {k: v for k, v in manifest["retrieval"].items() if k != "tried"},
            "bytes": sum(entry["bytes"] for entry in manifest["files"].values()),
        },
        "serving": serving,
    }


def _markdown(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "# The product at growing catalogue sizes",
        "",
        "Synthetic logs (`recsys synth`), each stage the default command in a process of its "
        "own on this machine (2 cores, no GPU): wall seconds and peak RSS per stage; training "
        "under the size's time budget; full-ranking HR@10 / NDCG@10 of a seeded sample of test "
        "users with 95% bootstrap intervals; serving p50/p99 (ms) and QPS with requests that "
        "carry a test user's history (no result-cache hits), 1 and 16 in flight.",
        "",
        "| size | items | events | stage | seconds | peak RSS GiB |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for row in rows:
        for name, measured in row["stages"].items():
            lines.append(
                f"| {row['size']} | {row['items']:,} | {row['events']:,} | {name} | "
                f"{measured['seconds']:.1f} | {measured['peak_rss_gib']:.2f} |"
            )
    lines += [
        "",
        "| size | epochs (budget) | s per epoch | us per event | loss | item-table updates "
        "| eval users | eval s | HR@10 [95% CI] | NDCG@10 | most-popular HR@10 | retrieval "
        "| recall@10 | artifact MB |",
        "|---|---:|---:|---:|---|---|---:|---:|---|---:|---:|---|---:|---:|",
    ]
    for row in rows:
        train, ev, export = row["train"], row["evaluation"], row["export"]
        hr, retrieval = ev["hr@10"], export["retrieval"]
        lines.append(
            f"| {row['size']} | {train['epochs']} ({row['train_minutes']} min) | "
            f"{train['seconds_per_epoch']} | "
            f"{train['seconds_per_epoch'] / row['events'] * 1e6:.1f} | "
            f"{train['recipe'].get('loss')} | "
            f"{train['recipe'].get('embedding_updates', 'dense (before the key existed)')} | "
            f"{ev['users']:,} | "
            f"{ev['seconds']:.1f} | {hr['mean']:.4f} [{hr['ci_low']:.4f}, {hr['ci_high']:.4f}] | "
            f"{ev['ndcg@10']['mean']:.4f} | {ev['most_popular_hr@10']:.4f} | "
            f"{retrieval['kind']} | {retrieval.get('recall_at_10', 1.0)} | "
            f"{export['bytes'] / 1e6:.1f} |"
        )
    lines += [
        "",
        "| size | artifact | in flight | QPS | p50 ms | p99 ms | server peak RSS GiB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        for label, served in row["serving"].items():
            for concurrency, load in served["loads"].items():
                lines.append(
                    f"| {row['size']} | {label} | {concurrency} | {load['qps']} | "
                    f"{load['p50_ms']} | {load['p99_ms']} | {served['peak_rss_gib']:.2f} |"
                )
    return lines


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(rows, key=lambda row: row["items"])
    items = [row["items"] for row in rows]
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for name in rows[0]["stages"]:
        points = [(row["items"], row["stages"][name]) for row in rows if name in row["stages"]]
        x = [p[0] for p in points]
        axes[0].plot(x, [p[1]["seconds"] for p in points], marker="o", label=name)
        axes[1].plot(x, [p[1]["peak_rss_gib"] for p in points], marker="o", label=name)
    for label in ("auto", "exact"):
        for concurrency in CONCURRENCY:
            points = [
                (row["items"], row["serving"][label]["loads"][str(concurrency)]["p99_ms"])
                for row in rows
                if label in row["serving"]
            ]
            if points:
                axes[2].plot(
                    [p[0] for p in points],
                    [p[1] for p in points],
                    marker="o",
                    label=f"{label} index, {concurrency} in flight",
                )
    titles = ("wall seconds per stage", "peak RSS (GiB) per stage", "serving p99 (ms)")
    for axis, title in zip(axes, titles, strict=True):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("catalogue size (items)")
        axis.set_title(title)
        axis.set_xticks(items, [f"{n:,}" for n in items])
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", action="append", choices=sorted(SIZES))
    parser.add_argument("--train-minutes", type=float, default=None)
    parser.add_argument("--users", type=int, default=20_000, help="test users evaluated")
    parser.add_argument("--results", type=Path, default=REPO_ROOT / "bench" / "results")
    args = parser.parse_args()
    store = args.results / f"{STEM}.json"
    previous = json.loads(store.read_text())["rows"] if store.is_file() else []
    rows = {row["size"]: row for row in previous}
    for name in args.size or ["10k", "100k"]:
        rows[name] = run_size(name, args.train_minutes, args.users)
        _write(list(rows.values()), args.results)  # each size kept as soon as it is measured
        log(f"{name} done")
    log(f"wrote {args.results / STEM}.{{json,md,png}}")


def _write(rows: list[dict[str, Any]], results: Path) -> None:
    from bench.rows_report import write_rows_report

    ordered = sorted(rows, key=lambda row: row["items"])
    write_rows_report(
        results,
        STEM,
        ordered,
        _markdown(ordered),
        lambda path: _plot(ordered, path),
        "each measure against catalogue size",
        ".venv/bin/python bench/scale.py --size NAME",
    )


if __name__ == "__main__":
    main()
