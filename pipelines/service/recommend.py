"""``recsys recommend``: ask a running server for one user's recommendations and print them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from pydantic import Field

from pipelines.console import console
from pipelines.options import Option, config_command
from recsys.config import Config
from serving.client import (
    build_request,
    explanation_table,
    recommend,
    response_table,
    response_to_dict,
    split_ids,
)


class RecommendSettings(Config):
    """One recommendation request and where ``recsys recommend`` sends it."""

    target: str = "127.0.0.1:50051"
    """Server address HOST:PORT."""
    user: str | None = None
    """User id (its stored history is used)."""
    history: str | None = None
    """Recent item ids, comma-separated, newest last."""
    k: int = 10
    """How many items."""
    exclude_seen: bool = True
    """Never recommend an item of the history."""
    exclude: str | None = None
    """Item ids never to return, comma-separated."""
    allow: str | None = None
    """Recommend only among these item ids, comma-separated."""
    explain: bool = False
    """Show the history items that drove the answer."""
    timeout: float = Field(10.0, gt=0)
    """Deadline of the call in seconds."""
    tls_ca: str | None = None
    """PEM CA bundle to check the server's TLS certificate against (TLS on when given)."""
    auth_token_file: str | None = None
    """A file whose first line is the bearer token to send."""
    tls_client_cert: str | None = None
    """PEM certificate to present where the server asks for one (mutual TLS)."""
    tls_client_key: str | None = None
    """PEM private key of --tls-client-cert."""


def _recommend(settings: RecommendSettings, as_json: bool) -> None:
    request = build_request(
        settings.user,
        split_ids(settings.history),
        k=settings.k,
        exclude_seen=settings.exclude_seen,
        exclude=split_ids(settings.exclude),
        allow=split_ids(settings.allow),
        explain=settings.explain,
    )
    response = recommend(
        settings.target,
        request,
        settings.timeout,
        Path(settings.tls_ca) if settings.tls_ca else None,
        Path(settings.auth_token_file) if settings.auth_token_file else None,
        Path(settings.tls_client_cert) if settings.tls_client_cert else None,
        Path(settings.tls_client_key) if settings.tls_client_key else None,
    )
    if as_json:
        print(json.dumps(response_to_dict(response)))
        return
    console.print(response_table(response), soft_wrap=True)
    drivers = explanation_table(response)
    if drivers is not None:
        console.print(drivers)
    if response.unknown_item_ids:
        console.print(f"ignored unknown item ids: {', '.join(response.unknown_item_ids)}")


recommend_command = config_command(
    RecommendSettings,
    _recommend,
    [
        Option(
            "as_json",
            Annotated[bool, typer.Option("--json", help="Print one JSON object.")],
            False,
        )
    ],
    doc="Ask a running `recsys serve` for recommendations; errors print the gRPC status name.",
)
