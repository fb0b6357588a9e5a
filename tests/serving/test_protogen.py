"""The checked-in generated code is exactly what ``make protos`` produces from ``protos/``."""

from __future__ import annotations

from pathlib import Path

from serving.protogen import IMPORT_PREFIX, ROOT, generate


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    fresh = generate(tmp_path)
    assert fresh, "protoc generated nothing"
    checked_in = sorted(
        path
        for path in (ROOT / IMPORT_PREFIX).rglob("*")
        if path.name.endswith(("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi"))
    )
    relative = [path.relative_to(tmp_path) for path in fresh]
    assert [path.relative_to(ROOT) for path in checked_in] == relative, (
        "generated files differ from the checked-in ones: run `make protos`"
    )
    stale = [
        str(name)
        for name, path in zip(relative, fresh, strict=True)
        if (ROOT / name).read_bytes() != path.read_bytes()
    ]
    assert not stale, f"stale generated code: {', '.join(stale)}; run `make protos` and commit"


def test_generated_imports_need_no_rewriting() -> None:
    from serving.proto.recsys.v1 import recommender_pb2, recommender_pb2_grpc

    service = recommender_pb2.DESCRIPTOR.services_by_name["Recommender"]
    assert service.full_name == "recsys.v1.Recommender"
    assert hasattr(recommender_pb2_grpc, "RecommenderStub")
