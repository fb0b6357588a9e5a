"""``recsys serve`` as a real process: an embedded Redis, a reload on SIGHUP, a drain on SIGTERM."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from grpc_health.v1 import health_pb2

from recsys.export import load_artifact
from serving.proto.recsys.v1 import recommender_pb2 as pb
from serving.proto.recsys.v1 import recommender_pb2_grpc as pb_grpc
from serving.store.embedded_redis import free_port
from tests.servers import health_stub

if TYPE_CHECKING:
    from tests.servers import Artifacts


def _wait_serving(target: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    with grpc.insecure_channel(target) as channel:
        stub = health_stub(channel)
        while True:
            assert process.poll() is None, log.read_text()
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)


def _replace_folder(source: Path, target: Path) -> None:
    """Swap ``target`` for a copy of ``source`` the way a re-export does (rename into place)."""
    staging = target.parent / f".{target.name}.new"
    shutil.copytree(source, staging)
    retired = target.parent / f".{target.name}.old"
    os.rename(target, retired)
    os.rename(staging, target)
    shutil.rmtree(retired)


@pytest.mark.slow
def test_serve_process_reloads_on_sighup_and_drains_on_sigterm(
    artifacts: Artifacts, tmp_path: Path
) -> None:
    served = tmp_path / "artifact"
    shutil.copytree(artifacts.first, served)
    port = free_port()
    target = f"127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    command = [sys.executable, "-m", "pipelines.cli", "serve", "--artifact", str(served)]
    command += ["--port", str(port), "--max-wait-ms", "300", "--grace-s", "10"]
    with log.open("wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        _wait_serving(target, process, log)
        assert "embedded Redis" in log.read_text()

        with grpc.insecure_channel(target) as channel:
            stub = pb_grpc.RecommenderStub(channel)
            _replace_folder(artifacts.second, served)
            process.send_signal(signal.SIGHUP)
            second = load_artifact(artifacts.second).model_version
            deadline = time.monotonic() + 30
            while stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=5).model_version != second:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)

            in_flight = stub.Recommend.future(
                pb.RecommendRequest(history=["sku-1", "sku-2"], k=3), timeout=10
            )
            time.sleep(0.1)  # the request now waits in the micro-batcher (300 ms)
            process.send_signal(signal.SIGTERM)
            answer = in_flight.result()
            assert len(answer.items) == 3
            assert answer.model_version == second
        assert process.wait(timeout=30) == 0, log.read_text()
        text = log.read_text()
        assert "shutting down" in text and "server stopped" in text
        assert "model forwards: 1 inter-op thread(s), 1 intra-op thread(s)" in text
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _start_serve(
    artifact: Path, port: int, log: Path, data_home: Path, *extra: str
) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "pipelines.cli", "serve", "--artifact", str(artifact)]
    command += ["--port", str(port), "--redis-fsync", "always", *extra]
    environment = {**os.environ, "XDG_DATA_HOME": str(data_home)}
    with log.open("wb") as log_file:
        return subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=environment)


@pytest.mark.slow
def test_the_default_store_keeps_acknowledged_writes_through_a_kill(
    artifacts: Artifacts, tmp_path: Path
) -> None:
    """kill -9 of the server (its embedded Redis gets SIGTERM from the kernel): every write it
    acknowledged is there when it starts again; a clean stop leaves no temporary folder."""
    port = free_port()
    target = f"127.0.0.1:{port}"
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    process = _start_serve(artifacts.first, port, first_log, tmp_path / "home")
    try:
        _wait_serving(target, process, first_log)
        assert f"persisted to {tmp_path / 'home' / 'recsys' / 'redis'}" in first_log.read_text()
        with grpc.insecure_channel(target) as channel:
            stub = pb_grpc.RecommenderStub(channel)
            for index in range(20):
                stub.RecordInteractions(
                    pb.RecordInteractionsRequest(user_id="durable", item_ids=[f"sku-{index}"]),
                    timeout=5,
                )
        process.kill()
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    process = _start_serve(
        artifacts.first, port, second_log, tmp_path / "home", "--log-format", "json"
    )
    try:
        _wait_serving(target, process, second_log)
        with grpc.insecure_channel(target) as channel:
            stub = pb_grpc.RecommenderStub(channel)
            history = stub.GetUserHistory(pb.GetUserHistoryRequest(user_id="durable"), timeout=5)
        assert list(history.item_ids) == [f"sku-{index}" for index in range(20)]
        assert history.history_version == 20
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0
    lines = [json.loads(line) for line in second_log.read_text().splitlines() if line.strip()]
    assert {"time", "level", "logger", "event"} <= set(lines[-1])  # every line is JSON
    assert any(line.get("model_version") for line in lines)
    started = next(line["event"] for line in lines if "embedded Redis" in line["event"])
    socket_path = started.split("unix://")[1].split(",")[0].split()[0]
    assert not Path(socket_path).parent.exists()
