"""The serving benchmark's report: rounds pooled, targets checked, JSON, Markdown and PNG written.

Everything here works from the report's JSON alone, so that a committed ``serving.json`` can be
written out again as Markdown and PNG without measuring anything.
"""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any, Final

from bench.serving_load.load import HOT_USERS, K

TARGETS: Final = {"miss_qps_ratio_64": 0.5, "hit_qps_ratio_64": 0.7, "miss_p99_ms_4": 5.0}
LABELS: Final = {
    ("echo", "miss"): "echo",
    ("model-only", "history"): "model only",
    ("recsys", "miss"): "cache-miss",
    ("recsys", "hit"): "cache-hit",
}
"""The name each (server, traffic) load goes by in the report."""

Row = dict[str, Any]


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


# -- rows, targets and what they mean -------------------------------------------------------------


def pooled(rounds: list[dict[str, Any]]) -> list[Row]:
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


def _row(rows: list[Row], server: str, traffic: str, concurrency: int) -> Row | None:
    """The pooled row of one load, if it was measured."""
    return next(
        (
            r
            for r in rows
            if (r["server"], r["traffic"], r["concurrency"]) == (server, traffic, concurrency)
        ),
        None,
    )


def targets(rows: list[Row]) -> list[dict[str, Any]]:
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


def _findings(rows: list[Row]) -> list[str]:
    """The CPU bound of each ratio to the echo ceiling, computed from the CPU table."""

    def total(row: Row) -> float:
        return float(sum(row["cpu_ms_per_request"].values()))

    lines = []
    for row in rows:
        echo = _row(rows, "echo", "miss", row["concurrency"])
        if row["server"] == "echo" or echo is None or total(row) <= 0:
            continue
        lines.append(
            f"- {_label(row)} at {row['concurrency']} in flight: "
            f"{total(row):.2f} ms of CPU per request in all processes against the echo's "
            f"{total(echo):.2f} ms, so with both cores busy it can reach at most "
            f"{total(echo) / total(row):.0%} of the echo's QPS (measured "
            f"{row['qps_vs_echo']:.0%}); model task + gRPC threads "
            f"{row['cpu_ms_per_request']['server_other']:.2f} ms, event loop "
            f"{row['cpu_ms_per_request']['server_loop']:.2f} ms."
        )
    return lines


def _gap(rows: list[Row]) -> list[str]:
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


def _label(row: Row) -> str:
    return LABELS[(row["server"], row["traffic"])]


def _table_row(*cells: object) -> str:
    """One row of a Markdown table."""
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


# -- writing ------------------------------------------------------------------------------------


def write_report(report: dict[str, Any], results: Path, stem: str) -> None:
    """``{stem}.json``, ``{stem}.md`` and ``{stem}.png`` in ``results``."""
    from recsys.io import atomic_write_text, write_json

    results.mkdir(parents=True, exist_ok=True)
    write_json(results / f"{stem}.json", report)
    atomic_write_text(results / f"{stem}.md", "\n".join(_markdown(report)) + "\n")
    _plot(report, results, stem)


def _markdown(report: dict[str, Any]) -> list[str]:
    rows, setup = report["rows"], report["setup"]
    return [
        *_introduction(report),
        *_results_table(rows),
        *_cpu_table(rows),
        *_rounds_table(setup["rounds"]),
        "",
        *_findings(rows),
        *_gap(rows),
        *_targets_table(report["targets"]),
        *_closing(report),
    ]


def _introduction(report: dict[str, Any]) -> list[str]:
    """What was measured, how, and why the ratios rather than the QPS are the fair comparison."""
    setup, machine = report["setup"], report["machine"]
    return [
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
    ]


def _results_table(rows: list[Row]) -> list[str]:
    """QPS, latencies, the ratio to the echo and the answers' sources of every pooled load."""
    lines = [
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
            _table_row(
                row["server"],
                _label(row),
                row["concurrency"],
                f"{row['requests']:,}",
                f"{row['qps']:,.0f}",
                f"{row['p50_ms']:.2f}",
                f"{row['p95_ms']:.2f}",
                f"{row['p99_ms']:.2f}",
                ratio,
                f"{sources}{check}",
            )  # fmt: skip
        )
    return lines


def _cpu_table(rows: list[Row]) -> list[str]:
    """Where the CPU goes, per request and process: what bounds each load's QPS."""
    lines = [
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
        numbers = [f"{part:.3f}" for part in [*parts, sum(parts)]]
        lines.append(_table_row(row["server"], _label(row), row["concurrency"], *numbers))
    return lines


def _rounds_table(rounds: list[dict[str, Any]]) -> list[str]:
    """Every round's QPS and its ratios to the echo of the same round: the drift, made visible."""
    lines = [
        "",
        "Per round (each ratio against the echo load of its own round):",
        "",
        "| round | in flight | echo QPS | model-only QPS | / echo | cache-miss QPS | / echo | "
        "cache-hit QPS | / echo | model-only p99 (ms) | cache-miss p99 (ms) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    by_load = {(m["round"], m["server"], m["traffic"], m["concurrency"]): m for m in rounds}
    for round_number, concurrency in sorted({(m["round"], m["concurrency"]) for m in rounds}):
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
        lines.append(_table_row(*cells))
    return lines


def _targets_table(checked: list[dict[str, Any]]) -> list[str]:
    """Each target, its median round's value, the range over rounds and the verdict."""
    lines = ["", "| target | measured | over rounds | result |", "|---|---:|---:|---|"]
    for target in checked:
        value, spread = target["measured"], target["rounds"]
        as_ratio = "QPS" in target["target"]

        def shown(number: float, as_ratio: bool = as_ratio) -> str:
            return f"{number:.1%}" if as_ratio else f"{number:.2f} ms"

        measured = "-" if value is None else shown(value)
        over = f"{shown(min(spread))}-{shown(max(spread))}" if len(spread) > 1 else "-"
        verdict = {True: "pass", False: "**FAIL**", None: "not measured"}[target["passed"]]
        lines.append(_table_row(target["target"], measured, over, verdict))
    return lines + [""]


def _closing(report: dict[str, Any]) -> list[str]:
    """The server's own account of its model, the notes, the machine and how to reproduce."""
    setup, machine = report["setup"], report["machine"]
    lines = []
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
    return lines


def _plot(report: dict[str, Any], results: Path, stem: str) -> None:
    """QPS and p99 of every load, side by side at each concurrency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, setup, machine = report["rows"], report["setup"], report["machine"]
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    levels = sorted({row["concurrency"] for row in rows})
    series = list(LABELS.items())
    width = 0.8 / len(series)
    for axis, key, title in ((axes[0], "qps", "throughput (QPS)"), (axes[1], "p99_ms", "p99 (ms)")):
        for offset, ((server, traffic), label) in enumerate(series):
            values = [(_row(rows, server, traffic, c) or {key: 0.0})[key] for c in levels]
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
