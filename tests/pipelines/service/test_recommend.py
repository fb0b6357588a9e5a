"""``recsys recommend`` against a real server: JSON, a table, and errors named by their status."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from typer.testing import CliRunner

from pipelines.cli import app
from serving.store.embedded_redis import free_port

if TYPE_CHECKING:
    from tests.pipelines.conftest import MainExit
    from tests.servers import ServerHandle


def test_recommend_command_prints_json(shared_server: ServerHandle) -> None:
    result = CliRunner().invoke(
        app,
        ["recommend", "--target", shared_server.target, "--history", "sku-1, sku-2", "-k", "4"]
        + ["--explain", "--json"],
    )
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert len(answer["items"]) == 4
    assert set(answer["items"][0]) == {"item_id", "score", "explanation"}
    assert answer["source"] == "model"
    assert {entry["item_id"] for entry in answer["items"][0]["explanation"]} == {"sku-1", "sku-2"}


def test_recommend_command_prints_a_table(shared_server: ServerHandle) -> None:
    table = CliRunner().invoke(
        app, ["recommend", "--target", shared_server.target, "--user", "new", "-k", "2"]
    )
    assert table.exit_code == 0, table.output
    assert "fallback (cold_start)" in table.output


def test_a_refused_request_prints_its_status_name(
    shared_server: ServerHandle, main_exit: MainExit
) -> None:
    args = ["recommend", "--target", shared_server.target, "--user", "u1", "-k", "0"]
    stderr = main_exit(*args).err
    assert stderr.startswith("error: INVALID_ARGUMENT: k: must be between 1 and 100"), stderr


def test_an_unreachable_server_prints_unavailable(main_exit: MainExit) -> None:
    target = f"127.0.0.1:{free_port()}"
    stderr = main_exit("recommend", "--target", target, "--user", "u1", "--timeout", "2").err
    assert stderr.startswith("error: UNAVAILABLE:"), stderr
