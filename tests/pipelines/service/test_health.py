"""``recsys health`` (and ``python -m pipelines.service.health``, the container's HEALTHCHECK)
against a real server on a free port."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
from grpc_health.v1 import health_pb2
from typer.testing import CliRunner

from pipelines.cli import app
from serving.server import FEATURE_STORE_HEALTH, SERVICE_NAME
from serving.store.embedded_redis import free_port

if TYPE_CHECKING:
    from tests.servers import ServerHandle


@pytest.mark.parametrize("service", ["", SERVICE_NAME, FEATURE_STORE_HEALTH])
def test_health_command_says_serving_and_exits_0(shared_server: ServerHandle, service: str) -> None:
    result = CliRunner().invoke(
        app, ["health", "--target", shared_server.target, "--service", service]
    )
    assert (result.exit_code, result.stdout) == (0, "SERVING\n"), result.output


def test_health_command_exits_1_for_an_unknown_service(shared_server: ServerHandle) -> None:
    args = ["health", "--target", shared_server.target, "--service", "nope"]
    unknown = CliRunner().invoke(app, args)
    assert unknown.exit_code == 1
    assert unknown.stderr.startswith("error: NOT_FOUND"), unknown.output


def test_health_command_exits_1_when_not_serving(server: ServerHandle) -> None:
    server.call(server.app.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING))
    down = CliRunner().invoke(app, ["health", "--target", server.target])
    assert (down.exit_code, down.stdout) == (1, "NOT_SERVING\n"), down.output


def test_health_command_exits_1_when_unreachable() -> None:
    closed = f"127.0.0.1:{free_port()}"
    gone = CliRunner().invoke(app, ["health", "--target", closed, "--timeout", "2"])
    assert gone.exit_code == 1
    assert gone.stderr.startswith("error: UNAVAILABLE"), gone.output


def test_module_probe_is_the_same_check_without_torch(shared_server: ServerHandle) -> None:
    """The HEALTHCHECK command as a process: exit 0 on a serving server, and no torch import."""
    probe = [sys.executable, "-m", "pipelines.service.health", "--target", shared_server.target]
    done = subprocess.run(probe, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, "SERVING\n"), done.stderr

    imports = "import sys, pipelines.service.health; print('torch' in sys.modules)"
    lean = subprocess.run([sys.executable, "-c", imports], capture_output=True, text=True)
    assert lean.stdout.strip() == "False", lean.stderr
