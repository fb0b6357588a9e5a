"""docker-compose.yml, the Dockerfile and the one-shot job script, checked against the real CLI.

No Docker here: the compose file and the Dockerfile are parsed, every ``recsys`` command line they
hold is parsed by the real ``recsys`` command (a renamed or removed flag fails), and the job script
runs under bash with a stand-in ``recsys`` that records its arguments. A slow test runs the job
for real (embedded Redis instead of the ``redis`` service), then the server with the compose
command line, the health check and a request from the "host".
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer
import yaml
from typer.testing import CliRunner

from pipelines.cli import app

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
JOB_SCRIPT = ROOT / "pipelines" / "jobs" / "docker_job.sh"
CLI = typer.main.get_command(app)


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def parse_recsys(argv: list[str]) -> dict[str, Any]:
    """``{flag: parsed value}`` of ``recsys SUB ARGS...`` (every option, defaults included);
    an unknown flag, a bad value or a missing required option raises."""
    sub, *args = argv
    command = CLI.get_command(CLI.context_class(CLI), sub)  # type: ignore[attr-defined]
    assert command is not None, f"recsys has no subcommand {sub!r}"
    params = command.make_context(f"recsys {sub}", list(args)).params
    return {max(p.opts, key=len): params[p.name] for p in command.params if p.name in params}


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order; continuation lines joined, comments dropped."""
    lines = [ln for ln in DOCKERFILE.read_text().splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [
        (word.upper(), rest.strip())
        for word, _, rest in (ln.strip().partition(" ") for ln in joined.splitlines())
        if word
    ]


def instruction(name: str) -> list[str]:
    return [rest for word, rest in dockerfile() if word == name]


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${NAME:-default}`` (the only form used in the file) with ``env``."""
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: env.get(m[1]) or m[2], value)


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m)", duration)
    assert match, duration
    return int(match[1]) * {"ms": 0.001, "s": 1.0, "m": 60.0}[match[2]]


def server_argv() -> list[str]:
    """The server's ``recsys`` arguments: the service's command after the image's entrypoint."""
    entrypoint = json.loads(instruction("ENTRYPOINT")[-1])
    assert entrypoint == ["recsys"]
    return [str(arg) for arg in services()["server"]["command"]]


def health_probe_args(test: list[str]) -> list[str]:
    """The arguments of a ``python -m pipelines.service.health ...`` check (CMD form)."""
    assert test[:4] == ["CMD", "python", "-m", "pipelines.service.health"], test
    return test[4:]


# --- the compose file ---------------------------------------------------------------------------


def test_the_services_redis_pipeline_server_and_monitoring() -> None:
    assert set(services()) == {"redis", "pipeline", "server", "prometheus", "grafana"}
    for name in ("prometheus", "grafana"):  # on the host's loopback only, like the server
        assert all(port.startswith("127.0.0.1:") for port in services()[name]["ports"])
    redis = services()["redis"]
    assert redis["image"] == "redis:7-alpine"
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


def test_pipeline_and_server_run_the_image_built_from_this_repo() -> None:
    pipeline, server = services()["pipeline"], services()["server"]
    for service in (pipeline, server):
        assert service["build"] == "."
        assert (ROOT / service["build"] / "Dockerfile").is_file()
    assert pipeline["image"] == server["image"]


def test_start_order_redis_healthy_then_job_completed_then_server() -> None:
    pipeline, server = services()["pipeline"], services()["server"]
    assert pipeline["depends_on"] == {"redis": {"condition": "service_healthy"}}
    assert server["depends_on"]["redis"] == {"condition": "service_healthy"}
    assert server["depends_on"]["pipeline"] == {"condition": "service_completed_successfully"}
    assert pipeline["restart"] == "no"


def test_server_command_is_accepted_by_recsys_serve() -> None:
    server = services()["server"]
    params = parse_recsys(server_argv())
    assert params["--host"] == "0.0.0.0"
    assert params["--redis-url"] == "redis://redis:6379/0"
    assert urlsplit(params["--redis-url"]).hostname in services()  # the redis service
    # Published on the host's loopback only: this server has no TLS and no tokens.
    assert f"127.0.0.1:{params['--port']}:{params['--port']}" in server["ports"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in server["volumes"]}
    artifact = Path(params["--artifact"])
    assert mounts[str(artifact.parent)] == "artifacts"  # the job's named volume
    assert "artifacts" in compose()["volumes"]
    assert server["stop_signal"] == "SIGTERM"
    assert seconds(server["stop_grace_period"]) > params["--grace-s"], "SIGKILL before the drain"


def test_server_health_check_probes_the_served_port_with_the_real_command() -> None:
    server = services()["server"]
    port = parse_recsys(server_argv())["--port"]
    probe = parse_recsys(["health", *health_probe_args(server["healthcheck"]["test"])])
    assert probe["--target"] == f"127.0.0.1:{port}"
    assert seconds(server["healthcheck"]["timeout"]) > probe["--timeout"]
    # The image's own check is for the server; the one-shot job switches it off.
    assert services()["pipeline"]["healthcheck"] == {"disable": True}


# --- the Dockerfile -----------------------------------------------------------------------------


def test_dockerfile_installs_cpu_torch_first_then_the_project_and_runs_recsys() -> None:
    steps = dockerfile()
    assert steps[0] == ("FROM", "python:3.11-slim")
    runs = [rest for word, rest in steps if word == "RUN"]
    torch = next(i for i, r in enumerate(runs) if "torch==2.13.0" in r)
    assert "--index-url https://download.pytorch.org/whl/cpu" in runs[torch]
    project = next(i for i, r in enumerate(runs) if re.search(r"pip install \.(\s|$)", r))
    assert torch < project
    assert "[dev]" not in runs[project]
    assert steps[-1] == ("ENTRYPOINT", '["recsys"]')
    user = next(i for i, (word, _) in enumerate(steps) if word == "USER")
    assert steps[user][1] not in {"root", "0"}
    assert user < len(steps) - 1


def test_dockerfile_copies_every_package_pip_installs() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]]
    copied = " ".join(instruction("COPY"))
    for needed in [*packages, "pyproject.toml", project["project"]["readme"]]:
        assert needed in copied, f"the image does not copy {needed}"


