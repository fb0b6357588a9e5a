"""``recsys recommend``: ask a running server for one user's recommendations and print them."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from pipelines.console import console
from serving.client import (
    build_request,
    explanation_table,
    recommend,
    response_table,
    response_to_dict,
    split_ids,
)


def recommend_command(
    target: Annotated[str, typer.Option(help="Server address HOST:PORT.")] = "127.0.0.1:50051",
    user: Annotated[str | None, typer.Option(help="User id (its stored history is used).")] = None,
    history: Annotated[
        str | None, typer.Option(help="Recent item ids, comma-separated, newest last.")
    ] = None,
    k: Annotated[int, typer.Option("-k", "--k", help="How many items.")] = 10,
    exclude_seen: Annotated[
        bool, typer.Option(help="Never recommend an item of the history.")
    ] = True,
    exclude: Annotated[
        str | None, typer.Option(help="Item ids never to return, comma-separated.")
    ] = None,
    allow: Annotated[
        str | None, typer.Option(help="Recommend only among these item ids, comma-separated.")
    ] = None,
    explain: Annotated[
        bool, typer.Option(help="Show the history items that drove the answer.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    timeout: Annotated[float, typer.Option(help="Deadline of the call in seconds.")] = 10.0,
) -> None:
    """Ask a running `recsys serve` for recommendations; errors print the gRPC status name."""
    request = build_request(
        user,
        split_ids(history),
        k=k,
        exclude_seen=exclude_seen,
        exclude=split_ids(exclude),
        allow=split_ids(allow),
        explain=explain,
    )
    response = recommend(target, request, timeout)
    if as_json:
        print(json.dumps(response_to_dict(response)))
        return
    console.print(response_table(response), soft_wrap=True)
    drivers = explanation_table(response)
    if drivers is not None:
        console.print(drivers)
    if response.unknown_item_ids:
        console.print(f"ignored unknown item ids: {', '.join(response.unknown_item_ids)}")
