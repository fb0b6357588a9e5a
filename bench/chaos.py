"""Faults under load, with every acknowledged write accounted for.

    .venv/bin/python bench/chaos.py                 # ~1.5 minutes

Writers record events for their own users with client event ids and retry every call that was
not acknowledged (UNAVAILABLE, a deadline) with the same ids, as the proto tells them to; a reader
keeps asking for recommendations. Each event has an item id of its own, so a history shows both a
lost event (acknowledged, absent) and a duplicated one (present twice). Scenarios:

1. Redis (a real ``redis-server`` on a TCP port, append-only file, fsync always) is paused
   (SIGSTOP) for 5 s, then resumed; later killed (SIGKILL) and restarted on the same port and
   file. The server (``--redis-url``) keeps answering; we record how long after Redis was back
   its first answer from the stored history came, and how often it declared the store down.
2. The server itself, on its default embedded store (``--redis-dir``, ``--redis-fsync always``),
   is killed (SIGKILL) under the same load and started again.

First, ``--fuzz`` requests (random bytes, truncated and bit-flipped valid requests) over every
RPC. Writes ``chaos.{json,md}`` to ``--results``: requests and status codes, acknowledged writes
lost, duplicated events, recovery times, outages declared, server RSS growth, the fuzzing's codes
and tracebacks.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.serving_load.servers import (  # noqa: E402
    log,
    process_memory_mb,
    served_artifact,
    start_server,
    stop_server,
)

STEM: Final = "chaos"
WRITERS: Final = 8
EVENTS_PER_USER: Final = 150  # below the server's max_history (200): nothing is trimmed


class Ledger:
    """What the writers sent and what the server acknowledged, per user."""

    def __init__(self) -> None:
        self.acknowledged: dict[str, list[str]] = {}
        self.codes: Counter[str] = Counter()
        self.lock = threading.Lock()


def _writer(target: str, user: str, ledger: Ledger, stop: threading.Event) -> None:
    import grpc

    from serving.proto.recsys.v1 import recommender_pb2 as pb
    from serving.proto.recsys.v1 import recommender_pb2_grpc as pb_grpc

    channel = grpc.insecure_channel(target)
    stub = pb_grpc.RecommenderStub(channel)
    done: list[str] = []
    number = 0
    while not stop.is_set() and number < EVENTS_PER_USER:
        item = f"ev-{user}-{number}"
        request = pb.RecordInteractionsRequest(user_id=user, item_ids=[item], event_ids=[item])
        try:
            stub.RecordInteractions(request, timeout=1.0)
        except grpc.RpcError as err:
            with ledger.lock:
                ledger.codes[err.code().name] += 1
            if err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                time.sleep(0.05)
                try:
                    channel.close()
                except Exception:  # noqa: BLE001, S110 - a channel to a dead server
                    pass
                channel = grpc.insecure_channel(target)
                stub = pb_grpc.RecommenderStub(channel)
                continue  # the same event again, with the same id
            raise
        with ledger.lock:
            ledger.codes["OK"] += 1
        done.append(item)
        number += 1
        time.sleep(0.02)
    with ledger.lock:
        ledger.acknowledged[user] = done
    channel.close()


def _reader(
    target: str, user: str, stop: threading.Event, answers: list[tuple[float, bool]]
) -> None:
    import grpc

    from serving.proto.recsys.v1 import recommender_pb2 as pb
    from serving.proto.recsys.v1 import recommender_pb2_grpc as pb_grpc

    while not stop.is_set():
        try:
            with grpc.insecure_channel(target) as channel:
                stub = pb_grpc.RecommenderStub(channel)
                while not stop.is_set():
                    answer = stub.Recommend(pb.RecommendRequest(user_id=user, k=5), timeout=1.0)
                    answers.append((time.monotonic(), not answer.degraded))
                    time.sleep(0.01)
        except grpc.RpcError:
            answers.append((time.monotonic(), False))
            time.sleep(0.05)


def _audit(target: str, ledger: Ledger) -> dict[str, int]:
    import grpc

    from serving.proto.recsys.v1 import recommender_pb2 as pb
    from serving.proto.recsys.v1 import recommender_pb2_grpc as pb_grpc

    lost = duplicated = acknowledged = 0
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.RecommenderStub(channel)
        for user, items in ledger.acknowledged.items():
            stored = list(
                stub.GetUserHistory(pb.GetUserHistoryRequest(user_id=user), timeout=10).item_ids
            )
            counts = Counter(stored)
            acknowledged += len(items)
            lost += sum(1 for item in items if counts[item] == 0)
            duplicated += sum(n - 1 for n in counts.values() if n > 1)
    return {"acknowledged": acknowledged, "lost": lost, "duplicated": duplicated}


def _load(target: str, prefix: str) -> tuple[Ledger, threading.Event, list[Any], list[Any]]:
    ledger, stop = Ledger(), threading.Event()
    answers: list[tuple[float, bool]] = []
    threads = [
        threading.Thread(target=_writer, args=(target, f"{prefix}-{n}", ledger, stop))
        for n in range(WRITERS)
    ]
    threads.append(
        threading.Thread(target=_reader, args=(target, f"{prefix}-0", stop, answers), daemon=True)
    )
    for thread in threads:
        thread.start()
    return ledger, stop, threads, answers


def _finish(
    target: str, ledger: Ledger, stop: threading.Event, threads: list[threading.Thread]
) -> dict[str, int]:
    """Stop the load, wait for the writers (the reader is a daemon) and audit the histories."""
    stop.set()
    for thread in threads[:-1]:
        thread.join(timeout=60)
    return _audit(target, ledger)


def _first_good_after(answers: list[tuple[float, bool]], moment: float) -> float | None:
    later = [at for at, good in list(answers) if at >= moment and good]
    return round(later[0] - moment, 3) if later else None


def redis_outages(workdir: Path, artifact: Path) -> dict[str, Any]:
    from serving.store.embedded_redis import EmbeddedRedis, free_port

    port = free_port()
    redis = EmbeddedRedis(port=port, data_dir=workdir / "redis", fsync="always").start()
    server, target = start_server(
        artifact, redis.url, "chaos", None, ["--redis-retry-interval-s", "0.2"],
        workdir / "server-redis.log",
    )  # fmt: skip
    try:
        assert server.pid is not None and redis._process is not None
        rss_before = process_memory_mb(server.pid)
        ledger, stop, threads, answers = _load(target, "r")
        time.sleep(2)
        redis._process.send_signal(signal.SIGSTOP)
        time.sleep(5)
        redis._process.send_signal(signal.SIGCONT)
        resumed = time.monotonic()
        time.sleep(3)
        redis._process.send_signal(signal.SIGKILL)
        redis._process.wait()
        time.sleep(1)
        redis.start()
        restarted = time.monotonic()
        time.sleep(4)
        audit = _finish(target, ledger, stop, threads)
        rss_after = process_memory_mb(server.pid)
    finally:
        stop_server(server)
        redis.close()
    text = (workdir / "server-redis.log").read_text()
    return {
        "scenario": "Redis paused 5 s, then killed and restarted (server up throughout)",
        "codes": dict(ledger.codes),
        **audit,
        "first_stored_answer_after_resume_s": _first_good_after(answers, resumed),
        "first_stored_answer_after_restart_s": _first_good_after(answers, restarted),
        "outages_declared": text.count("feature store unavailable"),
        "rss_growth_mb": round(rss_after - rss_before, 1),
    }


def server_kill(workdir: Path, artifact: Path) -> dict[str, Any]:
    environment_home = workdir / "home"
    os.environ["XDG_DATA_HOME"] = str(environment_home)  # the servers' default --redis-dir
    extra = ["--redis-fsync", "always"]
    first, target = start_server(artifact, None, "chaos", None, extra, workdir / "server-1.log")
    ledger, stop, threads, answers = _load(target, "s")
    time.sleep(3)
    assert first.pid is not None
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    killed = time.monotonic()
    port = int(target.rsplit(":", 1)[1])
    second, _ = start_server(
        artifact, None, "chaos", None, extra, workdir / "server-2.log", port=port
    )
    try:
        back = time.monotonic()
        time.sleep(3)
        audit = _finish(target, ledger, stop, threads)
    finally:
        stop_server(second)
    return {
        "scenario": "server killed (SIGKILL) on its embedded store, fsync always, started again",
        "codes": dict(ledger.codes),
        **audit,
        "restart_s": round(back - killed, 2),
        "first_stored_answer_after_restart_s": _first_good_after(answers, back),
        "outages_declared": 0,
        "rss_growth_mb": None,
    }


FUZZ_METHODS: Final = (
    "Recommend", "RecommendBatch", "RecordInteractions", "GetUserHistory", "DeleteUserData",
    "GetModelInfo",
)  # fmt: skip


def fuzz(workdir: Path, artifact: Path, requests: int) -> dict[str, Any]:
    """``requests`` calls of random bytes (and truncated or bit-flipped valid requests) spread
    over every RPC: the status codes, tracebacks in the log, health after."""
    import random

    import grpc

    from pipelines.service.health import check_health
    from serving.proto.recsys.v1 import recommender_pb2 as pb
    from serving.store.embedded_redis import EmbeddedRedis

    rng = random.Random(0)
    valid = pb.RecommendRequest(user_id="u", history=["a", "b"], k=5, explain=True)
    seed = valid.SerializeToString()
    redis = EmbeddedRedis().start()
    server, target = start_server(artifact, redis.url, "fuzz", None, [], workdir / "fuzz.log")
    codes: Counter[str] = Counter()
    try:
        with grpc.insecure_channel(target) as channel:
            for number in range(requests):
                method = FUZZ_METHODS[number % len(FUZZ_METHODS)]
                kind = number % 3
                if kind == 0:
                    payload = rng.randbytes(rng.randrange(0, 300))
                elif kind == 1:
                    payload = seed[: rng.randrange(0, len(seed))]
                else:
                    flipped = bytearray(seed)
                    flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
                    payload = bytes(flipped)
                call = channel.unary_unary(
                    f"/recsys.v1.Recommender/{method}",
                    request_serializer=lambda raw: raw,
                    response_deserializer=lambda raw: raw,
                )
                try:
                    call(payload, timeout=10)
                    codes["OK"] += 1
                except grpc.RpcError as err:
                    codes[err.code().name] += 1
        healthy = check_health(target) == "SERVING"
    finally:
        stop_server(server)
        redis.close()
    text = (workdir / "fuzz.log").read_text()
    return {
        "requests": requests,
        "codes": dict(codes),
        "unknown_or_internal": codes["UNKNOWN"] + codes["INTERNAL"],
        "tracebacks_in_log": text.count("Traceback"),
        "healthy_after": healthy,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=REPO_ROOT / "bench" / "results")
    parser.add_argument("--fuzz", type=int, default=10_000, help="fuzzed requests")
    args = parser.parse_args()
    from recsys.io import atomic_write_text, write_json

    artifact = served_artifact()
    with tempfile.TemporaryDirectory(prefix="recsys-chaos-") as folder:
        fuzzed = fuzz(Path(folder), artifact, args.fuzz)
        log(f"fuzz: {fuzzed}")
        rows = [redis_outages(Path(folder), artifact)]
        log(f"redis outages: {rows[-1]}")
        rows.append(server_kill(Path(folder), artifact))
        log(f"server kill: {rows[-1]}")
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    args.results.mkdir(parents=True, exist_ok=True)
    write_json(args.results / f"{STEM}.json", {"updated": stamp, "fuzz": fuzzed, "rows": rows})
    lines = [
        "# Faults under load",
        "",
        f"{WRITERS} writers (one user each, one event a call, event ids, every unacknowledged "
        "call retried with the same ids) and a reader asking for recommendations. Lost: "
        "acknowledged but absent from the history; duplicated: present twice.",
        "",
        "| scenario | status codes seen | acknowledged | lost | duplicated | first answer from "
        "the stored history after recovery (s) | outages declared | server RSS growth MB |",
        "|---|---|---:|---:|---:|---|---:|---:|",
    ]
    for row in rows:
        recovery = row.get("first_stored_answer_after_restart_s")
        if "first_stored_answer_after_resume_s" in row:
            recovery = f"{row['first_stored_answer_after_resume_s']} (pause), {recovery} (kill)"
        lines.append(
            f"| {row['scenario']} | {row['codes']} | {row['acknowledged']} | {row['lost']} | "
            f"{row['duplicated']} | {recovery} | {row['outages_declared']} | "
            f"{row['rss_growth_mb']} |"
        )
    lines += [
        "",
        f"Fuzzing: {fuzzed['requests']:,} requests of random bytes, truncated and bit-flipped "
        f"valid requests over every RPC: status codes {fuzzed['codes']}; UNKNOWN or INTERNAL "
        f"{fuzzed['unknown_or_internal']}; tracebacks in the server log "
        f"{fuzzed['tracebacks_in_log']}; serving after: {fuzzed['healthy_after']}.",
        "",
        f"Updated {stamp}. Reproduce: `.venv/bin/python bench/chaos.py`.",
    ]
    atomic_write_text(args.results / f"{STEM}.md", "\n".join(lines) + "\n")
    log(f"wrote {args.results / STEM}.{{json,md}}")


if __name__ == "__main__":
    main()