def test_dockerfile_health_check_uses_the_grpc_health_probe() -> None:
    (check,) = instruction("HEALTHCHECK")
    options, _, command = check.partition("CMD ")
    probe = parse_recsys(["health", *health_probe_args(["CMD", *json.loads(command)])])
    assert probe["--target"] == "127.0.0.1:50051"
    assert "--start-period" in options


def test_job_script_is_where_the_image_puts_it() -> None:
    (workdir,) = instruction("WORKDIR")
    assert any(rest.split()[0] == "pipelines" for rest in instruction("COPY"))
    entrypoint = services()["pipeline"]["entrypoint"]
    assert entrypoint == ["bash", f"{workdir}/{JOB_SCRIPT.relative_to(ROOT)}"]


def test_dockerignore_keeps_environments_and_outputs_out_of_the_context() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", "runs", "bench/.work", ".git"} <= ignored
    assert not ignored & {"README.md", "pyproject.toml", "recsys", "pipelines", "serving"}


# --- the one-shot job script --------------------------------------------------------------------


def run_job(
    tmp_path: Path, extra_env: dict[str, str], fail_on: str = ""
) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    """Run the job script as compose runs it, with a stand-in ``recsys`` that records its argv."""
    record = tmp_path / "calls.jsonl"
    record.unlink(missing_ok=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stub = bin_dir / "recsys"
    stub.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "with open(os.environ['RECORD'], 'a') as f:\n"
        "    f.write(json.dumps(sys.argv[1:]) + '\\n')\n"
        "sys.exit(3 if sys.argv[1] == os.environ['FAIL_ON'] else 0)\n"
    )
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    pipeline = services()["pipeline"]
    env = {
        key: interpolate(str(value), extra_env) for key, value in pipeline["environment"].items()
    }
    env |= {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "RECORD": str(record),
        "FAIL_ON": fail_on,
    }
    done = subprocess.run(
        ["bash", str(JOB_SCRIPT)], env=env, capture_output=True, text=True, timeout=60
    )
    calls = (
        [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []
    )
    return done, calls


def test_job_script_is_strict_bash() -> None:
    text = JOB_SCRIPT.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "\nset -euo pipefail\n" in text


def test_job_script_chains_the_steps_with_flags_the_cli_accepts(tmp_path: Path) -> None:
    done, calls = run_job(tmp_path, {})
    assert done.returncode == 0, done.stderr
    assert [call[0] for call in calls] == ["synth", "prepare", "train", "export", "load-features"]
    synth, prepare, train, export, load = (parse_recsys(call) for call in calls)

    artifacts = services()["pipeline"]["environment"]["RECSYS_ARTIFACTS"]
    assert f"artifacts:{artifacts}" in services()["pipeline"]["volumes"]
    assert synth["--out"] == prepare["--input"]
    assert str(synth["--out"]).startswith(f"{artifacts}/")
    assert train["--data"] == prepare["--out"] == export["--data"] == load["--data"]
    assert export["--checkpoint"] == train["--out"] / "checkpoints" / "best.ckpt"
    # The demo config ships in the image; the server serves what the job exports into the volume,
    # with the Redis the job loaded.
    assert train["--config"] == ROOT / "pipelines" / "configs" / "demo.yaml"
    serve = parse_recsys(server_argv())
    assert export["--out"] == serve["--artifact"]
    assert load["--redis-url"] == serve["--redis-url"]
    assert (load["--namespace"], load["--max-history"]) == (
        serve["--namespace"],
        serve["--max-history"],
    )
    assert all(step["--overwrite"] for step in (synth, prepare, train, export)), (
        "a re-run must work"
    )


def test_job_script_reads_your_own_log_and_passes_extra_flags(tmp_path: Path) -> None:
    log = tmp_path / "events.csv"
    log.write_text("user_id,item_id,timestamp\n")
    env = {
        "RECSYS_LOG": str(log),
        "RECSYS_PREPARE_ARGS": "--format csv --min-user-interactions 2",
        "RECSYS_TRAIN_ARGS": "--max-epochs 2",
    }
    done, calls = run_job(tmp_path, env)
    assert done.returncode == 0, done.stderr
    assert [call[0] for call in calls] == ["prepare", "train", "export", "load-features"]
    prepare, train = parse_recsys(calls[0]), parse_recsys(calls[1])
    assert (prepare["--input"], prepare["--format"]) == (log, "csv")
    assert prepare["--min-user-interactions"] == 2  # the user's flag wins over the default
    assert train["--max-epochs"] == 2

    done, calls = run_job(tmp_path, {"RECSYS_LOG": "missing.csv"})
    assert (done.returncode, calls) == (2, [])
    assert "error: RECSYS_LOG: no file at /input/missing.csv" in done.stderr


def test_job_script_stops_at_the_first_failing_step(tmp_path: Path) -> None:
    done, calls = run_job(tmp_path, {}, fail_on="train")
    assert done.returncode == 3
    assert [call[0] for call in calls] == ["synth", "prepare", "train"]


def test_compose_env_defaults_are_empty_so_the_job_synthesizes() -> None:
    env = services()["pipeline"]["environment"]
    for name in ("RECSYS_LOG", "RECSYS_PREPARE_ARGS", "RECSYS_TRAIN_ARGS"):
        assert interpolate(env[name], {}) == ""
    volume = next(v for v in services()["pipeline"]["volumes"] if v.endswith(":/input:ro"))
    assert interpolate(volume, {}) == ".:/input:ro"


# --- the whole thing, without Docker ------------------------------------------------------------


@pytest.mark.slow
def test_job_then_server_end_to_end(tmp_path: Path) -> None:
    """The real job (a small log of your own, one epoch) into an embedded Redis, then ``recsys
    serve`` with the compose command line, its health check and ``recsys recommend`` for a user."""
    import polars as pl

    from recsys.data.synthetic import SynthConfig, generate_log
    from serving.store.embedded_redis import EmbeddedRedis, free_port

    log = tmp_path / "input" / "events.csv"
    log.parent.mkdir()
    generate_log(SynthConfig(n_users=150, n_items=60, n_events=3_000, seed=1)).write_csv(log)
    artifacts = tmp_path / "artifacts"
    redis = EmbeddedRedis().start()
    try:
        env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "RECSYS_ARTIFACTS": str(artifacts),
            "RECSYS_REDIS_URL": redis.url,
            "RECSYS_LOG": str(log),
            "RECSYS_TRAIN_ARGS": "--max-epochs 1 --hidden-size 16 --accelerator cpu",
        }
        workdir = tmp_path / "workdir"  # the image's /app is not writable by its user
        workdir.mkdir()
        job = subprocess.run(
            ["bash", str(JOB_SCRIPT)],
            env=env,
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert job.returncode == 0, job.stdout + job.stderr
        assert not list(workdir.iterdir()), "the job wrote into its working directory"
        user = str(pl.read_parquet(artifacts / "data" / "users.parquet")["user_id"][0])

        port = free_port()
        argv = server_argv()
        replace = {"--artifact": str(artifacts / "artifact"), "--port": str(port)}
        replace["--redis-url"] = redis.url
        replace["--metrics-port"] = str(free_port())
        replace["--auth-token-file"] = str(artifacts / "tokens")
        for flag, value in replace.items():
            argv[argv.index(flag) + 1] = value
        served = tmp_path / "serve.log"
        with served.open("wb") as out:
            server = subprocess.Popen(
                [sys.executable, "-m", "pipelines.cli", *argv],
                stdout=out,
                stderr=out,
                cwd=workdir,
            )
        try:
            probe = health_probe_args(services()["server"]["healthcheck"]["test"])
            probe = [arg.replace(":50051", f":{port}") for arg in probe]
            _wait_healthy(probe, server, served)
            refused = CliRunner().invoke(
                app, ["recommend", "--target", f"localhost:{port}", "--user", user]
            )
            assert refused.exit_code != 0  # no token: refused
            assert "UNAUTHENTICATED" in f"{refused.output}{refused.exception}"
            tokens = artifacts / "tokens"
            assert oct(tokens.stat().st_mode & 0o777) == "0o600"
            assert [line.split(":")[0] for line in tokens.read_text().split()] == ["read", "write"]
            answer = CliRunner().invoke(
                app,
                ["recommend", "--target", f"localhost:{port}", "--user", user, "--json",
                 "--auth-token-file", str(tokens)],
            )  # fmt: skip
            assert answer.exit_code == 0, answer.output
            reply = json.loads(answer.stdout)
            assert reply["source"] == "model" and reply["history_length"] > 0, reply
            server.terminate()
            assert server.wait(timeout=60) == 0, served.read_text()
            assert not list(workdir.iterdir()), "the server wrote into its working directory"
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
    finally:
        redis.close()


def _wait_healthy(probe: list[str], server: subprocess.Popen[bytes], log: Path) -> None:
    """Run the health check as Docker would until it answers 0 (the server dying fails)."""
    command = [sys.executable, "-m", "pipelines.service.health", *probe]
    deadline = time.monotonic() + 120
    while subprocess.run(command, capture_output=True, timeout=30).returncode != 0:
        assert server.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.5)


