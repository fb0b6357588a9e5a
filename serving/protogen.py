"""Generate the Python code of ``protos/`` into ``serving/proto/`` (``make protos``).

The one way generated code is made: ``python -m serving.protogen`` (grpcio-tools' protoc with the
gRPC and mypy-protobuf plugins). The ``.proto`` files keep their wire path ``protos/recsys/v1/``;
protoc sees them as ``serving/proto/recsys/v1/`` (``-Iserving/proto=protos``), so the generated
imports (``from serving.proto.recsys.v1 import ...``) work as written and never clash with the
``recsys`` library package. The output is checked in; ``tests/serving/test_protogen.py``
regenerates it into a temporary folder and fails when the checked-in copy differs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "protos"
IMPORT_PREFIX = "serving/proto"
"""Where protoc places the ``.proto`` files in the Python package tree."""
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def proto_files() -> list[Path]:
    """Every ``.proto`` under ``protos/``, sorted."""
    return sorted(PROTO_ROOT.rglob("*.proto"))


def generate(out_root: Path) -> list[Path]:
    """Run protoc into ``out_root`` (the repository root for the checked-in copy).

    Returns the generated files. Raises ``RuntimeError`` with protoc's message on failure.
    """
    from grpc_tools import protoc  # dev dependency: only needed to regenerate

    bin_dir = Path(sys.executable).parent
    out_root.mkdir(parents=True, exist_ok=True)
    sources = [str(path) for path in proto_files()]
    grpc_tools_include = Path(protoc.__file__).parent / "_proto"
    arguments = [
        "grpc_tools.protoc",
        f"-I{IMPORT_PREFIX}={PROTO_ROOT}",
        f"-I{grpc_tools_include}",
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        f"--python_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--mypy_out={out_root}",
        f"--mypy_grpc_out={out_root}",
        *sources,
    ]
    status = protoc.main(arguments)
    if status != 0:
        raise RuntimeError(f"protoc failed with status {status} on {', '.join(sources)}")
    generated = out_root / IMPORT_PREFIX
    return sorted(path for path in generated.rglob("*") if path.name.endswith(GENERATED_SUFFIXES))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=ROOT, help="output root (default: the repository root)"
    )
    args = parser.parse_args()
    for path in generate(args.out):
        print(path.relative_to(args.out))


if __name__ == "__main__":
    main()
