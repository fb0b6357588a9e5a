"""A small client of the Recommender service (``recsys recommend``) and answer formatting."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from rich.console import Group
from rich.table import Table
from rich.text import Text

from recsys.errors import RecsysError
from serving.proto.recsys.v1 import recommender_pb2 as pb
from serving.proto.recsys.v1 import recommender_pb2_grpc as pb_grpc
from serving.security import call_metadata, client_channel


class RemoteError(RecsysError):
    """The server answered with an error status; the message starts with the status name."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code


def build_request(
    user: str | None,
    history: Sequence[str] = (),
    k: int = 10,
    exclude_seen: bool = True,
    exclude: Sequence[str] = (),
    allow: Sequence[str] = (),
    explain: bool = False,
) -> pb.RecommendRequest:
    return pb.RecommendRequest(
        user_id=user or "",
        history=list(history),
        k=k,
        exclude_seen=exclude_seen,
        exclude=list(exclude),
        allow=list(allow),
        explain=explain,
    )


def recommend(
    target: str,
    request: pb.RecommendRequest,
    timeout_s: float = 10.0,
    tls_ca: Path | None = None,
    token_file: Path | None = None,
    client_cert: Path | None = None,
    client_key: Path | None = None,
) -> pb.RecommendResponse:
    """One Recommend call over a fresh channel (TLS checked against ``tls_ca``; the first
    token of ``token_file`` as a bearer token); an error status raises ``RemoteError``."""
    metadata = call_metadata(token_file)
    with client_channel(target, tls_ca, client_cert, client_key) as channel:
        stub = pb_grpc.RecommenderStub(channel)
        try:
            return stub.Recommend(request, timeout=timeout_s, metadata=metadata)
        except grpc.RpcError as err:
            raise RemoteError(err.code(), err.details() or "") from None


def split_ids(text: str | None) -> list[str]:
    """``"a, b,c"`` -> ``["a", "b", "c"]``; None or "" -> []."""
    if not text:
        return []
    return [part.strip() for part in text.split(",") if part.strip()]


def response_to_dict(response: pb.RecommendResponse) -> dict[str, Any]:
    """The answer as plain JSON-able data: ``items`` [{item_id, score[, explanation]}], ..."""
    items: list[dict[str, Any]] = []
    for item in response.items:
        entry: dict[str, Any] = {"item_id": item.item_id, "score": round(item.score, 6)}
        if item.explanation:
            entry["explanation"] = [
                {"item_id": e.item_id, "weight": round(e.weight, 6), "position": e.position}
                for e in item.explanation
            ]
        items.append(entry)
    out: dict[str, Any] = {
        "items": items,
        "model_version": response.model_version,
        "source": pb.Source.Name(response.source).removeprefix("SOURCE_").lower(),
        "history_version": response.history_version,
        "history_length": response.history_length,
        "degraded": response.degraded,
        "unknown_item_ids": list(response.unknown_item_ids),
    }
    if response.source == pb.SOURCE_FALLBACK:
        reason = pb.FallbackReason.Name(response.fallback_reason)
        out["fallback_reason"] = reason.removeprefix("FALLBACK_REASON_").lower()
    return out


def describe_source(response: pb.RecommendResponse) -> str:
    data = response_to_dict(response)
    text = str(data["source"])
    if "fallback_reason" in data:
        text += f" ({data['fallback_reason']})"
    if response.degraded:
        text += ", degraded: feature store unavailable"
    return text


def response_table(response: pb.RecommendResponse, title: str = "recommendations") -> Group:
    """A heading (where the answer came from, the model version) over rank, item and score."""
    heading = Text(f"{title}: from {describe_source(response)}, model {response.model_version}")
    table = Table()
    table.add_column("#", justify="right")
    table.add_column("item")
    table.add_column("score", justify="right")
    for rank, item in enumerate(response.items, start=1):
        table.add_row(str(rank), item.item_id, f"{item.score:.4f}")
    return Group(heading, table)


def explanation_table(response: pb.RecommendResponse) -> Table | None:
    """The history items that drove the answer, by attention weight (None: not asked for).

    SASRec builds one user state from the history, so every item shares these drivers.
    """
    drivers = next((item.explanation for item in response.items if item.explanation), None)
    if not drivers:
        return None
    table = Table(title="drivers (attention over the history)")
    table.add_column("history item")
    table.add_column("position", justify="right")
    table.add_column("weight", justify="right")
    for entry in drivers:
        position = "newest" if entry.position == 0 else f"{entry.position} before newest"
        table.add_row(entry.item_id, position, f"{entry.weight:.3f}")
    return table