MONITORING = ROOT / "serving" / "monitoring"


def served_metric_names() -> set[str]:
    """Every series name the server can expose (the registry of a real ``ServerMetrics``)."""
    from serving.metrics import SNAPSHOT_METRICS, ServerMetrics

    metrics = ServerMetrics()
    metrics.watch(lambda: dict.fromkeys(SNAPSHOT_METRICS, 0.0))
    names = set()
    for family in metrics.registry.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}
        names |= {
            family.name + s
            for s in suffixes.get(family.type, ["_info"] * (family.type == "info") or [""])
        }
    return names


def test_prometheus_scrapes_the_servers_metrics_port() -> None:
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    (target,) = job["static_configs"][0]["targets"]
    host, port = target.split(":")
    server = services()[host]
    params = parse_recsys(server_argv())
    assert int(params["--metrics-port"]) == int(port)
    assert port in server["expose"]
    assert job["metrics_path"] == "/metrics"
    mounted = [v.split(":")[0] for v in services()["prometheus"]["volumes"]]
    assert "./serving/monitoring/prometheus.yml" in mounted


def test_every_dashboard_query_reads_metrics_the_server_exposes() -> None:
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    names = served_metric_names()
    queried = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            queried |= set(re.findall(r"\brecsys_[a-z_]+", target["expr"]))
    assert queried, "the dashboard queries nothing"
    assert queried <= names, f"not exposed by the server: {sorted(queried - names)}"
    for volume in services()["grafana"]["volumes"]:
        assert (ROOT / volume.split(":")[0]).is_file(), volume
