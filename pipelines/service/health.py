"""``recsys health``: ask a running server's gRPC health service whether it serves.

Exit status 0 when the service is SERVING, 1 otherwise (NOT_SERVING, unknown service, server
unreachable or too slow) — the convention of Docker's HEALTHCHECK, for which 2 is reserved.

The container health check runs this module directly (``python -m pipelines.service.health --target
127.0.0.1:50051``): it imports only gRPC, not torch or the training stack that ``recsys`` loads
for its other commands, so a probe every few seconds costs a fraction of a second of CPU.
"""

from __future__ import annotations

import sys
from pathlib import Path

import grpc
import typer
from grpc_health.v1 import health_pb2
from pydantic import Field

from pipelines.options import config_command
from recsys.config import Config
from serving.client import RemoteError
from serving.security import client_channel

EXIT_UNHEALTHY = 1


def check_health(
    target: str, service: str = "", timeout_s: float = 3.0, tls_ca: Path | None = None
) -> str:
    """The serving status name (``SERVING``, ``NOT_SERVING``, ...) of ``service`` at ``target``.

    An error status (UNAVAILABLE when nothing answers, NOT_FOUND for an unknown service,
    DEADLINE_EXCEEDED) raises ``RemoteError``.
    """
    with client_channel(target, tls_ca) as channel:
        # The method itself: the HealthStub type stubs declare no Check.
        check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        try:
            response: health_pb2.HealthCheckResponse = check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
            )
        except grpc.RpcError as err:
            raise RemoteError(err.code(), err.details() or "") from None
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


class HealthSettings(Config):
    """Which server and service ``recsys health`` asks, and how long it waits."""

    target: str = "127.0.0.1:50051"
    """Server address HOST:PORT."""
    service: str = ""
    """Health service name: "" (the server), recsys.v1.Recommender, or
    recsys.v1.Recommender/feature-store (follows Redis)."""
    timeout: float = Field(3.0, gt=0)
    """Deadline of the call in seconds."""
    tls_ca: str | None = None
    """PEM CA bundle to check the server's TLS certificate against (TLS on when given)."""


def _health(settings: HealthSettings) -> None:
    try:
        status = check_health(
            settings.target,
            settings.service,
            settings.timeout,
            Path(settings.tls_ca) if settings.tls_ca else None,
        )
    except RemoteError as err:
        print(f"error: {err}", file=sys.stderr)
        raise typer.Exit(EXIT_UNHEALTHY) from None
    print(status)
    if status != "SERVING":
        raise typer.Exit(EXIT_UNHEALTHY)


health_command = config_command(
    HealthSettings,
    _health,
    [],
    doc="""Check a running `recsys serve` through the gRPC health service: prints its status; exit
    status 0 when SERVING, 1 otherwise (the HEALTHCHECK convention).""",
)


if __name__ == "__main__":  # the container health check: no torch import, so it is cheap
    typer.run(health_command)
