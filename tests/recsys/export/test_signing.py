"""Signed artifacts and an item table that was altered with its checksum: what checksums alone
cannot catch is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from recsys.errors import ArtifactError, ConfigError
from recsys.export import export_artifact, load_artifact, verify_artifact
from recsys.export.signing import SIGNATURE_FILE
from recsys.io import sha256_file, write_json
from tests.recsys.export.conftest import Exported


def _key_pair(folder: Path, name: str) -> tuple[Path, Path]:
    key = Ed25519PrivateKey.generate()
    private, public = folder / f"{name}.pem", folder / f"{name}.pub.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    folder = tmp_path_factory.mktemp("keys")
    return {name: _key_pair(folder, name) for name in ("ours", "theirs")}


@pytest.fixture(scope="module")
def signed(
    exported: Exported,
    keys: dict[str, tuple[Path, Path]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    out = tmp_path_factory.mktemp("signed") / "artifact"
    return export_artifact(exported.checkpoint, exported.data, out, sign_key=keys["ours"][0])


def test_a_signed_artifact_verifies_with_its_key_only(
    signed: Path, exported: Exported, keys: dict[str, tuple[Path, Path]]
) -> None:
    assert (signed / SIGNATURE_FILE).is_file()
    assert verify_artifact(signed, verify_key=keys["ours"][1])["signature"] == "ok"
    with pytest.raises(ArtifactError, match="signed with another key"):
        verify_artifact(signed, verify_key=keys["theirs"][1])
    with pytest.raises(ArtifactError, match="is not signed"):
        verify_artifact(exported.artifact, verify_key=keys["ours"][1])
    assert verify_artifact(exported.artifact)["signature"] == "not checked"


def test_an_edit_after_signing_is_refused_before_anything_loads(
    signed: Path, keys: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    copy = tmp_path / "artifact"
    shutil.copytree(signed, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    write_json(copy / "manifest.json", {**manifest, "note": "edited"})
    (copy / "model.ts").write_bytes(b"not even a model")  # never reached
    from recsys.export.signing import load_public_key

    with pytest.raises(ArtifactError, match="does not match its signature"):
        load_artifact(copy, verify_key=load_public_key(keys["ours"][1]))


def test_a_reversed_item_table_with_a_fixed_checksum_is_refused(
    exported: Exported, tmp_path: Path
) -> None:
    copy = tmp_path / "artifact"
    shutil.copytree(exported.artifact, copy)
    items = pl.read_parquet(copy / "items.parquet")
    items.with_columns(pl.col("item_id").reverse()).write_parquet(copy / "items.parquet")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["items.parquet"]["sha256"] = sha256_file(copy / "items.parquet")
    write_json(copy / "manifest.json", manifest)
    with pytest.raises(ArtifactError, match="items.parquet was altered"):
        verify_artifact(copy)


def test_keys_that_cannot_sign_or_verify_name_the_flag(
    exported: Exported, tmp_path: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    ec_key = tmp_path / "ec.pem"
    ec_key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    out = tmp_path / "artifact"
    with pytest.raises(ConfigError, match="--sign-key .* is not an Ed25519 key"):
        export_artifact(exported.checkpoint, exported.data, out, sign_key=ec_key)
    with pytest.raises(ConfigError, match="--sign-key missing.pem: cannot read it"):
        export_artifact(exported.checkpoint, exported.data, out, sign_key=Path("missing.pem"))
    with pytest.raises(ConfigError, match="--verify-key .* is not a PEM public key"):
        verify_artifact(exported.artifact, verify_key=keys["ours"][0])
    assert not out.exists()
