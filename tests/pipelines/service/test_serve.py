"""``recsys serve`` as a real process (signals, embedded Redis), ``recsys recommend`` and
``recsys load-features``."""

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
from grpc_health.v1 import health_pb2, health_pb2_grpc
from typer.testing import CliRunner

from pipelines.cli import app, main
from pipelines.jobs.load_features import run_load_features
from recsys.data import load_prepared
from recsys.errors import ConfigError
from recsys.export import load_artifact
from serving.errors import FeatureStoreUnavailable
from serving.proto.recsys.v1 import recommender_pb2 as pb
from serving.proto.recsys.v1 import recommender_pb2_grpc as pb_grpc
from serving.store.embedded_redis import free_port

if TYPE_CHECKING:
    from tests.serving.conftest import Artifacts, ServerHandle, StartServer


def _wait_serving(target: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
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


def test_recommend_command_prints_json_and_a_table(server: ServerHandle) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["recommend", "--target", server.target, "--history", "sku-1, sku-2", "-k", "4"]
        + ["--explain", "--json"],
    )
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert len(answer["items"]) == 4
    assert set(answer["items"][0]) == {"item_id", "score", "explanation"}
    assert answer["source"] == "model"
    assert {entry["item_id"] for entry in answer["items"][0]["explanation"]} == {"sku-1", "sku-2"}

    table = runner.invoke(app, ["recommend", "--target", server.target, "--user", "new", "-k", "2"])
    assert table.exit_code == 0, table.output
    assert "fallback (cold_start)" in table.output


def test_recommend_command_errors_print_the_status_name(
    server: ServerHandle, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["recsys", "recommend", "--target", server.target, "--user", "u1", "-k", "0"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith("error: INVALID_ARGUMENT: k: must be between 1 and 100"), stderr

    monkeypatch.setattr(
        sys,
        "argv",
        [
            "recsys",
            "recommend",
            "--target",
            f"127.0.0.1:{free_port()}",
            "--user",
            "u1",
            "--timeout",
            "2",
        ],
    )
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    assert capsys.readouterr().err.startswith("error: UNAVAILABLE:")


def test_load_features_fills_the_store_the_server_reads(
    artifacts: Artifacts, redis_url: str, namespace: str, start_server: StartServer
) -> None:
    summary = run_load_features(
        artifacts.data, redis_url, namespace=namespace, max_history=5, batch_users=50
    )
    dataset = load_prepared(artifacts.data)
    assert summary["users"] == dataset.num_users
    events = dataset.interactions.filter(dataset.interactions["user_idx"] == 1)
    item_of = dict(
        zip(
            dataset.items.table["item_idx"].to_list(),
            dataset.items.table["item_id"].to_list(),
            strict=True,
        )
    )
    user_id = str(dataset.users.table.filter(dataset.users.table["user_idx"] == 1)["user_id"][0])
    newest = [str(item_of[index]) for index in events["item_idx"].to_list()[-5:]]

    server = start_server(max_history=5)
    stored = server.stub.GetUserHistory(pb.GetUserHistoryRequest(user_id=user_id), timeout=5)
    assert (list(stored.item_ids), stored.history_version) == (newest, 1)
    answer = server.stub.Recommend(pb.RecommendRequest(user_id=user_id, k=3), timeout=5)
    assert (answer.source, answer.history_length) == (pb.SOURCE_MODEL, 5)
    assert server.stub.Recommend(pb.RecommendRequest(user_id=user_id, k=3)).source == (
        pb.SOURCE_CACHE
    )

    run_load_features(artifacts.data, redis_url, namespace=namespace, max_history=5)
    again = server.stub.Recommend(pb.RecommendRequest(user_id=user_id, k=3), timeout=5)
    assert (again.source, again.history_version) == (pb.SOURCE_MODEL, 2)


def test_load_features_errors_name_the_problem(artifacts: Artifacts, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--redis-url"):
        run_load_features(artifacts.data, "http://localhost:6379", progress=False)
    with pytest.raises(ConfigError, match="--namespace"):
        run_load_features(artifacts.data, "redis://127.0.0.1:1/0", namespace="a b")
    closed = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(FeatureStoreUnavailable, match="Redis failed after 0 users"):
        run_load_features(artifacts.data, closed, progress=False)
    with pytest.raises(Exception, match="recsys prepare"):
        run_load_features(tmp_path / "missing", closed, progress=False)
