"""Signed artifacts: an Ed25519 signature over ``manifest.json``, checked before anything loads.

The manifest records the SHA-256 of every other file, so a checksum catches damage but not an
edit: whoever can write the folder can change a file and its recorded hash together (reverse the
item-id map, say). A signature made with a private key the writer does not hold closes that:
``recsys export --sign-key KEY`` writes ``manifest.sig`` (the raw 64-byte signature over the
manifest's bytes), and a server started with ``--verify-key PUB`` refuses an artifact whose
signature is missing or does not verify, before it reads another file. Keys are standard PEM
files (``openssl genpkey -algorithm ed25519 -out key.pem`` and
``openssl pkey -in key.pem -pubout -out pub.pem``); the cryptography library does the work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from recsys.errors import ArtifactError, ConfigError
from recsys.io import read_flag_file

SIGNATURE_FILE: Final = "manifest.sig"


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """An Ed25519 private key from an unencrypted PEM file; errors name ``--sign-key``."""
    try:
        key = serialization.load_pem_private_key(read_flag_file(path, "--sign-key"), password=None)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"--sign-key {path} is not an unencrypted PEM private key") from err
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"--sign-key {path} is not an Ed25519 key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file; errors name ``--verify-key``."""
    try:
        key = serialization.load_pem_public_key(read_flag_file(path, "--verify-key"))
    except (ValueError, TypeError) as err:
        raise ConfigError(f"--verify-key {path} is not a PEM public key") from err
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"--verify-key {path} is not an Ed25519 key")
    return key


def sign_manifest(folder: Path, key: Ed25519PrivateKey, manifest_name: str) -> None:
    """Write ``manifest.sig`` in ``folder``: the signature over its manifest's bytes."""
    signature = key.sign((folder / manifest_name).read_bytes())
    (folder / SIGNATURE_FILE).write_bytes(signature)


def verify_signature(folder: Path, key: Ed25519PublicKey, manifest_name: str) -> None:
    """Raise ``ArtifactError`` unless ``folder``'s manifest carries a valid signature."""
    signature_path = folder / SIGNATURE_FILE
    if not signature_path.is_file():
        raise ArtifactError(
            f"{folder} is not signed ({SIGNATURE_FILE} is missing) and a --verify-key was given"
        )
    try:
        key.verify(signature_path.read_bytes(), (folder / manifest_name).read_bytes())
    except InvalidSignature:
        raise ArtifactError(
            f"{folder / manifest_name} does not match its signature: the artifact was altered "
            "after it was signed, or signed with another key"
        ) from None
